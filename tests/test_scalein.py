"""Scale-in: once the queue has nothing to hand out, idle machines end and busy ones stay.

The decision rule on plain values, the busy records against the emulator, and
end to end: setup, submitJob and startCluster as a user runs them, real
worker processes on the fleet's (emulated) machines, and the monitor.
"""
import datetime
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, real_fleet, run_py, write_json
from worker_helpers import queue_counts, wait_until, worker_env

sys.path.insert(0, REPO)
from ds.monitor import scalein  # noqa: E402
from ds.core.aws import Session  # noqa: E402
from ds.core.runfile import run_settings  # noqa: E402
from ds.monitor.steps import Run  # noqa: E402
from ds.core.settings import load  # noqa: E402

BUCKET = "scalein-bucket"
CONFIG = """
APP_NAME = 'ScaleTest'
DOCKERHUB_TAG = 'someone/something:1.0'
AWS_REGION = 'us-east-1'
AWS_BUCKET = '%s'
CLUSTER_MACHINES = 3
TASKS_PER_MACHINE = 1
DOCKER_CORES = 1
MACHINE_PRICE = 0.25
SQS_MESSAGE_VISIBILITY = 60
MONITOR_TIME = 1
CREATE_DASHBOARD = 'False'
COMMAND = 'bash -c {script}'
""" % BUCKET
FLEET = {
    "IamFleetRole": "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role",
    "AllocationStrategy": "lowestPrice",
    "LaunchSpecifications": [{"ImageId": "ami-12c6146b", "KeyName": "key"}],
    "Type": "maintain",
}


# ---- the rule on plain values (hand-computed answers) ----------------------

def test_decide_ends_the_idle_machines_and_asks_for_the_busy_ones():
    running = ["i-a", "i-b", "i-c", "i-d"]
    busy = {"i-a": 2, "i-b": 1}
    assert scalein.decide(running, busy, busy, 3) == (2, ["i-c", "i-d"])
    # every machine busy: nothing ends
    assert scalein.decide(["i-a", "i-b"], busy, busy, 3) == (2, [])


def test_decide_falls_back_when_records_miss_jobs_in_flight():
    running = ["i-a", "i-b"]
    assert scalein.decide(running, {"i-a": 1}, {"i-a": 1}, 2) == (None, [])
    # a record of a machine outside the fleet does not count
    assert scalein.decide(running, {"i-z": 5}, {"i-z": 5}, 1) == (None, [])
    assert scalein.decide(running, {}, {}, 1) == (None, [])


def test_a_dead_workers_record_does_not_make_up_for_a_missing_one():
    # i-a: one worker renewed its record, one died a few minutes ago (its
    # record still younger than a lease, not renewed); i-b holds a job whose record
    # is not written yet. SQS counts 2 in flight: only 1 is vouched for, so nothing
    # ends (i-b would have been ended had the dead record counted).
    running = ["i-a", "i-b"]
    assert scalein.decide(running, {"i-a": 2}, {"i-a": 1}, 2) == (None, [])
    assert scalein.decide(running, {"i-a": 2}, {"i-a": 2}, 2) == (1, ["i-b"])


def test_records_not_renewed_on_time_are_busy_but_do_not_vouch(boto):
    from ds.core.settings import Settings
    s3 = boto("s3")
    s3.create_bucket(Bucket=BUCKET)
    for k in ("busy/App/i-1/w1", "busy/App/i-1/w2"):
        s3.put_object(Bucket=BUCKET, Key=k, Body=b"job")
    settings = Settings(APP_NAME="App", AWS_BUCKET=BUCKET, SQS_MESSAGE_VISIBILITY=600)
    scale = scalein.ScaleIn(None, s3, settings, "sfr-1", 1)
    assert scale.busy() == ({"i-1": 2}, {"i-1": 2})
    # the same records seen 300 s later: past a third of the lease plus the slack
    # (260 s), still younger than the lease
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=300)
    assert scale.busy(now=later) == ({"i-1": 2}, {})


def test_busy_records_older_than_a_lease_count_as_gone(boto):
    s3 = boto("s3")
    s3.create_bucket(Bucket=BUCKET)
    for k in ("busy/App/i-1/w1", "busy/App/i-1/w2", "busy/App/i-2/w1",
              "busy/Other/i-3/w1", "busy/App/stray"):
        s3.put_object(Bucket=BUCKET, Key=k, Body=b"job")
    now = datetime.datetime.now(datetime.timezone.utc)
    assert scalein.busy_workers(s3, BUCKET, "App", 600, now) == {"i-1": 2, "i-2": 1}
    later = now + datetime.timedelta(seconds=700)
    assert scalein.busy_workers(s3, BUCKET, "App", 600, later) == {}


# ---- end to end with real workers ------------------------------------------

@pytest.fixture
def started_run(tmp_path, aws_env, boto, workers):
    """setup, submitJob, startCluster as a user runs them; one real worker per machine.

    Two jobs finish at once; the third holds its machine until the test
    creates the release file.
    """
    config = tmp_path / "config.py"
    config.write_text(CONFIG)
    release = tmp_path / "release"
    job = {"groups": [{"script": "true"}, {"script": "true"},
                      {"script": "while [ ! -e %s ]; do sleep 0.2; done" % release}]}
    (tmp_path / "files").mkdir()
    write_json(tmp_path / "files" / "job.json", job)
    write_json(tmp_path / "files" / "fleet.json", real_fleet(boto, FLEET))
    boto("s3").create_bucket(Bucket=BUCKET)

    def user(*args):
        result = run_py(["--config", str(config)] + list(args), aws_env, cwd=str(tmp_path),
                        timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        return result
    user("setup")
    user("submitJob", "files/job.json")
    started = user("startCluster", "files/fleet.json")
    monitor_file = str(tmp_path / "files" / "ScaleTestSpotFleetRequestId.json")
    fleet_id = json.load(open(monitor_file))["MONITOR_FLEET_ID"]
    ec2, sqs = boto("ec2"), boto("sqs")
    machines = sorted(i["InstanceId"] for i in ec2.describe_spot_fleet_instances(
        SpotFleetRequestId=fleet_id)["ActiveInstances"])
    assert len(machines) == 3
    url = sqs.get_queue_url(QueueName="ScaleTestQueue")["QueueUrl"]
    procs = {}
    for m in machines:
        env = worker_env(aws_env, url, BUCKET, "bash -c {script}", APP_NAME="ScaleTest",
                         LOG_GROUP_NAME="ScaleTest", SQS_MESSAGE_VISIBILITY="60",
                         INSTANCE_ID=m)
        procs[m] = workers.start(env, name=m)
    # the two quick jobs are done and the long one is held: nothing left to hand out
    wait_until(lambda: queue_counts(sqs, url) == (0, 1), 90, "two jobs done, one running",
               interval=0.2)
    # which machine holds the long job: its worker's log says so
    holder = wait_until(
        lambda: [m for m, p in procs.items() if "RUN bash -c 'while" in p.output()],
        30, "the long job to start", interval=0.2)
    assert len(holder) == 1
    # the quick jobs' records are gone and the long job's is there
    wait_until(lambda: scalein.busy_workers(boto("s3"), BUCKET, "ScaleTest", 60)
               == {holder[0]: 1}, 30, "only the long job's busy record", interval=0.2)
    return dict(config=str(config), dir=tmp_path, monitor_file=monitor_file,
                fleet_id=fleet_id, machines=machines, busy=holder, url=url,
                release=release, procs=procs, startCluster=started.stdout, env=aws_env)


def fleet_target(ec2, fleet_id):
    return ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[fleet_id])[
        "SpotFleetRequestConfigs"][0]["SpotFleetRequestConfig"]["TargetCapacity"]


def states(ec2, ids):
    found = {}
    for res in ec2.describe_instances(InstanceIds=ids)["Reservations"]:
        for inst in res["Instances"]:
            found[inst["InstanceId"]] = inst["State"]["Name"]
    return found


def test_monitor_ends_idle_machines_and_keeps_the_busy_one(started_run, boto, capsys):
    r = started_run
    ec2, s3, sqs = boto("ec2"), boto("s3"), boto("sqs")
    assert len(r["busy"]) == 1
    busy = r["busy"][0]
    idle = sorted(set(r["machines"]) - {busy})

    # the monitor's own poll, driven here so that polls are counted, not timed
    settings, fleet_id, started, per_machine = run_settings(load(r["config"]), r["monitor_file"])
    run = Run(Session(settings), settings, fleet_id, started, per_machine, lambda text: None)
    assert run.poll(r["url"], False) is False
    # the first look: the target drops to the busy machine, both idle machines end
    assert fleet_target(ec2, fleet_id) == 1
    after = states(ec2, r["machines"])
    assert {m: after[m] for m in idle} == {m: "terminated" for m in idle}
    assert after[busy] == "running"
    out = capsys.readouterr().out
    assert out.count("Ended idle machine") == 2 and busy not in out
    run.poll(r["url"], False)
    assert states(ec2, [busy])[busy] == "running"
    # the fleet replaces nothing, and its target is the number of busy machines
    active = [i["InstanceId"] for i in ec2.describe_spot_fleet_instances(
        SpotFleetRequestId=fleet_id)["ActiveInstances"]]
    assert active == [busy] and fleet_target(ec2, fleet_id) == 1

    # the held job finishes on its machine; its busy record goes with it
    r["release"].touch()
    wait_until(lambda: queue_counts(sqs, r["url"]) == (0, 0), 60, "the last job to finish",
               interval=0.2)
    wait_until(lambda: not scalein.busy_workers(s3, BUCKET, "ScaleTest", 60), 30,
               "the busy record to go", interval=0.2)
    assert run.poll(r["url"], False) is True


def test_run_py_monitor_ends_idle_machines_then_finishes(started_run, boto):
    r = started_run
    ec2 = boto("ec2")
    busy = r["busy"][0]
    assert ("Cost ceiling: 3 machines x $0.25 per machine-hour (MACHINE_PRICE) = $0.75 per hour"
            in r["startCluster"])
    # the ECS agent config drains a machine on its spot interruption notice
    agent = boto("s3").get_object(Bucket=BUCKET, Key="ecsconfigs/ScaleTest_ecs.config")
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true" in agent["Body"].read().decode().split("\n")
    # ...and ECS may stop its tasks then, before their replacements run
    service, = boto("ecs").describe_services(cluster="default",
                                             services=["ScaleTestService"])["services"]
    assert service["deploymentConfiguration"]["minimumHealthyPercent"] < 100, service
    log = open(r["dir"] / "monitor.log", "w+")
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "run.py"), "--config",
                             r["config"], "monitor", r["monitor_file"]], cwd=str(r["dir"]),
                            env=r["env"], stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        def output():
            with open(log.name) as f:
                return f.read()
        wait_until(lambda: output().count("Ended idle machine") == 2 or proc.poll() is not None,
                   120, "two idle machines ended", interval=0.2)
        assert output().count("Ended idle machine") == 2, output()
        assert busy not in output() and states(ec2, [busy])[busy] == "running"
        r["release"].touch()
        assert proc.wait(180) == 0, output()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    out = output()
    assert "Run ScaleTest finished: 3 jobs done" in out
    assert "Estimated cost: about $" in out and "at MACHINE_PRICE $0.25" in out
    # one price source: the report monitor wrote, the one `report` writes after the
    # clean-up, and the summary line give the run the same cost and hours
    said = out.split("Estimated cost: about $")[1].split(" ")[0]
    pages = [_cost_and_hours(r["dir"] / "ScaleTest-report.html")]
    again = subprocess.run([sys.executable, os.path.join(REPO, "run.py"), "--config",
                            r["config"], "report", r["monitor_file"]], cwd=str(r["dir"]),
                           env=r["env"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    pages.append(_cost_and_hours(r["dir"] / "ScaleTest-report.html"))
    assert pages[0] == pages[1] and pages[0][0] == "$" + said, (pages, said)
    assert not scalein.busy_workers(boto("s3"), BUCKET, "ScaleTest", 60)
    assert "Traceback" not in out


def _cost_and_hours(path):
    from test_report import Page
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page.ids["cost"], page.ids["hours"]


def test_local_run_ends_idle_emulated_machines_and_their_workers(tmp_path):
    """`run.py local` places workers on emulated machines, so the scale-in works there too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    home = tmp_path / "home"
    home.mkdir()
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    release = tmp_path / "release"
    config = tmp_path / "config.py"
    config.write_text(open(os.path.join(REPO, "config.py")).read() + "\n".join([
        "", "APP_NAME = 'LocalScale'", "CLUSTER_MACHINES = 3", "TASKS_PER_MACHINE = 1",
        "DOCKER_CORES = 1", "CREATE_DASHBOARD = 'False'", "COMMAND = 'bash -c {script}'", ""]))
    job = {"groups": [{"n": "1", "script": "true"}, {"n": "2", "script": "true"},
                      {"n": "3", "script": "while [ ! -e %s ]; do sleep 0.2; done" % release}]}
    write_json(tmp_path / "job.json", job)
    log = open(tmp_path / "local.log", "w+")
    proc = subprocess.Popen([sys.executable, "run.py", "--config", str(config), "local",
                             str(tmp_path / "job.json"), "--out", str(tmp_path / "out")],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)

    def output():
        with open(log.name) as f:
            return f.read()
    try:
        wait_until(lambda: output().count("Ended idle machine") == 2 or proc.poll() is not None,
                   180, "two idle machines ended", interval=0.2)
        assert output().count("Ended idle machine") == 2, output()
        release.touch()
        assert proc.wait(240) == 0, output()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    out = output()
    assert "the fleet now asks for the 1 busy machine;" in out
    assert out.count("Ended idle machine") == 2   # the busy one was never ended
    assert "succeeded        3" in out and "Traceback" not in out


def test_prices_are_written_as_people_write_them():
    """The emulator's spot price (0.00001) used to read '$1e-05' in the summary."""
    from ds.operate.cost import estimate_line, price
    assert [price(p) for p in (0.042, 0.1, 0.00001, 0.25, 2.0)] == \
        ["0.042", "0.1", "0.00001", "0.25", "2"]
    assert "at MACHINE_PRICE $0.00001" in estimate_line(0.5, 1.0, 0.00001)

"""AUTO_MONITOR: the run watches, shrinks and removes itself.

The emulator stores functions, rules and targets but never fires a schedule
and cannot invoke a function without Docker, so the tests call the tick (the
handler's body) in-process against the emulator, one tick at a time, as the
schedule would, and run `python run.py local` / `monitor` as a user does.
"""
import contextlib
import json
import os
import subprocess
import sys
import time
import zipfile
import io

import pytest

from conftest import REPO, real_fleet, run_py, write_json
from worker_helpers import Proc, wait_until, worker_env

sys.path.insert(0, REPO)
from ds.monitor import install as autodeploy  # noqa: E402
from ds.monitor.auto import tick as automonitor  # noqa: E402
from ds.core.aws import Session  # noqa: E402
from ds.core.errors import UserError  # noqa: E402
from ds.core.settings import Settings, load  # noqa: E402

APP = "AutoTest"
BUCKET = "auto-test-bucket"
CONFIG = """
APP_NAME = '%s'
DOCKERHUB_TAG = 'someone/something:1.0'
AWS_REGION = 'us-east-1'
AWS_BUCKET = '%s'
ECS_CLUSTER = 'autotestcluster'
CLUSTER_MACHINES = 2
TASKS_PER_MACHINE = 1
DOCKER_CORES = 1
SQS_MESSAGE_VISIBILITY = 60
MONITOR_TIME = 1
AUTO_MONITOR = 'True'
COMMAND = 'python3 {input_dir}/summarize.py {input_dir}/{well}.csv {output_dir}/{well}.json'
""" % (APP, BUCKET)
FLEET = {
    "IamFleetRole": "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role",
    "AllocationStrategy": "lowestPrice",
    "LaunchSpecifications": [{"ImageId": "ami-12c6146b", "KeyName": "key"}],
    "Type": "maintain",
}
WELLS = ["A01", "A02", "A03", "B01", "B02"]
JOB = {"plate": "Plate1", "groups": [
    {"well": w, "input": ["exampleData/summarize.py", "exampleData/measurements/%s.csv" % w],
     "output": "out/%s" % w} for w in WELLS]}
# what the Lambda runtime has: boto3 and what it pulls in (certifi: botocore uses it if present)
THIRD_PARTY_OK = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six",
                  "certifi"}
KEY = "monitors/%s.json" % APP


@pytest.fixture
def project(tmp_path, aws_env, boto):
    (tmp_path / "config.py").write_text(CONFIG)
    (tmp_path / "files").mkdir()
    write_json(tmp_path / "files" / "job.json", JOB)
    write_json(tmp_path / "files" / "fleet.json", real_fleet(boto, FLEET))
    s3 = boto("s3")
    s3.create_bucket(Bucket=BUCKET)
    for name in ["summarize.py"] + ["measurements/%s.csv" % w for w in WELLS]:
        with open(os.path.join(REPO, "files", "exampleData", name), "rb") as f:
            s3.put_object(Bucket=BUCKET, Key="exampleData/" + name, Body=f.read())

    def run(*args, check=True, timeout=180):
        result = run_py(list(args), aws_env, cwd=str(tmp_path), timeout=timeout)
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result
    run.dir = tmp_path
    run.env = aws_env
    return run


def session():
    return Session(Settings(AWS_REGION="us-east-1", AWS_PROFILE=""))


def start(project):
    project("setup")
    project("submitJob", "files/job.json")
    return project("startCluster", "files/fleet.json")


def start_workers(project, boto, count=2):
    """Real worker processes with the task definition's environment, as ECS would run them."""
    ecs = boto("ecs")
    arn = ecs.list_task_definitions(familyPrefix=APP + "Task")["taskDefinitionArns"][-1]
    container = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"][
        "containerDefinitions"][0]
    env = dict(project.env, **{e["name"]: e["value"] for e in container["environment"]})
    url = env.pop("SQS_QUEUE_URL")
    return [Proc.worker(worker_env(env, url, BUCKET, env["COMMAND"], **{
        k: v for k, v in env.items() if k.isupper() and not k.startswith(("AWS_", "HOME"))}),
        project.dir / ("worker%d.log" % i)) for i in range(count)]


def tick_until_gone(limit=200):
    """The schedule's part: call the handler until the run is gone; returns the ticks."""
    for n in range(1, limit + 1):
        if automonitor.handler({"bucket": BUCKET, "key": KEY}, None)["finished"]:
            return n
    raise AssertionError("the run was not gone after %d ticks" % limit)


def packaged_tick(tmp_path, env, bucket=BUCKET, key=KEY):
    """One tick by the handler of the deployment package, unpacked, in a process
    that has nothing else of this repository."""
    pkg = tmp_path / "pkg"
    zipfile.ZipFile(io.BytesIO(autodeploy.package())).extractall(pkg)
    code = ("import json, sys; sys.path.insert(0, %r); from ds.monitor.auto.tick import handler; "
            "print(json.dumps(handler({'bucket': %r, 'key': %r}, None)))"
            % (str(pkg), bucket, key))
    done = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), timeout=120,
                          env=dict(env, AWS_REGION=env["AWS_DEFAULT_REGION"]),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def assert_account_empty(boto):
    """Nothing of the run left but the bucket's inputs, outputs and exported logs."""
    sqs, ecs, ec2, cw = boto("sqs"), boto("ecs"), boto("ec2"), boto("cloudwatch")
    assert not sqs.list_queues(QueueNamePrefix=APP).get("QueueUrls")
    assert not [c for r in ec2.describe_spot_fleet_requests()["SpotFleetRequestConfigs"]
                if r["SpotFleetRequestState"] in ("active", "submitted", "modifying")
                for c in [r]]
    assert not [s for s in ecs.describe_services(cluster="autotestcluster",
                                                 services=[APP + "Service"])["services"]
                if s["status"] == "ACTIVE"]
    assert not ecs.list_task_definitions(familyPrefix=APP + "Task", status="ACTIVE")[
        "taskDefinitionArns"]
    assert not [c for c in ecs.describe_clusters(clusters=["autotestcluster"])["clusters"]
                if c["status"] == "ACTIVE"]
    assert not cw.list_dashboards(DashboardNamePrefix=APP)["DashboardEntries"]
    assert not cw.describe_alarms(AlarmNamePrefix=APP)["MetricAlarms"]
    assert not boto("lambda").list_functions()["Functions"]
    assert not boto("events").list_rules(NamePrefix=APP)["Rules"]
    # the app's monitor role stays for its next run (no role can delete itself);
    # `prepare --remove` deletes it
    assert [r["RoleName"] for r in boto("iam").list_roles()["Roles"]
            if r["RoleName"].startswith(APP)] == [APP + "AutoMonitorRole"]
    keys = [o["Key"] for o in boto("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    # aws-logs-write-test: CloudWatch Logs' own probe object, written by an export;
    # ds-records/ and reports/: the run's done records and report, kept as monitor keeps them
    left = [k for k in keys if not k.startswith(("exampleData/", "out/", "exportedlogs/",
                                                 "aws-logs-write-test", "ds-records/",
                                                 "reports/"))]
    assert not left, left
    assert any(k.startswith("exportedlogs/%s/" % APP) for k in keys)
    return keys


def test_package_is_built_from_the_sources_and_imports_only_what_lambda_has(tmp_path):
    code = autodeploy.package()
    names = zipfile.ZipFile(io.BytesIO(code)).namelist()
    assert "ds/monitor/auto/tick.py" in names and "ds/commands/local.py" not in names
    print("package: %d files, %d bytes" % (len(names), len(code)))
    zipfile.ZipFile(io.BytesIO(code)).extractall(tmp_path / "pkg")
    # Import the handler from the unpacked package alone, as the runtime does,
    # and list every module outside the standard library that came with it.
    pkg = str(tmp_path / "pkg")
    probe = ("import os, sys; sys.path.insert(0, %r); import ds.monitor.auto.tick; "
             "print(' '.join(sorted({n.split('.')[0] for n, m in list(sys.modules.items()) "
             "if n.split('.')[0] not in sys.stdlib_module_names and not "
             "(getattr(m, '__file__', None) or '').startswith(%r)})))" % (pkg, pkg))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=str(tmp_path), check=True).stdout
    # what came from outside the package, beyond the standard library
    loaded = set(out.split()) - {"_distutils_hack", "__main__", "__mp_main__"}
    assert loaded <= THIRD_PARTY_OK, loaded - THIRD_PARTY_OK


def test_start_cluster_installs_the_schedule_and_ticks_end_the_run(project, boto, workers,
                                                                    refused_url, capsys):
    out = start(project).stdout
    assert "The run monitors itself: schedule %sAutoMonitorSchedule calls function " \
           "%sAutoMonitor (python3.12" % (APP, APP) in out
    lam, events, iam = boto("lambda"), boto("events"), boto("iam")
    fn = lam.get_function(FunctionName=APP + "AutoMonitor")["Configuration"]
    assert fn["Runtime"] == "python3.12" and fn["Handler"] == "ds.monitor.auto.tick.handler"
    rule = events.describe_rule(Name=APP + "AutoMonitorSchedule")
    assert rule["ScheduleExpression"] == "rate(1 minute)"  # AWS refuses "1 minutes"
    target, = events.list_targets_by_rule(Rule=APP + "AutoMonitorSchedule")["Targets"]
    assert target["Arn"] == fn["FunctionArn"]
    assert json.loads(target["Input"]) == {"bucket": BUCKET, "key": KEY}
    statement, = json.loads(lam.get_policy(FunctionName=APP + "AutoMonitor")["Policy"])[
        "Statement"]
    assert statement["Principal"]["Service"] == "events.amazonaws.com"
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"] == rule["Arn"]
    assert iam.get_role_policy(RoleName=APP + "AutoMonitorRole", PolicyName="tick")
    stored = json.loads(boto("s3").get_object(Bucket=BUCKET, Key=KEY)["Body"].read())
    assert stored["MONITOR_SETTINGS"]["APP_NAME"] == APP
    # installing again (a startCluster cut short, then rerun) updates in place
    settings = load(str(project.dir / "config.py"))
    settings["AWS_PROFILE"] = ""
    autodeploy.install(session(), settings)
    assert len(events.list_targets_by_rule(Rule=APP + "AutoMonitorSchedule")["Targets"]) == 1
    assert len(json.loads(lam.get_policy(FunctionName=APP + "AutoMonitor")["Policy"])[
        "Statement"]) == 1

    out = packaged_tick(project.dir, project.env)  # jobs queued: just a look
    assert "5 queued, 0 running, 0 done" in out and '{"finished": false}' in out
    workers.procs.extend(start_workers(project, boto))
    sqs = boto("sqs")
    url = sqs.get_queue_url(QueueName=APP + "Queue")["QueueUrl"]

    def queue_empty():
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return (a["ApproximateNumberOfMessages"], a["ApproximateNumberOfMessagesNotVisible"]) \
            == ("0", "0")
    wait_until(queue_empty, 120, "the workers to finish every job", interval=0.5)
    # the tick that starts the teardown, with CloudWatch Logs unreachable: it
    # dies at the log export, halfway through
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", refused_url)
        mp.setenv("AWS_MAX_ATTEMPTS", "1")
        with pytest.raises(UserError):
            automonitor.tick(session(), BUCKET, KEY)
    stored = json.loads(boto("s3").get_object(Bucket=BUCKET, Key=KEY)["Body"].read())
    assert stored["MONITOR_TEARDOWN"]["step"] == 3 and not stored.get("MONITOR_FINISHED")
    assert not sqs.list_queues(QueueNamePrefix=APP + "Queue").get("QueueUrls")
    assert lam.get_function(FunctionName=APP + "AutoMonitor")  # still there to finish
    capsys.readouterr()
    tick_until_gone()
    # the ticks go on from the export: the steps before it are not taken again
    resumed = capsys.readouterr().out
    assert "Exported log group %s to s3://%s/" % (APP, BUCKET) in resumed, resumed
    assert "Deleted queue" not in resumed and "cleaning up" not in resumed, resumed
    keys = assert_account_empty(boto)
    assert {"out/%s/%s.json" % (w, w) for w in WELLS} <= set(keys)
    # a tick after the end (a schedule call already on its way) finds nothing to do
    assert automonitor.tick(session(), BUCKET, KEY) is True



def test_a_slow_tick_of_an_ended_run_touches_nothing_of_the_next_run(project, boto):
    """Two looks at run A (the function's and the laptop's) read its file; one ends
    the run, and a new run B of the app starts. The other look, still holding A's
    file, must neither write B's file nor remove anything by the names B uses."""
    from ds.monitor.auto import state
    s3 = boto("s3")
    start(project)
    take_jobs(boto)
    read = lambda: json.loads(s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())  # noqa
    # A's file as the slow look holds it: it found the queue empty and begins the teardown
    slow = dict(read(), MONITOR_TEARDOWN={"step": 0, "since": time.time()})
    tick_until_gone()                      # the other look ends A
    start(project)                         # run B: same APP_NAME, same names
    b = read()
    assert state.run_of(b) != state.run_of(slow)
    # the slow look goes on from where it read A's file: its next teardown step,
    # or its end if it was A's last look
    for held in (slow, dict(slow, MONITOR_FINISHED=True)):
        with pytest.raises(state.NotOurs):
            automonitor._tick(session(), s3, BUCKET, KEY, held, print, {})
    assert read() == b
    assert boto("lambda").get_function(FunctionName=APP + "AutoMonitor")
    assert boto("events").describe_rule(Name=APP + "AutoMonitorSchedule")
    assert boto("sqs").get_queue_url(QueueName=APP + "Queue")
    with pytest.raises(state.NotOurs):
        state.save(s3, BUCKET, KEY, slow)


@contextlib.contextmanager
def laptop_monitor(project):
    """`python run.py monitor` running beside the test, as a user leaves it; killed at
    the end if it is still running."""
    monitor_file = str(project.dir / "files" / (APP + "SpotFleetRequestId.json"))
    laptop = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "run.py"), "monitor", monitor_file],
        cwd=str(project.dir), env=project.env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    laptop.monitor_file = monitor_file
    try:
        yield laptop
    finally:
        if laptop.poll() is None:
            laptop.kill()
            laptop.communicate()


def take_jobs(boto, most=len(WELLS)):
    """Act as the workers: take and finish up to `most` jobs; returns how many."""
    sqs = boto("sqs")
    url = sqs.get_queue_url(QueueName=APP + "Queue")["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=most).get("Messages", [])
    for m in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return len(messages)


def test_laptop_monitor_beside_the_ticks_ends_in_the_same_place(project, boto):
    start(project)
    logs = boto("logs")  # a line as a worker writes it, for the export to carry
    logs.create_log_stream(logGroupName=APP, logStreamName="Plate1-A01")
    logs.put_log_events(logGroupName=APP, logStreamName="Plate1-A01", logEvents=[
        {"timestamp": int(time.time() * 1000), "message": "END job Plate1-A01"}])
    with laptop_monitor(project) as laptop:
        aws = session()
        taken = 0
        # a few jobs between ticks, while the laptop ticks too
        while taken < len(WELLS):
            taken += take_jobs(boto, 2)
            if taken < len(WELLS):  # jobs left: a look, never the end
                assert automonitor.tick(aws, BUCKET, KEY) is False
        tick_until_gone()
        out = laptop.communicate(timeout=120)[0]
    assert laptop.returncode == 0, out
    assert "Run %s monitors itself (s3://%s/%s)" % (APP, BUCKET, KEY) in out
    assert "Traceback" not in out
    assert_account_empty(boto)
    # either may say it finished; a later monitor only says nothing is left
    again = project("monitor", laptop.monitor_file)
    assert "Nothing is left of run %s: it was already cleaned up." % APP in again.stdout


def test_monitor_following_a_run_the_function_finishes_prints_its_counts(project, boto):
    """The function's last tick ends the run while the laptop sleeps between two looks:
    the laptop prints the summary that tick recorded, and its report counts the same."""
    config = project.dir / "config.py"
    config.write_text(config.read_text().replace("MONITOR_TIME = 1", "MONITOR_TIME = 15"))
    start(project)
    with laptop_monitor(project) as laptop:
        assert "monitors itself" in laptop.stdout.readline()
        assert "5 queued" in laptop.stdout.readline()  # its first look; 15 s to the next
        taken = 0
        while taken < len(WELLS):
            taken += take_jobs(boto)
        tick_until_gone()  # the function's ticks, to the end
        out = laptop.communicate(timeout=120)[0]
    assert laptop.returncode == 0, out
    assert "The queue is empty; cleaning up." not in out, out  # the function's tick did it
    assert "Run %s finished: %d jobs done, 0 in the dead-letter queue" % (APP, len(WELLS)) \
        in out, out
    page = (project.dir / ("%s-report.html" % APP)).read_text()
    assert '<b id="done">%d</b>' % len(WELLS) in page and '<b id="failed">0</b>' in page


def test_local_run_drives_the_ticks_in_process(project, boto):
    (project.dir / "files" / "exampleData").mkdir()
    result = run_py(["local", "files/job.json", "--data", os.path.join(REPO, "files",
                                                                       "exampleData"),
                     "--out", str(project.dir / "out"), "--workers", "2"],
                    project.env, cwd=str(project.dir), timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The run monitors itself" in result.stdout
    assert "Run %s monitors itself (s3://" % APP in result.stdout
    assert "Removed the schedule %sAutoMonitorSchedule." % APP in result.stdout
    assert "succeeded        %d" % len(WELLS) in result.stdout
    assert_account_empty(boto)


def test_start_cluster_that_cannot_install_the_monitor_ends_in_one_line(project, boto,
                                                                        refused_url):
    project("setup")
    project("submitJob", "files/job.json")
    env = dict(project.env, AWS_ENDPOINT_URL_IAM=refused_url, AWS_MAX_ATTEMPTS="1")
    result = run_py(["startCluster", "files/fleet.json"], env, cwd=str(project.dir))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    line, = result.stderr.strip().splitlines()
    assert line.startswith("error: Could not reach AWS to set up IAM role %sAutoMonitorRole "
                           "for the automatic monitor" % APP), line
    # the monitor comes first: without it, no machine is requested
    assert not boto("ec2").describe_spot_fleet_requests()["SpotFleetRequestConfigs"]
    assert not os.path.exists(project.dir / "files" / (APP + "SpotFleetRequestId.json"))


def test_a_fleet_aws_refuses_takes_the_monitor_it_needed_away_again(project, boto):
    """startCluster installs the monitor before the fleet; when AWS then refuses the
    fleet (here every EC2 call, as a policy without EC2 rights would), nothing of the
    monitor is left and the refusal is the line the user reads."""
    from faultproxy import FaultProxy
    project("setup")
    project("submitJob", "files/job.json")
    with FaultProxy(project.env["AWS_ENDPOINT_URL"], deny=lambda method, path: True) as ec2:
        env = dict(project.env, AWS_ENDPOINT_URL_EC2=ec2.url, AWS_MAX_ATTEMPTS="1")
        result = run_py(["startCluster", "files/fleet.json"], env, cwd=str(project.dir))
    assert result.returncode == 1, result.stdout + result.stderr
    line, = result.stderr.strip().splitlines()
    assert line.startswith("error: AWS refused to start the spot fleet: Access Denied"), line
    assert not boto("lambda").list_functions()["Functions"]
    assert not boto("events").list_rules(NamePrefix=APP)["Rules"]
    assert not boto("ec2").describe_spot_fleet_requests()["SpotFleetRequestConfigs"]
    # the role is the app's and stays, as prepare's would
    assert boto("iam").get_role(RoleName=APP + "AutoMonitorRole")


def test_start_cluster_waits_for_a_run_of_the_app_that_is_still_ending(project, boto):
    project("setup")
    project("submitJob", "files/job.json")
    boto("s3").put_object(Bucket=BUCKET, Key=KEY, Body=b'{"MONITOR_FLEET_ID": "sfr-old"}')
    result = project("startCluster", "files/fleet.json", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: A run of %s is still ending: its automatic monitor's state is in s3://%s/%s. "
        "Run `python run.py monitor` on its monitor file to end it now, then run startCluster "
        "again." % (APP, BUCKET, KEY))
    assert not boto("ec2").describe_spot_fleet_requests()["SpotFleetRequestConfigs"]
    assert not boto("lambda").list_functions()["Functions"]

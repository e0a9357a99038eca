"""AWS storms and lost machines: every AWS call through tests/faultproxy.py.

A run must complete with every output, no job completed twice, and no job's
retries spent by anything but its own tool's failures.
"""
import json
import os
import random
import signal
import sys
import time

import boto3
import pytest

from conftest import REGION, real_fleet, run_py
from faultproxy import FaultProxy
import storm_helpers as sh
from worker_helpers import failure_records, queue_counts, wait_until

sys.path.insert(0, sh.REPO)
from ds.resources import jobs, records  # noqa: E402


def clients(url):
    session = boto3.session.Session(region_name=REGION)
    return lambda service: session.client(service, endpoint_url=url)


def job_keys(path):
    return {json.loads(b)["job_key"] for b in jobs.load_messages(path)}


def all_done_records(s3, app_name):
    prefix = "%s/%s/" % (records.PREFIX, app_name)
    keys = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sh.BUCKET, Prefix=prefix):
        keys.update(o["Key"].rsplit("/", 1)[-1] for o in page.get("Contents", [])
                    if "/done/" in o["Key"])
    return keys


@pytest.mark.slow
def test_local_run_completes_in_a_storm(aws_env, emulator, tmp_path):
    """40 jobs per worker process: long enough to empty botocore's retry quota
    (500 units per client; about 20 jobs' calls at this failure rate), after
    which botocore gives a failed call no second try."""
    aws = clients(emulator)
    aws("s3").create_bucket(Bucket=sh.BUCKET)
    n = 80
    result, wall, counts, paths = sh.local_run_in_storm(
        emulator, aws_env, str(tmp_path / "run"), n, fail=0.25, lose=0.10, seed=12,
        workers=2, timeout=1500)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "Traceback" not in output
    assert counts["failed"] > 0 and counts["lost"] > 0  # the storm happened
    for i in range(n):
        with open(os.path.join(paths["out"], "stormOut", str(i), "%d.txt" % i)) as f:
            assert f.read().strip() == str(i)
    assert all_done_records(aws("s3"), "Storm") == job_keys(paths["jobs"])
    # Log lines may be lost in a storm (watchtower gives up): never ask for
    # one per job, only that none shows two completions.
    twice = {k: v for k, v in sh.completions(aws("logs"), "Storm").items() if v > 1}
    assert not twice, twice
    runs = sh.tool_runs(paths["runlog"])
    assert set(runs) == set(range(n))
    # A tool may run again only after its lease was lost mid-run (every
    # heartbeat of a lease failed): once in a run at most, and never thrice.
    again = {job: count for job, count in runs.items() if count > 1}
    assert len(again) <= 1 and max(runs.values()) <= 2, again


def setup_run(tmp_path, env, app_name, **knobs):
    """setup as a user runs it; returns (config path, worker env from the task definition)."""
    aws = clients(env["AWS_ENDPOINT_URL"])
    aws("s3").create_bucket(Bucket=sh.BUCKET)
    config = sh.write_config(tmp_path / "config.py", app_name, **knobs)
    result = run_py(["--config", config, "setup"], env, cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    td = aws("ecs").describe_task_definition(taskDefinition=app_name + "Task")
    task = {v["name"]: v["value"]
            for v in td["taskDefinition"]["containerDefinitions"][0]["environment"]}
    worker = dict(env, **task)
    worker.update(WORKER_SCRATCH=str(tmp_path), PYTHONUNBUFFERED="1")
    return config, worker


def submit(config, env, tmp_path, n_jobs):
    path = sh.job_file(tmp_path / "job.json", n_jobs)
    result = run_py(["--config", config, "submitJob", path], env, cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_setup_hands_the_workers_the_run_id_and_a_backstop_limit(aws_env, tmp_path):
    _config, worker = setup_run(tmp_path, aws_env, "Backstop", JOB_RETRIES=4, COMMAND="true")
    sqs = clients(aws_env["AWS_ENDPOINT_URL"])("sqs")
    url = sqs.get_queue_url(QueueName="BackstopQueue")["QueueUrl"]
    assert worker["RUN_ID"] and worker["RUN_ID"] == records.run_id(sqs, url)
    assert worker["JOB_RETRIES"] == "4"
    dlq = sqs.get_queue_url(QueueName="BackstopDeadMessages")["QueueUrl"]
    assert worker["SQS_DEAD_LETTER_QUEUE_URL"] == dlq
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "RedrivePolicy"])["Attributes"]["RedrivePolicy"])
    assert int(policy["maxReceiveCount"]) == 100  # max(100, 10 x 4)


def test_the_same_job_submitted_twice_runs_once(aws_env, tmp_path, workers):
    runlog = str(tmp_path / "runs.log")
    config, worker = setup_run(tmp_path, aws_env, "Twice", COMMAND=sh.tool_command(runlog))
    path = sh.job_file(tmp_path / "job.json", 1)
    for _ in range(2):
        result = run_py(["--config", config, "submitJob", path], aws_env, cwd=str(tmp_path))
        assert result.returncode == 0, result.stdout + result.stderr
    sqs = clients(aws_env["AWS_ENDPOINT_URL"])("sqs")
    url = worker["SQS_QUEUE_URL"]
    assert queue_counts(sqs, url) == (2, 0)
    proc = workers.start(worker)
    proc.wait_for(r"outcome SKIPPED-duplicate", timeout=120)
    wait_until(lambda: queue_counts(sqs, url) == (0, 0), 60, "both messages deleted", 0.5)
    assert sh.tool_runs(runlog) == {0: 1}
    assert "already done in run %s" % worker["RUN_ID"] in proc.output()
    done = records.done_keys(clients(aws_env["AWS_ENDPOINT_URL"])("s3"), sh.BUCKET, "Twice",
                             worker["RUN_ID"])
    assert done == job_keys(path)
    # status counts the job once although the queue was sent two messages
    status = run_py(["--config", config, "status", "--json"], aws_env, cwd=str(tmp_path))
    assert status.returncode == 0, status.stdout + status.stderr
    jobs = json.loads(status.stdout)["jobs"]
    assert (jobs["done"], jobs["total"], jobs["duplicates"], jobs["done_from"]) == \
        (1, 1, 1, "done records"), jobs


@pytest.mark.slow
def test_killed_workers_spend_no_retries(aws_env, tmp_path, workers):
    """Workers killed again and again (SIGKILL, SIGTERM) while JOB_RETRIES is 2."""
    runlog = str(tmp_path / "runs.log")
    command = ("echo {n} >> %s && if [ {n} = 99 ]; then exit 3; fi; sleep 2; "
               "echo {n} > {output_dir}/{n}.txt" % runlog)
    config, worker = setup_run(tmp_path, aws_env, "Killed", COMMAND=command, JOB_RETRIES=2,
                               SQS_MESSAGE_VISIBILITY=4)
    path = tmp_path / "job.json"
    groups = [{"n": i, "output": "killedOut/%d" % i} for i in list(range(6)) + [99]]
    path.write_text(json.dumps({"groups": groups}))
    result = run_py(["--config", config, "submitJob", str(path)], aws_env, cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    aws = clients(aws_env["AWS_ENDPOINT_URL"])
    sqs, s3 = aws("sqs"), aws("s3")
    run_id = worker["RUN_ID"]
    rng = random.Random(7)
    pool = [workers.start(worker, "w%d" % i) for i in range(3)]
    kills = 0
    for _ in range(24):  # a busy spot market: a machine lost every second
        time.sleep(1.0)  # the interval between interruptions, not a wait for a state
        victim = rng.randrange(len(pool))
        sig = signal.SIGKILL if kills % 2 else signal.SIGTERM
        pool[victim].signal(sig)
        pool[victim].p.wait(30)
        pool[victim] = workers.start(worker, "w%d-%d" % (victim, kills))
        kills += 1
    good = {json.loads(b)["job_key"] for b in jobs.load_messages(str(path))
            if json.loads(b)["group"]["n"] != 99}
    bad = job_keys(str(path)) - good

    def finished():
        return (records.done_keys(s3, sh.BUCKET, "Killed", run_id) >= good
                and queue_counts(sqs, worker["SQS_QUEUE_URL"]) == (0, 0))
    wait_until(finished, 300, "every job settled after the interruptions", 0.5)
    dlq = worker["SQS_DEAD_LETTER_QUEUE_URL"]
    dead = set()
    wait_until(lambda: sum(queue_counts(sqs, dlq)) > 0, 60, "the failing job dead-lettered")
    for _ in range(5):
        for m in sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10,
                                     VisibilityTimeout=60).get("Messages", []):
            dead.add(json.loads(m["Body"])["job_key"])
    assert dead == bad  # no job whose tool never failed is there
    key = bad.pop()
    failed = s3.get_object(Bucket=sh.BUCKET, Key=records.failed_prefix("Killed", run_id) + key)
    assert failed["Body"].read().decode() == "2"  # exactly JOB_RETRIES failures
    assert failure_records(s3, sh.BUCKET, "Killed", run_id) == {key}


def test_an_outage_after_the_tool_ran_does_not_run_it_again(aws_env, emulator, tmp_path, workers):
    """Every AWS call fails from the tool's start until botocore has given up on
    a call after it: the worker carries the outputs, the done record and the
    delete through, and the tool runs once."""
    runlog = str(tmp_path / "runs.log")
    command = "echo {n} >> %s && sleep 2 && echo {n} > {output_dir}/{n}.txt" % runlog
    with FaultProxy(emulator) as proxy:
        env = dict(aws_env, AWS_ENDPOINT_URL=proxy.url)
        config, worker = setup_run(tmp_path, env, "Outage", COMMAND=command,
                                   SQS_MESSAGE_VISIBILITY=6)
        path = sh.job_file(tmp_path / "job.json", 1)
        result = run_py(["--config", config, "submitJob", path], env, cwd=str(tmp_path))
        assert result.returncode == 0, result.stdout + result.stderr
        proc = workers.start(worker)
        wait_until(lambda: sh.tool_runs(runlog), 60, "the tool started")
        proxy.set(fail=1.0)
        # The first line a carried call logs comes once botocore gave up on it;
        # without the carrying the job is released here instead.
        proc.wait_for(r"trying again until AWS answers|outcome RELEASED", timeout=120)
        failed_before = proxy.counts["failed"]
        wait_until(lambda: proxy.counts["failed"] >= failed_before + 3, 60,
                   "three more failed tries")
        proxy.set(fail=0.0)
        proc.wait_for(r"outcome (SUCCESS|SKIPPED-duplicate|RELEASED)", timeout=120)
        sqs = clients(emulator)("sqs")
        wait_until(lambda: queue_counts(sqs, worker["SQS_QUEUE_URL"]) == (0, 0), 90,
                   "the job's message deleted", 0.5)
    out = proc.output()
    assert "outcome SUCCESS" in out and "RELEASED" not in out, out
    assert sh.tool_runs(runlog) == {0: 1}, out
    done = records.done_keys(clients(emulator)("s3"), sh.BUCKET, "Outage", worker["RUN_ID"])
    assert done == job_keys(path)


@pytest.mark.slow
def test_monitor_survives_a_minute_of_failing_calls(aws_env, emulator, tmp_path, workers, boto):
    with FaultProxy(emulator) as proxy:
        env = dict(aws_env, AWS_ENDPOINT_URL=proxy.url)
        config, _worker = setup_run(tmp_path, env, "Patient", COMMAND="true", MONITOR_TIME=2,
                                    CREATE_DASHBOARD="False")
        fleet = {"IamFleetRole": "arn:aws:iam::123456789012:role/fleet",
                 "AllocationStrategy": "lowestPrice", "Type": "maintain",
                 "LaunchSpecifications": [{"ImageId": "ami-12c6146b", "KeyName": "k"}]}
        (tmp_path / "fleet.json").write_text(json.dumps(real_fleet(boto, fleet)))
        submit(config, env, tmp_path, 1)
        result = run_py(["--config", config, "startCluster", str(tmp_path / "fleet.json")],
                        env, cwd=str(tmp_path))
        assert result.returncode == 0, result.stdout + result.stderr
        monitor_file = str(tmp_path / "files" / "PatientSpotFleetRequestId.json")
        assert os.path.exists(monitor_file), result.stdout
        sqs = clients(emulator)("sqs")  # no worker here: the job is taken out by hand
        sqs.purge_queue(QueueUrl=sqs.get_queue_url(QueueName="PatientQueue")["QueueUrl"])
        proxy.set(fail=1.0)
        began = time.monotonic()
        mon = workers.start_script(
            [sys.executable, os.path.join(sh.REPO, "run.py"), "--config", config, "monitor",
             monitor_file], env, "monitor")
        mon.wait_for(r"AWS is failing calls: \d+ of \d+ tries failed", timeout=120)
        wait_until(lambda: time.monotonic() - began > 60, 120, "a minute of failing calls", 1)
        assert mon.p.poll() is None, mon.output()  # still there, still trying
        assert proxy.counts["failed"] > 10
        proxy.set(fail=0.0)
        mon.p.wait(300)
    out = mon.output()
    assert mon.p.returncode == 0, out
    assert "Run Patient finished" in out and "Traceback" not in out


def test_start_cluster_rerun_finishes_a_start_cut_short(aws_env, tmp_path, boto):
    """AWS failed (or Ctrl-C) after the fleet was requested: a rerun uses that fleet."""
    config, _worker = setup_run(tmp_path, aws_env, "Restart", COMMAND="true",
                                CREATE_DASHBOARD="False", CLUSTER_MACHINES=2)
    fleet = {"IamFleetRole": "arn:aws:iam::123456789012:role/fleet",
             "AllocationStrategy": "lowestPrice", "Type": "maintain",
             "LaunchSpecifications": [{"ImageId": "ami-12c6146b", "KeyName": "k"}]}
    (tmp_path / "fleet.json").write_text(json.dumps(real_fleet(boto, fleet)))
    submit(config, aws_env, tmp_path, 1)
    first = run_py(["--config", config, "startCluster", str(tmp_path / "fleet.json")],
                   aws_env, cwd=str(tmp_path))
    assert first.returncode == 0, first.stdout + first.stderr
    monitor_file = tmp_path / "files" / "RestartSpotFleetRequestId.json"
    info = json.loads(monitor_file.read_text())
    assert info["MONITOR_STARTUP_DONE"] is True
    # As left by a start cut short before the workers were asked for, its fleet
    # meanwhile grown to 2 (a look of the monitor, for jobs submitted since)
    info["MONITOR_STARTUP_DONE"] = False
    monitor_file.write_text(json.dumps(info))
    aws = clients(aws_env["AWS_ENDPOINT_URL"])
    aws("ecs").update_service(cluster="default", service="RestartService", desiredCount=0)
    aws("ec2").modify_spot_fleet_request(SpotFleetRequestId=info["MONITOR_FLEET_ID"],
                                         TargetCapacity=2)
    again = run_py(["--config", config, "startCluster", str(tmp_path / "fleet.json")],
                   aws_env, cwd=str(tmp_path))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Finishing the start of spot fleet %s." % info["MONITOR_FLEET_ID"] in again.stdout
    service = aws("ecs").describe_services(cluster="default", services=["RestartService"])
    # the fleet's target (2), not a recount of the queue (1 job: 1 machine)
    assert service["services"][0]["desiredCount"] == 2
    fleets = aws("ec2").describe_spot_fleet_requests()["SpotFleetRequestConfigs"]
    assert [f["SpotFleetRequestId"] for f in fleets] == [info["MONITOR_FLEET_ID"]]
    # Once started, a third start is refused as before.
    third = run_py(["--config", config, "startCluster", str(tmp_path / "fleet.json")],
                   aws_env, cwd=str(tmp_path))
    assert third.returncode == 1 and "is still active" in third.stderr

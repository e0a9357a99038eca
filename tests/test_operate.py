"""Operating a run with real workers: status, failures and redrive as a user runs them.

Two of six jobs fail on purpose (a missing input; a tool that exits 137 as an
OOM kill does); after the causes are fixed, redrive brings the run to all done.
"""
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import REPO, real_fleet, run_py, write_json
from worker_helpers import failure_records, s3_keys, wait_until

BUCKET = "ops-test-bucket"
CONFIG = """
APP_NAME = 'OpsTest'
DOCKERHUB_TAG = 'someone/something:1.0'
AWS_REGION = 'us-east-1'
AWS_BUCKET = '%(bucket)s'
ECS_CLUSTER = 'opstestcluster'
CLUSTER_MACHINES = 2
TASKS_PER_MACHINE = 1
MACHINE_TYPE = ['m5.xlarge']
SQS_MESSAGE_VISIBILITY = %(visibility)d
JOB_RETRIES = 2
CREATE_DASHBOARD = %(dashboard)s
COMMAND = %(command)r
"""
FLEET = {
    "IamFleetRole": "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role",
    "AllocationStrategy": "lowestPrice",
    "LaunchSpecifications": [{"ImageId": "ami-12c6146b", "KeyName": "key"}],
    "Type": "maintain",
}
# The tool: copy the input to the output; an input saying "oom" dies as an OOM kill does.
COPY = ('v=$(cat {input_dir}/*); if [ "$v" = oom ]; then echo "allocating..."; exit 137; fi; '
        'echo "$v" > {output_dir}/{well}.txt')
WELLS = ["A01", "A02", "A03", "A04", "A05", "A06"]


def make_project(tmp_path, aws_env, boto, command, groups, visibility=60, dashboard=False):
    config = tmp_path / "config.py"
    config.write_text(CONFIG % {"bucket": BUCKET, "command": command,
                                "visibility": visibility, "dashboard": dashboard})
    (tmp_path / "files").mkdir()
    write_json(tmp_path / "files" / "job.json", {"plate": "P1", "groups": groups})
    write_json(tmp_path / "files" / "fleet.json", real_fleet(boto, FLEET))
    boto("s3").create_bucket(Bucket=BUCKET)

    def run(*args, check=True):
        result = run_py(["--config", str(config)] + list(args), aws_env, cwd=str(tmp_path),
                        timeout=120)
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result
    run.dir = tmp_path
    return run


def task_env(boto, aws_env):
    """The worker's environment exactly as setup registered it, plus the emulator's."""
    ecs = boto("ecs")
    arn = ecs.list_task_definitions(familyPrefix="OpsTestTask")["taskDefinitionArns"][-1]
    container = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"][
        "containerDefinitions"][0]
    env = dict(aws_env)
    env.update({v["name"]: v["value"] for v in container["environment"]})
    return env


def counts(sqs, name):
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def settled(sqs, dead):
    """The job queue is empty and the dead-letter queue holds `dead` jobs."""
    return counts(sqs, "OpsTestQueue") == (0, 0) and \
        sum(counts(sqs, "OpsTestDeadMessages")) == dead


@pytest.fixture
def failing_run(tmp_path, aws_env, boto, workers):
    """A run where A02's input is missing and A03's tool dies with exit 137."""
    s3 = boto("s3")
    groups = [{"well": w, "input": "data/%s.txt" % w, "output": "out/%s" % w} for w in WELLS]
    run = make_project(tmp_path, aws_env, boto, COPY, groups)
    for w in WELLS:
        if w != "A02":
            s3.put_object(Bucket=BUCKET, Key="data/%s.txt" % w,
                          Body=b"oom" if w == "A03" else w.encode())
    run("setup")
    run("submitJob", "files/job.json")
    run("startCluster", "files/fleet.json")
    env = task_env(boto, aws_env)
    workers.start(env)
    workers.start(env)
    wait_until(lambda: settled(boto("sqs"), 2), 180, "4 jobs done and 2 in the dead-letter queue",
               interval=0.5)
    return run


def report_page(run):
    """`python run.py report`, parsed."""
    from test_report import Page
    assert "Run report: ./OpsTest-report.html" in run("report").stdout
    page = Page()
    page.feed((run.dir / "OpsTest-report.html").read_text(encoding="utf-8"))
    return page


def failures_json(run):
    return {f["job"]: f for f in json.loads(run("failures", "--json").stdout)["jobs"]}


def test_failures_status_and_redrive_bring_the_run_to_all_done(failing_run, boto):
    run, s3, sqs = failing_run, boto("s3"), boto("sqs")

    # Both tries' END lines reach CloudWatch within seconds of the last try.
    def both_explained():
        found = failures_json(run)
        return found if all(f.get("tries") == 2 and f["outcome"] == "FAILED"
                            for f in found.values()) and len(found) == 2 else None
    found = wait_until(both_explained, 60, "failures to show both jobs' two tries", interval=1)
    assert sorted(found) == ["A02", "A03"]
    assert found["A03"]["exit_code"] == 137
    assert "raise MEMORY" in found["A03"]["hint"]
    assert any("allocating..." in line for line in found["A03"]["log_tail"])
    assert "input is missing" in found["A02"]["hint"]
    assert any("matched no object" in line for line in found["A02"]["log_tail"])
    assert all(0 < len(f["log_tail"]) <= 8 for f in found.values())
    # failures takes nothing out of the dead-letter queue
    assert sum(counts(sqs, "OpsTestDeadMessages")) == 2

    text = run("failures").stdout
    assert "Job A02: 2 tries, last outcome FAILED" in text
    assert "Job A03: 2 tries, last outcome FAILED, exit code 137" in text

    status = run("status").stdout
    assert "4/6 done" in status, status
    assert "0 queued, 0 running, 2 failed" in status
    assert "Machines  2 m5.xlarge" in status
    state = json.loads(run("status", "--json").stdout)
    assert (state["jobs"]["done"], state["jobs"]["failed"], state["jobs"]["total"]) == (4, 2, 6)
    assert state["workers"]["desired"] == 2
    assert state["machines_without_price"] == 0 and "estimate" in status   # every machine priced

    # An unknown name is refused in one line, and nothing moves.
    bad = run("redrive", "A02", "NOPE", check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "NOPE is not in dead-letter queue" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert sum(counts(sqs, "OpsTestDeadMessages")) == 2 and counts(sqs, "OpsTestQueue") == (0, 0)

    # The worker counted both jobs' failures; a redriven job's count starts again.
    from ds.resources import records
    run_id = records.run_id(sqs, sqs.get_queue_url(QueueName="OpsTestQueue")["QueueUrl"])
    assert len(failure_records(s3, BUCKET, "OpsTest", run_id)) == 2

    # Fix both causes, redrive one job by name, then the rest.
    s3.put_object(Bucket=BUCKET, Key="data/A02.txt", Body=b"A02")
    s3.put_object(Bucket=BUCKET, Key="data/A03.txt", Body=b"A03")
    out = run("redrive", "A02").stdout
    assert "Put 1 job back on queue OpsTestQueue" in out
    wait_until(lambda: "out/A02/A02.txt" in s3_keys(s3, BUCKET, "out/"), 120, "A02's output")
    out = run("redrive").stdout
    assert "Put 1 job back on queue OpsTestQueue" in out
    wait_until(lambda: settled(sqs, 0) and len(s3_keys(s3, BUCKET, "out/")) == 6, 120,
               "all six outputs")
    assert "6/6 done" in run("status").stdout
    assert failure_records(s3, BUCKET, "OpsTest", run_id) == set()
    assert "Nothing to redrive" in run("redrive").stdout

    # The report agrees with the START lines and the queues: one bar per logged try.
    logs = boto("logs")
    starts = [e for e in logs.filter_log_events(logGroupName="OpsTest")["events"]
              if " START job " in e["message"]]
    page = report_page(run)
    assert len(page.bars) == len(starts) == 10     # 4 jobs x 1, A02 and A03 x (2 + 1)
    assert (page.ids["done"], page.ids["failed"], page.ids["retried"]) == ("6", "0", "2")


def test_redrive_says_when_no_workers_run(tmp_path, aws_env, boto):
    """With the service at 0 workers, redrive says so and names the command that starts them."""
    run = make_project(tmp_path, aws_env, boto, COPY,
                       [{"well": "A01", "input": "data/none.txt", "output": "out/A01"}])
    run("setup")
    sqs = boto("sqs")
    dlq = sqs.get_queue_url(QueueName="OpsTestDeadMessages")["QueueUrl"]
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(
        {"plate": "P1", "group": {"well": "A01", "input": "data/none.txt", "output": "out/A01"}}))
    out = run("redrive").stdout
    assert "Put 1 job back on queue OpsTestQueue with 2 fresh tries each." in out
    assert "No workers are running" in out and "python run.py startCluster" in out
    assert counts(sqs, "OpsTestQueue")[0] == 1 and sum(counts(sqs, "OpsTestDeadMessages")) == 0
    # A freshly set-up queue counts the job coming back, so status has a total.
    assert "0/1 done" in run("status").stdout


def test_copies_of_a_job_in_the_dead_letter_queue_count_once(tmp_path, aws_env, boto):
    """Two copies of one job (a move whose delete failed) and one other job:
    failures lists two jobs, redrive puts back two and deletes all three."""
    groups = [{"well": w, "input": "data/none.txt", "output": "out/%s" % w}
              for w in ("A01", "A02")]
    run = make_project(tmp_path, aws_env, boto, COPY, groups)
    run("setup")
    run("submitJob", "files/job.json")
    sqs = boto("sqs")
    url = sqs.get_queue_url(QueueName="OpsTestQueue")["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName="OpsTestDeadMessages")["QueueUrl"]
    bodies = []
    while len(bodies) < 2:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    for body in bodies + bodies[:1]:
        sqs.send_message(QueueUrl=dlq, MessageBody=body)
    assert sorted(failures_json(run)) == ["A01", "A02"]
    assert "2 jobs in dead-letter queue" in run("failures").stdout
    assert "Put 2 jobs back on queue OpsTestQueue" in run("redrive").stdout
    assert counts(sqs, "OpsTestQueue") == (2, 0)
    assert sorted(json.loads(m["Body"])["group"]["well"] for m in sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10)["Messages"]) == ["A01", "A02"]
    assert sum(counts(sqs, "OpsTestDeadMessages")) == 0


def test_a_copy_the_dead_letter_queue_refuses_to_delete_is_reported(aws_env, boto):
    """delete_message_batch answers per entry: the ones it could not delete come
    back, after being tried again, never counted as moved."""
    from ds.resources import deadletter
    sqs = boto("sqs")
    url = sqs.create_queue(QueueName="DeleteTest")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"group": {"well": "A01"}}))
    letters = deadletter.peek(sqs, url)
    stale = deadletter.Letter(dict(letters[0].message, ReceiptHandle="not-a-receipt"))
    assert deadletter.delete(sqs, url, letters + [stale]) == [stale]
    assert sum(counts(sqs, "DeleteTest")) == 0


def test_status_names_the_count_it_gives(tmp_path, aws_env, boto):
    """A worker of an image's own (DS-family) deletes messages and writes no done
    records: status counts done jobs from the queue, and says so."""
    run = make_project(tmp_path, aws_env, boto, COPY,
                       [{"well": w, "output": "out/%s" % w} for w in ("A01", "A02")])
    run("setup")
    run("submitJob", "files/job.json")
    sqs = boto("sqs")
    url = sqs.get_queue_url(QueueName="OpsTestQueue")["QueueUrl"]
    taken = 0
    while taken < 2:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            taken += 1
    jobs = json.loads(run("status", "--json").stdout)["jobs"]
    assert (jobs["done"], jobs["done_from"]) == (2, "queue counts"), jobs


def test_report_and_failures_show_this_run_only(tmp_path, aws_env, boto):
    """The log group outlives a run (60 days): a run of the same APP_NAME two days
    earlier left a failed try of A01 there, which is not this run's."""
    import time
    run = make_project(tmp_path, aws_env, boto, COPY, [{"well": "A01", "output": "out/A01"}])
    run("setup")
    run("submitJob", "files/job.json")
    run("startCluster", "files/fleet.json")
    logs, now = boto("logs"), int(time.time() * 1000)
    logs.create_log_stream(logGroupName="OpsTest", logStreamName="A01")
    earlier = now - 2 * 86400 * 1000
    lines = [(earlier, "START job A01 attempt 1 message m0 worker old:1"),
             (earlier + 1000, "END job A01 outcome FAILED exit_code 3 attempt 1"),
             (now, "START job A01 attempt 1 message m1 worker new:1"),
             (now + 1000, "END job A01 outcome FAILED exit_code 3 attempt 1")]
    logs.put_log_events(logGroupName="OpsTest", logStreamName="A01", logEvents=[
        {"timestamp": t, "message": m} for t, m in lines])
    sqs = boto("sqs")
    body = sqs.receive_message(QueueUrl=sqs.get_queue_url(QueueName="OpsTestQueue")[
        "QueueUrl"])["Messages"][0]["Body"]
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName="OpsTestDeadMessages")["QueueUrl"],
                     MessageBody=body)
    assert [(j["job"], j["tries"]) for j in failures_json(run).values()] == [("A01", 1)]
    page = report_page(run)
    assert [b["data-outcome"] for b in page.bars] == ["FAILED"] and page.ids["tries"] == "1"


def test_dashboard_shows_the_dead_letter_count_beside_the_queue(tmp_path, aws_env, boto):
    run = make_project(tmp_path, aws_env, boto, COPY, [{"well": "A01"}], dashboard=True)
    run("setup")
    run("submitJob", "files/job.json")
    run("startCluster", "files/fleet.json")
    body = json.loads(boto("cloudwatch").get_dashboard(DashboardName="OpsTest")["DashboardBody"])
    queues = [[m[3] for m in w["properties"]["metrics"] if m[0] == "AWS/SQS"]
              for w in body["widgets"] if w["type"] == "metric"]
    assert any({"OpsTestQueue", "OpsTestDeadMessages"} <= set(q) for q in queues), queues


def test_a_try_killed_outright_still_shows(tmp_path, aws_env, boto, workers):
    """A worker SIGKILLed mid-try: its START line is already in CloudWatch, so the
    try shows as cut off beside the try that finished the job. With watchtower's
    default 60 s send interval the START line would not be there in time."""
    from ds.operate import joblog
    marker = tmp_path / "first-try-started"
    command = ('if [ ! -e {marker} ]; then touch {marker}; sleep 120; fi; '
               'echo ok > {output_dir}/{well}.txt')
    run = make_project(tmp_path, aws_env, boto, command, [
        {"job_name": "K01", "well": "K01", "marker": str(marker), "output": "out/K01"}], visibility=6)
    run("setup")
    run("submitJob", "files/job.json")
    env = task_env(boto, aws_env)
    first = workers.start(env, "first")
    logs = boto("logs")

    def started_in_cloudwatch():
        return marker.exists() and joblog.read(logs, "OpsTest").get("K01")
    wait_until(started_in_cloudwatch, 40, "the first try's START line in CloudWatch",
               interval=0.5)
    os.killpg(first.p.pid, signal.SIGKILL)
    first.p.wait()
    workers.start(env, "second")
    s3 = boto("s3")
    wait_until(lambda: s3_keys(s3, BUCKET, "out/K01/") and settled(boto("sqs"), 0), 120,
               "the second try to finish the job")

    def both_tries():
        log = joblog.read(logs, "OpsTest").get("K01")
        return log if log and log.tries[-1].outcome == "SUCCESS" else None
    log = wait_until(both_tries, 60, "the second try's END line", interval=0.5)
    assert [(t.attempt, t.outcome) for t in log.tries] == [(1, joblog.CUT_OFF), (2, "SUCCESS")]
    # The report shows the cut-off try beside the one that finished the job.
    page = report_page(run)
    bars = sorted(page.bars, key=lambda b: float(b["x"]))   # in time order
    assert [b["data-outcome"] for b in bars] == [joblog.CUT_OFF, "SUCCESS"]
    assert page.ids["tries"] == "2"


def test_redrive_after_the_clean_up_names_the_config_file_given(tmp_path, aws_env, boto):
    run = make_project(tmp_path, aws_env, boto, COPY, [{"well": "A01"}])
    run("setup")
    (tmp_path / "other.py").write_text((tmp_path / "config.py").read_text())
    sqs = boto("sqs")
    dlq = sqs.get_queue_url(QueueName="OpsTestDeadMessages")["QueueUrl"]
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"plate": "P1", "group": {
        "well": "A01"}}))
    # as monitor leaves a run with failed jobs: the job queue gone, the dead letters kept
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName="OpsTestQueue")["QueueUrl"])
    result = run_py(["--config", "other.py", "redrive"], aws_env, cwd=str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip() == (
        "error: Queue OpsTestQueue does not exist: run `python run.py setup` first (or fix "
        "SQS_QUEUE_NAME in other.py).")


@pytest.mark.parametrize("unbuffered", ["1", None])
def test_status_piped_into_head_that_has_left_ends_without_a_traceback(tmp_path, aws_env, boto,
                                                                       unbuffered):
    """`status | head -1` once head has read its line and gone: the rest of the output
    meets a closed pipe, at a print (unbuffered) or at the exit's flush (buffered)."""
    run = make_project(tmp_path, aws_env, boto, COPY, [{"well": "A01"}])
    run("setup")
    env = {k: v for k, v in aws_env.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        closed = subprocess.run([sys.executable, os.path.join(REPO, "run.py"), "status"],
                                cwd=str(tmp_path), env=env, stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert closed.stderr == "", closed.stderr
    assert closed.returncode == 128 + signal.SIGPIPE

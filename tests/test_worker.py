"""The worker as real processes against the AWS emulator (moto server)."""
import os
import shlex
import signal
import sys
import time

import pytest

from worker_helpers import (WORKER, python27, make_queues, queue_counts, s3_keys,
                            send_jobs, wait_until, worker_env)

PY = shlex.quote(sys.executable)
BUCKET = "ds-test-bucket"




@pytest.fixture
def setup(boto):
    """Bucket + queue with a dead-letter queue (maxReceiveCount 2)."""
    sqs, s3 = boto("sqs"), boto("s3")
    s3.create_bucket(Bucket=BUCKET)
    queue, dlq = make_queues(sqs, "TestApp", max_receive=2)
    return sqs, s3, queue, dlq


def drained(sqs, queue):
    return queue_counts(sqs, queue) == (0, 0)


def read(s3, key):
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()


def log_messages(logs, group, stream):
    events = logs.filter_log_events(logGroupName=group, logStreamNames=[stream])
    return [e["message"] for e in events["events"]]


def test_jobs_download_run_upload_and_log(setup, boto, workers, aws_env):
    sqs, s3, queue, dlq = setup
    s3.put_object(Bucket=BUCKET, Key="data/shared.txt", Body=b"shared-input")
    for plate in ("P1", "P2"):
        s3.put_object(Bucket=BUCKET, Key="data/%s/a.txt" % plate, Body=plate.encode())
        s3.put_object(Bucket=BUCKET, Key="data/%s/deep/b.txt" % plate, Body=b"b")
    s3.put_object(Bucket=BUCKET, Key="data/P10/decoy.txt", Body=b"not mine")
    command = ("cat {input_dir}/shared.txt {input_dir}/a.txt > {output_dir}/{Plate}.txt"
               " && mkdir {output_dir}/sub && (cd {input_dir} && find . -type f | sort)"
               " > {output_dir}/sub/files.txt && echo tool-says-hi {Plate} {flags}")
    send_jobs(sqs, queue, {"output": "results", "flags": ["-a", "b c"]},
              [{"Plate": p, "input": ["data/shared.txt", "s3://%s/data/%s" % (BUCKET, p)],
                "output": "results/" + p} for p in ("P1", "P2")])
    w = workers.start(worker_env(aws_env, queue, BUCKET, command))
    wait_until(lambda: drained(sqs, queue), 30, "queue drained")
    w.wait_for(r"outcome SUCCESS", count=2)
    assert sorted(s3_keys(s3, BUCKET, "results/")) == [
        "results/P1/P1.txt", "results/P1/sub/files.txt",
        "results/P2/P2.txt", "results/P2/sub/files.txt"]
    assert read(s3, "results/P2/P2.txt") == "shared-inputP2"
    # Prefix input keeps relative paths, exact key lands by basename; the
    # P10 decoy shares the P1 string prefix but is not under "data/P1/".
    assert read(s3, "results/P1/sub/files.txt").split() == [
        "./a.txt", "./deep/b.txt", "./shared.txt"]
    assert queue_counts(sqs, dlq) == (0, 0)
    # Per-job CloudWatch stream named after the job, with the tool's output.
    # watchtower sends at job end, after the stdout line: poll the service.
    text = wait_until(lambda: "\n".join(log_messages(boto("logs"), "TestApp", "P1"))
                      if "outcome SUCCESS" in "".join(log_messages(boto("logs"), "TestApp", "P1"))
                      else None, 10, "CloudWatch log lines")
    assert "tool-says-hi P1 -a b c" in text
    assert "outcome SUCCESS exit_code 0 attempt 1" in text
    assert "START job P1" in text and "duration" in text


def test_scratch_folder_is_removed(setup, workers, aws_env, tmp_path):
    sqs, s3, queue, dlq = setup
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    send_jobs(sqs, queue, {"output": "out"}, [{"n": "ok"}, {"n": "bad"}])
    command = 'echo x > {output_dir}/{n}; test {n} = ok'
    w = workers.start(worker_env(aws_env, queue, BUCKET, command,
                                 WORKER_SCRATCH=scratch))
    w.wait_for(r"outcome (SUCCESS|FAILED)", count=3)
    assert os.listdir(str(scratch)) == []


def test_job_longer_than_lease_runs_once(setup, workers, aws_env, tmp_path):
    sqs, s3, queue, dlq = setup
    runs = tmp_path / "runs.txt"
    # Lease 2 s, job 4 s: only the heartbeat keeps the second worker away.
    command = "echo run >> %s && %s -c 'import time; time.sleep(4)' && echo done > {output_dir}/r" % (
        shlex.quote(str(runs)), PY)
    send_jobs(sqs, queue, {"output": "long"}, [{"n": "1"}])
    env = worker_env(aws_env, queue, BUCKET, command, SQS_MESSAGE_VISIBILITY=2)
    a, b = workers.start(env), workers.start(env)
    wait_until(lambda: drained(sqs, queue), 30, "queue drained")
    assert runs.read_text() == "run\n"
    assert s3_keys(s3, BUCKET, "long/") == ["long/r"]
    assert "outcome SUCCESS" in a.output() + b.output()


def test_sigkill_and_sigterm_mid_job_lose_nothing(setup, workers, aws_env, tmp_path):
    sqs, s3, queue, dlq = setup
    runs = tmp_path / "runs.txt"
    command = ("echo {n} >> %s && %s -c 'import time; time.sleep(3)'"
               " && echo {n} > {output_dir}/{n}.txt") % (shlex.quote(str(runs)), PY)
    send_jobs(sqs, queue, {"output": "out"}, [{"n": "j%d" % i} for i in range(3)])
    started = lambda k: len(runs.read_text().split()) >= k if runs.exists() else False
    # The SIGKILLed worker's lease (3 s) runs out; the SIGTERMed worker has a
    # 120 s lease, so its job finishing in time proves it was released.
    killed = workers.start(worker_env(aws_env, queue, BUCKET, command,
                                      SQS_MESSAGE_VISIBILITY=3), "killed")
    wait_until(lambda: started(1), 20, "first job started")
    termed = workers.start(worker_env(aws_env, queue, BUCKET, command,
                                      SQS_MESSAGE_VISIBILITY=120), "termed")
    wait_until(lambda: started(2), 20, "second job started")
    killed.signal(signal.SIGKILL)
    t0 = time.monotonic()
    termed.signal(signal.SIGTERM)
    termed.p.wait(5)
    assert time.monotonic() - t0 < 4
    assert termed.p.returncode == 0
    assert "outcome INTERRUPTED" in termed.output()
    env = worker_env(aws_env, queue, BUCKET, command, SQS_MESSAGE_VISIBILITY=3)
    workers.start(env, "rescue1"), workers.start(env, "rescue2")
    wait_until(lambda: drained(sqs, queue), 40, "queue drained")
    assert sorted(s3_keys(s3, BUCKET, "out/")) == ["out/j0.txt", "out/j1.txt", "out/j2.txt"]
    assert all(read(s3, "out/j%d.txt" % i) == "j%d\n" % i for i in range(3))
    assert queue_counts(sqs, dlq) == (0, 0)


def test_failing_job_goes_to_dead_letter_queue(setup, workers, aws_env, tmp_path):
    sqs, s3, queue, dlq = setup  # maxReceiveCount 2
    runs = tmp_path / "runs.txt"
    command = "echo fail >> %s; echo broken >&2; exit 3" % shlex.quote(str(runs))
    send_jobs(sqs, queue, {}, [{"job_name": "doomed"}])
    w = workers.start(worker_env(aws_env, queue, BUCKET, command))
    # the copy goes to the dead-letter queue before the job's message is deleted
    wait_until(lambda: queue_counts(sqs, dlq)[0] == 1 and drained(sqs, queue), 30,
               "the message moved to the DLQ")
    assert runs.read_text() == "fail\nfail\n"
    out = w.output()
    assert "outcome FAILED exit_code 3 attempt 1" in out
    assert "outcome FAILED exit_code 3 attempt 2" in out
    assert "| broken" in out


def test_check_if_done_skips_finished_job(setup, workers, aws_env, tmp_path):
    sqs, s3, queue, dlq = setup
    runs = tmp_path / "runs.txt"
    for name in ("a.csv", "b_summary.csv"):
        s3.put_object(Bucket=BUCKET, Key="res/done/" + name, Body=b"x" * 20)
    # Not done: one file too small, so only 1 of 2 is big enough.
    s3.put_object(Bucket=BUCKET, Key="res/partial/a.csv", Body=b"x" * 20)
    s3.put_object(Bucket=BUCKET, Key="res/partial/b_summary.csv", Body=b"x")
    command = ("echo {job_name} >> %s; %s -c 'import sys; [open(sys.argv[1] + n, \"w\").write(\"y\" * 30)"
               " for n in (\"/a.csv\", \"/b_summary.csv\")]' {output_dir}") % (
        shlex.quote(str(runs)), PY)
    send_jobs(sqs, queue, {}, [{"job_name": j, "output": "res/" + j}
                               for j in ("done", "partial")])
    w = workers.start(worker_env(aws_env, queue, BUCKET, command,
                                 CHECK_IF_DONE_BOOL="true", EXPECTED_NUMBER_FILES=2,
                                 MIN_FILE_SIZE_BYTES=10, NECESSARY_STRING="summary"))
    wait_until(lambda: drained(sqs, queue), 30, "queue drained")
    w.wait_for(r"outcome SUCCESS", count=1)
    assert runs.read_text() == "partial\n"
    out = w.output()
    assert "outcome SKIPPED-already-done" in out and "already done" in out
    assert s3.head_object(Bucket=BUCKET, Key="res/partial/b_summary.csv")["ContentLength"] == 30


def test_check_if_done_fails_job_with_incomplete_output(setup, workers, aws_env):
    sqs, s3, queue, dlq = setup
    send_jobs(sqs, queue, {}, [{"job_name": "thin", "output": "res/thin"}])
    w = workers.start(worker_env(aws_env, queue, BUCKET, "echo > {output_dir}/tiny",
                                 CHECK_IF_DONE_BOOL="TRUE", EXPECTED_NUMBER_FILES=1,
                                 MIN_FILE_SIZE_BYTES=100))
    wait_until(lambda: queue_counts(sqs, dlq)[0] == 1, 30, "message in the DLQ")
    assert "does not meet the done condition" in w.output()
    assert s3_keys(s3, BUCKET, "res/") == []


def test_hostile_values_reach_the_tool_literally(setup, workers, aws_env, tmp_path):
    sqs, s3, queue, dlq = setup
    pwned = tmp_path / "PWNED-xyz"
    hostile = ["a; touch %s" % pwned, "$(touch %s)" % pwned, "`touch %s`" % pwned,
               "x' ; touch '%s" % pwned, "{n}"]
    send_jobs(sqs, queue, {}, [{"job_name": "h%d" % i, "v": v, "output": "h/h%d" % i}
                               for i, v in enumerate(hostile)])
    w = workers.start(worker_env(aws_env, queue, BUCKET,
                                 "printf '%s' {v} > {output_dir}/value"))
    wait_until(lambda: drained(sqs, queue), 30, "queue drained")
    w.wait_for(r"outcome SUCCESS", count=len(hostile))
    assert not pwned.exists()
    for i, v in enumerate(hostile):
        assert read(s3, "h/h%d/value" % i) == v


def test_unknown_placeholder_fails_clearly(setup, boto, workers, aws_env, tmp_path):
    sqs, s3, queue, dlq = setup
    runs = tmp_path / "runs.txt"
    send_jobs(sqs, queue, {}, [{"job_name": "typo", "Plate": "P1"}])
    w = workers.start(worker_env(aws_env, queue, BUCKET,
                                 "echo ran >> %s {Plat}" % shlex.quote(str(runs))))
    wait_until(lambda: queue_counts(sqs, dlq)[0] == 1, 30, "message in the DLQ")
    assert not runs.exists()
    w.wait_for(r"unknown placeholder \{Plat\}; the job has keys: Plate, ", count=2)
    text = "\n".join(log_messages(boto("logs"), "TestApp", "typo"))
    assert "unknown placeholder {Plat}" in text


def test_missing_input_fails_clearly(setup, workers, aws_env, tmp_path):
    sqs, s3, queue, dlq = setup
    runs = tmp_path / "runs.txt"
    send_jobs(sqs, queue, {}, [{"job_name": "noinput", "input": "nowhere/x.tif"}])
    w = workers.start(worker_env(aws_env, queue, BUCKET, "echo ran >> %s" % shlex.quote(str(runs))))
    wait_until(lambda: queue_counts(sqs, dlq)[0] == 1, 30, "message in the DLQ")
    assert not runs.exists()
    assert "input s3://%s/nowhere/x.tif matched no object" % BUCKET in w.output()


def test_bad_message_body_fails_clearly(setup, workers, aws_env):
    sqs, s3, queue, dlq = setup
    sqs.send_message(QueueUrl=queue, MessageBody="{not json")
    w = workers.start(worker_env(aws_env, queue, BUCKET, "true"))
    wait_until(lambda: queue_counts(sqs, dlq)[0] == 1, 30, "message in the DLQ")
    assert "message body is not valid JSON" in w.output()


def test_a_message_without_a_job_key_gets_job_retries_tries(boto, workers, aws_env):
    """Unreadable, or from an older submission: no failure record can count its
    tries, so SQS's receive count does, against JOB_RETRIES, not the queue's
    backstop of 100 receives that setup gives it."""
    sqs, s3 = boto("sqs"), boto("s3")
    s3.create_bucket(Bucket=BUCKET)
    queue, dlq = make_queues(sqs, "TestApp", max_receive=100)
    sqs.send_message(QueueUrl=queue, MessageBody="{not json")
    send_jobs(sqs, queue, {}, [{"job_name": "keyless"}])   # no job_key
    w = workers.start(worker_env(aws_env, queue, BUCKET, "exit 3", JOB_RETRIES=2,
                                 RUN_ID="run1", SQS_DEAD_LETTER_QUEUE_URL=dlq))
    wait_until(lambda: queue_counts(sqs, dlq)[0] == 2 and drained(sqs, queue), 60,
               "both messages moved to the DLQ")
    out = w.output()
    assert out.count("START job keyless ") == 2 and out.count("START job unnamed ") == 2, out


def test_busy_record_goes_before_the_job_is_let_go(setup, boto, workers, aws_env):
    """While a busy record exists its job is in flight: the scale-in counts records
    against jobs in flight, and a record left after the release would stand for a
    job that another machine has taken, so that machine could be ended."""
    from faultproxy import FaultProxy
    sqs, s3, queue, dlq = setup
    send_jobs(sqs, queue, {"job_key": "k1"}, [{"job_name": "ok"}])
    with FaultProxy(aws_env["AWS_ENDPOINT_URL"]) as proxy:
        env = dict(aws_env, AWS_ENDPOINT_URL=proxy.url)
        w = workers.start(worker_env(env, queue, BUCKET, "test -e {input_dir}/nothing",
                                     INSTANCE_ID="i-0123", RUN_ID="run1", JOB_RETRIES=2,
                                     SQS_DEAD_LETTER_QUEUE_URL=dlq))
        wait_until(lambda: queue_counts(sqs, dlq)[0] == 1 and drained(sqs, queue), 60,
                   "the job moved to the DLQ")
        w.stop()
        calls = list(proxy.calls)
    busy = [i for i, (method, path, _a) in enumerate(calls) if "/busy/TestApp/i-0123/" in path]
    letting_go = [i for i, (_m, _p, action) in enumerate(calls)
                  if action in ("ChangeMessageVisibility", "DeleteMessage")]
    clears = [i for i in busy if calls[i][0] == "DELETE"]
    assert len(letting_go) == 2 and len(clears) == 2, calls   # a release, then the move
    for clear, let_go in zip(clears, letting_go):
        assert clear < let_go, calls
        assert not [i for i in busy if clear < i < let_go], calls


def refuse_first(name):
    """A FaultProxy `refuse` that refuses the first call of action `name`; returns
    (the calls refused, the function)."""
    refused = []

    def refuse(action):
        if action == name and not refused:
            refused.append(action)
            return True
        return False
    return refused, refuse


def test_a_failed_delete_after_the_dead_letter_move_sends_no_second_copy(
        setup, workers, aws_env, tmp_path, monkeypatch):
    """The move's delete is refused once: the job comes back, and the worker finds
    its copy already sent (the dead record) and only deletes."""
    from faultproxy import FaultProxy
    sqs, s3, queue, dlq = setup
    runs = tmp_path / "runs.txt"
    send_jobs(sqs, queue, {"job_key": "k1"}, [{"job_name": "doomed"}])
    refused, refuse_once = refuse_first("DeleteMessage")
    with FaultProxy(aws_env["AWS_ENDPOINT_URL"], refuse=refuse_once) as proxy:
        env = worker_env(dict(aws_env, AWS_ENDPOINT_URL=proxy.url), queue, BUCKET,
                         "echo run >> %s; exit 3" % shlex.quote(str(runs)), RUN_ID="run1",
                         JOB_RETRIES=1, SQS_DEAD_LETTER_QUEUE_URL=dlq)
        w = workers.start(env)
        w.wait_for("already in the dead-letter queue", timeout=60)
        wait_until(lambda: drained(sqs, queue), 30, "the job queue empty")
        w.stop()
    assert refused and runs.read_text() == "run\n"
    assert queue_counts(sqs, dlq) == (1, 0)


def test_a_dead_record_of_another_message_does_not_swallow_the_job(setup, workers, aws_env):
    """The job was dead-lettered once before in this run, and is back in a new
    message (SQS's move task keeps the records): failing again, it is sent to the
    dead-letter queue again, not deleted as if its copy were there."""
    sqs, s3, queue, dlq = setup
    s3.put_object(Bucket=BUCKET, Key="ds-records/TestApp/run1/dead/k1", Body=b"an-older-message")
    send_jobs(sqs, queue, {"job_key": "k1"}, [{"job_name": "again"}])
    workers.start(worker_env(aws_env, queue, BUCKET, "exit 3", RUN_ID="run1", JOB_RETRIES=1,
                             SQS_DEAD_LETTER_QUEUE_URL=dlq))
    wait_until(lambda: queue_counts(sqs, dlq)[0] == 1 and drained(sqs, queue), 30,
               "the job moved to the DLQ")


def test_the_same_message_again_after_a_lost_delete_is_no_duplicate(setup, workers, aws_env):
    """Done, but its delete is refused: the message comes back after the lease
    and is skipped. It is the job's own message, not a second submission, so no
    duplicate record takes it off the run's job count."""
    from faultproxy import FaultProxy
    sqs, s3, queue, dlq = setup
    send_jobs(sqs, queue, {"job_key": "k1"}, [{"job_name": "once"}])
    refused, refuse_once = refuse_first("DeleteMessage")
    with FaultProxy(aws_env["AWS_ENDPOINT_URL"], refuse=refuse_once) as proxy:
        w = workers.start(worker_env(dict(aws_env, AWS_ENDPOINT_URL=proxy.url), queue, BUCKET,
                                     "true", RUN_ID="run1", SQS_MESSAGE_VISIBILITY=2))
        w.wait_for("outcome SKIPPED-duplicate", timeout=60)
        wait_until(lambda: drained(sqs, queue), 30, "the job queue empty")
        w.stop()
    assert refused
    assert s3_keys(s3, BUCKET, "ds-records/TestApp/run1/done/") == \
        ["ds-records/TestApp/run1/done/k1"]
    assert s3_keys(s3, BUCKET, "ds-records/TestApp/run1/duplicate/") == []


def test_idle_worker_exits_promptly_on_sigterm(setup, workers, aws_env):
    sqs, s3, queue, dlq = setup
    w = workers.start(worker_env(aws_env, queue, BUCKET, "true"))
    w.wait_for(r"worker started")
    t0 = time.monotonic()
    w.signal(signal.SIGTERM)
    w.p.wait(5)
    assert time.monotonic() - t0 < 3
    assert w.p.returncode == 0


# Resolved at import: the aws_env fixture points HOME elsewhere.
PY27 = python27("boto3")  # found at import: tests change HOME


@pytest.mark.skipif(PY27 is None, reason="no Python 2.7 with boto3 here")
def test_same_worker_source_runs_on_python27(setup, boto, workers, aws_env, tmp_path):
    sqs, s3, queue, dlq = setup
    send_jobs(sqs, queue, {"output": "py2"}, [{"Plate": "P1", "v": "a b;c"}])
    env = worker_env(aws_env, queue, BUCKET, "printf '%s' {v} > {output_dir}/v; echo py2-tool-ran",
                     PYTHONDONTWRITEBYTECODE=1)
    w = workers.start_script([PY27, WORKER], env, "py27")
    wait_until(lambda: drained(sqs, queue), 30, "queue drained")
    w.wait_for(r"outcome SUCCESS")
    assert read(s3, "py2/v") == "a b;c"
    text = wait_until(lambda: "\n".join(log_messages(boto("logs"), "TestApp", "P1-a_b_c"))
                      if "outcome SUCCESS" in "".join(log_messages(boto("logs"), "TestApp", "P1-a_b_c"))
                      else None, 10, "CloudWatch log lines")
    assert "py2-tool-ran" in text
    t0 = time.monotonic()
    w.signal(signal.SIGTERM)
    assert w.p.wait(5) == 0 and time.monotonic() - t0 < 4


def test_documented_gzip_example(setup, workers, aws_env):
    """The worked example of documentation/worker.md, as written there."""
    import gzip
    sqs, s3, queue, dlq = setup
    s3.create_bucket(Bucket="other-bucket")
    for plate in ("plate1", "plate2"):
        s3.put_object(Bucket=BUCKET, Key="raw/%s/a.txt" % plate, Body=plate.encode())
        s3.put_object(Bucket=BUCKET, Key="raw/%s/sub/b.txt" % plate, Body=b"b")
    s3.put_object(Bucket="other-bucket", Key="extra.csv", Body=b"1,2")
    job = {"level": "-9", "groups": [
        {"input": "raw/plate1/", "output": "gzipped/plate1"},
        {"input": "raw/plate2/", "output": "gzipped/plate2"},
        {"input": "s3://other-bucket/extra.csv", "output": "gzipped/extra", "level": "-1"}]}
    shared = {k: v for k, v in job.items() if k != "groups"}
    send_jobs(sqs, queue, shared, job["groups"])
    command = "cp -r {input_dir}/. {output_dir}/ && gzip -r {level} {output_dir}"
    w = workers.start(worker_env(aws_env, queue, BUCKET, command, CHECK_IF_DONE_BOOL="True",
                                 EXPECTED_NUMBER_FILES=1, MIN_FILE_SIZE_BYTES=1,
                                 NECESSARY_STRING=".gz"))
    wait_until(lambda: drained(sqs, queue), 30, "queue drained")
    assert sorted(s3_keys(s3, BUCKET, "gzipped/")) == [
        "gzipped/extra/extra.csv.gz", "gzipped/plate1/a.txt.gz", "gzipped/plate1/sub/b.txt.gz",
        "gzipped/plate2/a.txt.gz", "gzipped/plate2/sub/b.txt.gz"]
    body = s3.get_object(Bucket=BUCKET, Key="gzipped/plate2/a.txt.gz")["Body"].read()
    assert gzip.decompress(body) == b"plate2"
    w.wait_for(r"END job raw_plate1-gzipped_plate1 outcome SUCCESS")
    assert queue_counts(sqs, dlq) == (0, 0)

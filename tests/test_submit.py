"""Submission at scale: every group sent exactly once, in valid SQS batches."""
import json
import random
import threading

import pytest

from conftest import run_py, write_json
from test_steps import DS_CONFIG

from ds.commands.submit import submit_job
from ds.resources import jobs, queue
from ds.core.errors import UserError


SQS_LIMIT = 1048576   # bytes per message and per batch (1 MiB since August 2025)


class StandInSQS:
    """Stands in for SQS at a scale the emulator cannot hold: checks and counts batches.

    Like SQS, it may fail some entries of a batch (reported per entry); with
    `permanent`, those bodies never get through.
    """

    def __init__(self, fail_rate=0.0, permanent=frozenset()):
        self.received = []
        self.calls = 0
        self.fail_rate, self.permanent = fail_rate, permanent
        self.tags = {}
        self.lock = threading.Lock()
        self.rng = random.Random(1)

    def get_queue_url(self, QueueName):
        return {"QueueUrl": "https://sqs.example/123/" + QueueName}

    def send_message_batch(self, QueueUrl, Entries):
        assert 1 <= len(Entries) <= 10
        assert len({e["Id"] for e in Entries}) == len(Entries)
        assert sum(len(e["MessageBody"].encode()) for e in Entries) <= SQS_LIMIT
        ok, failed = [], []
        with self.lock:
            self.calls += 1
            for e in Entries:
                if e["MessageBody"] in self.permanent or self.rng.random() < self.fail_rate:
                    failed.append({"Id": e["Id"], "SenderFault": False,
                                   "Code": "InternalError"})
                else:
                    self.received.append(e["MessageBody"])
                    ok.append({"Id": e["Id"], "MessageId": "m"})
        return {"Successful": ok, "Failed": failed}

    def list_queue_tags(self, QueueUrl):
        return {"Tags": dict(self.tags)}

    def tag_queue(self, QueueUrl, Tags):
        self.tags.update(Tags)


class StandInAWS:
    def __init__(self, sqs):
        self.sqs = sqs

    def client(self, name):
        assert name == "sqs"
        return self.sqs


def big_job(path, n):
    write_json(path, {"pipeline": "p.cppipe",
                      "groups": [{"plate": "P%d" % (i // 384), "well": i % 384}
                                 for i in range(n)]})
    return str(path)


def test_100000_groups_each_sent_once_despite_partial_failures(tmp_path):
    path = big_job(tmp_path / "big.json", 100000)
    bodies = jobs.load_messages(path)
    sqs = StandInSQS(fail_rate=0.005)
    unsent = queue.send_all(sqs, "url", bodies)
    assert unsent == []
    assert len(sqs.received) == 100000
    assert sorted(sqs.received) == sorted(bodies)  # exactly once each
    assert 10000 <= sqs.calls < 10000 * 1.2  # batches of 10, few retries
    groups = [json.loads(b)["group"] for b in sqs.received[:3]]
    assert all(set(g) == {"plate", "well"} for g in groups)


def test_large_messages_are_packed_under_the_batch_size_limit(tmp_path):
    path = tmp_path / "fat.json"
    write_json(path, {"groups": [{"blob": "x" * 250000, "i": i} for i in range(25)]})
    bodies = jobs.load_messages(str(path))
    sqs = StandInSQS()
    assert queue.send_all(sqs, "url", bodies) == []
    assert sorted(sqs.received) == sorted(bodies)
    assert sqs.calls >= 25 * 250000 // SQS_LIMIT + 1


def test_unsent_groups_are_saved_for_resubmission(tmp_path):
    path = big_job(tmp_path / "job.json", 50)
    bodies = jobs.load_messages(path)
    stuck = {bodies[7], bodies[31]}
    sqs = StandInSQS(permanent=stuck)
    settings = {"SQS_QUEUE_NAME": "Q", "COMMAND": ""}
    from ds.core.settings import Settings
    with pytest.raises(UserError) as e:
        submit_job(StandInAWS(sqs), Settings(settings), path)
    assert "2 jobs could not be sent" in str(e.value) and "48 sent" in str(e.value)
    saved = str(e.value).split("saved in ")[1].split(":")[0]
    again = jobs.load_messages(saved)
    assert sorted(again) == sorted(stuck)
    assert len(sqs.received) == 48 and sqs.tags["submitted"] == "48"


@pytest.mark.slow
def test_few_thousand_through_the_emulator(tmp_path, aws_env, boto):
    (tmp_path / "config.py").write_text(DS_CONFIG)
    boto("s3").create_bucket(Bucket="ds-test-bucket")
    path = big_job(tmp_path / "job.json", 2000)
    assert run_py(["setup"], aws_env, cwd=str(tmp_path)).returncode == 0
    result = run_py(["submitJob", path], aws_env, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Queued 2000 jobs" in result.stdout
    assert "Submitting" in result.stderr  # the progress bar on a large file
    sqs = boto("sqs")
    url = sqs.get_queue_url(QueueName="DSTestQueue")["QueueUrl"]
    assert queue.counts(sqs, url) == (2000, 0)
    assert queue.submitted(sqs, url) == 2000


def test_a_600_kB_job_goes_through_and_one_over_1_MiB_is_refused_whole(tmp_path, aws_env, boto):
    (tmp_path / "config.py").write_text(DS_CONFIG)
    boto("s3").create_bucket(Bucket="ds-test-bucket")
    sqs = boto("sqs")
    # a queue made before SQS raised its limit: setup brings it up to 1 MiB
    sqs.create_queue(QueueName="DSTestQueue", Attributes={"MaximumMessageSize": "262144"})
    assert run_py(["setup"], aws_env, cwd=str(tmp_path)).returncode == 0
    url = sqs.get_queue_url(QueueName="DSTestQueue")["QueueUrl"]
    for name in ("DSTestQueue", "DSTestDead"):
        attrs = sqs.get_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"],
                                         AttributeNames=["MaximumMessageSize"])["Attributes"]
        assert attrs["MaximumMessageSize"] == str(SQS_LIMIT)

    blob = "x" * 600000
    path = write_json(tmp_path / "big.json", {"groups": [{"blob": blob}, {"blob": "small"}]})
    result = run_py(["submitJob", path], aws_env, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    got = []
    while len(got) < 2:
        got += [json.loads(m["Body"])["group"]["blob"] for m in sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300)["Messages"]]
    assert sorted(got) == sorted([blob, "small"])

    path = write_json(tmp_path / "huge.json", {"groups": [{"blob": "small"},
                                                          {"blob": "x" * SQS_LIMIT}]})
    result = run_py(["submitJob", path], aws_env, cwd=str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "groups[1] makes a message over SQS's 1 MiB limit" in result.stderr
    assert queue.submitted(sqs, url) == 2  # nothing of the second file was sent


def test_ctrl_c_during_submission_sends_or_saves_each_job_exactly_once(tmp_path, aws_env, boto):
    import glob
    import os
    import signal
    import subprocess
    import sys
    import time
    from conftest import REPO
    (tmp_path / "config.py").write_text(DS_CONFIG)
    boto("s3").create_bucket(Bucket="ds-test-bucket")
    n = 2000
    path = big_job(tmp_path / "job.json", n)
    assert run_py(["setup"], aws_env, cwd=str(tmp_path)).returncode == 0
    sqs = boto("sqs")
    url = sqs.get_queue_url(QueueName="DSTestQueue")["QueueUrl"]
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "run.py"), "submitJob", path],
                            cwd=str(tmp_path), env=aws_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while queue.counts(sqs, url)[0] < 100 and proc.poll() is None:
        assert time.monotonic() < deadline, "submission never started"
        time.sleep(0.05)  # polling the queue's depth
    proc.send_signal(signal.SIGINT)  # Ctrl-C, mid-submission
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err
    stopped = [l for l in err.splitlines() if l.startswith("Stopped: ")]
    assert len(stopped) == 1, err
    saved_files = glob.glob(str(tmp_path / "job.unsent-*.json"))
    assert len(saved_files) == 1
    saved = [json.dumps(g, sort_keys=True) for g in json.load(open(saved_files[0]))["groups"]]

    sent = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600,
                                   WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            break
        sent += [json.dumps(json.loads(m["Body"])["group"], sort_keys=True) for m in msgs]
    assert stopped[0] == ("Stopped: %d of %d jobs were sent; the other %d are saved in %s: "
                          "submit that file to send them (the %d sent are not repeated)."
                          % (len(sent), n, len(saved), saved_files[0], len(sent)))
    assert len(saved) > 0 and len(sent) >= 100
    everything = [json.dumps(g, sort_keys=True)
                  for g in json.load(open(path))["groups"]]
    assert sorted(sent + saved) == sorted(everything)  # each job sent or saved, once
    assert queue.submitted(sqs, url) == len(sent)

"""Helpers for the worker tests and benchmark: real worker processes against
the emulator, queues with a dead-letter queue, polling for states."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "worker", "generic-worker.py")
RUN_WORKER = os.path.join(REPO, "worker", "run-worker.sh")


def python27(needs=""):
    """A working Python 2.7 interpreter that can import `needs`, or None.

    pyenv shims may exist and still refuse to run, so each candidate is tried.
    """
    imports = "import sys" + (", " + needs if needs else "")
    for exe in (os.environ.get("PYTHON27"), shutil.which("python2.7"),
                os.path.expanduser("~/.pyenv/versions/2.7.18/bin/python")):
        if exe and os.path.exists(exe) and subprocess.run(
                [exe, "-c", imports + "; assert sys.version_info[:2] == (2, 7)"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            return exe
    return None


def wait_until(predicate, timeout, what, interval=0.05):
    """Poll `predicate` until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)  # polling interval for an external state


def make_queues(sqs, name, max_receive=3, visibility=30):
    """Queue + dead-letter queue with a redrive policy, as setup makes them."""
    dlq = sqs.create_queue(QueueName=name + "DeadMessages")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName=name + "Queue", Attributes={
        "VisibilityTimeout": str(visibility),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(max_receive)}),
    })["QueueUrl"]
    return queue, dlq


def send_jobs(sqs, queue, shared, groups):
    """One message per group, like the control plane's submitJob."""
    bodies = [json.dumps(dict(shared, group=g)) for g in groups]
    for i in range(0, len(bodies), 10):
        sqs.send_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[i:i + 10])])


def queue_counts(sqs, queue):
    a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return (int(a["ApproximateNumberOfMessages"]),
            int(a["ApproximateNumberOfMessagesNotVisible"]))


def s3_keys(s3, bucket, prefix=""):
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def failure_records(s3, bucket, app_name, run_id):
    """The job keys whose tool failed at least once in the run, as the worker records them."""
    from ds.resources import records
    prefix = records.failed_prefix(app_name, run_id)
    return {k[len(prefix):] for k in s3_keys(s3, bucket, prefix)}


def worker_env(aws_env, queue, bucket, command, **extra):
    env = dict(aws_env)
    env.update(
        APP_NAME="TestApp", SQS_QUEUE_URL=queue, AWS_BUCKET=bucket,
        AWS_REGION=aws_env["AWS_DEFAULT_REGION"], LOG_GROUP_NAME="TestApp",
        DOCKER_CORES="1", SECONDS_TO_START="0", SQS_MESSAGE_VISIBILITY="30",
        CHECK_IF_DONE_BOOL="False", EXPECTED_NUMBER_FILES="1",
        MIN_FILE_SIZE_BYTES="1", NECESSARY_STRING="", COMMAND=command,
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Proc(object):
    """A process whose output goes to a file (never an unread pipe)."""

    def __init__(self, args, env, logpath, cwd=None):
        self.logpath = str(logpath)
        self._log = open(self.logpath, "wb")
        self.p = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._log,
                                  stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL,
                                  start_new_session=True)

    @classmethod
    def worker(cls, env, logpath):
        return cls([sys.executable, WORKER], env, logpath)

    def output(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for(self, pattern, timeout=20, count=1):
        rx = re.compile(pattern)

        def seen():
            found = rx.findall(self.output())
            if len(found) >= count:
                return found
            if self.p.poll() is not None:
                raise AssertionError("process exited (%s) before printing %r:\n%s"
                                     % (self.p.returncode, pattern, self.output()))
            return None
        return wait_until(seen, timeout, repr(pattern))

    def signal(self, sig):
        self.p.send_signal(sig)

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL the whole group if it does not go."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except OSError:
            pass
        self.p.wait()
        self._log.close()
        return self.p.returncode


class Workers(object):
    """Fixture object: start workers, always stop them at test end."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.procs = []

    def start(self, env, name=None):
        name = name or "worker%d" % len(self.procs)
        p = Proc.worker(env, self.tmp / (name + ".log"))
        self.procs.append(p)
        return p

    def start_script(self, args, env, name):
        # in the test's own folder: a script may write files where it runs (a run report)
        p = Proc(args, env, self.tmp / (name + ".log"), cwd=str(self.tmp))
        self.procs.append(p)
        return p

    def close(self):
        for p in self.procs:
            p.stop()


def start_emulator(logpath):
    """A moto server on a free 127.0.0.1 port for scripts outside pytest
    (the benchmark); returns (Proc, url). Tests use conftest's fixture."""
    import socket
    import urllib.request
    for _attempt in range(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = "http://127.0.0.1:%d" % port
        proc = Proc([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                    dict(os.environ), logpath)

        def ready():
            if proc.p.poll() is not None:
                return "exited"
            try:
                with urllib.request.urlopen(url + "/moto-api/config", timeout=1) as r:
                    return "up" if 200 <= r.status < 300 else None
            except OSError:
                return None
        if wait_until(ready, 30, "the emulator", interval=0.1) == "up":
            return proc, url
        proc.stop()
    raise RuntimeError("could not start the AWS emulator")

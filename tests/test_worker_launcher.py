"""run-worker.sh, instance-setup.py and instance-monitor.py as real processes."""
import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from worker_helpers import REPO, RUN_WORKER, Proc, make_queues, worker_env

BUCKET = "ds-test-bucket"




def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited, which is what counts.
    with open("/proc/%d/stat" % pid) as f:
        return f.read().split(") ")[1][0] != "Z"


def launcher_env(aws_env, boto, **extra):
    sqs = boto("sqs")
    boto("s3").create_bucket(Bucket=BUCKET)
    queue, _dlq = make_queues(sqs, "TestApp")
    return worker_env(aws_env, queue, BUCKET, "true", WORKER_PYTHON=sys.executable,
                      INSTANCE_MONITOR_SECONDS=600, **extra)


def test_run_worker_starts_and_stops_docker_cores_workers(aws_env, boto, workers):
    env = launcher_env(aws_env, boto, DOCKER_CORES=3, SECONDS_TO_START=0)
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    p = workers.start_script(["bash", RUN_WORKER], env, "run-worker")
    pids = [int(x) for x in p.wait_for(r"worker started pid=(\d+)", count=3, timeout=30)]
    assert len(set(pids)) == 3 and all(alive(pid) for pid in pids)
    assert "AWS_EC2_METADATA_DISABLED=true: not tagging" in p.output()
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    p.p.wait(10)
    assert time.monotonic() - t0 < 5
    assert p.p.returncode == 0
    assert not any(alive(pid) for pid in pids)
    assert len(re.findall(r"\] stopped", p.output())) == 3
    assert "all workers stopped (status 0)" in p.output()


def test_run_worker_spaces_worker_starts_and_sigterm_cuts_the_gap(aws_env, boto, workers):
    env = launcher_env(aws_env, boto, DOCKER_CORES=3, SECONDS_TO_START=1.5)
    p = workers.start_script(["bash", RUN_WORKER], env, "run-worker")
    p.wait_for(r"started worker 1/3", timeout=30)
    t1 = time.monotonic()
    p.wait_for(r"started worker 2/3", timeout=30)
    assert time.monotonic() - t1 >= 1.2  # the configured gap, give or take polling
    # SIGTERM inside the next gap: no third worker, prompt exit.
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    p.p.wait(10)
    assert time.monotonic() - t0 < 5
    assert p.p.returncode == 0
    assert "started worker 3/3" not in p.output()


class FakeIMDS(http.server.BaseHTTPRequestHandler):
    """IMDSv2: a token from PUT, required on GET (as EC2 enforces it)."""
    token = "tok-123"
    instance_id = None
    seen = []

    def do_PUT(self):
        self.seen.append(("PUT", self.path, self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")))
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self._reply(200, self.token)
        else:
            self._reply(400, "bad token request")

    def do_GET(self):
        self.seen.append(("GET", self.path, self.headers.get("X-aws-ec2-metadata-token")))
        if self.headers.get("X-aws-ec2-metadata-token") != self.token:
            self._reply(401, "")
        elif self.path == "/latest/meta-data/instance-id":
            self._reply(200, self.instance_id)
        else:
            self._reply(404, "")

    def _reply(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_imds():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeIMDS)
    FakeIMDS.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_run_worker_tags_instance_and_creates_idle_alarm(aws_env, boto, workers, fake_imds):
    ec2 = boto("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1,
                            InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    FakeIMDS.instance_id = iid
    env = launcher_env(aws_env, boto, DOCKER_CORES=1, APP_NAME="TagApp")
    env["AWS_EC2_METADATA_DISABLED"] = "false"
    env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = fake_imds
    p = workers.start_script(["bash", RUN_WORKER], env, "run-worker")
    p.wait_for(r"worker started pid=", timeout=30)
    # the instance id reaches the workers, for their busy records
    assert re.search(r"worker started pid=.* instance=%s$" % iid, p.output(), re.M)
    assert ("PUT", "/latest/api/token", "21600") in FakeIMDS.seen
    assert ("GET", "/latest/meta-data/instance-id", FakeIMDS.token) in FakeIMDS.seen

    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
    assert tags == {"Name": "TagApp-worker", "APP_NAME": "TagApp"}
    vols = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])["Volumes"]
    assert vols, "moto attaches a root volume to run_instances"
    for v in vols:
        assert {t["Key"]: t["Value"] for t in v.get("Tags", [])} == tags

    alarms = boto("cloudwatch").describe_alarms(AlarmNames=["TagApp_" + iid])["MetricAlarms"]
    assert len(alarms) == 1
    a = alarms[0]
    assert (a["MetricName"], a["Namespace"], a["Statistic"]) == ("CPUUtilization", "AWS/EC2", "Average")
    assert (a["Period"], a["EvaluationPeriods"], a["Threshold"]) == (60, 15, 1.0)
    assert a["ComparisonOperator"] == "LessThanThreshold"
    assert a["AlarmActions"] == ["arn:aws:automate:us-east-1:ec2:terminate"]
    assert a["Dimensions"] == [{"Name": "InstanceId", "Value": iid}]
    assert p.stop() == 0


def test_instance_setup_without_metadata_answer_skips(aws_env, tmp_path):
    # Nothing listens on this port: the setup must give up quickly, exit 0.
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(aws_env, AWS_EC2_METADATA_DISABLED="false",
               AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:%d" % port)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, os.path.join(REPO, "worker", "instance-setup.py")],
                       env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert time.monotonic() - t0 < 10
    assert "no instance metadata at http://127.0.0.1:%d" % port in r.stdout


def test_instance_monitor_reports_usage(tmp_path):
    env = dict(os.environ, WORKER_SCRATCH=str(tmp_path), APP_NAME="Mon")
    r = subprocess.run([sys.executable, os.path.join(REPO, "worker", "instance-monitor.py"), "--once"],
                       env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    line = r.stdout.splitlines()[0]
    assert re.search(r"\[Mon monitor .*\] usage: disk / [\d.]+%%, disk %s [\d.]+%%, "
                     r"memory [\d.]+%%, cpu [\d.]+%%" % re.escape(str(tmp_path)), line), line


def test_instance_monitor_warning_threshold():
    sys.path.insert(0, os.path.join(REPO, "worker"))
    import importlib
    monitor = importlib.import_module("instance-monitor")
    lines = monitor.report(95.5, None)
    assert "WARNING cpu at 95.5% (above 90%)" in lines
    assert not [l for l in monitor.report(10.0, None) if "WARNING cpu" in l]


def test_instance_monitor_stops_on_sigterm(tmp_path):
    env = dict(os.environ, INSTANCE_MONITOR_SECONDS="600")
    p = Proc([sys.executable, os.path.join(REPO, "worker", "instance-monitor.py")],
                            env, tmp_path / "monitor.log")
    try:
        p.wait_for(r"monitoring every 600s", timeout=10)
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        assert p.p.wait(5) == 0
        assert time.monotonic() - t0 < 3
    finally:
        p.stop()

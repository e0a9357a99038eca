"""Benchmark the control plane against the AWS emulator (moto server on 127.0.0.1).

Prints:
1. the wall time of each step as a user runs it (prepare on a fresh account,
   prepare again, check, setup, submitJob, startCluster on the prepared fleet
   file, monitor with MONITOR_TIME=1 on an already drained queue), and the
   share of startCluster its pre-flight account checks take, measured in-process;
2. submission throughput: our batched, threaded send against a baseline of one
   send_message call per job (what the original tools do), on fresh shallow
   queues, in the same run, with the ratio.

    python benchmarks/bench_control_plane.py [--jobs 600]

Numbers from the emulator say how much work our code does per job (calls and
local overhead); AWS latency differs.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import boto3  # noqa: E402

from ds.core.jsonfile import read_json  # noqa: E402
from ds.resources import queue  # noqa: E402

CONFIG = """
APP_NAME = 'Bench'
DOCKERHUB_TAG = 'bench/worker:1'
AWS_BUCKET = 'bench-bucket'
ECS_CLUSTER = 'benchcluster'
CLUSTER_MACHINES = 2
MONITOR_TIME = 1
"""


def start_emulator(logdir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = os.path.join(os.path.dirname(sys.executable), "moto_server")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "moto.server"]
    log = open(os.path.join(logdir, "moto.log"), "wb")
    proc = subprocess.Popen(cmd + ["-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, MOTO_IAM_LOAD_MANAGED_POLICIES="true"))
    url = "http://127.0.0.1:%d" % port
    import urllib.request
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/moto-api/config", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    raise SystemExit("emulator did not start")


def timed(args, env, cwd):
    t = time.perf_counter()
    r = subprocess.run([sys.executable, os.path.join(REPO, "run.py")] + args, env=env, cwd=cwd,
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit("%s failed: %s" % (args[0], r.stderr))
    return time.perf_counter() - t


def preflight_seconds(work, fleet_file):
    """The account checks startCluster runs first, alone, in this process."""
    from ds.commands import check
    from ds.resources import fleet
    from ds.core.aws import Session
    from ds.core.settings import load
    settings = load(os.path.join(work, "config.py"))
    path = os.path.join(work, fleet_file)
    config = fleet.build_request(settings, read_json(path, "fleet file"), path)
    aws = Session(settings)
    t = time.perf_counter()
    assert not check.account_checks(aws, settings, config, path).problems
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=600)
    n = p.parse_args().jobs
    work = tempfile.mkdtemp(prefix="bench-")
    proc, url = start_emulator(work)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="b", AWS_SECRET_ACCESS_KEY="b",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
               HOME=work)
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    try:
        with open(os.path.join(work, "config.py"), "w") as f:
            f.write(CONFIG)
        with open(os.path.join(work, "job.json"), "w") as f:
            json.dump({"groups": [{"i": i} for i in range(n)]}, f)
        sqs = boto3.client("sqs")

        fleet_file = "files/BenchFleet_us-east-1.json"
        print("Step wall times against the emulator (%d jobs):" % n)
        steps = [("prepare", ["prepare"]), ("prepare again", ["prepare"]),
                 ("check", ["check", "job.json", fleet_file]),
                 ("setup", ["setup"]), ("submitJob", ["submitJob", "job.json"]),
                 ("startCluster", ["startCluster", fleet_file])]
        for name, args in steps:
            took = timed(args, env, work)
            print("  %-13s %6.2f s" % (name, took))
        print("  the pre-flight's share of startCluster: %.0f%%"
              % (100 * preflight_seconds(work, fleet_file) / took))
        url_q = sqs.get_queue_url(QueueName="BenchQueue")["QueueUrl"]
        while True:  # stand in for the workers
            msgs = sqs.receive_message(QueueUrl=url_q, MaxNumberOfMessages=10,
                                       WaitTimeSeconds=0).get("Messages", [])
            if not msgs:
                break
            sqs.delete_message_batch(QueueUrl=url_q, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
        print("  %-13s %6.2f s" % ("monitor", timed(
            ["monitor", "files/BenchSpotFleetRequestId.json"], env, work)))

        bodies = [json.dumps({"group": {"i": i}}) for i in range(n)]
        base_q = sqs.create_queue(QueueName="baseline")["QueueUrl"]
        t = time.perf_counter()
        for b in bodies:
            sqs.send_message(QueueUrl=base_q, MessageBody=b)
        base = time.perf_counter() - t
        ours_q = sqs.create_queue(QueueName="ours")["QueueUrl"]
        t = time.perf_counter()
        unsent = queue.send_all(sqs, ours_q, bodies)
        ours = time.perf_counter() - t
        assert not unsent and queue.counts(sqs, ours_q)[0] == n
        print("Submitting %d jobs (fresh queues):" % n)
        print("  baseline, one send_message per job: %6.2f s, %d calls, %6.0f jobs/s"
              % (base, n, n / base))
        print("  ours, batches of 10 on %d threads:  %6.2f s, %d calls, %6.0f jobs/s"
              % (queue.SEND_THREADS, ours, -(-n // 10), n / ours))
        print("  speed-up: %.1fx; API calls: %.1fx fewer" % (base / ours, n / -(-n // 10)))
    finally:
        os.killpg(proc.pid, 15)
        proc.wait()


if __name__ == "__main__":
    main()

"""Benchmark `status` and the run report on a run of N jobs, against the emulator.

A run is set up and submitted as a user does (setup, submitJob, startCluster);
its job logs are written as the workers write them (a START and an END line
per try, some jobs tried twice, a few failing).
Prints:
1. `python run.py status` wall time, against a baseline measured in the same
   run: starting Python and making one SQS call;
2. `python run.py report`: wall time and the size of the HTML file.

    python benchmarks/bench_operate.py [--jobs 1000]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

import boto3  # noqa: E402

from ds.commands.local import LOCAL_FLEET as FLEET  # noqa: E402
from worker_helpers import start_emulator  # noqa: E402

CONFIG = """
APP_NAME = 'BenchOps'
DOCKERHUB_TAG = 'bench/worker:1'
AWS_BUCKET = 'bench-bucket'
ECS_CLUSTER = 'benchcluster'
CLUSTER_MACHINES = 4
CREATE_DASHBOARD = False
COMMAND = 'echo {well}'
"""
BASELINE = ("import boto3; s = boto3.client('sqs'); "
            "s.get_queue_attributes(QueueUrl=s.get_queue_url(QueueName='BenchOpsQueue')"
            "['QueueUrl'], AttributeNames=['All'])")


def timed(cmd, env, cwd, runs=3):
    best = None
    for _ in range(runs):
        t = time.monotonic()
        r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
        took = time.monotonic() - t
        if r.returncode != 0:
            raise SystemExit("%s failed:\n%s%s" % (cmd, r.stdout, r.stderr))
        best = took if best is None else min(best, took)
    return best


def write_logs(logs, jobs, retried, failed):
    """START/END lines as the worker writes them, one stream per job, 8 workers."""
    # startCluster made the log group, as on AWS.
    now = int(time.time() * 1000) - (jobs * 400 + 10000)   # within status's 10-minute window
    tries = 0
    for i in range(jobs):
        name = "W%04d" % i
        logs.create_log_stream(logGroupName="BenchOps", logStreamName=name)
        n = 2 if i < retried or i >= jobs - failed else 1
        events = []
        for attempt in range(1, n + 1):
            start = now + i * 400 + attempt * 3000
            outcome = "FAILED" if attempt < n or i >= jobs - failed else "SUCCESS"
            events += [
                {"timestamp": start, "message": "START job %s attempt %d message m%d worker "
                 "ip-10-0-0-%d:%d" % (name, attempt, i, i % 8, 100 + i % 8)},
                {"timestamp": start + 2500, "message": "| working on %s" % name},
                {"timestamp": start + 2900, "message": "END job %s outcome %s exit_code %d "
                 "attempt %d duration 2.900s tool 2.500s" % (
                     name, outcome, 0 if outcome == "SUCCESS" else 1, attempt)}]
            tries += 1
        logs.put_log_events(logGroupName="BenchOps", logStreamName=name, logEvents=events)
    return tries


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-ops-")
    emulator, url = start_emulator(os.path.join(tmp, "moto.log"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x",
                   AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                   HOME=tmp)
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        with open(os.path.join(tmp, "config.py"), "w") as f:
            f.write(CONFIG)
        os.makedirs(os.path.join(tmp, "files"))
        with open(os.path.join(tmp, "files", "job.json"), "w") as f:
            json.dump({"groups": [{"well": "W%04d" % i} for i in range(args.jobs)]}, f)
        with open(os.path.join(tmp, "files", "fleet.json"), "w") as f:
            json.dump(FLEET, f)
        boto3.client("s3").create_bucket(Bucket="bench-bucket")
        run = [sys.executable, os.path.join(REPO, "run.py"), "--config", "config.py"]
        for step in (["setup"], ["submitJob", "files/job.json"],
                     ["startCluster", "files/fleet.json"]):
            subprocess.run(run + step, env=env, cwd=tmp, check=True, capture_output=True)
        tries = write_logs(boto3.client("logs"), args.jobs, args.jobs // 20, args.jobs // 100)
        base = timed([sys.executable, "-c", BASELINE], env, tmp)
        status = timed(run + ["status"], env, tmp)
        print("status on a %d-job run: %.2f s (best of 3); baseline (Python start + one SQS "
              "call): %.2f s; ratio %.1fx" % (args.jobs, status, base, status / base))
        report = timed(run + ["report"], env, tmp, runs=1)
        size = os.path.getsize(os.path.join(tmp, "BenchOps-report.html"))
        print("report for %d jobs and %d tries: %.0f KiB, written in %.2f s"
              % (args.jobs, tries, size / 1024.0, report))
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()

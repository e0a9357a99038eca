"""A local run through an AWS storm, against the same run without faults.

Every AWS call of `python run.py local` (control plane and workers) goes
through tests/faultproxy.py, which fails a share of calls before they reach
the emulator and loses a share of answers after they took effect. For each
fault level: exit code, jobs done (done records), jobs whose tool ran more
than once, wall time and its ratio to the fault-free run measured in the same
invocation, and the S3 calls the job records cost per job.

    python benchmarks/bench_storm.py [--jobs 100] [--workers 16]

The emulator, the workers and the tools share this machine's cores; the wall
times say how much a storm slows a run here, not on AWS.
"""
import argparse
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

import boto3  # noqa: E402

from conftest import emulator_env  # noqa: E402
import storm_helpers as sh  # noqa: E402
from worker_helpers import start_emulator  # noqa: E402

LEVELS = ((0.0, 0.0), (0.10, 0.03), (0.25, 0.10))


def one_run(n_jobs, workers, fail, lose, tmp):
    proc, url = start_emulator(os.path.join(tmp, "moto-%d-%d.log" % (fail * 100, lose * 100)))
    try:
        env = emulator_env(url, tmp)
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
        s3.create_bucket(Bucket=sh.BUCKET)
        work = os.path.join(tmp, "run-%d-%d" % (fail * 100, lose * 100))
        result, wall, counts, paths = sh.local_run_in_storm(
            url, env, work, n_jobs, fail, lose, workers=workers, seed=1)
        done = sum(1 for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=sh.BUCKET, Prefix="ds-records/Storm/")
            for o in page.get("Contents", []) if "/done/" in o["Key"])
        runs = sh.tool_runs(paths["runlog"])
        return {"exit": result.returncode, "done": done,
                "twice": sum(1 for v in runs.values() if v > 1), "wall": wall,
                "records": counts["records"] / float(n_jobs),
                "calls": counts["calls"] / float(n_jobs)}
    finally:
        proc.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--workers", type=int, default=16)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-storm-")
    rows = [(f, l, one_run(args.jobs, args.workers, f, l, tmp)) for f, l in LEVELS]
    base = rows[0][2]["wall"]
    print("%d jobs, %d workers, every AWS call through the fault proxy" % (args.jobs,
                                                                          args.workers))
    print("| failed / lost | exit | jobs done | tool ran twice | wall time | vs fault-free "
          "| AWS calls per job | record calls per job |")
    print("|---|---|---|---|---|---|---|---|")
    for fail, lose, r in rows:
        print("| %d%% / %d%% | %d | %d | %d | %.1f s | %.2f | %.1f | %.1f |"
              % (fail * 100, lose * 100, r["exit"], r["done"], r["twice"], r["wall"],
                 r["wall"] / base, r["calls"], r["records"]))


if __name__ == "__main__":
    main()

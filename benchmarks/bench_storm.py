"""A local run through an AWS storm, against the same run without faults.

Every AWS call of `python run.py local` (control plane and workers) goes
through tests/faultproxy.py, which fails a share of calls before they reach
the emulator and loses a share of answers after they took effect. Two shapes
of run: many workers with a few instant jobs each, and few workers with many
jobs each (long enough per worker process to empty botocore's retry quota,
which is when a job's calls used to fail on their first error). For each
fault level: exit code, jobs done (done records), tool runs beyond one per
job and the jobs they belong to, wall time and its ratio to the fault-free
run of the same shape measured in the same invocation, and the AWS calls per
job.

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

STORMS = ((0.10, 0.03), (0.25, 0.10))
# Few workers, many jobs each: the run of issue 24 (tools of 0.3-1.0 s, a 10 s lease).
LONG_RUN = {"jobs": 150, "workers": 4, "seconds": (0.3, 1.0), "lease": 10}


def one_run(shape, fail, lose, tmp):
    label = "%d-%d-%d" % (shape["workers"], fail * 100, lose * 100)
    proc, url = start_emulator(os.path.join(tmp, "moto-%s.log" % label))
    try:
        env = emulator_env(url, tmp)
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
        s3.create_bucket(Bucket=sh.BUCKET)
        n_jobs = shape["jobs"]
        result, wall, counts, paths = sh.local_run_in_storm(
            url, env, os.path.join(tmp, "run-" + label), n_jobs, fail, lose,
            workers=shape["workers"], seed=1, seconds=shape["seconds"], lease=shape["lease"],
            timeout=3600)
        done = sum(1 for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=sh.BUCKET, Prefix="ds-records/Storm/")
            for o in page.get("Contents", []) if "/done/" in o["Key"])
        runs = sh.tool_runs(paths["runlog"])
        return {"exit": result.returncode, "done": done,
                "again": sum(v - 1 for v in runs.values()),
                "twice": sum(1 for v in runs.values() if v > 1), "wall": wall,
                "calls": counts["calls"] / float(n_jobs)}
    finally:
        proc.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--workers", type=int, default=16)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-storm-")
    shapes = ({"jobs": args.jobs, "workers": args.workers, "seconds": (0, 0), "lease": 15},
              LONG_RUN)
    print("Every AWS call through the fault proxy; tool re-runs are runs beyond one per job.")
    print("| jobs / workers (jobs per worker) | tool seconds | failed / lost | exit "
          "| jobs done | tool re-runs (jobs) | wall time | vs fault-free | AWS calls per job |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape in shapes:
        base = None
        for fail, lose in ((0.0, 0.0),) + STORMS:
            r = one_run(shape, fail, lose, tmp)
            base = base or r["wall"]
            print("| %d / %d (%.0f) | %.1f-%.1f | %d%% / %d%% | %d | %d | %d (%d) | %.1f s "
                  "| %.2f | %.1f |"
                  % (shape["jobs"], shape["workers"], shape["jobs"] / float(shape["workers"]),
                     shape["seconds"][0], shape["seconds"][1], fail * 100, lose * 100,
                     r["exit"], r["done"], r["again"], r["twice"], r["wall"],
                     r["wall"] / base, r["calls"]), flush=True)


if __name__ == "__main__":
    main()

"""A local run of many small jobs with every AWS call going through a FaultProxy.

Shared by tests/test_storm.py and benchmarks/bench_storm.py. The tool of each
job appends its job number to a run log on this machine, so how often each
tool ran is known without asking AWS.
"""
import collections
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from faultproxy import FaultProxy  # noqa: E402
from ds.operate import joblog  # noqa: E402

BUCKET = "ds-storm-bucket"


def write_config(path, app_name, **knobs):
    settings = dict(APP_NAME=app_name, AWS_BUCKET=BUCKET, AWS_PROFILE="",
                    DOCKERHUB_TAG="local/storm:1",
                    SQS_MESSAGE_VISIBILITY=15, JOB_RETRIES=3, CREATE_DASHBOARD="True",
                    CHECK_IF_DONE_BOOL="False")
    settings.update(knobs)
    with open(path, "w") as f:
        for k, v in settings.items():
            f.write("%s = %r\n" % (k, v))
    return str(path)


def job_file(path, n_jobs, prefix="stormOut", seconds=(0, 0)):
    """n_jobs groups; job i writes i.txt under prefix/i after sleeping between
    seconds[0] and seconds[1] (spread evenly over the jobs, the same each run)."""
    low, high = seconds
    step = (high - low) / max(1, n_jobs - 1)
    data = {"groups": [{"n": i, "output": "%s/%d" % (prefix, i),
                        "seconds": "%.2f" % (low + step * (i * 7919 % n_jobs))}
                       for i in range(n_jobs)]}
    with open(path, "w") as f:
        json.dump(data, f)
    return str(path)


def tool_command(runlog):
    return "echo {n} >> %s && sleep {seconds} && echo {n} > {output_dir}/{n}.txt" % runlog


def tool_runs(runlog):
    """How often each job's tool ran: {job number: runs}."""
    if not os.path.exists(runlog):
        return collections.Counter()
    with open(runlog) as f:
        return collections.Counter(int(line) for line in f if line.strip())


def completions(logs, group):
    """{job name: number of distinct SUCCESS END lines} in the run's job logs.

    A batch of log events whose answer was lost is sent again and stored
    twice; the copies have the same time and text (the END line carries the
    job's duration to the millisecond), so they are counted once. The
    containers' copies of the lines (the awslogs driver's streams) are not the
    job logs."""
    seen = set()
    pages = logs.get_paginator("filter_log_events").paginate(logGroupName=group)
    for page in pages:
        for event in page["events"]:
            if joblog.container_stream(event["logStreamName"]):
                continue
            end = joblog.ended(event["message"])
            if end and end.outcome == "SUCCESS":
                seen.add((end.job, event["timestamp"], event["message"]))
    return collections.Counter(name for name, _t, _m in seen)


def local_run_in_storm(emulator_url, env, workdir, n_jobs, fail, lose, workers=8,
                       app_name="Storm", timeout=1200, seed=None, seconds=(0, 0), lease=15):
    """`python run.py local` with every call through a FaultProxy; each job's
    tool takes `seconds` (low, high) and holds a lease of `lease` seconds.

    Returns (CompletedProcess, wall seconds, proxy counts, paths dict)."""
    os.makedirs(workdir, exist_ok=True)
    data = os.path.join(workdir, "data")
    os.makedirs(data, exist_ok=True)
    with open(os.path.join(data, "readme.txt"), "w") as f:
        f.write("inputs are not needed by these jobs\n")
    runlog = os.path.join(workdir, "runs.log")
    config = write_config(os.path.join(workdir, "config.py"), app_name,
                          COMMAND=tool_command(runlog), SQS_MESSAGE_VISIBILITY=lease)
    jobs = job_file(os.path.join(workdir, "job.json"), n_jobs, seconds=seconds)
    out = os.path.join(workdir, "out")
    with FaultProxy(emulator_url, fail=fail, lose=lose, seed=seed) as proxy:
        run_env = dict(env, AWS_ENDPOINT_URL=proxy.url)
        began = time.monotonic()
        result = subprocess.run(
            [sys.executable, "run.py", "--config", config, "local", jobs, "--workers",
             str(workers), "--data", data, "--out", out],
            cwd=REPO, env=run_env, capture_output=True, text=True, timeout=timeout)
        wall = time.monotonic() - began
        counts = dict(proxy.counts)
    return result, wall, counts, {"runlog": runlog, "jobs": jobs, "out": out,
                                  "config": config}

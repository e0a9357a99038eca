"""Worker benchmark on the AWS emulator (moto server on 127.0.0.1).

1. Per-job overhead: one worker runs N tiny jobs; overhead per job is the
   worker's receive-to-delete time minus the tool's own run time, both from
   the worker's END log lines (so it covers parse, check, scratch folder,
   download, upload, delete and CloudWatch logging); once without and once
   with INSTANCE_ID, whose busy records cost an S3 PUT and DELETE per job.
2. Makespan: JOBS jobs of `sleep T` on W workers, from the first message
   sent (workers already polling) to the queue being empty, against the
   ideal JOBS*T/W.

    python benchmarks/bench_worker.py [--jobs 200] [--workers 4] [--sleep 0.2]

The emulator is one process on this machine: its SQS calls, the workers
and the tools all share the same cores, so the numbers bound the worker's
own overhead from above; on AWS the service side runs elsewhere.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, REPO)

from conftest import emulator_env  # noqa: E402
from ds.operate import joblog  # noqa: E402
from worker_helpers import (Workers, make_queues, queue_counts, send_jobs,  # noqa: E402
                            start_emulator, wait_until, worker_env)



def ended_lines(output):
    return [e for e in map(joblog.ended, output.splitlines()) if e]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--sleep", type=float, default=0.2)
    ap.add_argument("--overhead-jobs", type=int, default=50)
    ap.add_argument("--no-cloudwatch", action="store_true",
                    help="run workers without LOG_GROUP_NAME (stdout logs only)")
    args = ap.parse_args()

    import boto3
    tmp = tempfile.mkdtemp(prefix="bench-worker-")
    from pathlib import Path
    tmpp = Path(tmp)
    (tmpp / "home").mkdir()
    emu, url = start_emulator(tmpp / "moto.log")
    workers = Workers(tmpp)
    try:
        env = emulator_env(url, str(tmpp / "home"))
        logs = {"LOG_GROUP_NAME": ""} if args.no_cloudwatch else {}
        session = boto3.session.Session(
            region_name=env["AWS_DEFAULT_REGION"], aws_access_key_id="testing",
            aws_secret_access_key="testing", aws_session_token="testing")
        sqs = session.client("sqs", endpoint_url=url)
        s3 = session.client("s3", endpoint_url=url)
        s3.create_bucket(Bucket="bench")

        # --- 1. per-job overhead, one worker, tool = `echo > file` ---
        # Without and with INSTANCE_ID: with it the worker keeps a busy record
        # in S3 while it holds a job (one PUT at take, one DELETE at the end).
        medians = []
        for label, extra in (("no busy records", {}),
                             ("busy records", {"INSTANCE_ID": "i-bench"})):
            q1, _ = make_queues(sqs, "Overhead%d" % len(medians))
            w = workers.start(worker_env(env, q1, "bench", "echo x > {output_dir}/o.txt",
                                         WORKER_SCRATCH=tmp, **dict(logs, **extra)),
                              "overhead%d" % len(medians))
            w.wait_for("worker started")
            send_jobs(sqs, q1, {}, [{"job_name": "o%d" % i, "output": "o/%d" % i}
                                    for i in range(args.overhead_jobs)])
            w.wait_for(r"END job", count=args.overhead_jobs, timeout=300)
            ends = ended_lines(w.output())
            assert all(e.outcome == "SUCCESS" for e in ends), ends
            over = [e.duration - e.tool for e in ends]
            w.stop()
            medians.append(statistics.median(over))
            print("per-job overhead (receive-to-delete minus tool time), %d jobs, 1 worker, %s:"
                  % (len(over), label))
            print("  median %.1f ms, mean %.1f ms, p90 %.1f ms, max %.1f ms" % (
                1000 * statistics.median(over), 1000 * statistics.mean(over),
                1000 * sorted(over)[int(0.9 * len(over)) - 1], 1000 * max(over)))
        print("busy records: median overhead x%.2f (+%.1f ms per job)"
              % (medians[1] / medians[0], 1000 * (medians[1] - medians[0])))

        # --- 2. makespan of JOBS sleep jobs on W workers ---
        q2, _ = make_queues(sqs, "Makespan")
        cmd = "sleep %s" % args.sleep
        ws = [workers.start(worker_env(env, q2, "bench", cmd, WORKER_SCRATCH=tmp, **logs),
                            "mk%d" % i) for i in range(args.workers)]
        for x in ws:
            x.wait_for("worker started")
        t0 = time.monotonic()
        send_jobs(sqs, q2, {}, [{"job_name": "m%d" % i} for i in range(args.jobs)])
        sent = time.monotonic() - t0
        wait_until(lambda: queue_counts(sqs, q2) == (0, 0), 600, "queue drained",
                   interval=0.1)
        makespan = time.monotonic() - t0
        done = sum(len(ended_lines(x.output())) for x in ws)
        ideal = args.jobs * args.sleep / args.workers
        print("makespan: %d jobs of `%s` on %d workers: %.2f s (sending took %.2f s);"
              " ideal %.2f s; ratio %.2f; jobs logged %d"
              % (args.jobs, cmd, args.workers, makespan, sent, ideal,
                 makespan / ideal, done))
    finally:
        workers.close()
        emu.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""`python run.py local`: the whole run on this machine, no AWS account needed.

An AWS emulator (moto) starts in this process on 127.0.0.1, and the real
setup, submitJob, startCluster and monitor code runs against it. The only
code AWS runs do not share is the Launcher (launcher.py), which stands in
for ECS and its awslogs driver.
"""
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from ds import REPO
from ds.core.aws import Session
from ds.core.errors import UserError
from ds.commands.launcher import Launcher, SpotNotice, ensure_dir
from ds.commands.setup import setup
from ds.commands.start import start_cluster
from ds.commands.submit import submit_job
from ds.commands.transfer import download_outputs, output_locations, upload_folder
from ds.monitor import scalein
from ds.monitor.laptop import monitor
from ds.operate import failures, joblog
from ds.resources import jobs, queue, records
from ds.core.settings import Settings

RUN_DIR = os.path.join(REPO, ".local-run")
POLL_SECONDS = 1           # the monitor's poll in local runs
LOG_TAIL = failures.TAIL    # lines of a failed job's log shown in the summary
MAX_FAILURES_SHOWN = 3     # failed jobs whose log tail the summary shows
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
                     "AWS_SESSION_TOKEN": "local"}


class Emulator:
    """moto on a free 127.0.0.1 port, unless the user points AWS_ENDPOINT_URL elsewhere."""

    def __enter__(self):
        self.server = None
        self.url = os.environ.get("AWS_ENDPOINT_URL")
        if not self.url:
            try:
                from moto.server import ThreadedMotoServer
            except ImportError:
                raise UserError("The AWS emulator is not installed: run "
                                "`pip install -r requirements.txt`.")
            # The emulator's request log would drown the run's own output.
            logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
            self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self.server.start()
            self.url = "http://127.0.0.1:%d" % self.server.get_host_and_port()[1]
            # Never let a local run reach a real account.
            os.environ.update(DUMMY_CREDENTIALS)
            for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
                os.environ.pop(var, None)
        os.environ["AWS_ENDPOINT_URL"] = self.url
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        return self

    def __exit__(self, *exc):
        if self.server is not None:
            self.server.stop()
            os.environ.pop("AWS_ENDPOINT_URL", None)


def summarize(tries, failed_jobs, submitted, done, wall, out_dir, n_files, report_path,
              from_queue=False):
    """Print the summary; return the number of jobs not done.

    `done` comes from the done records (the queue where an image's own worker
    writes none), never from END lines, which a killed try does not leave. `tries` (the
    job logs) gives the durations; `failed_jobs` (failures.collect) the
    dead-letter queue's jobs with their tries and log tails.
    """
    durations = sorted(t.seconds() for log in tries.values() for t in log.tries
                       if t.outcome in joblog.DONE_OUTCOMES and t.seconds() is not None)
    print()
    print("Summary of the local run")
    print("  jobs submitted   %d" % submitted)
    print("  succeeded        %d" % done)
    print("  failed           %d" % (submitted - done))
    if failed_jobs:
        print("  failed jobs      %s" % ", ".join(j["job"] for j in failed_jobs))
    if from_queue:
        print("  (counted from the queue: the image's worker writes no job records)")
    print("  wall time        %.1f s" % wall)
    if durations:
        print("  per job          min %.2f s, median %.2f s, max %.2f s"
              % (durations[0], statistics.median(durations), durations[-1]))
    print("  outputs          %d file%s in %s" % (n_files, "" if n_files == 1 else "s", out_dir))
    print("  run report       %s" % report_path)
    shown = failed_jobs[:MAX_FAILURES_SHOWN]
    for job in shown:
        print()
        print("Job %s failed (%s tries). Last lines of its log:"
              % (job["job"], "?" if job["tries"] is None else job["tries"]))
        for line in job["log_tail"][-LOG_TAIL:]:
            print("  | " + line)
        if job["hint"]:
            print("  hint: " + job["hint"])
    if len(failed_jobs) > len(shown):
        print("\n...and %d more failed jobs; the run report shows the last lines of every "
              "failed job's log."
              % (len(failed_jobs) - len(shown)))
    return submitted - done


def container_engine():
    for engine in ("docker", "podman"):
        path = shutil.which(engine)
        if path and subprocess.run([path, "info"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL).returncode == 0:
            return path
    raise UserError("--docker needs docker or podman that can run containers; neither works "
                    "here. Run without --docker to use local processes.")


def local_settings(settings, workers, docker):
    s = Settings(settings)
    s["AWS_PROFILE"] = ""
    if workers is not None:
        if workers < 1:
            raise UserError("--workers must be at least 1.")
        s.update(CLUSTER_MACHINES=workers, TASKS_PER_MACHINE=1, DOCKER_CORES=1)
    if not docker:
        s["SECONDS_TO_START"] = 0  # one machine, no shared disk to spare from a stampede
    return s


def spot_notice(text, settings):
    """--spot-notice AFTER[,PERIOD] (seconds) as a SpotNotice, or None. AFTER is
    measured on busy records, which a worker rewrites every lease/3 seconds."""
    if text is None:
        return None
    try:
        numbers = [float(x) for x in text.split(",")]
    except ValueError:
        numbers = []
    if not 1 <= len(numbers) <= 2 or min(numbers) < 0 or \
            numbers[0] >= settings.SQS_MESSAGE_VISIBILITY / 3.0:
        raise UserError("--spot-notice %s: give AFTER or AFTER,PERIOD in seconds, such as "
                        "--spot-notice 30 or --spot-notice 30,10; AFTER below a third of "
                        "SQS_MESSAGE_VISIBILITY." % text)
    return SpotNotice(*numbers)


def run(settings, args):
    """The whole run: emulate, set up, submit, start, watch, clean up, download."""
    began = time.monotonic()
    docker = container_engine() if args.docker else None
    s = local_settings(settings, args.workers, docker)
    bodies = jobs.load_messages(args.jobfile, s.COMMAND)  # fail on a bad file before anything
    notice = spot_notice(args.spot_notice, s)
    workdir = tempfile.mkdtemp(prefix="run-", dir=ensure_dir(RUN_DIR))
    try:
        with Emulator() as emu:
            print("AWS emulator at %s (nothing here touches your AWS account)." % emu.url)
            aws = Session(s)
            sqs = aws.client("sqs")  # made here: creating clients is not thread-safe
            s3 = aws.client("s3")
            launcher = Launcher(aws.client("ecs"), aws.client("ec2"), s, workdir, docker,
                                jobs_waiting=lambda: _jobs_waiting(sqs, s),
                                logs=aws.client("logs"), notice=notice,
                                busy_machines=lambda: _busy_since(s3, s))
            try:
                return _run(aws, s, args, bodies, launcher, workdir, began)
            finally:
                # before the emulator goes: stopped workers release their jobs through it
                launcher.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(aws, s, args, bodies, launcher, workdir, began):
    s3 = aws.client("s3")
    locations = output_locations(bodies, s.AWS_BUCKET)
    # jobs may write to other buckets (output "s3://other/..."): they exist on AWS, so here too
    for bucket in sorted({s.AWS_BUCKET} | {b for b, _ in locations}):
        _create_bucket(s3, bucket, s.AWS_REGION)
    if args.data:
        if not os.path.isdir(args.data):
            raise UserError("%s: data folder not found; pass --data DIR (the folder your job "
                            "file's inputs are in)." % args.data)
        n = sum(upload_folder(s3, s.AWS_BUCKET, args.data))
        print("Uploaded %d file%s from %s to s3://%s/%s/." % (
            n, "" if n == 1 else "s", args.data, s.AWS_BUCKET,
            os.path.basename(os.path.normpath(args.data))))
    setup(aws, s)
    submit_job(aws, s, args.jobfile, save_on_stop=False)
    keys = {json.loads(b)[records.KEY_FIELD] for b in bodies}
    run_id = records.run_id(aws.client("sqs"), queue.require_url(aws.client("sqs"),
                                                                  s.SQS_QUEUE_NAME))
    started = time.time()    # this run's tries are logged from here on
    launcher.start()
    fleet_file = os.path.join(workdir, "fleet.json")
    with open(fleet_file, "w") as f:
        json.dump(LOCAL_FLEET, f)
    # The monitor file lives with the run: files/ may hold a real AWS run's.
    monitor_file = os.path.join(workdir, "monitor.json")
    launcher.fleet_id = start_cluster(aws, s, fleet_file, timeout=60,
                                      monitor_path=monitor_file, local=True)
    result = monitor(aws, s, monitor_file, poll_seconds=POLL_SECONDS,
                     live=sys.stdout.isatty(), check=lambda: _launcher_ok(launcher),
                     report_dir=args.out)
    launcher.stop()
    tries = joblog.read(aws.client("logs"), s.LOG_GROUP_NAME, joblog.run_start_ms(started))
    failed_jobs = failures.collect(aws, s, started)
    n_files = sum(download_outputs(s3, locations, args.out))
    # Done comes from the done records; an image with its own worker (no COMMAND)
    # writes none, so its jobs are counted from the queue.
    from_queue = not s.COMMAND
    done = result["done"] if from_queue else len(
        records.done_keys(s3, s.AWS_BUCKET, s.APP_NAME, run_id) & keys)
    failed = summarize(tries, failed_jobs, len(keys), done, time.monotonic() - began,
                       args.out, n_files, result["report"], from_queue)
    return 1 if failed else 0


def _busy_since(s3, s):
    """{machine: when its oldest busy record was written}: the machines holding a job."""
    since = {}
    for machine, written in scalein.busy_records(s3, s.AWS_BUCKET, s.APP_NAME,
                                                 s.SQS_MESSAGE_VISIBILITY):
        since[machine] = min(written, since.get(machine, written))
    return since


def _jobs_waiting(sqs, s):
    """Whether the run's queue holds jobs no worker has taken yet."""
    url = queue.find_url(sqs, s.SQS_QUEUE_NAME)
    return bool(url) and queue.counts(sqs, url)[0] > 0


def _launcher_ok(launcher):
    if launcher.error is not None:
        error = launcher.error
        raise UserError(str(error) if isinstance(error, RuntimeError)   # the launcher's own
                        else "Could not run local workers: %s" % error)


def _create_bucket(s3, bucket, region):
    args = {"Bucket": bucket}
    if region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**args)
    except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        pass


# A fleet request the emulator accepts; on AWS your fleet file goes here.
LOCAL_FLEET = {
    "IamFleetRole": "arn:aws:iam::123456789012:role/local-spot-fleet-role",
    "AllocationStrategy": "lowestPrice",
    "LaunchSpecifications": [{"ImageId": "ami-12c6146b", "KeyName": "local"}],
    "Type": "maintain",
}

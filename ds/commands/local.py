"""`python run.py local`: the whole run on this machine, no AWS account needed.

An AWS emulator (moto) starts in this process on 127.0.0.1, and the real
setup, submitJob, startCluster and monitor code runs against it. The only
code here that AWS runs do not share is the Launcher, which stands in for
ECS: it reads the service's desired count and the task definition that setup
registered, and keeps that many workers running with exactly that
environment, as local processes or as containers. Like ECS, it places them
on the fleet's (emulated) machines, TASKS_PER_MACHINE each, and tells each
worker its machine (INSTANCE_ID), so the monitor's scale-in ends idle
machines here as it does on AWS, and their workers stop with them.
"""
import json
import logging
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from ds import REPO, WORKER_DIR
from ds.core.aws import Session
from ds.core.errors import UserError
from ds.commands import awslogs
from ds.commands.setup import setup
from ds.commands.start import start_cluster
from ds.commands.submit import submit_job
from ds.commands.transfer import download_outputs, output_locations, upload_folder
from ds.monitor.laptop import monitor
from ds.operate import failures, joblog
from ds.resources import cluster, fleet, jobs, queue, records
from ds.core.settings import Settings

RUN_DIR = os.path.join(REPO, ".local-run")
POLL_SECONDS = 1           # the monitor's poll in local runs
RECONCILE_SECONDS = 0.5    # how often the launcher compares desired and running workers
STOP_GRACE = 20            # seconds a worker gets to release its job after SIGTERM
LOG_TAIL = failures.TAIL    # lines of a failed job's log shown in the summary
MAX_FAILURES_SHOWN = 3     # failed jobs whose log tail the summary shows
QUICK_EXIT = 5             # a worker that exits sooner than this many seconds...
MAX_QUICK_EXITS = 3        # ...this many times in a row cannot start: stop the run
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


class Launcher(threading.Thread):
    """Stands in for ECS: keeps the service's desired count of workers running."""

    def __init__(self, ecs, ec2, settings, workdir, docker=None, jobs_waiting=lambda: True,
                 logs=None):
        super().__init__(daemon=True)
        self.ecs, self.ec2, self.s, self.workdir, self.docker = ecs, ec2, settings, workdir, docker
        self.logs = logs           # where the tasks' output goes, as the awslogs driver sends it
        self.fleet_id = None       # set once startCluster has requested the fleet
        # A DS-family worker exits when the queue is empty, and ECS starts it again:
        # a quick exit is a crash only while jobs wait for it.
        self.jobs_waiting = jobs_waiting
        self.procs = []
        self.started = 0
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.error = None
        self.crashes = 0

    def desired(self):
        """(desired count, container definition) as ECS has them now."""
        service = cluster.describe_service(self.ecs, self.s)
        if not service:
            return 0, None
        td = self.ecs.describe_task_definition(taskDefinition=service["taskDefinition"])
        return service["desiredCount"], td["taskDefinition"]["containerDefinitions"][0]

    def task_env(self, container):
        """The task definition's environment, plus what the task role gives on AWS."""
        env = {v["name"]: v["value"] for v in container.get("environment", [])}
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "PYTHONPATH")
        base = {k: os.environ[k] for k in keep if k in os.environ}
        base.update({k: os.environ[k] for k in os.environ if k.startswith("AWS_")
                     and k not in env})  # endpoint and credentials: the "role" here
        base.update(env)
        base["WORKER_SCRATCH"] = _ensure_dir(os.path.join(self.workdir, "scratch"))
        base["PYTHONUNBUFFERED"] = "1"
        return base

    def machines(self):
        """The fleet's running machines, as ECS would see them join the cluster."""
        if self.fleet_id is None or not fleet.describe(self.ec2, self.fleet_id):
            return []
        return fleet.instances(self.ec2, self.fleet_id)

    def start_task(self, container, machine):
        self.started += 1
        name = "task%d" % self.started
        log = awslogs.ContainerLog(self.logs, container, os.path.join(self.workdir, name + ".log"))
        env = self.task_env(container)
        env["INSTANCE_ID"] = machine
        if self.docker:
            cmd = [self.docker, "run", "--rm", "--network", "host", "--pull", "never",
                   "--name", self.container_name(name)]
            if container.get("privileged"):
                cmd.append("--privileged")  # as ECS runs it: s3fs in the image needs FUSE
            for k, v in env.items():
                if k not in ("PATH", "HOME", "PYTHONPATH", "WORKER_SCRATCH", "TMPDIR"):
                    cmd += ["-e", "%s=%s" % (k, v)]
            cmd.append(container["image"])
            env = dict(os.environ)  # the engine's own settings; the task's go in with -e
        else:
            # run-worker.sh calls python3 (or WORKER_PYTHON): make that this interpreter.
            env["WORKER_PYTHON"] = sys.executable
            cmd = ["bash", os.path.join(WORKER_DIR, "run-worker.sh")]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.follow(proc.stdout)
        proc.log = log
        proc.name = name
        proc.machine = machine
        proc.began = time.monotonic()
        self.procs.append(proc)

    def container_name(self, task):
        return "%s-%s-%d" % (self.s.APP_NAME, task, os.getpid())

    def stop_task(self, proc):
        self._ask_to_stop(proc)
        self._reap(proc)

    def _ask_to_stop(self, proc):
        """SIGTERM, as ECS does: the worker releases its job and exits."""
        if self.docker:
            subprocess.Popen([self.docker, "stop", "-t", str(STOP_GRACE),
                              self.container_name(proc.name)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    def _reap(self, proc):
        try:
            proc.wait(STOP_GRACE + 5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.log.close()

    def reconcile(self):
        count, container = self.desired()
        machines = self.machines()
        with self.lock:
            for proc in [p for p in self.procs if p.machine not in machines]:
                self.procs.remove(proc)   # its machine was ended: its tasks go with it
                self.stop_task(proc)
            for proc in [p for p in self.procs if p.poll() is not None]:
                # ECS replaces a task that died; so do we, unless tasks die at birth.
                self.procs.remove(proc)
                proc.log.close()
                quick = time.monotonic() - proc.began < QUICK_EXIT and self.jobs_waiting()
                self.crashes = self.crashes + 1 if quick else 0
                if self.crashes >= MAX_QUICK_EXITS:
                    raise RuntimeError("%d workers in a row exited at once; the last said: %s"
                                       % (self.crashes,
                                          _last_line(proc.log.name, self.s.APP_NAME)))
            count = min(count, len(machines) * self.s.TASKS_PER_MACHINE)
            while len(self.procs) > count:
                self.stop_task(self.procs.pop())
            while len(self.procs) < count:
                self.start_task(container, self._emptiest(machines))

    def _emptiest(self, machines):
        load = {m: 0 for m in machines}
        for proc in self.procs:
            load[proc.machine] += 1
        return min(machines, key=lambda m: load[m])

    def run(self):
        while not self.halt.is_set():
            try:
                self.reconcile()
            except Exception as e:  # surface in the main thread, never die silently
                self.error = e
                return
            self.halt.wait(RECONCILE_SECONDS)

    def stop(self):
        self.halt.set()
        if self.is_alive():
            self.join()
        with self.lock:
            procs, self.procs = self.procs, []
        for proc in procs:  # all at once: each may take a while to let go of its job
            self._ask_to_stop(proc)
        for proc in procs:
            self._reap(proc)


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


def run(settings, args):
    """The whole run: emulate, set up, submit, start, watch, clean up, download."""
    began = time.monotonic()
    docker = container_engine() if args.docker else None
    s = local_settings(settings, args.workers, docker)
    bodies = jobs.load_messages(args.jobfile, s.COMMAND)  # fail on a bad file before anything
    workdir = tempfile.mkdtemp(prefix="run-", dir=_ensure_dir(RUN_DIR))
    try:
        with Emulator() as emu:
            print("AWS emulator at %s (nothing here touches your AWS account)." % emu.url)
            aws = Session(s)
            sqs = aws.client("sqs")  # made here: creating clients is not thread-safe
            launcher = Launcher(aws.client("ecs"), aws.client("ec2"), s, workdir, docker,
                                jobs_waiting=lambda: _jobs_waiting(sqs, s),
                                logs=aws.client("logs"))
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


# Lines of run-worker.sh and the machine monitor that come with every exit, and
# the container engine's own notes (logrus: `WARN[0003] ...`, `time="..." level=...`);
# the worker's own complaint (why it died) is the last line that is neither.
ENGINE_NOTE = re.compile(r'^(?:(?:WARN|ERRO|INFO|DEBU)\[\d+\]|time="[^"]*" level=)')


def _wrapper_line(line, app_name):
    return ENGINE_NOTE.match(line) or any(
        m in line for m in ("[run-worker]", "[%s monitor " % app_name, "instance-setup:"))


def _last_line(path, app_name):
    with open(path, "rb") as f:
        lines = [l.strip() for l in f.read().decode("utf-8", "replace").splitlines()
                 if l.strip()]
    own = [l for l in lines if not _wrapper_line(l, app_name)]
    return (own or lines or ["(nothing)"])[-1]


def _jobs_waiting(sqs, s):
    """Whether the run's queue holds jobs no worker has taken yet."""
    url = queue.find_url(sqs, s.SQS_QUEUE_NAME)
    return bool(url) and queue.counts(sqs, url)[0] > 0


def _launcher_ok(launcher):
    if launcher.error is not None:
        raise UserError("Could not start local workers: %s" % launcher.error)


def _ensure_dir(path):
    os.makedirs(path, exist_ok=True)
    return path


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

"""The stand-in for ECS in a local run: the only code AWS runs do not share.

It reads the service's desired count, deployment configuration and the task
definition that setup registered, and keeps that many workers running with
exactly that environment, as local processes or as containers. Like ECS, it
places them on the fleet's (emulated) machines, TASKS_PER_MACHINE each, and
tells each worker its machine (INSTANCE_ID), so the monitor's scale-in ends
idle machines here as it does on AWS, and their workers stop with them. Each
task's output goes to the log group as the awslogs driver sends it
(awslogs.py).

A spot interruption notice (SpotNotice) works as on AWS: the machine's
container instance is DRAINING (the agent's ECS_ENABLE_SPOT_INSTANCE_DRAINING),
ECS stops its tasks at once only if the service's minimum healthy percent is
below 100, places no new task there, and the machine ends when the notice
period is over, stopping whatever still runs on it.
"""
import datetime
import os
import re
import signal
import subprocess
import sys
import threading
import time

from ds import WORKER_DIR
from ds.commands import awslogs
from ds.resources import cluster, fleet

RECONCILE_SECONDS = 0.5    # how often the launcher compares desired and running workers
STOP_GRACE = 20            # seconds a worker gets to release its job after SIGTERM
QUICK_EXIT = 5             # a worker that exits sooner than this many seconds...
MAX_QUICK_EXITS = 3        # ...this many times in a row cannot start: stop the run
SPOT_NOTICE_PERIOD = 120   # seconds from AWS's interruption notice to the machine's end
ECS_DEFAULT_MINIMUM = 100  # minimumHealthyPercent of a service created without one


class SpotNotice:
    """One emulated spot interruption: the first machine one of whose workers has
    held a job for `after` seconds (its busy record is that old) gets the notice,
    mid-job as notices come, and ends `period` seconds later."""

    def __init__(self, after, period=SPOT_NOTICE_PERIOD):
        self.after, self.period = after, period
        self.machine = None  # the machine given the notice: draining from then on
        self.ends = None     # monotonic time the machine ends; None once it has


class Launcher(threading.Thread):
    """Stands in for ECS: keeps the service's desired count of workers running."""

    def __init__(self, ecs, ec2, settings, workdir, docker=None, jobs_waiting=lambda: True,
                 logs=None, notice=None, busy_machines=lambda: {}):
        super().__init__(daemon=True)
        self.ecs, self.ec2, self.s, self.workdir, self.docker = ecs, ec2, settings, workdir, docker
        self.logs = logs           # where the tasks' output goes, as the awslogs driver sends it
        self.fleet_id = None       # set once startCluster has requested the fleet
        # A DS-family worker exits when the queue is empty, and ECS starts it again:
        # a quick exit is a crash only while jobs wait for it.
        self.jobs_waiting = jobs_waiting
        self.notice = notice
        self.busy_machines = busy_machines   # {machine holding a job: since when (UTC)}
        self.procs = []
        self.started = 0
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.error = None
        self.crashes = 0

    def desired(self):
        """(desired count, container definition, minimum healthy percent) as ECS has them."""
        service = cluster.describe_service(self.ecs, self.s)
        if not service:
            return 0, None, ECS_DEFAULT_MINIMUM
        td = self.ecs.describe_task_definition(taskDefinition=service["taskDefinition"])
        minimum = service.get("deploymentConfiguration", {}).get("minimumHealthyPercent",
                                                                  ECS_DEFAULT_MINIMUM)
        return (service["desiredCount"], td["taskDefinition"]["containerDefinitions"][0],
                minimum)

    def task_env(self, container):
        """The task definition's environment, plus what the task role gives on AWS."""
        env = {v["name"]: v["value"] for v in container.get("environment", [])}
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "PYTHONPATH")
        base = {k: os.environ[k] for k in keep if k in os.environ}
        base.update({k: os.environ[k] for k in os.environ if k.startswith("AWS_")
                     and k not in env})  # endpoint and credentials: the "role" here
        base.update(env)
        base["WORKER_SCRATCH"] = ensure_dir(os.path.join(self.workdir, "scratch"))
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
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.follow(proc.stdout, proc.stderr)
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

    def _stop_tasks(self, procs):
        """Stop these tasks all at once: each may take a while to let go of its job."""
        for proc in procs:
            if proc in self.procs:
                self.procs.remove(proc)
            self._ask_to_stop(proc)
        for proc in procs:
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
        count, container, minimum = self.desired()
        machines = self.machines()
        self._follow_notice(machines)
        draining = {self.notice.machine} & set(machines) if self.notice else set()
        placeable = [m for m in machines if m not in draining]
        with self.lock:
            # its machine was ended: its tasks go with it
            self._stop_tasks([p for p in self.procs if p.machine not in machines])
            self._replace_dead()
            if minimum < 100:
                # ECS may stop a draining machine's tasks before replacements run
                stopping = [p for p in self.procs if p.machine in draining]
                for proc in stopping:
                    print("Stopping worker %s on draining machine %s; its job goes back to "
                          "the queue." % (proc.name, proc.machine))
                self._stop_tasks(stopping)
            elsewhere = [p for p in self.procs if p.machine not in draining]
            want = min(count, len(placeable) * self.s.TASKS_PER_MACHINE)
            while len(elsewhere) > want:
                proc = elsewhere.pop()
                self.procs.remove(proc)
                self.stop_task(proc)
            while len(elsewhere) < want:
                self.start_task(container, self._emptiest(placeable))
                elsewhere.append(self.procs[-1])
            # tasks left on a draining machine stop once their replacements run
            for proc in [p for p in self.procs if p.machine in draining]:
                if len(self.procs) <= count:
                    break
                self.procs.remove(proc)
                self.stop_task(proc)

    def _replace_dead(self):
        for proc in [p for p in self.procs if p.poll() is not None]:
            # ECS replaces a task that died; so do we, unless tasks die at birth.
            self.procs.remove(proc)
            proc.log.close()
            quick = time.monotonic() - proc.began < QUICK_EXIT and self.jobs_waiting()
            self.crashes = self.crashes + 1 if quick else 0
            if self.crashes >= MAX_QUICK_EXITS:
                raise RuntimeError("Could not start local workers: %d workers in a row exited "
                                   "at once; the last said: %s"
                                   % (self.crashes, last_line(proc.log.name, self.s.APP_NAME)))

    def _follow_notice(self, machines):
        """Deliver the spot notice when it is due, and end its machine when its
        period is over."""
        n = self.notice
        if n is None:
            return
        now = time.monotonic()
        if n.machine is None:
            utc = datetime.datetime.now(datetime.timezone.utc)
            due = {m: t for m, t in self.busy_machines().items()
                   if m in machines and (utc - t).total_seconds() >= n.after}
            if due:
                n.machine, n.ends = min(due, key=due.get), now + n.period
                print("Spot interruption notice (emulated) for machine %s: it is draining "
                      "and ends in %d s." % (n.machine, n.period))
        elif n.ends is not None and now >= n.ends:
            n.ends = None
            self.ec2.terminate_instances(InstanceIds=[n.machine])
            print("Machine %s ended at the end of its spot notice." % n.machine)
        elif n.ends is None and n.machine and not machines and self.jobs_waiting():
            raise RuntimeError(
                "The spot notice ended the last machine, and the emulated fleet, unlike "
                "AWS's, never replaces one; give --spot-notice a machine to spare (more "
                "--workers and more jobs than one machine runs at once, or an earlier AFTER).")

    def _emptiest(self, machines):
        load = {m: 0 for m in machines}
        for proc in self.procs:
            if proc.machine in load:
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
        self._stop_tasks(procs)


# Lines of run-worker.sh and the machine monitor that come with every exit, and
# the container engine's own notes (logrus: `WARN[0003] ...`, `time="..." level=...`);
# the worker's own complaint (why it died) is the last line that is neither.
ENGINE_NOTE = re.compile(r'^(?:(?:WARN|ERRO|INFO|DEBU)\[\d+\]|time="[^"]*" level=)')


def _wrapper_line(line, app_name):
    return ENGINE_NOTE.match(line) or any(
        m in line for m in ("[run-worker]", "[%s monitor " % app_name, "instance-setup:"))


def last_line(path, app_name):
    with open(path, "rb") as f:
        lines = [l.strip() for l in f.read().decode("utf-8", "replace").splitlines()
                 if l.strip()]
    own = [l for l in lines if not _wrapper_line(l, app_name)]
    return (own or lines or ["(nothing)"])[-1]


def ensure_dir(path):
    os.makedirs(path, exist_ok=True)
    return path

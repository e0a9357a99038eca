"""monitor: watch a run, shrink its fleet as work runs out, then remove everything.

Every step re-reads AWS and tolerates resources already gone, so monitor can
be stopped and started again at any point, and run again after the end.
"""
import sys
import time

from .aws import explain, unless_gone
from .errors import UserError
from .jobs import read_json, write_json
from .settings import Settings, to_bool
from . import cluster, cost, dashboard, fleet, logs, queue, report, scalein, wait

CHEAPEST_AFTER = 15 * 60        # --cheapest: stop replacing machines after this long
CLUSTER_DRAIN_TIMEOUT = 10 * 60
REQUIRED = ("MONITOR_FLEET_ID", "MONITOR_APP_NAME", "MONITOR_ECS_CLUSTER",
            "MONITOR_QUEUE_NAME", "MONITOR_BUCKET_NAME", "MONITOR_LOG_GROUP_NAME",
            "MONITOR_START_TIME")


def run_settings(settings, path):
    """config.py's settings with the run's own names from the monitor file."""
    info = read_json(path, "monitor file")
    if not isinstance(info, dict):
        raise UserError("%s: not a monitor file (startCluster writes one)." % path)
    missing = [k for k in REQUIRED if k not in info]
    if missing:
        raise UserError("%s: %s is missing; use the file startCluster wrote "
                        "(files/APP_NAMESpotFleetRequestId.json)." % (path, missing[0]))
    s = Settings(settings)
    s.update(APP_NAME=info["MONITOR_APP_NAME"], ECS_CLUSTER=info["MONITOR_ECS_CLUSTER"],
             SQS_QUEUE_NAME=info["MONITOR_QUEUE_NAME"], AWS_BUCKET=info["MONITOR_BUCKET_NAME"],
             LOG_GROUP_NAME=info["MONITOR_LOG_GROUP_NAME"])
    if "MONITOR_DEAD_LETTER_QUEUE" in info:
        s["SQS_DEAD_LETTER_QUEUE"] = info["MONITOR_DEAD_LETTER_QUEUE"]
    if "CLEAN_DASHBOARD" in info:
        s["CLEAN_DASHBOARD"] = to_bool(info["CLEAN_DASHBOARD"], "CLEAN_DASHBOARD", path)
    per_machine = info.get("MONITOR_JOBS_PER_MACHINE", settings.jobs_per_machine)
    return (s, info["MONITOR_FLEET_ID"], _number(info, "MONITOR_START_TIME", path),
            _number(dict(info, MONITOR_JOBS_PER_MACHINE=per_machine),
                    "MONITOR_JOBS_PER_MACHINE", path))


def _number(info, key, path):
    try:
        return int(float(info[key]))
    except (TypeError, ValueError, OverflowError):
        raise UserError("%s: %s must be a number, not %r; use the file startCluster wrote."
                        % (path, key, info[key]))


def finished(path):
    """True/False as this monitor file records it; None for files that do not say
    (the original Distributed-Something's)."""
    return read_json(path, "monitor file").get("MONITOR_FINISHED")


def mark_finished(path):
    """Record that teardown, export and summary all happened, so a rerun skips them."""
    _record(path, MONITOR_FINISHED=True)


def record_counts(path, done, dead):
    """Keep the final counts: once the queue is deleted, nothing else knows them."""
    _record(path, MONITOR_JOBS_DONE=done, MONITOR_JOBS_DEAD=dead)


def recorded_counts(path):
    """(done, dead) as an earlier monitor recorded them, or (None, None)."""
    info = read_json(path, "monitor file")
    return info.get("MONITOR_JOBS_DONE"), info.get("MONITOR_JOBS_DEAD")


def _record(path, **values):
    info = read_json(path, "monitor file")
    info.update(values)
    write_json(path, info)


class Run:
    """The live state of one run, read fresh from AWS on every poll."""

    def __init__(self, aws, settings, fleet_id, started, per_machine, show):
        self.show = show
        self.s, self.fleet_id, self.started, self.per_machine = (
            settings, fleet_id, started, per_machine)
        self.sqs, self.ecs, self.ec2 = aws.client("sqs"), aws.client("ecs"), aws.client("ec2")
        self.cloudwatch, self.logs = aws.client("cloudwatch"), aws.client("logs")
        self.s3 = aws.client("s3")
        self.machines = set()      # every instance seen, for machine-hours
        self.scalein = scalein.ScaleIn(self.ec2, self.s3, settings, fleet_id, per_machine)
        self.total = 0             # jobs submitted, as of the last look
        self.cheapest = False
        self.queue_gone = False    # the last step found no queue

    def step(self):
        """One look at the run and what follows from it (scale down, forget gone
        machines). True once the queue is empty or gone: time to tear down.
        Safe to call from any loop, any number of times."""
        url = self.queue_url()
        self.queue_gone = url is None
        if url is None:
            return True
        return self.poll(url, self.cheapest)

    def queue_url(self):
        return queue.find_url(self.sqs, self.s.SQS_QUEUE_NAME)

    def dead_letters(self):
        url = queue.find_url(self.sqs, self.s.dead_letter_queue_name)
        return sum(queue.counts(self.sqs, url)) if url else 0

    def anything_left(self):
        """Whether any part of the run is still there (teardown may have stopped midway)."""
        with explain("look up the resources of run %s" % self.s.APP_NAME):
            return bool(self.queue_url() or fleet.describe(self.ec2, self.fleet_id)
                        or cluster.describe_service(self.ecs, self.s)
                        or cluster.task_definition_arns(self.ecs, self.s)
                        or dashboard.alarm_names(self.cloudwatch, self.s.APP_NAME)
                        or (self.s.CLEAN_DASHBOARD
                            and dashboard.exists(self.cloudwatch, self.s.APP_NAME)))

    def running_machines(self):
        if not fleet.describe(self.ec2, self.fleet_id):
            return []
        ids = fleet.instances(self.ec2, self.fleet_id)
        self.machines.update(ids)
        return ids

    def forget_gone_machines(self, running):
        """Delete the idle alarms of machines that are no longer in the fleet."""
        stale = [n for n in dashboard.alarm_names(self.cloudwatch, self.s.APP_NAME)
                 if n[len(self.s.APP_NAME) + 1:] not in running]
        dashboard.delete_alarms(self.cloudwatch, stale)

    def poll(self, url, cheapest):
        """One look at the run; returns True when the queue is empty."""
        with explain("read the state of run %s" % self.s.APP_NAME):
            visible, in_flight = queue.counts(self.sqs, url)
            dead = self.dead_letters()
            total = self.total = queue.submitted(self.sqs, url)
            running = self.running_machines()
        done = max(total - visible - in_flight - dead, 0)
        self.show("%d queued, %d running, %d done, %d failed (dead-letter queue); %d machine%s"
                  % (visible, in_flight, done, dead, len(running),
                     "" if len(running) == 1 else "s"))
        if visible == 0 and in_flight == 0:
            return True
        self.scalein.poll(visible, in_flight, running)
        if cheapest and time.time() - self.started > CHEAPEST_AFTER:
            if fleet.scale_down(self.ec2, self.fleet_id, 1):
                print("Cheapest mode: machines lost from now on are not replaced.")
        self.forget_gone_machines(running)
        return False

    def machine_hours(self):
        """Hours of every machine this monitor saw, from launch to end (or now)."""
        return sum(r["hours"] for r in cost.rows(self.ec2, self.machines))

    def teardown(self):
        """Remove everything the run created; each step is safe to repeat.

        The laptop's loop around the same steps the automatic monitor takes
        one per tick (TEARDOWN); only this one waits."""
        since = time.time()
        self.remove_resources()
        wait.until(lambda: self.release_cluster(since),
                   "the machines to leave ECS cluster %s" % self.s.ECS_CLUSTER,
                   timeout=CLUSTER_DRAIN_TIMEOUT + 120, longest=30)
        self.tidy()

    def remove_resources(self):
        """Service to 0, alarms, fleet, queues, service, task definitions. Returns True."""
        s = self.s
        if cluster.describe_service(self.ecs, s):
            cluster.set_desired_count(self.ecs, s, 0)
        self.running_machines()
        alarms = dashboard.delete_alarms(self.cloudwatch,
                                         dashboard.alarm_names(self.cloudwatch, s.APP_NAME))
        if alarms:
            print("Deleted %d alarm%s." % (alarms, "" if alarms == 1 else "s"))
        if fleet.cancel(self.ec2, self.fleet_id):
            print("Cancelled spot fleet %s; its machines are shutting down." % self.fleet_id)
        if queue.delete(self.sqs, s.SQS_QUEUE_NAME):
            print("Deleted queue %s." % s.SQS_QUEUE_NAME)
        self._dead_letter_queue()
        if cluster.delete_service(self.ecs, s):
            print("Deleted service %s." % cluster.service_name(s))
        if cluster.deregister_task_definitions(self.ecs, s):
            print("Deregistered task definition %s." % cluster.task_family(s))
        return True

    def release_cluster(self, since):
        """Delete the run's own ECS cluster once its machines have left it (or
        CLUSTER_DRAIN_TIMEOUT after `since`); never waits. True when done."""
        s = self.s
        if s.ECS_CLUSTER == "default":
            return True
        if (not _instances_gone(self.ecs, s.ECS_CLUSTER)
                and time.time() - since < CLUSTER_DRAIN_TIMEOUT):
            return False
        if cluster.delete_cluster_if_unused(self.ecs, s):
            print("Deleted ECS cluster %s." % s.ECS_CLUSTER)
        return True

    def tidy(self):
        """Dashboard, the ECS agent config and the busy records. Returns True."""
        s = self.s
        if s.CLEAN_DASHBOARD and dashboard.delete(self.cloudwatch, s.APP_NAME):
            print("Deleted dashboard %s." % s.APP_NAME)
        self._delete_ecs_config()
        scalein.forget_records(self.s3, s)
        return True

    def export_logs(self, state):
        """One look at the log export (logs.export_next). True once every group is done."""
        return logs.export_next(self.logs, self.s.LOG_GROUP_NAME, self.s.AWS_BUCKET,
                                self.s.APP_NAME, self.started * 1000, state)

    def _dead_letter_queue(self):
        name = self.s.dead_letter_queue_name
        url = queue.find_url(self.sqs, name)
        if not url:
            return
        held = None
        with unless_gone():  # another monitor may delete it meanwhile
            held = sum(queue.counts(self.sqs, url))
        if held is None:
            return
        if held:
            print("Kept dead-letter queue %s: it holds the jobs that failed every try "
                  "(their logs are in log group %s)." % (name, self.s.LOG_GROUP_NAME))
        elif queue.delete(self.sqs, name):
            print("Deleted the empty dead-letter queue %s." % name)

    def _delete_ecs_config(self):
        key = fleet.ecs_config_key(self.s)
        with explain("delete s3://%s/%s" % (self.s.AWS_BUCKET, key)):
            self.s3.delete_object(Bucket=self.s.AWS_BUCKET, Key=key)


# The teardown as steps that never wait: (name, step(run, state) -> True when done).
# The automatic monitor takes them in order, as many per tick as are done at once,
# and records in the run's monitor file which one is next.
TEARDOWN = (
    ("remove", lambda run, state: run.remove_resources()),
    ("cluster", lambda run, state: run.release_cluster(state["since"])),
    ("tidy", lambda run, state: run.tidy()),
    ("export", lambda run, state: run.export_logs(state.setdefault("export", {}))),
)


def _instances_gone(ecs, name):
    found = ecs.describe_clusters(clusters=[name])["clusters"]
    return not found or not found[0].get("registeredContainerInstancesCount")


class StatusLine:
    """Shows the run's state when it changes: one line each, or one live line on a terminal."""

    def __init__(self, live):
        self.live, self.last = live, None

    def __call__(self, text):
        if text == self.last:
            return
        self.last = text
        if self.live:
            sys.stdout.write("\r\033[K%s  %s" % (time.strftime("%H:%M:%S"), text))
            sys.stdout.flush()
        else:
            print("%s  %s" % (time.strftime("%H:%M:%S"), text), flush=True)

    def end(self):
        if self.live and self.last is not None:
            sys.stdout.write("\n")


def monitor(aws, settings, path, cheapest=False, poll_seconds=None, live=False,
            check=lambda: None, report_dir="."):
    """Watch the run until its queue is empty, then tear it down and summarize.
    Returns {"done", "failed", "report"}: the jobs done as the queue counts them,
    those in the dead-letter queue, and the report's path (None if the run was
    already cleaned up).

    `check` is called every poll and may raise to abort (local runs use it to
    notice workers that cannot start).
    """
    if read_json(path, "monitor file").get("MONITOR_AUTO_KEY"):
        from .automonitor import follow  # AUTO_MONITOR: the state lives in the bucket
        return follow(aws, settings, path, poll_seconds or settings.MONITOR_TIME, live, check,
                      report_dir)
    s, fleet_id, started, per_machine = run_settings(settings, path)
    status = StatusLine(live)
    # A monitor never abandons a run over throttling or 5xx errors: it waits
    # them out (one status line says so); only errors no retry heals end it.
    aws.wait_forever()
    run = Run(aws, s, fleet_id, started, per_machine, status)
    run.cheapest = cheapest
    done_before = finished(path)
    if done_before or (done_before is None and not run.anything_left()):
        print("Nothing is left of run %s: it was already cleaned up." % s.APP_NAME)
        return
    poll_seconds = poll_seconds or s.MONITOR_TIME
    print("Monitoring run %s every %d s (Ctrl-C stops watching; run monitor again to go on)."
          % (s.APP_NAME, poll_seconds))
    done = dead = None
    while True:
        check()
        if run.step():
            if not run.queue_gone:
                dead = run.dead_letters()
                done = max(run.total - dead, 0)
                record_counts(path, done, dead)
            break
        time.sleep(poll_seconds)  # the configured poll interval (MONITOR_TIME)
    status.end()
    if done is None:
        done, dead = recorded_counts(path)
        print("The queue is already gone (an earlier monitor removed it); finishing the "
              "clean-up.")
    else:
        print("The queue is empty; cleaning up.")
    run.teardown()
    logs.export(run.logs, s.LOG_GROUP_NAME, s.AWS_BUCKET, s.APP_NAME, started * 1000)
    hours = run.machine_hours()
    spot = cost.lowest_spot_price(run.ec2, s.MACHINE_TYPE)
    page = None
    try:
        page = report.write(aws, s, report_dir, done, dead, hours,
                            None if spot is None else hours * spot)
        print("Run report: %s (a copy is in s3://%s/%s)." % (page, s.AWS_BUCKET,
                                                             report.bucket_key(s)))
    except (UserError, OSError) as e:  # the run itself is finished and cleaned up
        print("Could not write the run report (%s); `python run.py report` writes it later."
              % e)
    print("Run %s finished: %s, %.2f machine-hours." % (s.APP_NAME, _counts(done, dead), hours))
    print(cost.estimate_line(hours, spot, s.MACHINE_PRICE))
    mark_finished(path)
    return {"done": done, "failed": dead, "report": page}


def _counts(done, dead):
    if done is None:  # a monitor file from before counts were recorded
        return "job counts were not recorded"
    return "%d job%s done, %d in the dead-letter queue" % (done, "" if done == 1 else "s",
                                                          int(dead or 0))

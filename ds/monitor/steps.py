"""One look at a run and its teardown: the steps every monitor takes.

`monitor` on a laptop (monitor/laptop.py), the automatic monitor's ticks
(monitor/auto/) and a local run all call these. Every step re-reads AWS and
tolerates resources already gone, so any number of callers, in any order,
stopped and started again at any point, end in the same place.
"""
import time

from ds.core import wait
from ds.core.aws import explain, unless_gone
from ds.monitor import scalein, scaleout
from ds.operate import cost
from ds.resources import alarms, boot, cluster, dashboard, fleet, logs, queue, records

CHEAPEST_AFTER = 15 * 60        # --cheapest: stop replacing machines after this long
CLUSTER_DRAIN_TIMEOUT = 10 * 60


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
        self.total = 0             # messages submitted; once the queue is empty, jobs
                                   # (second copies of a job done once taken out)
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
        return queue.dead_letters(self.sqs, self.s)

    def duplicates(self, url):
        """Messages that were second copies of jobs done once: not jobs of their own."""
        run_id = records.run_id(self.sqs, url)
        return records.duplicates(self.s3, self.s.AWS_BUCKET, self.s.APP_NAME,
                                  run_id) if run_id else 0

    def anything_left(self):
        """Whether any part of the run is still there (teardown may have stopped midway)."""
        with explain("look up the resources of run %s" % self.s.APP_NAME):
            return bool(self.queue_url() or fleet.describe(self.ec2, self.fleet_id)
                        or cluster.describe_service(self.ecs, self.s)
                        or cluster.task_definition_arns(self.ecs, self.s)
                        or alarms.names(self.cloudwatch, self.s.APP_NAME)
                        or (self.s.CLEAN_DASHBOARD
                            and dashboard.exists(self.cloudwatch, self.s.APP_NAME)))

    def fleet_now(self):
        """(the machines the fleet asks for, None once it is gone; its running machines)."""
        described = fleet.describe(self.ec2, self.fleet_id)
        if not described:
            return None, []
        ids = fleet.instances(self.ec2, self.fleet_id)
        self.machines.update(ids)
        return described["SpotFleetRequestConfig"]["TargetCapacity"], ids

    def running_machines(self):
        return self.fleet_now()[1]

    def forget_gone_machines(self, running):
        """Delete the idle alarms of machines that are no longer in the fleet."""
        stale = [n for n in alarms.names(self.cloudwatch, self.s.APP_NAME)
                 if n[len(self.s.APP_NAME) + 1:] not in running]
        alarms.delete(self.cloudwatch, stale)

    def poll(self, url, cheapest):
        """One look at the run; returns True when the queue is empty."""
        with explain("read the state of run %s" % self.s.APP_NAME):
            visible, in_flight = queue.counts(self.sqs, url)
            dead = self.dead_letters()
            total = self.total = queue.submitted(self.sqs, url)
            asked, running = self.fleet_now()
        done = max(total - visible - in_flight - dead, 0)
        self.show("%d queued, %d running, %d done, %d failed (dead-letter queue); %d machine%s"
                  % (visible, in_flight, done, dead, len(running),
                     "" if len(running) == 1 else "s"))
        if visible == 0 and in_flight == 0:
            self.total = max(total - self.duplicates(url), 0)
            return True
        cheap = cheapest and time.time() - self.started > CHEAPEST_AFTER
        if not cheap:  # --cheapest has stopped adding machines
            scaleout.follow(self.ec2, self.ecs, self.s, self.fleet_id, asked,
                            self.per_machine, visible, in_flight)
        self.scalein.poll(visible, in_flight, running)
        if cheap:
            if fleet.scale_down(self.ec2, self.fleet_id, 1):
                print("Cheapest mode: machines lost from now on are not replaced.")
        self.forget_gone_machines(running)
        return False

    def machine_cost(self):
        """(hours, estimated USD or None) of every machine this monitor saw."""
        return cost.of_machines(self.ec2, self.machines)

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
        deleted = alarms.delete(self.cloudwatch, alarms.names(self.cloudwatch, s.APP_NAME))
        if deleted:
            print("Deleted %d alarm%s." % (deleted, "" if deleted == 1 else "s"))
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
        key = boot.ecs_config_key(self.s)
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


def say_finished(s, done, dead, hours, usd):
    """The run's last two lines: what got done, and what it cost."""
    if done is None:  # a monitor file from before counts were recorded
        counts = "job counts were not recorded"
    else:
        counts = "%d job%s done, %d in the dead-letter queue" % (
            done, "" if done == 1 else "s", int(dead or 0))
    print("Run %s finished: %s, %.2f machine-hours." % (s.APP_NAME, counts, hours))
    print(cost.estimate_line(usd, hours, s.MACHINE_PRICE))

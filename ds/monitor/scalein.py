"""Scale-in: once the queue has nothing left to hand out, pay for busy machines only.

How a machine is known to be busy: while it holds a job, each worker keeps a
busy record, the S3 object busy/APP_NAME/INSTANCE_ID/WORKER (worker/busy.py),
rewritten with every lease renewal and deleted just before the job is
settled (deleted or let go), so every record stands for a job in flight: a
job let go and taken by another machine is never counted for the first. A
record older than a lease counts as gone (its worker died). One listing per
poll tells the monitor which machines hold a job.

Why records and not the START/END log lines: one list call per poll instead
of reading every job's log stream, and a dead worker's record expires by
itself instead of leaving an unmatched START forever.

The rule, each poll with nothing visible in the queue:
  1. if the records renewed on time (within a third of a lease, plus
     RENEWAL_SLACK) do not account for every job SQS counts in flight
     (workers without INSTANCE_ID, a record not yet written or not written
     at all), fall back to the old rule: lower the target to the machines the
     jobs in flight need, terminating nothing;
  2. otherwise lower the fleet's target to the number of busy machines
     (noTermination: the fleet replaces nothing we end), and terminate the
     idle ones. A machine with a record younger than a lease is never
     terminated; the records are listed again just before terminating.

Why at the first idle look, not the second: nothing is left to hand out,
so an idle machine stays idle unless a job comes back (a failed try). Such a
job is visible first (no scale-in at that look) or counted in flight without
a record yet (rule 1; a dead worker's record, not renewed, cannot make up
for it), and the listing again just before terminating catches a worker
that took it in between. Waiting a second look paid about a minute per
machine: 1.23 to 1.25 times the busy hours instead of 1.18 to 1.19 on a
fleet of 1,000 (documentation/costs.md).
"""
import datetime

from ds.core.aws import explain
from ds.resources import fleet

PREFIX = "busy/"
RENEWAL_SLACK = 60   # seconds a record's renewal may come late (a slow PUT, clock skew)


def records_prefix(app_name):
    return "%s%s/" % (PREFIX, app_name)


def busy_records(s3, bucket, app_name, lease, now=None):
    """(instance id, when written) of every fresh busy record."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    prefix = records_prefix(app_name)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            parts = obj["Key"][len(prefix):].split("/")
            if len(parts) == 2 and (now - obj["LastModified"]).total_seconds() <= lease:
                yield parts[0], obj["LastModified"]


def count_by_machine(records):
    """{instance id: number of records} of (instance id, when written) pairs."""
    found = {}
    for machine, _written in records:
        found[machine] = found.get(machine, 0) + 1
    return found


def busy_workers(s3, bucket, app_name, lease, now=None):
    """{instance id: number of workers holding a job}, from fresh busy records."""
    return count_by_machine(busy_records(s3, bucket, app_name, lease, now))


def decide(running, busy, vouching, in_flight):
    """The rule itself, on plain values.

    running: machine ids in the fleet; busy: {machine id: workers with a record
    younger than a lease} (such a machine is never ended); vouching: the same,
    of records renewed on time (a live worker rewrites its record every third of
    a lease), the only ones that vouch for a job SQS counts in flight: a dead
    worker's record, still younger than a lease, must not make up for a record
    not yet written. in_flight: jobs SQS counts as taken.
    Returns (target or None for "fall back", machines to end).
    """
    busy_here = {m for m in busy if m in running}
    vouched = sum(n for m, n in vouching.items() if m in running)
    if vouched < in_flight or not busy_here:
        return None, []
    return len(busy_here), sorted(set(running) - busy_here)


class ScaleIn:
    """The scale-in of one run's fleet, one look at a time."""

    def __init__(self, ec2, s3, settings, fleet_id, per_machine):
        self.ec2, self.s3, self.s = ec2, s3, settings
        self.fleet_id, self.per_machine = fleet_id, per_machine

    def busy(self, now=None):
        """({machine: workers with a job}, {machine: those renewed on time})."""
        lease = self.s.SQS_MESSAGE_VISIBILITY
        now = now or datetime.datetime.now(datetime.timezone.utc)
        with explain("list the busy records in s3://%s/%s"
                     % (self.s.AWS_BUCKET, records_prefix(self.s.APP_NAME))):
            records = list(busy_records(self.s3, self.s.AWS_BUCKET, self.s.APP_NAME, lease,
                                        now))
        on_time = [(m, written) for m, written in records
                   if (now - written).total_seconds() <= lease / 3.0 + RENEWAL_SLACK]
        return count_by_machine(records), count_by_machine(on_time)

    def poll(self, visible, in_flight, running):
        """One step; call it on every poll of the monitor."""
        if visible or not in_flight:
            return  # work to hand out, or none left at all (the teardown's part)
        busy, vouching = self.busy()
        target, to_end = decide(running, busy, vouching, in_flight)
        if target is None:
            need = fleet.machines_needed(in_flight, self.per_machine)
            if fleet.scale_down(self.ec2, self.fleet_id, need):
                print("Nothing left to hand out: the fleet now asks for %d machine%s; running "
                      "machines finish their jobs." % (need, "" if need == 1 else "s"))
            return
        if fleet.scale_down(self.ec2, self.fleet_id, target):
            print("Nothing left to hand out: the fleet now asks for the %d busy machine%s; "
                  "idle machines end." % (target, "" if target == 1 else "s"))
        if to_end:
            self.end(to_end)

    def end(self, machines):
        # A retried job may have reached one of them since the listing.
        now_busy = self.busy()[0]
        machines = [m for m in machines if m not in now_busy]
        if not machines:
            return
        with explain("terminate idle machines of spot fleet %s" % self.fleet_id):
            self.ec2.terminate_instances(InstanceIds=machines)
        for m in machines:
            print("Ended idle machine %s (no job on it, and nothing left to hand out)." % m)


def forget_records(s3, settings):
    """Delete leftover busy records (workers killed without cleaning up)."""
    prefix = records_prefix(settings.APP_NAME)
    with explain("delete the busy records in s3://%s/%s" % (settings.AWS_BUCKET, prefix)):
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=settings.AWS_BUCKET,
                                                             Prefix=prefix)
        for page in pages:
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=settings.AWS_BUCKET, Delete={"Objects": keys})

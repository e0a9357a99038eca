"""The automatic monitor: one look at a run per tick, its state in the bucket.

A schedule (EventBridge) calls `handler` in a Lambda function every minute;
`python run.py local` and `python run.py monitor` on an
auto-monitored run call `tick` on their own timer. Every tick is the same:
read the run's monitor file from s3://AWS_BUCKET/monitors/APP_NAME.json,
take one look at the run (progress, scale-in, alarms of gone machines), or,
once the queue is empty, take the next teardown steps that need no waiting
(steps.TEARDOWN), record where it got to, and return. The last tick
removes the schedule and the function itself (function.remove).

This package (ds/monitor/auto/) and what it imports are exactly what the
function's package holds (monitor/install.py builds it): the standard
library, boto3 and botocore only; tests/test_layout.py checks.
"""
import os
import time

from ds.core.aws import Session, explain
from ds.core.errors import UserError
from ds.core.settings import Settings
from ds.monitor import steps
from ds.monitor.auto import function, state
from ds.resources import outcome

TICK_BUDGET = 45    # seconds of teardown steps per tick, so that a tick is mostly over
                    # before the next (install.RATE_MINUTES); the function may run 300
PATIENCE = 60       # seconds one AWS call of a tick is retried while AWS fails it


def tick(aws, bucket, key, show=print, summary=None):
    """One look at the run and what follows from it. Returns True once the run is
    gone (finished, its schedule removed), False while there is more to do.

    `summary` (a dict) learns the job counts as recorded, and the machine-hours,
    estimated cost and finished_here=True if this tick finished the run."""
    summary = {} if summary is None else summary
    s3 = aws.client("s3")
    with explain("read s3://%s/%s" % (bucket, key)):
        info = state.load(s3, bucket, key)
    if info is None:
        return True  # nothing to watch: removed by an earlier tick's end, or never made
    try:
        return _tick(aws, s3, bucket, key, info, show, summary)
    except state.NotOurs:
        # Another tick ended this run meanwhile; a newer run of the app may own
        # every name now, so this tick stops touching anything.
        print("Another look has ended the run of spot fleet %s (its monitor file is gone "
              "or a newer run's); this one stops." % state.run_of(info))
        return True


def _tick(aws, s3, bucket, key, info, show, summary):
    s = Settings(info["MONITOR_SETTINGS"])
    summary.update(done=info.get("MONITOR_JOBS_DONE"), dead=info.get("MONITOR_JOBS_DEAD"))
    if info.get("MONITOR_FINISHED"):
        _end(aws, s3, bucket, key, info)  # an earlier last tick stopped midway
        return True
    fleet_id, started = info["MONITOR_FLEET_ID"], int(float(info["MONITOR_START_TIME"]))
    run = steps.Run(aws, s, fleet_id, started, s.jobs_per_machine, show)
    run.machines = set(info.get("MONITOR_MACHINES", []))
    if info.get("MONITOR_TEARDOWN") is None:
        if not _watch(run, info):
            info["MONITOR_MACHINES"] = sorted(run.machines)
            state.save(s3, bucket, key, info)
            return False
        info["MONITOR_MACHINES"] = sorted(run.machines)
        info["MONITOR_TEARDOWN"] = {"step": 0, "since": time.time()}
        info = state.save(s3, bucket, key, info)
        print("The queue is empty; cleaning up.")
    if not _advance(run, info, lambda: state.save(s3, bucket, key, info),
                    lambda: _still_ours(s3, bucket, key, info)):
        return False
    hours, usd = run.machine_cost()
    summary.update(done=info.get("MONITOR_JOBS_DONE"), dead=info.get("MONITOR_JOBS_DEAD"),
                   hours=hours, usd=usd, finished_here=True)
    steps.say_finished(s, info.get("MONITOR_JOBS_DONE"), info.get("MONITOR_JOBS_DEAD"),
                       hours, usd)
    # Outlives the monitor file deleted below: a laptop following the run reads it.
    outcome.save(s3, s, fleet_id, info.get("MONITOR_JOBS_DONE"),
                 info.get("MONITOR_JOBS_DEAD"), hours, usd)
    info["MONITOR_FINISHED"] = True
    state.save(s3, bucket, key, info)
    _end(aws, s3, bucket, key, info)
    return True


def _end(aws, s3, bucket, key, info):
    """The schedule, the function, and last the run's file in the bucket (the role
    stays for the app's next run).

    Only while the file is this run's: a new run of the app starts once the file
    is gone (startCluster waits for it), and its function and schedule have the
    same names, so a slower tick of the old run that finds the file gone or
    another run's removes nothing."""
    _still_ours(s3, bucket, key, info)
    function.remove(aws, Settings(info["MONITOR_SETTINGS"]).APP_NAME)
    _still_ours(s3, bucket, key, info)
    with explain("delete s3://%s/%s" % (bucket, key)):
        s3.delete_object(Bucket=bucket, Key=key)


def _watch(run, info):
    """monitor's poll; True once the queue is empty or gone (counts recorded)."""
    url = run.queue_url()
    if url is None:
        return True  # deleted by a teardown that did not record itself (the laptop's)
    try:
        if not run.poll(url, False):
            return False
        with explain("count the jobs of run %s" % run.s.APP_NAME):
            total, dead = run.total, run.dead_letters()
    except UserError:
        if run.queue_url() is not None:
            raise
        return True  # another monitor's teardown deleted the queue while we looked
    info.update(MONITOR_JOBS_DONE=max(total - dead, 0), MONITOR_JOBS_DEAD=dead)
    return True


def _still_ours(s3, bucket, key, info):
    with explain("read s3://%s/%s" % (bucket, key)):
        if not state.ours(s3, bucket, key, info):
            raise state.NotOurs()


def _advance(run, info, record, check):
    """Take the teardown steps in order, as far as they go without waiting and
    within TICK_BUDGET; record progress after each. True when all are done.
    `check` comes before each step: the steps remove resources by name, and
    once the run is another tick's to end, the names may be a newer run's."""
    teardown = info["MONITOR_TEARDOWN"]
    budget_end = time.monotonic() + TICK_BUDGET
    while teardown["step"] < len(steps.TEARDOWN):
        check()
        name, step = steps.TEARDOWN[teardown["step"]]
        with explain("tear down run %s (%s)" % (run.s.APP_NAME, name)):
            done = step(run, teardown)
        if not done:
            record()
            return False
        teardown["step"] += 1
        record()
        if time.monotonic() > budget_end:
            return False
    return True


def handler(event, context):
    """The Lambda function's entry point; the schedule's target passes bucket and key."""
    session = Session(Settings(AWS_REGION=os.environ.get("AWS_REGION"), AWS_PROFILE=""))
    session.patience.limit = PATIENCE  # an AWS storm ends this tick; the next one goes on
    gone = tick(session, event["bucket"], event["key"])
    return {"finished": gone}

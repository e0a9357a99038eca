"""The automatic monitor: one look at a run per tick, its state in the bucket.

A schedule (EventBridge) calls `handler` in a Lambda function every few
minutes; `python run.py local` and `python run.py monitor` on an
auto-monitored run call `tick` on their own timer. Every tick is the same:
read the run's monitor file from s3://AWS_BUCKET/monitors/APP_NAME.json,
take one look at the run (progress, scale-in, alarms of gone machines), or,
once the queue is empty, take the next teardown steps that need no waiting
(monitor.TEARDOWN), record where it got to, and return. The last tick
removes the schedule and the function itself (autodeploy.remove).

Imports only the standard library, boto3 and botocore (all the Lambda
runtime has), through the modules it uses; tests/test_automonitor.py checks.
"""
import json
import os
import time

import botocore.exceptions

from .aws import Session, explain
from .errors import UserError
from .settings import KNOBS, Settings
from . import autodeploy, cost, monitor, queue, report

KEY_PREFIX = "monitors/"
TICK_BUDGET = 120   # seconds of teardown steps per tick; the function may run 300
PATIENCE = 60       # seconds one AWS call of a tick is retried while AWS fails it


def key_for(app_name):
    return "%s%s.json" % (KEY_PREFIX, app_name)


def run_state(settings, info):
    """What the bucket's copy of the monitor file holds: the laptop's file plus
    the settings a tick needs, since no config.py travels to the function."""
    knobs = {k: settings[k] for k in KNOBS if k in settings}
    knobs["AWS_PROFILE"] = ""  # the function runs with its own role
    return dict(info, MONITOR_SETTINGS=knobs, MONITOR_TEARDOWN=None)


def upload(s3, bucket, key, info):
    with explain("write the run's monitor file to s3://%s/%s" % (bucket, key)):
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(info, indent=2).encode(),
                      ContentType="application/json")


def load(s3, bucket, key):
    """The stored monitor file, or None if it is gone."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except botocore.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    return json.loads(body)


def _progress(info):
    """How far a run has got, to compare two copies of its monitor file."""
    state = info.get("MONITOR_TEARDOWN") or {}
    return (bool(info.get("MONITOR_FINISHED")), bool(info.get("MONITOR_TEARDOWN")),
            state.get("step", 0), len(state.get("export", {}).get("done", [])))


def save(s3, bucket, key, info):
    """Write `info` unless another tick (the laptop's, say) has got further meanwhile:
    a slower tick never winds the run back."""
    stored = load(s3, bucket, key)
    if stored is None and info.get("MONITOR_TEARDOWN"):
        return info  # the last tick has removed the file: the run is gone
    if stored is not None and _progress(stored) > _progress(info):
        return stored
    upload(s3, bucket, key, info)
    return info


def tick(aws, bucket, key, show=print, summary=None):
    """One look at the run and what follows from it. Returns True once the run is
    gone (finished, its schedule removed), False while there is more to do.

    `summary` (a dict) learns the job counts as recorded, and the machine-hours
    and spot price if this tick finished the run."""
    summary = {} if summary is None else summary
    s3 = aws.client("s3")
    with explain("read s3://%s/%s" % (bucket, key)):
        info = load(s3, bucket, key)
    if info is None:
        return True  # nothing to watch: removed by an earlier tick's end, or never made
    s = Settings(info["MONITOR_SETTINGS"])
    summary.update(done=info.get("MONITOR_JOBS_DONE"), dead=info.get("MONITOR_JOBS_DEAD"))
    if info.get("MONITOR_FINISHED"):
        _end(aws, s3, bucket, key, s.APP_NAME)  # an earlier last tick stopped midway
        return True
    fleet_id, started = info["MONITOR_FLEET_ID"], int(float(info["MONITOR_START_TIME"]))
    run = monitor.Run(aws, s, fleet_id, started, s.jobs_per_machine, show)
    run.scalein.idle_before = set(info.get("MONITOR_IDLE", []))
    run.machines = set(info.get("MONITOR_MACHINES", []))
    if info.get("MONITOR_TEARDOWN") is None:
        if not _watch(run, info):
            info["MONITOR_IDLE"] = sorted(run.scalein.idle_before)
            info["MONITOR_MACHINES"] = sorted(run.machines)
            save(s3, bucket, key, info)
            return False
        info["MONITOR_MACHINES"] = sorted(run.machines)
        info["MONITOR_TEARDOWN"] = {"step": 0, "since": time.time()}
        info = save(s3, bucket, key, info)
        print("The queue is empty; cleaning up.")
    if not _advance(run, info, lambda: save(s3, bucket, key, info)):
        return False
    hours = run.machine_hours()
    spot = cost.lowest_spot_price(run.ec2, s.MACHINE_TYPE)
    summary.update(done=info.get("MONITOR_JOBS_DONE"), dead=info.get("MONITOR_JOBS_DEAD"),
                   hours=hours, spot=spot)
    print("Run %s finished: %s, %.2f machine-hours." % (
        s.APP_NAME, monitor._counts(info.get("MONITOR_JOBS_DONE"),
                                    info.get("MONITOR_JOBS_DEAD")), hours))
    print(cost.estimate_line(hours, spot, s.MACHINE_PRICE))
    info["MONITOR_FINISHED"] = True
    save(s3, bucket, key, info)
    _end(aws, s3, bucket, key, s.APP_NAME)
    return True


def _end(aws, s3, bucket, key, app_name):
    """The schedule, the function, its role, and last the run's file in the bucket."""
    autodeploy.remove(aws, app_name)
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
            total, dead = queue.submitted(run.sqs, url), run.dead_letters()
    except UserError:
        if run.queue_url() is not None:
            raise
        return True  # another monitor's teardown deleted the queue while we looked
    info.update(MONITOR_JOBS_DONE=max(total - dead, 0), MONITOR_JOBS_DEAD=dead)
    return True


def _advance(run, info, record):
    """Take the teardown steps in order, as far as they go without waiting and
    within TICK_BUDGET; record progress after each. True when all are done."""
    state = info["MONITOR_TEARDOWN"]
    budget_end = time.monotonic() + TICK_BUDGET
    while state["step"] < len(monitor.TEARDOWN):
        name, step = monitor.TEARDOWN[state["step"]]
        with explain("tear down run %s (%s)" % (run.s.APP_NAME, name)):
            done = step(run, state)
        if not done:
            record()
            return False
        state["step"] += 1
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


def start(aws, settings, monitor_path):
    """startCluster with AUTO_MONITOR: the monitor file to the bucket, then the
    function and its schedule; the laptop's file learns where the state lives."""
    info = monitor.read_json(monitor_path, "monitor file")
    key = key_for(settings.APP_NAME)
    upload(aws.client("s3"), settings.AWS_BUCKET, key, run_state(settings, info))
    size = autodeploy.install(aws, settings, settings.AWS_BUCKET, key)
    info["MONITOR_AUTO_KEY"] = key
    monitor.write_json(monitor_path, info)
    print("The run monitors itself: schedule %s calls function %s (%s, package %.1f kB) "
          "every %d minutes, and it removes everything once the queue is empty."
          % (autodeploy.rule_name(settings.APP_NAME), autodeploy.function_name(settings.APP_NAME),
             autodeploy.RUNTIME, size / 1024.0, autodeploy.RATE_MINUTES))


def follow(aws, settings, path, poll_seconds, live=False, check=lambda: None, report_dir="."):
    """`monitor` on an auto-monitored run: the same ticks on this computer's timer,
    showing progress, until the run is gone. Either may stop at any time.
    Returns what monitor.monitor returns."""
    info = monitor.read_json(path, "monitor file")
    bucket, key = info["MONITOR_BUCKET_NAME"], info["MONITOR_AUTO_KEY"]
    with explain("read s3://%s/%s" % (bucket, key)):
        stored = load(aws.client("s3"), bucket, key)
    app = info["MONITOR_APP_NAME"]
    if stored is None or stored.get("MONITOR_FINISHED"):
        tick(aws, bucket, key)  # removes what a stopped last tick left
        print("Nothing is left of run %s: it was already cleaned up." % app)
        monitor.mark_finished(path)
        return None
    print("Run %s monitors itself (s3://%s/%s); showing its progress until it is "
          "gone, every %d s (Ctrl-C stops watching, not the run)." % (app, bucket, key,
                                                                      poll_seconds))
    aws.wait_forever()  # as monitor: AWS storms are waited out, not fatal
    status, summary = monitor.StatusLine(live), {}
    while not tick(aws, bucket, key, show=status, summary=summary):
        check()
        time.sleep(poll_seconds)  # this computer's tick interval (MONITOR_TIME)
    status.end()
    monitor.mark_finished(path)
    done, dead = summary.get("done"), summary.get("dead")
    page = None
    try:  # the function has no report template engine: the report is made here
        hours, spot = summary.get("hours"), summary.get("spot")
        s = monitor.run_settings(settings, path)[0]
        page = report.write(aws, s, report_dir, done or 0, dead or 0, hours,
                            None if None in (hours, spot) else hours * spot)
        print("Run report: %s (a copy is in s3://%s/%s)." % (page, s.AWS_BUCKET,
                                                             report.bucket_key(s)))
    except (UserError, OSError) as e:
        print("Could not write the run report (%s); `python run.py report` writes it later."
              % e)
    return {"done": done, "failed": dead, "report": page}

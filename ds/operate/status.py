"""`python run.py status`: one screen on a run in progress. Read-only."""
import datetime
import json
import time

from ds.core import runfile
from ds.core.aws import explain
from ds.operate import cost, joblog
from ds.resources import cluster, fleet, queue, records

RATE_WINDOW = 10 * 60     # seconds of finished tries the rate is measured over
BAR = 30                  # characters of the progress bar
EVENTS_SHOWN = 3          # latest fleet error events shown


def jobs(aws, settings):
    sqs = aws.client("sqs")
    url = queue.find_url(sqs, settings.SQS_QUEUE_NAME)
    if url is None:
        return None
    visible, in_flight = queue.counts(sqs, url)
    dead = queue.dead_letters(sqs, settings)
    submitted = queue.submitted(sqs, url)
    # Every submitted message is queued, in flight, dead or deleted; workers delete
    # a message only after its outputs are uploaded, or unrun as the second copy
    # of a job done once (a duplicate record each: that job counts once).
    done, duplicates = None, 0
    run_id = records.run_id(sqs, url)
    if run_id:
        s3 = aws.client("s3")
        done = len(records.done_keys(s3, settings.AWS_BUCKET, settings.APP_NAME, run_id))
        duplicates = records.duplicates(s3, settings.AWS_BUCKET, settings.APP_NAME, run_id)
    total = max(submitted - duplicates, 0)
    deleted = max(total - visible - in_flight - dead, 0)
    source = "done records"
    if done is None or deleted > done:   # no records (an older queue, an image's own worker)
        done, source = deleted, "queue counts"
    return {"total": total, "done": done, "done_from": source, "queued": visible,
            "running": in_flight, "failed": dead, "duplicates": duplicates}


def rate(aws, settings, started, now):
    """Jobs finished per minute over the last RATE_WINDOW seconds (from the job logs)."""
    since = now - RATE_WINDOW
    if started:
        since = max(since, started)
    tries = joblog.read(aws.client("logs"), settings.LOG_GROUP_NAME, since_ms=since * 1000)
    finished = sum(1 for log in tries.values() for t in log.tries
                   if t.outcome in joblog.DONE_OUTCOMES and t.end_ms and t.end_ms >= since * 1000)
    minutes = max(now - since, 1) / 60.0
    return finished / minutes, minutes


def machines(aws, fleet_id, started):
    ec2 = aws.client("ec2")
    rows = cost.machines(ec2, fleet_id)
    groups = {}
    for r in rows:
        key = "%s %s %s" % (r["type"], r["zone"], r["state"])
        groups[key] = groups.get(key, 0) + 1
    described = fleet.describe(ec2, fleet_id) if fleet_id else None
    events = []  # a fleet that is gone has no history to read
    if described:
        since = datetime.datetime.fromtimestamp(started or 0, datetime.timezone.utc)
        events = fleet.error_events(ec2, fleet_id, since)
    hours, usd, unpriced = cost.estimate(ec2, rows)
    return {
        "fleet_id": fleet_id,
        "fleet_state": (described or {}).get("SpotFleetRequestState", "gone" if fleet_id else None),
        "fleet_activity": (described or {}).get("ActivityStatus"),
        "fleet_errors": None if events is None else
        [fleet.describe_event(e) for e in events[-EVENTS_SHOWN:]],
        "machines": groups,
        "machine_hours": round(hours, 3),
        "cost_usd_estimate": round(usd, 4),
        "machines_without_price": unpriced,
    }


def workers(aws, settings):
    service = cluster.describe_service(aws.client("ecs"), settings)
    if not service:
        return None
    return {"running": service.get("runningCount", 0), "pending": service.get("pendingCount", 0),
            "desired": service.get("desiredCount", 0)}


def gather(aws, settings, fleet_id=None, started=None):
    now = time.time()
    with explain("read the state of run %s" % settings.APP_NAME):
        state = {"app": settings.APP_NAME, "queue": settings.SQS_QUEUE_NAME,
                 "time": datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(),
                 "jobs": jobs(aws, settings), "workers": workers(aws, settings)}
        per_min, minutes = rate(aws, settings, started, now)
        state["rate_per_minute"] = round(per_min, 3)
        state["rate_window_minutes"] = round(minutes, 2)
        state["estimated_end"] = None
        j = state["jobs"]
        state["jobs_left"] = left = max(j["total"] - j["done"] - j["failed"], 0) if j else 0
        if left and per_min > 0:
            end = now + left / per_min * 60
            state["estimated_end"] = datetime.datetime.fromtimestamp(
                end, datetime.timezone.utc).isoformat()
        state.update(machines(aws, fleet_id, started))
    return state


def bar(done, total):
    filled = int(round(BAR * done / total)) if total else 0
    return "[%s%s]" % ("#" * filled, "-" * (BAR - filled))


def render(st):
    out = ["Run %s (queue %s) at %s" % (st["app"], st["queue"], st["time"][:19] + "Z")]
    j = st["jobs"]
    if j is None:
        out.append("Jobs      queue %s does not exist: not set up yet, or monitor has "
                   "cleaned up." % st["queue"])
    else:
        pct = 100.0 * j["done"] / j["total"] if j["total"] else 0.0
        out.append("Jobs      %s %d/%d done (%.0f%%)" % (bar(j["done"], j["total"]), j["done"],
                                                        j["total"], pct))
        out.append("          %d queued, %d running, %d failed (dead-letter queue%s)" % (
            j["queued"], j["running"], j["failed"],
            "; see python run.py failures" if j["failed"] else ""))
    end = st["estimated_end"]
    window = st["rate_window_minutes"]
    out.append("Rate      %.1f jobs/min over the last %s; %s" % (
        st["rate_per_minute"], "%.0f min" % window if window >= 1 else "%.0f s" % (window * 60),
        "estimated end %s UTC" % end[11:16] if end else
        "no jobs left to run" if not st["jobs_left"] else "no end estimate yet"))
    if st["fleet_id"]:
        out.append("Fleet     %s: %s%s" % (st["fleet_id"], st["fleet_state"],
                                         " (%s)" % st["fleet_activity"]
                                         if st["fleet_activity"] else ""))
        errors = st["fleet_errors"]
        if errors is None:
            out.append("          error events could not be read (see the EC2 console, "
                       "Spot Requests)")
        for e in errors or []:
            out.append("          " + e)
    else:
        out.append("Fleet     no monitor file, so no fleet to show (pass the file "
                   "startCluster wrote)")
    for key, n in sorted(st["machines"].items()):
        out.append("Machines  %d %s" % (n, key))
    w = st["workers"]
    out.append("Workers   %s" % ("ECS service gone" if w is None else
                                 "%d running, %d pending (%d wanted)" % (
                                     w["running"], w["pending"], w["desired"])))
    out.append("Cost      %.2f machine-hours, about $%.2f (estimate: latest spot price of "
               "each machine's type and zone%s)" % (
                   st["machine_hours"], st["cost_usd_estimate"],
                   "; %d machine%s without a price" % (
                       st["machines_without_price"],
                       "" if st["machines_without_price"] == 1 else "s")
                   if st["machines_without_price"] else ""))
    return "\n".join(out)


def run(aws, settings, monitor_path=None, as_json=False):
    settings, fleet_id, started = runfile.for_run(settings, monitor_path)
    state = gather(aws, settings, fleet_id, started)
    print(json.dumps(state, indent=2) if as_json else render(state))
    return state

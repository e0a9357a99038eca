"""The run report: one self-contained HTML file (inline SVG, no scripts, no network).

Its source of truth is the job logs' START and END lines (ds/operate/joblog.py) for
the tries, and the queues (or done records) for how many jobs are done.
"""
import datetime
import os

from ds.core import runfile
from ds.core.aws import explain
from ds.core.errors import UserError
from ds.operate import cost, failures, joblog, status
from ds.resources import outcome, queue

TEMPLATE = "report.html"
PLOT_WIDTH = 960          # px of the timeline's time axis
LABEL_WIDTH = 170         # px for the worker names
ROW = 16                  # px per worker row
BINS = 20                 # histogram bars
COLOURS = {"SUCCESS": "#2e9e44", "SKIPPED-already-done": "#8fcf9b", "FAILED": "#d62728",
           joblog.CUT_OFF: "#ff8c00", "INTERRUPTED": "#9467bd", None: "#7f7f7f"}
LEGEND = [("SUCCESS", "done"), ("SKIPPED-already-done", "skipped, already done"),
          ("FAILED", "failed"), (joblog.CUT_OFF, "cut off (killed, no END line)"),
          ("INTERRUPTED", "interrupted (worker stopped)"), (None, "no END yet")]


def _seconds_text(s):
    return "%.1f s" % s if s < 120 else "%.1f min" % (s / 60.0)


def timeline(tries):
    """Rows (one per worker) of bars (one per try), positioned in px."""
    all_tries = [t for log in tries.values() for t in log.tries]
    if not all_tries:
        return {"rows": [], "width": LABEL_WIDTH + PLOT_WIDTH, "height": ROW, "span": 0}
    ends = {}
    for log in tries.values():   # a try cut off ended before the job's next try began
        for t, nxt in zip(log.tries, log.tries[1:] + [None]):
            end = t.end_ms
            if end is None:
                end = nxt.start_ms if nxt else t.start_ms
            ends[id(t)] = max(end, t.start_ms)
    t0 = min(t.start_ms for t in all_tries)
    t1 = max(max(ends.values()), t0 + 1)
    scale = PLOT_WIDTH / float(t1 - t0)
    workers = sorted({t.worker for t in all_tries})
    rows = []
    for i, worker in enumerate(workers):
        bars = []
        for t in sorted((t for t in all_tries if t.worker == worker), key=lambda t: t.start_ms):
            seconds = (ends[id(t)] - t.start_ms) / 1000.0
            bars.append({
                "x": round(LABEL_WIDTH + (t.start_ms - t0) * scale, 1),
                "y": i * ROW + 2, "h": ROW - 4,
                "w": round(max((ends[id(t)] - t.start_ms) * scale, 2), 1),
                "colour": COLOURS.get(t.outcome, COLOURS[None]),
                "outcome": t.outcome or "no END",
                "title": "%s, try %s: %s, %s, exit code %s" % (
                    t.job, t.attempt or "?", t.outcome or "no END line",
                    _seconds_text(t.seconds() if t.seconds() is not None else seconds),
                    "none" if t.exit_code is None else t.exit_code)})
        rows.append({"worker": worker, "y": i * ROW + ROW - 4, "bars": bars})
    return {"rows": rows, "width": LABEL_WIDTH + PLOT_WIDTH, "height": len(rows) * ROW + 20,
            "span": (t1 - t0) / 1000.0, "axis_y": len(rows) * ROW + 14,
            "label_x": LABEL_WIDTH, "end_x": LABEL_WIDTH + PLOT_WIDTH}


def histogram(durations):
    """Bars of a histogram of job durations (seconds), in px."""
    if not durations:
        return None
    lo, hi = min(durations), max(durations)
    width = (hi - lo) / BINS or 1.0
    counts = [0] * BINS
    for d in durations:
        counts[min(int((d - lo) / width), BINS - 1)] += 1
    top = max(counts)
    bar_w, height = 30, 120
    bars = [{"x": 40 + i * bar_w, "w": bar_w - 2, "h": round(height * c / top, 1),
             "y": round(20 + height - height * c / top, 1), "count": c,
             "title": "%d job%s from %s to %s" % (c, "" if c == 1 else "s",
                                                  _seconds_text(lo + i * width),
                                                  _seconds_text(lo + (i + 1) * width))}
            for i, c in enumerate(counts)]
    return {"bars": bars, "width": 40 + BINS * bar_w + 10, "height": height + 40,
            "low": _seconds_text(lo), "high": _seconds_text(hi), "axis_y": height + 35,
            "end_x": 40 + BINS * bar_w}


def build(tries, failed_jobs, settings, done, failed, machine_hours=None, usd=None):
    """Everything the template shows, from the job logs and the durable counts."""
    all_tries = [t for log in tries.values() for t in log.tries]
    durations = [t.seconds() for log in tries.values() for t in log.tries[-1:]
                 if t.outcome in joblog.DONE_OUTCOMES and t.seconds() is not None]
    retried = sorted(({"job": log.name, "tries": log.count(),
                       "outcomes": ", ".join(t.outcome or "no END" for t in log.tries)}
                      for log in tries.values() if log.count() > 1), key=lambda r: r["job"])
    line = timeline(tries)
    return {
        "app": settings.APP_NAME,
        "written": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "summary": {"done": "unknown" if done is None else done,
                    "failed": "unknown" if failed is None else failed,
                    "retried": len(retried), "tries": sum(l.count() for l in tries.values()),
                    "tries_logged": len(all_tries),
                    "wall": _seconds_text(line["span"]),
                    "machine_hours": "unknown" if machine_hours is None
                    else "%.2f" % machine_hours,
                    "cost": "unknown" if usd is None else "$%.2f" % usd},
        "legend": [{"colour": COLOURS[k], "label": label} for k, label in LEGEND],
        "timeline": line,
        "histogram": histogram(durations),
        "retried": retried,
        "failures": failed_jobs,
        "config": sorted((k, repr(v)) for k, v in settings.items()),
    }


def render(data):
    import jinja2
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(os.path.join(os.path.dirname(__file__), "templates")),
        autoescape=True, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(**data)


def file_name(settings):
    return "%s-report.html" % settings.APP_NAME


def bucket_key(settings):
    return "reports/%s/%s" % (settings.APP_NAME, file_name(settings))


def write(aws, settings, folder, done, failed, machine_hours=None, usd=None, started=None):
    """Write the report of the run `started` (seconds) into `folder` and to the
    bucket, say where; return the local path."""
    with explain("read the job logs of run %s" % settings.APP_NAME):
        tries = joblog.read(aws.client("logs"), settings.LOG_GROUP_NAME,
                            joblog.run_start_ms(started))
    failed_jobs = failures.collect(aws, settings, started)
    html = render(build(tries, failed_jobs, settings, done, failed, machine_hours, usd))
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, file_name(settings))
    with open(path, "w", encoding="utf-8") as f:
        f.write(html)
    with explain("upload the run report to s3://%s/%s" % (settings.AWS_BUCKET,
                                                          bucket_key(settings))):
        aws.client("s3").put_object(Bucket=settings.AWS_BUCKET, Key=bucket_key(settings),
                                    Body=html.encode("utf-8"), ContentType="text/html")
    print("Run report: %s (a copy is in s3://%s/%s)." % (path, settings.AWS_BUCKET,
                                                         bucket_key(settings)))
    return path


def after_run(aws, settings, folder, done, failed, machine_hours, usd, started):
    """The report a finished run ends with; the run stays finished if it cannot be written."""
    try:
        return write(aws, settings, folder, done, failed, machine_hours, usd, started)
    except (UserError, OSError) as e:
        print("Could not write the run report (%s); `python run.py report` writes it later."
              % e)
        return None


def on_demand(aws, settings, monitor_path):
    """`python run.py report`: the report with the counts the run has now."""
    settings, fleet_id, started = runfile.for_run(settings, monitor_path)
    with explain("read the state of run %s" % settings.APP_NAME):
        jobs = status.jobs(aws, settings)  # None once the queue is gone; its counts with it
        done = jobs["done"] if jobs else None
        dead = jobs["failed"] if jobs else queue.dead_letters(aws.client("sqs"), settings)
        record = outcome.load(aws.client("s3"), settings, fleet_id)
        if jobs is None and record:  # cleaned up: the counts its end recorded
            done, dead = record["done"], record["dead"]
        if record:   # finished: what its monitor estimated at the end
            hours, usd = record["machine_hours"], outcome.usd(record)
        else:
            ec2 = aws.client("ec2")
            rows = cost.machines(ec2, fleet_id)
            hours, usd = cost.of_rows(ec2, rows) if rows else (None, None)
    write(aws, settings, ".", done, dead, hours, usd, started)

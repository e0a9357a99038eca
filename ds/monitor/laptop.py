"""`python run.py monitor`: watch a run from this computer until it is gone.

A run that monitors itself (AUTO_MONITOR) is followed by taking the same
ticks its Lambda function takes; any other run by the loop here around the
same steps (monitor/steps.py). Both end with the run report, made here
because the function carries no template engine.
"""
import sys
import time

from ds.core import runfile
from ds.core.aws import explain
from ds.monitor import steps
from ds.monitor.auto import state, tick
from ds.operate import report
from ds.resources import logs, outcome


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
    if runfile.auto_key(path):  # AUTO_MONITOR: the state lives in the bucket
        return follow(aws, settings, path, poll_seconds or settings.MONITOR_TIME, live, check,
                      report_dir)
    s, fleet_id, started, per_machine = runfile.run_settings(settings, path)
    status = StatusLine(live)
    # A monitor never abandons a run over throttling or 5xx errors: it waits
    # them out (one status line says so); only errors no retry heals end it.
    aws.wait_forever()
    run = steps.Run(aws, s, fleet_id, started, per_machine, status)
    run.cheapest = cheapest
    done_before = runfile.finished(path)
    if done_before or (done_before is None and not run.anything_left()):
        print("Nothing is left of run %s: it was already cleaned up." % s.APP_NAME)
        recorded(aws, s, fleet_id)
        return None
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
                runfile.record_counts(path, done, dead)
            break
        time.sleep(poll_seconds)  # the configured poll interval (MONITOR_TIME)
    status.end()
    if done is None:
        done, dead = runfile.recorded_counts(path)
        print("The queue is already gone (an earlier monitor removed it); finishing the "
              "clean-up.")
    else:
        print("The queue is empty; cleaning up.")
    run.teardown()
    logs.export(run.logs, s.LOG_GROUP_NAME, s.AWS_BUCKET, s.APP_NAME, started * 1000)
    hours, usd = run.machine_cost()
    page = report.after_run(aws, s, report_dir, done, dead, hours, usd, started)
    steps.say_finished(s, done, dead, hours, usd)
    outcome.save(run.s3, s, fleet_id, done, dead, hours, usd)
    runfile.mark_finished(path)
    return {"done": done, "failed": dead, "report": page}


def follow(aws, settings, path, poll_seconds, live=False, check=lambda: None, report_dir="."):
    """`monitor` on an auto-monitored run: the same ticks on this computer's timer,
    showing progress, until the run is gone. Either may stop at any time.
    Returns what monitor returns."""
    info = runfile.read(path)
    bucket, key = info["MONITOR_BUCKET_NAME"], info["MONITOR_AUTO_KEY"]
    with explain("read s3://%s/%s" % (bucket, key)):
        stored = state.load(aws.client("s3"), bucket, key)
    app = info["MONITOR_APP_NAME"]
    if stored is None or stored.get("MONITOR_FINISHED"):
        tick.tick(aws, bucket, key)  # removes what a stopped last tick left
        print("Nothing is left of run %s: it was already cleaned up." % app)
        recorded(aws, *runfile.run_settings(settings, path)[:2])
        runfile.mark_finished(path)
        return None
    print("Run %s monitors itself (s3://%s/%s); showing its progress until it is "
          "gone, every %d s (Ctrl-C stops watching, not the run)." % (app, bucket, key,
                                                                      poll_seconds))
    aws.wait_forever()  # as monitor: AWS storms are waited out, not fatal
    status, summary = StatusLine(live), {}
    while not tick.tick(aws, bucket, key, show=status, summary=summary):
        check()
        time.sleep(poll_seconds)  # this computer's tick interval (MONITOR_TIME)
    status.end()
    runfile.mark_finished(path)
    s, fleet_id, started = runfile.run_settings(settings, path)[:3]
    if not summary.get("finished_here"):  # the function's last tick came first
        summary = recorded(aws, s, fleet_id) or _counts_seen(s, summary)
    page = report.after_run(aws, s, report_dir, summary.get("done"), summary.get("dead"),
                            summary.get("hours"), summary.get("usd"), started)
    done, dead = summary.get("done"), summary.get("dead")
    return {"done": done, "failed": dead, "report": page}


def recorded(aws, s, fleet_id):
    """The summary a run's last tick recorded (the function's, say), printed here as
    it was printed there; None if this run recorded none."""
    with explain("read the outcome of run %s" % s.APP_NAME):
        record = outcome.load(aws.client("s3"), s, fleet_id)
    if record is None:
        return None
    summary = {"done": record["done"], "dead": record["dead"],
               "hours": record["machine_hours"], "usd": outcome.usd(record)}
    steps.say_finished(s, summary["done"], summary["dead"], summary["hours"], summary["usd"])
    return summary


def _counts_seen(s, summary):
    """A run that ended without an outcome record (its function predates them):
    the counts the ticks read, said as such."""
    if summary.get("done") is None:
        print("Run %s finished; its automatic monitor recorded no job counts "
              "(`python run.py failures` lists any failed jobs)." % s.APP_NAME)
    else:
        print("Run %s finished: %d jobs done, %d in the dead-letter queue (its automatic "
              "monitor ended it; machine-hours not recorded)." % (
                  s.APP_NAME, summary["done"], int(summary.get("dead") or 0)))
    return summary

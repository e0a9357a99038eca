"""`python run.py failures`: every job in the dead-letter queue, why it failed, and
its last log lines. Read-only: the jobs stay in the dead-letter queue."""
import json

from ds.core import runfile
from ds.core.aws import explain
from ds.operate import joblog
from ds.resources import deadletter, queue

TAIL = 8    # log lines shown per job

# (test on the job's last try and log lines, hint). First match wins.
HINTS = [
    (lambda t, text: t is not None and t.exit_code == 137,
     "exit 137: the tool was killed, probably for lack of memory; raise MEMORY in config.py "
     "(and pick a MACHINE_TYPE with that much memory per task)"),
    (lambda t, text: "matched no object" in text,
     "an input is missing: check the job's \"input\" paths and that the data is in the bucket"),
    (lambda t, text: "unknown placeholder" in text,
     "COMMAND names a placeholder the job does not have: add that key to the job file or "
     "fix COMMAND in config.py"),
    (lambda t, text: t is not None and t.exit_code == 127,
     "exit 127: command not found; check COMMAND in config.py and that the tool is in the image"),
    (lambda t, text: t is not None and t.outcome in (joblog.CUT_OFF, None),
     "a try was cut off (worker stopped, machine lost or container killed) before it could "
     "log its end; look at the container's log stream (APP_NAME/APP_NAME/<task id> in "
     "LOG_GROUP_NAME)"),
]


def hint(last_try, lines):
    text = "\n".join(lines)
    for test, words in HINTS:
        if test(last_try, text):
            return words
    return None


def collect(aws, settings, started=None):
    """One dict per job in the dead-letter queue, with its tries since the run
    `started` (seconds; None: all the log group holds); the queue is left as it was."""
    sqs = aws.client("sqs")
    name = settings.dead_letter_queue_name
    with explain("read dead-letter queue %s" % name):
        url = queue.find_url(sqs, name)
        if url is None:
            return []
        letters = deadletter.peek(sqs, url)
        try:
            logs = joblog.read(aws.client("logs"), settings.LOG_GROUP_NAME,
                               joblog.run_start_ms(started),
                               streams={l.name for l in letters}) if letters else {}
        finally:
            deadletter.release(sqs, url, letters)
    found = []
    for letter in sorted(deadletter.unique(letters), key=lambda l: l.name):
        log = logs.get(letter.name)
        last = log.last() if log else None
        tail = log.tail(TAIL) if log else []
        found.append({
            "job": letter.name,
            "tries": log.count() if log else None,
            "outcome": last.outcome if last else None,
            "exit_code": last.exit_code if last else None,
            "hint": hint(last, log.lines if log else []),
            "log_tail": tail,
            "message_id": letter.message["MessageId"],
        })
    return found


def show(found, settings, as_json=False):
    if as_json:
        print(json.dumps({"dead_letter_queue": settings.dead_letter_queue_name,
                          "jobs": found}, indent=2))
        return
    if not found:
        print("No failed jobs: dead-letter queue %s is empty or gone."
              % settings.dead_letter_queue_name)
        return
    print("%d job%s in dead-letter queue %s (left there; `python run.py redrive` puts them "
          "back):" % (len(found), "" if len(found) == 1 else "s", settings.dead_letter_queue_name))
    for f in found:
        print()
        print("Job %s: %s tr%s, last outcome %s, exit code %s" % (
            f["job"], "?" if f["tries"] is None else f["tries"],
            "y" if f["tries"] == 1 else "ies", f["outcome"] or "unknown",
            "none" if f["exit_code"] is None else f["exit_code"]))
        if f["hint"]:
            print("  hint: " + f["hint"])
        if f["log_tail"]:
            for line in f["log_tail"]:
                print("  | " + line)
        else:
            print("  (no log lines in log group %s)" % settings.LOG_GROUP_NAME)


def run(aws, settings, as_json=False):
    settings, _fleet_id, started = runfile.for_run(settings)
    show(collect(aws, settings, started), settings, as_json)

"""The job logs' START and END lines: the one parser every reader uses.

The worker writes one CloudWatch stream per job (named for the job) and, per
try, a START line (attempt = SQS's receive count, the worker) and an END line
(outcome, exit code, durations). The local summary, `status`, `failures` and
the run report all read the tries from here.

The worker prints the same lines to its stdout, which ECS's awslogs driver
copies into the same log group, one stream per container
(APP_NAME/APP_NAME/<task id>). Job names never hold a "/" and those streams
always do, so the copies are skipped here: each try is counted once.

Whether a job is *done* never comes from here: a try killed outright leaves
no END line, and a lost line must not turn a done job into a failed one.
Done comes from durable facts (the queues, the done records).
"""
import collections
import re

START = re.compile(r"\bSTART job (\S+) attempt (\S+)(?: message (\S+))?(?: worker (\S+))?")
END = re.compile(r"\bEND job (\S+) outcome (\S+) exit_code (\S+) attempt (\S+)"
                 r"(?: duration ([\d.]+)s)?(?: tool ([\d.]+)s)?")
CUT_OFF = "CUT-OFF"            # a try whose START was followed by another try's START
DONE_OUTCOMES = ("SUCCESS", "SKIPPED-already-done")
CLOCK_SKEW = 60     # seconds a worker's clock may run behind the computer that started the run
# What one END line says; duration and tool (seconds) are None in lines that lack them.
Ended = collections.namedtuple("Ended", "job outcome exit_code attempt duration tool")


def _int(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


class Try:
    """One try of a job: from its START line to its END line (if one arrived)."""

    def __init__(self, job, attempt, worker, start_ms):
        self.job, self.attempt, self.worker, self.start_ms = job, attempt, worker, start_ms
        self.end_ms = None
        self.outcome = None        # None: no END yet (running, or cut off at the very end)
        self.exit_code = None
        self.duration = None       # seconds, receive to settle, as the worker measured

    def seconds(self):
        if self.duration is not None:
            return self.duration
        if self.end_ms is not None:
            return max(self.end_ms - self.start_ms, 0) / 1000.0
        return None

    def as_dict(self):
        return {"job": self.job, "attempt": self.attempt, "worker": self.worker,
                "start_ms": self.start_ms, "end_ms": self.end_ms, "outcome": self.outcome,
                "exit_code": self.exit_code, "seconds": self.seconds()}


class JobLog:
    """Everything one job's stream says: its tries and its lines."""

    def __init__(self, name):
        self.name = name
        self.tries = []
        self.lines = []

    def count(self):
        """Tries as SQS counted them: a START's attempt is the receive count, so a
        try whose START never arrived still counts. A redriven job starts again at
        attempt 1, which begins a new round."""
        total, best, previous = 0, 0, 0
        for t in self.tries:
            n = t.attempt or previous + 1
            if n <= previous:          # a new round (redrive, or a fresh submission)
                total += best
                best = 0
            best = max(best, n)
            previous = n
        return total + best

    def last(self):
        return self.tries[-1] if self.tries else None

    def tail(self, n):
        return self.lines[-n:]


def _on_start(job, match, when):
    attempt = _int(match.group(2))
    if job.tries and job.tries[-1].outcome is None:
        job.tries[-1].outcome = CUT_OFF   # another try began before this one ended
    job.tries.append(Try(job.name, attempt, match.group(4) or "unknown", when))


def ended(line):
    """The END line's fields (Ended), or None if `line` holds no END line."""
    m = END.search(line)
    if not m:
        return None
    seconds = [float(g) if g else None for g in m.group(5, 6)]
    return Ended(m.group(1), m.group(2), _int(m.group(3)), _int(m.group(4)), *seconds)


def _on_end(job, end, when):
    t = job.tries[-1] if job.tries else None
    if t is None or t.outcome is not None or (end.attempt and t.attempt
                                              and end.attempt != t.attempt):
        t = Try(job.name, end.attempt, "unknown", when)  # its START never arrived
        job.tries.append(t)
    t.end_ms = when
    t.outcome = end.outcome
    t.exit_code = end.exit_code
    if end.duration is not None:
        t.duration = end.duration
        t.start_ms = min(t.start_ms, when - int(t.duration * 1000))


def container_stream(name):
    """Whether log stream `name` is a container's (the awslogs copy), not a job's."""
    return "/" in name


def parse(events):
    """{job name: JobLog} from CloudWatch events (logStreamName, timestamp, message)."""
    jobs = {}
    ordered = sorted(events, key=lambda e: e["timestamp"])  # stable: keeps same-ms order
    for event in ordered:
        if container_stream(event["logStreamName"]):
            continue
        job = jobs.get(event["logStreamName"])
        if job is None:
            job = jobs[event["logStreamName"]] = JobLog(event["logStreamName"])
        for line in event["message"].rstrip("\n").split("\n"):
            job.lines.append(line)
            m = START.search(line)
            if m:
                _on_start(job, m, event["timestamp"])
                continue
            end = ended(line)
            if end:
                _on_end(job, end, event["timestamp"])
    return {k: v for k, v in jobs.items() if v.tries}


def run_start_ms(started):
    """The earliest log time (ms) of a run started at `started` (seconds since the
    epoch, as the monitor file has it), or None if unknown. Earlier runs may have
    used the same log group (it is kept RETENTION_DAYS), and their tries are not
    this run's."""
    return None if started is None else int((float(started) - CLOCK_SKEW) * 1000)


def events(logs, group, since_ms=None, streams=None):
    """Every event of the log group (or of the named streams), all pages."""
    args = {"logGroupName": group}
    if since_ms is not None:
        args["startTime"] = int(since_ms)
    try:
        if streams is None:
            return _all(logs, args)
        found = []
        names = sorted(streams)
        for i in range(0, len(names), 100):   # CloudWatch takes 100 stream names a call
            found.extend(_all(logs, dict(args, logStreamNames=names[i:i + 100])))
        return found
    except logs.exceptions.ResourceNotFoundException:
        return []


def _all(logs, args):
    pages = logs.get_paginator("filter_log_events").paginate(**args)
    return [e for page in pages for e in page["events"]]


def read(logs, group, since_ms=None, streams=None):
    return parse(events(logs, group, since_ms, streams))

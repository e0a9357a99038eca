"""Job files: read, check every group, build one SQS message body per group.

The format is Distributed-Something's: top-level keys are shared by all jobs,
`groups` is a list of objects (one job each), and any key containing
`_comment` is dropped. A message is the shared keys plus `"group": {...}`
plus `"job_key"`, a hash of the rest (ds/records.py).
The whole file is checked before anything is sent, so a bad group never
leaves a half-submitted run.
"""
import json
import os
import sys

from .errors import UserError
from . import records

WORKER_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "worker")
# SQS refuses a message (or a batch) larger than this many bytes: 1 MiB since
# August 2025 (256 KiB before). setup sets it on the queues, which may be older.
MAX_MESSAGE_BYTES = 1048576


def _worker_checks():
    """The worker's own job parser: the control plane checks exactly what will run."""
    if WORKER_DIR not in sys.path:
        sys.path.insert(0, WORKER_DIR)
    import dsjob
    return dsjob


def _drop_comments(obj):
    return {k: v for k, v in obj.items() if "_comment" not in k}


def read_json(path, what="job file"):
    if not os.path.isfile(path):
        raise UserError("%s: %s not found." % (path, what))
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserError("%s line %d column %d: not valid JSON (%s); fix the %s."
                        % (path, e.lineno, e.colno, e.msg, what))
    except UnicodeDecodeError:
        raise UserError("%s: not a UTF-8 text file; save the %s as UTF-8 JSON." % (path, what))


def write_json(path, data):
    """Write JSON so that a crash never leaves a half-written file behind."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def load_messages(path, command=""):
    """Return the message bodies (JSON strings) for every group in `path`."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError("%s: the job file must be a JSON object with a \"groups\" list." % path)
    shared = _drop_comments(data)
    groups = shared.pop("groups", None)
    if groups is None:
        raise UserError("%s: no \"groups\" key; list one object per job under \"groups\"." % path)
    if not isinstance(groups, list) or not groups:
        raise UserError("%s: \"groups\" must be a non-empty list of objects." % path)
    dsjob = _worker_checks()
    bodies = []
    for i, group in enumerate(groups):
        if not isinstance(group, dict):
            raise UserError("%s: groups[%d] must be an object like {\"name\": \"A01\"}, not %s."
                            % (path, i, json.dumps(group)[:60]))
        body = dict(shared)
        body["group"] = _drop_comments(group)
        try:
            dsjob.check_job(command, body)
        except dsjob.JobError as e:
            raise UserError("%s: groups[%d]: %s; fix the group or the top of the file"
                            " (or COMMAND in config.py)." % (path, i, str(e).rstrip(".")))
        # Fixed here, at submit: a second delivery of this job, or the same
        # file submitted again, carries the same key and is not run twice.
        body[records.KEY_FIELD] = records.job_key(body)
        text = json.dumps(body, separators=(",", ":"))
        if len(text.encode("utf-8")) > MAX_MESSAGE_BYTES:
            raise UserError("%s: groups[%d] makes a message over SQS's 1 MiB limit; "
                            "move large values into files in the bucket." % (path, i))
        bodies.append(text)
    return bodies

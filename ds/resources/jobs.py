"""Job files: read, check every group, build one SQS message body per group.

The format is Distributed-Something's: top-level keys are shared by all jobs,
`groups` is a list of objects (one job each), and any key containing
`_comment` is dropped. A message is the shared keys plus `"group": {...}`
plus `"job_key"`, a hash of the rest (ds/resources/records.py).
The whole file is checked before anything is sent, so a bad group never
leaves a half-submitted run.
"""
import json

from ds.core.errors import UserError
from ds.core.jsonfile import read_json
from ds.resources import records
from ds.resources.queue import MAX_MESSAGE_BYTES



def worker_parser():
    """The worker's own job parser: the control plane checks exactly what will run."""
    import dsjob  # worker/dsjob.py; imported when needed, so the Lambda package has none
    return dsjob


def _drop_comments(obj):
    return {k: v for k, v in obj.items() if "_comment" not in k}


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
    dsjob = worker_parser()
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

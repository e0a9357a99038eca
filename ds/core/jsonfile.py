"""JSON files a user gives (job, fleet) or a run writes (its state file), and
the JSON objects a run keeps in its bucket (the automatic monitor's state, the
run's outcome).

Reading ends in one line naming the file on any mistake; writing is atomic,
so a crash never leaves a half-written file behind.
"""
import json
import os

from ds.core.aws import is_gone
from ds.core.errors import UserError


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
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def load_object(s3, bucket, key):
    """The JSON stored at s3://bucket/key, or None if there is none."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as e:
        if is_gone(e):
            return None
        raise
    return json.loads(body)


def store_object(s3, bucket, key, data):
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(data, indent=2).encode(),
                  ContentType="application/json")

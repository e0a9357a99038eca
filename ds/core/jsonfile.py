"""JSON files a user gives (job, fleet) or a run writes (its state file).

Reading ends in one line naming the file on any mistake; writing is atomic,
so a crash never leaves a half-written file behind.
"""
import json
import os

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

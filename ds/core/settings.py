"""Reads config.py: every knob, its default, its type, in one table.

A config.py written for the original Distributed-Something works unchanged:
booleans may be True or the strings 'True'/'False' in any case, and knobs it
lacks take the defaults below.
"""
import difflib
import math
import os
import re
import sys
import traceback

from ds.core.errors import UserError

PATH_KEY = "_CONFIG_PATH"   # not a knob: where the settings were read from
MIN_TASK_DISK_GB = 3   # per task: Docker's 2 GB slack plus at least 1 GB for the job
APP_NAME = re.compile(r"^[A-Za-z0-9_-]+$")   # ASCII only: AWS names refuse the rest
MAX_QUEUE_NAME = 80                         # SQS's limit
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

# name -> (type, default). A default of None means "required".
# Defaults that depend on APP_NAME are filled in by load().
KNOBS = {
    "APP_NAME": (str, None),
    "DOCKERHUB_TAG": (str, None),
    "AWS_REGION": (str, "us-east-1"),
    "AWS_PROFILE": (str, ""),
    "SSH_KEY_NAME": (str, ""),
    "AWS_BUCKET": (str, None),
    "ECS_CLUSTER": (str, "default"),
    "CLUSTER_MACHINES": (int, 1),
    "TASKS_PER_MACHINE": (int, 1),
    "MACHINE_TYPE": (list, ["m5.xlarge"]),
    "MACHINE_PRICE": (float, 0.10),
    "EBS_VOL_SIZE": (int, 30),
    "ASSIGN_IP": (bool, True),
    "DOCKER_CORES": (int, 1),
    "CPU_SHARES": (int, None),          # default: DOCKER_CORES * 1024
    "MEMORY": (int, 4096),
    "SECONDS_TO_START": (int, 0),
    "SQS_QUEUE_NAME": (str, None),      # default: APP_NAME + 'Queue'
    "SQS_MESSAGE_VISIBILITY": (int, 600),
    "SQS_DEAD_LETTER_QUEUE": (str, None),  # default: APP_NAME + 'DeadMessages'
    "JOB_RETRIES": (int, 3),
    "LOG_GROUP_NAME": (str, None),      # default: APP_NAME
    "AUTO_MONITOR": (bool, False),
    "CREATE_DASHBOARD": (bool, True),
    "CLEAN_DASHBOARD": (bool, True),
    "CHECK_IF_DONE_BOOL": (bool, False),
    "EXPECTED_NUMBER_FILES": (int, 1),
    "MIN_FILE_SIZE_BYTES": (int, 1),
    "NECESSARY_STRING": (str, ""),
    "MONITOR_TIME": (int, 60),
    "COMMAND": (str, ""),
    "TASK_ROLE_ARN": (str, ""),
}

DERIVED_DEFAULTS = {
    "SQS_QUEUE_NAME": lambda s: s["APP_NAME"] + "Queue",
    "SQS_DEAD_LETTER_QUEUE": lambda s: s["APP_NAME"] + "DeadMessages",
    "LOG_GROUP_NAME": lambda s: s["APP_NAME"],
    "CPU_SHARES": lambda s: s["DOCKER_CORES"] * 1024,
}


class Settings(dict):
    """The loaded config: settings.APP_NAME or settings['APP_NAME']."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    @property
    def path(self):
        """The config file these settings came from (--config), for messages."""
        return self.get(PATH_KEY, "config.py")

    @property
    def dead_letter_queue_name(self):
        """SQS_DEAD_LETTER_QUEUE may be a plain name or a full queue ARN."""
        return self.SQS_DEAD_LETTER_QUEUE.rsplit(":", 1)[-1]

    @property
    def app_knobs(self):
        """The app's own knobs for its worker ({} for configs that have none)."""
        return self.get("app_knobs", {})

    @property
    def jobs_per_machine(self):
        return self.TASKS_PER_MACHINE * self.DOCKER_CORES


# The shipped config.py's stand-ins. A local run works with them (its bucket is
# the emulator's); a run on AWS needs the user's own bucket and image.
PLACEHOLDERS = (
    ("AWS_BUCKET", lambda v: v == "your-bucket-name",
     "a bucket name of your own (prepare creates it)"),
    ("DOCKERHUB_TAG", lambda v: v.startswith("yourname/"),
     "the worker image you push (README, 'Build and push the worker image')"),
)


def placeholders(s):
    """One message per knob that still holds the shipped example's stand-in."""
    return ["%s: %s is still the example's %r: set it to %s." % (s.path, name, s[name], what)
            for name, shipped, what in PLACEHOLDERS if shipped(s[name])]


def to_bool(value, name, path):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise UserError("%s: %s must be True or False, not %r." % (path, name, value))


def _coerce(name, kind, value, path):
    if kind is bool:
        return to_bool(value, name, path)
    if kind is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not value or not all(
                isinstance(v, str) and v for v in value):
            raise UserError("%s: %s must be a list of names like ['m5.xlarge'], not %r."
                            % (path, name, value))
        return list(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if kind is int and isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise UserError("%s: %s must be %s, not %r."
                        % (path, name, {int: "a whole number", float: "a number",
                                        str: "a text in quotes"}[kind], value))
    return value


def _run_config(path):
    if not os.path.isfile(path):
        raise UserError("%s: config file not found; copy config.py from the repository "
                        "or pass --config PATH." % path)
    # Our own namespace rather than runpy's: when the file fails half-way, the
    # knobs it set so far are still here to be checked.
    raw = {"__file__": path, "__name__": "__config__"}
    try:
        with open(path, "rb") as f:
            code = compile(f.read(), path, "exec")
        exec(code, raw)
    except SyntaxError as e:
        raise UserError("%s line %s: Python syntax error (%s); fix that line."
                        % (path, e.lineno, e.msg))
    except Exception as e:  # the user's file raised: say where
        # `APP_NAME = 5` fails at `APP_NAME + 'Queue'`; the wrong type is the real mistake
        for name, (kind, _default) in KNOBS.items():
            if raw.get(name) is not None:
                _coerce(name, kind, raw[name], path)
        line = next((f.lineno for f in reversed(traceback.extract_tb(e.__traceback__))
                     if os.path.abspath(f.filename) == os.path.abspath(path)), "?")
        raise UserError("%s line %s: %s: %s" % (path, line, type(e).__name__, e))
    return raw


# DS-family apps (Distributed-CellProfiler, -Fiji, ...) add their own knobs to
# config.py and read them in their worker with os.environ['NAME']; a name this
# close to one of ours (difflib ratio) is more likely a misspelling of it.
# DCP's knobs score at most 0.70 against ours; real typos 0.78 or more.
TYPO_RATIO = 0.75
CREDENTIAL_NAMES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
CREDENTIAL_WORDS = ("SECRET", "PASSWORD", "TOKEN")


def _refuse_credentials(names, path):
    """App knobs end up in the task definition, readable by anyone who may describe it."""
    for name in names:
        if name in CREDENTIAL_NAMES or any(w in name for w in CREDENTIAL_WORDS):
            raise UserError("%s: %s looks like a credential, and config.py settings go into the "
                            "task definition, where keys must never be; remove it and give the "
                            "workers a role with TASK_ROLE_ARN (documentation/from_ds_apps.md)."
                            % (path, name))


def app_knobs(raw, path):
    """Upper-case names we do not use ourselves: {name: str(value)}, as DS run.py writes them."""
    names = sorted(n for n in raw if n.isupper() and n not in KNOBS)
    _refuse_credentials(names, path)
    for name in names:
        near = difflib.get_close_matches(name, KNOBS, n=1, cutoff=TYPO_RATIO)
        if near:
            print("warning: %s sets %s; did you mean %s? It is passed to the worker as it is."
                  % (path, name, near[0]), file=sys.stderr)
    return {name: str(raw[name]) for name in names}


def load(path="config.py"):
    """Read config.py into Settings, applying defaults and checking types."""
    raw = _run_config(path)
    values = {"app_knobs": app_knobs(raw, path)}
    for name, (kind, default) in KNOBS.items():
        if name in raw and raw[name] is not None:
            values[name] = _coerce(name, kind, raw[name], path)
        elif default is not None:
            values[name] = default
        elif name not in DERIVED_DEFAULTS:
            raise UserError("%s: %s is missing; set it (see documentation/configuration.md)."
                            % (path, name))
    for name, derive in DERIVED_DEFAULTS.items():
        values.setdefault(name, derive(values))
    _check(values, path)
    values[PATH_KEY] = path
    return Settings(values)


def _check(s, path):
    for name in ("CLUSTER_MACHINES", "TASKS_PER_MACHINE", "DOCKER_CORES", "MEMORY",
                 "SQS_MESSAGE_VISIBILITY", "JOB_RETRIES", "MONITOR_TIME", "EBS_VOL_SIZE"):
        if s[name] < 1:
            raise UserError("%s: %s must be at least 1, not %r." % (path, name, s[name]))
    if s["EBS_VOL_SIZE"] < MIN_TASK_DISK_GB * s["TASKS_PER_MACHINE"]:
        raise UserError("%s: EBS_VOL_SIZE %d GB is too small for %d tasks per machine; give "
                        "each task at least %d GB." % (path, s["EBS_VOL_SIZE"],
                                                      s["TASKS_PER_MACHINE"], MIN_TASK_DISK_GB))
    if not math.isfinite(s["MACHINE_PRICE"]) or s["MACHINE_PRICE"] <= 0:  # 'nan' too
        raise UserError("%s: MACHINE_PRICE must be above 0 (USD per machine-hour)." % path)
    if s["SECONDS_TO_START"] < 0:
        raise UserError("%s: SECONDS_TO_START cannot be negative." % path)
    if s["SQS_MESSAGE_VISIBILITY"] > 43200:
        raise UserError("%s: SQS_MESSAGE_VISIBILITY is at most 43200 seconds (12 h) in SQS;"
                        " the worker renews it while a job runs, so a few minutes is enough."
                        % path)
    if s["JOB_RETRIES"] > 1000:
        raise UserError("%s: JOB_RETRIES is at most 1000 in SQS." % path)
    if not APP_NAME.match(s["APP_NAME"]):
        raise UserError("%s: APP_NAME %r may hold only ASCII letters, digits, - and _ "
                        "(it names queues, services and alarms)." % (path, s["APP_NAME"]))
    for name, queue in (("SQS_QUEUE_NAME", s["SQS_QUEUE_NAME"]),
                        ("SQS_DEAD_LETTER_QUEUE", s["SQS_DEAD_LETTER_QUEUE"].rsplit(":", 1)[-1])):
        if len(queue) > MAX_QUEUE_NAME:
            raise UserError("%s: %s %r is longer than %d characters, the SQS limit; use a "
                            "shorter name (or APP_NAME)." % (path, name, queue, MAX_QUEUE_NAME))
    if not BUCKET_NAME.match(s["AWS_BUCKET"]) or ".." in s["AWS_BUCKET"]:
        raise UserError("%s: AWS_BUCKET %r is not a valid S3 bucket name (3-63 lower-case "
                        "letters, digits, dots and hyphens; no s3:// prefix)."
                        % (path, s["AWS_BUCKET"]))

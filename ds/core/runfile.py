"""The run's state file (the "monitor file"): written by startCluster, read and
updated by monitor, status and report. Every read and write of it is here.

Its keys are Distributed-Something's (MONITOR_FLEET_ID, ...), so a file the
original wrote is read too; keys it lacks (MONITOR_FINISHED, the recorded
counts) read as "not known".
"""
import os
import time

from ds.core.errors import UserError
from ds.core.jsonfile import read_json, write_json
from ds.core.settings import Settings, to_bool

WHAT = "monitor file"
REQUIRED = ("MONITOR_FLEET_ID", "MONITOR_APP_NAME", "MONITOR_ECS_CLUSTER",
            "MONITOR_QUEUE_NAME", "MONITOR_BUCKET_NAME", "MONITOR_LOG_GROUP_NAME",
            "MONITOR_START_TIME")


def default_path(settings):
    return "files/%sSpotFleetRequestId.json" % settings.APP_NAME


def read(path):
    info = read_json(path, WHAT)
    if not isinstance(info, dict):
        raise UserError("%s: not a monitor file (startCluster writes one)." % path)
    return info


def update(path, **values):
    info = read(path)
    info.update(values)
    write_json(path, info)


def create(settings, fleet_id, path):
    """The file of a run whose fleet was just requested."""
    write_json(path, {  # atomic: a half-written monitor file would strand the run
        "MONITOR_FLEET_ID": fleet_id,
        "MONITOR_APP_NAME": settings.APP_NAME,
        "MONITOR_ECS_CLUSTER": settings.ECS_CLUSTER,
        "MONITOR_QUEUE_NAME": settings.SQS_QUEUE_NAME,
        "MONITOR_DEAD_LETTER_QUEUE": settings.dead_letter_queue_name,
        "MONITOR_BUCKET_NAME": settings.AWS_BUCKET,
        "MONITOR_LOG_GROUP_NAME": settings.LOG_GROUP_NAME,
        "MONITOR_START_TIME": str(int(time.time())),
        "MONITOR_JOBS_PER_MACHINE": settings.jobs_per_machine,
        # the run's size as started: the monitor grows the fleet up to it, and an
        # edited config.py does not change a run under way
        "MONITOR_CLUSTER_MACHINES": settings.CLUSTER_MACHINES,
        "MONITOR_TASKS_PER_MACHINE": settings.TASKS_PER_MACHINE,
        "CLEAN_DASHBOARD": settings.CLEAN_DASHBOARD,
        "MONITOR_FINISHED": False,
        "MONITOR_STARTUP_DONE": False,  # set once the workers are asked for
    })


def previous_start(path):
    """(fleet id, whether its start finished) of an earlier startCluster's file,
    or (None, None) if there is none to read."""
    if not os.path.isfile(path):
        return None, None
    try:
        info = read(path)
        return info.get("MONITOR_FLEET_ID"), info.get("MONITOR_STARTUP_DONE")
    except (UserError, OSError):
        return None, None


def run_settings(settings, path):
    """config.py's settings with the run's own names from the monitor file:
    (settings, fleet id, start time, jobs per machine)."""
    info = read(path)
    missing = [k for k in REQUIRED if k not in info]
    if missing:
        raise UserError("%s: %s is missing; use the file startCluster wrote "
                        "(files/APP_NAMESpotFleetRequestId.json)." % (path, missing[0]))
    s = Settings(settings)
    s.update(APP_NAME=info["MONITOR_APP_NAME"], ECS_CLUSTER=info["MONITOR_ECS_CLUSTER"],
             SQS_QUEUE_NAME=info["MONITOR_QUEUE_NAME"], AWS_BUCKET=info["MONITOR_BUCKET_NAME"],
             LOG_GROUP_NAME=info["MONITOR_LOG_GROUP_NAME"])
    if "MONITOR_DEAD_LETTER_QUEUE" in info:
        s["SQS_DEAD_LETTER_QUEUE"] = info["MONITOR_DEAD_LETTER_QUEUE"]
    if "CLEAN_DASHBOARD" in info:
        s["CLEAN_DASHBOARD"] = to_bool(info["CLEAN_DASHBOARD"], "CLEAN_DASHBOARD", path)
    for knob in ("CLUSTER_MACHINES", "TASKS_PER_MACHINE"):
        if "MONITOR_" + knob in info:  # files of older runs lack them
            s[knob] = _number(info, "MONITOR_" + knob, path)
    per_machine = info.get("MONITOR_JOBS_PER_MACHINE", settings.jobs_per_machine)
    return (s, info["MONITOR_FLEET_ID"], _number(info, "MONITOR_START_TIME", path),
            _number(dict(info, MONITOR_JOBS_PER_MACHINE=per_machine),
                    "MONITOR_JOBS_PER_MACHINE", path))


def for_run(settings, path=None):
    """(settings, fleet id, start time) of the run in the monitor file, if there is one
    (default: the file startCluster writes); else config.py's names and no fleet."""
    default = default_path(settings)
    if path or os.path.isfile(default):
        settings, fleet_id, started, _ = run_settings(settings, path or default)
        return settings, fleet_id, started
    return settings, None, None


def _number(info, key, path):
    try:
        return int(float(info[key]))
    except (TypeError, ValueError, OverflowError):
        raise UserError("%s: %s must be a number, not %r; use the file startCluster wrote."
                        % (path, key, info[key]))


def finished(path):
    """True/False as this monitor file records it; None for files that do not say
    (the original Distributed-Something's)."""
    return read(path).get("MONITOR_FINISHED")


def mark_finished(path):
    """Record that teardown, export and summary all happened, so a rerun skips them."""
    update(path, MONITOR_FINISHED=True)


def record_counts(path, done, dead):
    """Keep the final counts: once the queue is deleted, nothing else knows them."""
    update(path, MONITOR_JOBS_DONE=done, MONITOR_JOBS_DEAD=dead)


def recorded_counts(path):
    """(done, dead) as an earlier monitor recorded them, or (None, None)."""
    info = read(path)
    return info.get("MONITOR_JOBS_DONE"), info.get("MONITOR_JOBS_DEAD")


def auto_key(path):
    """Where an auto-monitored run keeps its state in the bucket, or None."""
    return read(path).get("MONITOR_AUTO_KEY")

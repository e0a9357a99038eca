"""CloudWatch Logs: the run's log groups, and their export to the bucket at the end."""
import time

import botocore.exceptions

from ds.core.aws import error_code, explain
from ds.core import wait

RETENTION_DAYS = 60
EXPORT_PREFIX = "exportedlogs"


def group_names(log_group):
    """The worker's group (one stream per job) and the per-instance group."""
    return [log_group, log_group + "_perInstance"]


def ensure_groups(logs, settings):
    for name in group_names(settings.LOG_GROUP_NAME):
        with explain("create log group %s" % name):
            try:
                logs.create_log_group(logGroupName=name, tags={"APP_NAME": settings.APP_NAME})
            except logs.exceptions.ResourceAlreadyExistsException:
                pass
            logs.put_retention_policy(logGroupName=name, retentionInDays=RETENTION_DAYS)


def export_step(logs, name, bucket, prefix, since_ms, state):
    """One look at the export of log group `name`; never waits.

    `state` (a dict kept by the caller between looks) holds the export task's
    id. Returns the task's final status, or None while it is not finished
    (or not started: AWS runs one export per account at a time).
    """
    task_id = state.get(name)
    if task_id is None:
        try:
            task_id = logs.create_export_task(
                taskName="%s-%d" % (name, since_ms), logGroupName=name, fromTime=since_ms,
                to=int(time.time() * 1000), destination=bucket,
                destinationPrefix="%s/%s" % (prefix, name))["taskId"]
        except botocore.exceptions.ClientError as e:
            if error_code(e) == "LimitExceededException":
                return None  # another export is running: try again later
            raise
        state[name] = task_id
    found = logs.describe_export_tasks(taskId=task_id)["exportTasks"]
    if not found:
        del state[name]  # AWS forgot the task: start it again
        return None
    code = found[0]["status"]["code"]
    return code if code in ("COMPLETED", "FAILED", "CANCELLED") else None


def exists(logs, name):
    """Whether log group `name` exists; the API matches by prefix, so compare whole names."""
    pages = logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name)
    return any(g["logGroupName"] == name for p in pages for g in p["logGroups"])


def export(logs, log_group, bucket, app_name, since_ms):
    """Copy every log group of the run to s3://bucket/exportedlogs/...; say what happened.
    The laptop monitor's loop around export_next: it waits for the exports."""
    state = {}
    wait.until(lambda: export_next(logs, log_group, bucket, app_name, since_ms, state),
               "the log export of %s" % log_group, timeout=2400, longest=10)


def export_next(logs, log_group, bucket, app_name, since_ms, state):
    """Advance the export of the run's log groups by one look; True once all are done.

    The automatic monitor calls this once per tick, so no call ever waits for
    an export. `state`: {"tasks": {group: task id}, "done": [groups]}.
    """
    prefix = "%s/%s" % (EXPORT_PREFIX, app_name)
    tasks, done = state.setdefault("tasks", {}), state.setdefault("done", [])
    for name in group_names(log_group):
        if name in done:
            continue
        try:
            status = exists(logs, name) and export_step(logs, name, bucket, prefix,
                                                        since_ms, tasks)
        except botocore.exceptions.ClientError as e:
            print("Could not export log group %s to s3://%s/%s: %s. The logs stay in "
                  "CloudWatch; the bucket policy must let logs.amazonaws.com write there."
                  % (name, bucket, prefix, e.response["Error"].get("Message", e)))
            status = False
        if status is None:
            return False  # running, or waiting for another export: look again next tick
        if status:
            print("Exported log group %s to s3://%s/%s/%s (%s)." % (name, bucket, prefix, name,
                                                                 status.lower()))
        done.append(name)
    return True

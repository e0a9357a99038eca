"""CloudWatch Logs: the run's log groups, and their export to the bucket at the end."""
import time

import botocore.exceptions

from .aws import error_code, explain
from . import wait

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


def _export_one(logs, name, bucket, prefix, since_ms):
    """Start one export and wait for it. AWS runs one export per account at a time."""
    def start():
        try:
            return logs.create_export_task(
                taskName="%s-%d" % (name, since_ms), logGroupName=name, fromTime=since_ms,
                to=int(time.time() * 1000), destination=bucket,
                destinationPrefix="%s/%s" % (prefix, name))["taskId"]
        except botocore.exceptions.ClientError as e:
            if error_code(e) == "LimitExceededException":
                return None  # another export is running: try again shortly
            raise

    task_id = wait.until(start, "the previous log export to finish", timeout=600)

    def finished():
        task = logs.describe_export_tasks(taskId=task_id)["exportTasks"][0]
        code = task["status"]["code"]
        return code if code in ("COMPLETED", "FAILED", "CANCELLED") else None

    return wait.until(finished, "log export of %s" % name, timeout=1800, longest=10)


def exists(logs, name):
    """Whether log group `name` exists; the API matches by prefix, so compare whole names."""
    pages = logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name)
    return any(g["logGroupName"] == name for p in pages for g in p["logGroups"])


def export(logs, log_group, bucket, app_name, since_ms):
    """Copy every log group of the run to s3://bucket/exportedlogs/...; say what happened."""
    prefix = "%s/%s" % (EXPORT_PREFIX, app_name)
    for name in group_names(log_group):
        try:
            if not exists(logs, name):
                continue
            status = _export_one(logs, name, bucket, prefix, since_ms)
        except botocore.exceptions.ClientError as e:
            print("Could not export log group %s to s3://%s/%s: %s. The logs stay in "
                  "CloudWatch; the bucket policy must let logs.amazonaws.com write there."
                  % (name, bucket, prefix, e.response["Error"].get("Message", e)))
            continue
        print("Exported log group %s to s3://%s/%s/%s (%s)." % (name, bucket, prefix, name,
                                                             status.lower()))

"""The run's records in the bucket: which jobs are done, which failed how often.

Layout (the worker writes, the control plane reads):
  ds-records/<APP_NAME>/<RUN_ID>/done/<job_key>     a job's outputs are uploaded;
                                                    names the message that did it
  ds-records/<APP_NAME>/<RUN_ID>/failed/<job_key>   how often its tool failed
  ds-records/<APP_NAME>/<RUN_ID>/dead/<job_key>     a copy of the job is in the
                                                    dead-letter queue; names the
                                                    message whose copy it is
  ds-records/<APP_NAME>/<RUN_ID>/duplicate/<done message>-<message>
                                                    a second message of a job done
                                                    once, deleted unrun
A job key is a hash of the job's content, fixed at submit time, so a job
delivered twice (or submitted twice) is recognised. The run id is made by
setup, kept as a tag on the job queue and handed to the workers as RUN_ID, so
a new run of the same APP_NAME starts with no records.
"""
import hashlib
import json
import uuid

PREFIX = "ds-records"
KEY_FIELD = "job_key"       # the field of a message body that holds the job key
RUN_ID_TAG = "run_id"       # the job queue's tag that holds the run id


def job_key(body):
    """The key of a job: a hash of its content (a dict without job_key)."""
    content = {k: v for k, v in body.items() if k != KEY_FIELD}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def new_run_id():
    return uuid.uuid4().hex[:12]


def run_prefix(app_name, run_id):
    return "%s/%s/%s/" % (PREFIX, app_name, run_id)


def done_prefix(app_name, run_id):
    return run_prefix(app_name, run_id) + "done/"


def failed_prefix(app_name, run_id):
    return run_prefix(app_name, run_id) + "failed/"


def _keys_under(s3, bucket, prefix):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"][len(prefix):] for page in pages for o in page.get("Contents", [])}


def done_keys(s3, bucket, app_name, run_id):
    """The set of job keys that completed in this run."""
    return _keys_under(s3, bucket, done_prefix(app_name, run_id))


def duplicates(s3, bucket, app_name, run_id):
    """How many messages were second copies of jobs done once (submitted twice):
    the queue's submitted count holds them, the run's job count must not."""
    return len(_keys_under(s3, bucket, run_prefix(app_name, run_id) + "duplicate/"))


def run_id(sqs, queue_url):
    """The run id that setup stored on the job queue, or None."""
    return sqs.list_queue_tags(QueueUrl=queue_url).get("Tags", {}).get(RUN_ID_TAG)


def clear_failures(s3, bucket, app_name, run_id, keys):
    """Forget how often these jobs' tools failed, and that they were sent to the
    dead-letter queue, so that jobs put back on the queue (redrive) get their
    JOB_RETRIES tries anew and can be dead-lettered again."""
    names = ["%s%s/%s" % (run_prefix(app_name, run_id), kind, k)
             for k in sorted(keys) for kind in ("failed", "dead")]
    for i in range(0, len(names), 1000):  # delete_objects takes at most 1000 keys
        s3.delete_objects(Bucket=bucket, Delete={"Quiet": True, "Objects": [
            {"Key": k} for k in names[i:i + 1000]]})


def keys_of(bodies):
    """The job keys of message bodies (those that carry one)."""
    keys = set()
    for body in bodies:
        try:
            key = json.loads(body).get(KEY_FIELD)
        except (ValueError, AttributeError):
            continue
        if key:
            keys.add(key)
    return keys

"""Done records: a job is done when its record is in the bucket (written by the
worker before it deletes the message). Layout agreed with #12:
s3://AWS_BUCKET/ds-records/<APP_NAME>/<RUN_ID>/done/<job_key>."""


def done_prefix(app_name, run_id):
    return "ds-records/%s/%s/done/" % (app_name, run_id)


def done_keys(s3, bucket, app_name, run_id):
    """The job keys with a done record in this run."""
    prefix = done_prefix(app_name, run_id)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"][len(prefix):] for page in pages for o in page.get("Contents", [])}

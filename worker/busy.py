"""Busy records: the evidence the monitor uses to tell busy machines from idle ones.

While a worker holds a job it keeps one small S3 object,
busy/APP_NAME/INSTANCE_ID/WORKER, written when it takes the job, rewritten
with every lease renewal and deleted just before the job is settled
(deleted or let go), so a record always stands for a job in flight. The monitor
lists busy/APP_NAME/ once per poll: a machine with a fresh record is busy
and is never terminated by the scale-in; one with none is idle. A record
older than a lease belongs to a worker that died, so it expires by itself.

No INSTANCE_ID (a worker started by hand, off EC2) means no records; the
monitor then falls back to lowering the fleet's target only. Writing a
record never stops a job: S3 trouble is logged and the job goes on.
Python 2.7 and 3.8+.
"""
import os
import socket

from botocore.exceptions import BotoCoreError, ClientError

PREFIX = "busy/"


def key(app_name, instance_id, worker):
    return "%s%s/%s/%s" % (PREFIX, app_name, instance_id, worker)


class BusyRecord(object):
    def __init__(self, s3, bucket, app_name, instance_id, log):
        self.s3, self.bucket, self.log = s3, bucket, log
        worker = "%s-%d" % (socket.gethostname(), os.getpid())
        self.key = (key(app_name, instance_id, worker)
                    if instance_id and bucket else None)

    def mark(self, job_name):
        """Write (or refresh) the record: this worker holds job_name."""
        if self.key is None:
            return
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self.key,
                               Body=job_name.encode("utf-8"))
        except (BotoCoreError, ClientError) as e:
            self.log.warning("busy record %s not written: %s", self.key, e)

    def clear(self):
        if self.key is None:
            return
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self.key)
        except (BotoCoreError, ClientError) as e:
            self.log.warning("busy record %s not deleted (it expires after "
                             "a lease): %s", self.key, e)

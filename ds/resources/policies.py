"""The IAM and bucket policies `prepare` puts in place, as data.

documentation/step_0_prep.md quotes these for accounts where the user may
not create roles; tests/test_prepare.py checks that the two agree.
"""
import json
from urllib.parse import unquote

MACHINE_MANAGED = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
FLEET_MANAGED = "arn:aws:iam::aws:policy/service-role/AmazonEC2SpotFleetTaggingRole"

# Who may assume each role: the check command compares a role's trust with these.
MACHINE_SERVICE = "ec2.amazonaws.com"
FLEET_SERVICE = "spotfleet.amazonaws.com"
WORKER_SERVICE = "ecs-tasks.amazonaws.com"

# Statement ids that mark our statements in a bucket policy we share with others.
LOG_EXPORT_SIDS = ("DSLogExportAcl", "DSLogExportPut")


def trust(service):
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}


def worker(settings, account):
    """Least privilege for the worker containers: this run's queue, bucket and logs."""
    region = settings.AWS_REGION
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow",
         "Action": ["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage"],
         "Resource": "arn:aws:sqs:%s:%s:%s" % (region, account, settings.SQS_QUEUE_NAME)},
        # The worker moves a job whose tool failed JOB_RETRIES times there itself.
        {"Effect": "Allow", "Action": "sqs:SendMessage",
         "Resource": "arn:aws:sqs:%s:%s:%s" % (region, account,
                                              settings.dead_letter_queue_name)},
        # DeleteObject: the worker clears its machine's busy record (busy/APP_NAME/...).
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": "arn:aws:s3:::%s/*" % settings.AWS_BUCKET},
        {"Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": "arn:aws:s3:::%s" % settings.AWS_BUCKET},
        {"Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": "arn:aws:logs:%s:%s:log-group:%s*" % (region, account,
                                                           settings.LOG_GROUP_NAME)},
        # Tagging its machine and making the idle alarm name no resource in advance;
        # an alarm that terminates acts only if its creator may terminate too.
        {"Effect": "Allow",
         "Action": ["ec2:DescribeVolumes", "ec2:CreateTags", "cloudwatch:PutMetricAlarm",
                    "ec2:TerminateInstances"],
         "Resource": "*"},
    ]}


def machine_extra(settings):
    """The machines read the ECS agent config startCluster leaves in the bucket."""
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::%s/ecsconfigs/*" % settings.AWS_BUCKET}]}


def log_export_statements(settings):
    """What lets CloudWatch Logs export a run's logs into the bucket (monitor does that)."""
    logs = {"Service": "logs.%s.amazonaws.com" % settings.AWS_REGION}
    bucket = settings.AWS_BUCKET
    return [
        {"Sid": LOG_EXPORT_SIDS[0], "Effect": "Allow", "Principal": logs,
         "Action": "s3:GetBucketAcl", "Resource": "arn:aws:s3:::%s" % bucket},
        {"Sid": LOG_EXPORT_SIDS[1], "Effect": "Allow", "Principal": logs,
         "Action": "s3:PutObject", "Resource": "arn:aws:s3:::%s/exportedlogs/*" % bucket,
         "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}},
    ]


def as_dict(document):
    """A policy document as IAM returns it (a dict, or URL-encoded JSON) as a dict."""
    return json.loads(unquote(document)) if isinstance(document, str) else document

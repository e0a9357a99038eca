"""The IAM and bucket policies `prepare` puts in place, as data.

documentation/step_0_prep.md quotes these for accounts where the user may
not create roles; tests/test_prepare.py checks that the two agree.
"""
import json
from urllib.parse import unquote

from ds.resources import automonitor, cluster

MACHINE_MANAGED = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
FLEET_MANAGED = "arn:aws:iam::aws:policy/service-role/AmazonEC2SpotFleetTaggingRole"

# Who may assume each role: the check command compares a role's trust with these.
MACHINE_SERVICE = "ec2.amazonaws.com"
FLEET_SERVICE = "spotfleet.amazonaws.com"
WORKER_SERVICE = "ecs-tasks.amazonaws.com"
MONITOR_SERVICE = "lambda.amazonaws.com"

# Statement ids that mark our statements in a bucket policy we share with others.
LOG_EXPORT_SIDS = ("DSLogExportAcl", "DSLogExportPut")


def trust(service):
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}


def _arn(service, settings, account, what):
    return "arn:aws:%s:%s:%s:%s" % (service, settings.AWS_REGION, account, what)


def _ours(key, settings):
    """A condition: only resources carrying the tag APP_NAME=<this app>.

    The fleet tags its request and its machines with it (fleet.build_request).
    """
    return {"StringEquals": {key: settings.APP_NAME}}


def worker(settings, account):
    """Least privilege for the worker containers: this run's queue, bucket and logs."""
    a = lambda service, what: _arn(service, settings, account, what)
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow",
         "Action": ["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage"],
         "Resource": a("sqs", settings.SQS_QUEUE_NAME)},
        # The worker moves a job whose tool failed JOB_RETRIES times there itself.
        {"Effect": "Allow", "Action": "sqs:SendMessage",
         "Resource": a("sqs", settings.dead_letter_queue_name)},
        # DeleteObject: the worker clears its machine's busy record (busy/APP_NAME/...).
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": "arn:aws:s3:::%s/*" % settings.AWS_BUCKET},
        {"Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": "arn:aws:s3:::%s" % settings.AWS_BUCKET},
        {"Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": a("logs", "log-group:%s*" % settings.LOG_GROUP_NAME)},
        # instance-setup.py, at the container's start: tag its machine, make its idle
        # alarm. DescribeVolumes takes no resource; the rest name this app's only.
        {"Effect": "Allow", "Action": "ec2:DescribeVolumes", "Resource": "*"},
        # TerminateInstances: an alarm that terminates acts only if its creator may
        # terminate the machine too (CloudWatch's PutMetricAlarm documentation).
        {"Effect": "Allow", "Action": ["ec2:CreateTags", "ec2:TerminateInstances"],
         "Resource": a("ec2", "instance/*"), "Condition": _ours("ec2:ResourceTag/APP_NAME", settings)},
        # A machine's disks carry no tag at launch: only our two tags may be set on them.
        {"Effect": "Allow", "Action": "ec2:CreateTags", "Resource": a("ec2", "volume/*"),
         "Condition": dict(_ours("aws:RequestTag/APP_NAME", settings), **{
             "ForAllValues:StringEquals": {"aws:TagKeys": ["APP_NAME", "Name"]}})},
        {"Effect": "Allow", "Action": "cloudwatch:PutMetricAlarm",
         "Resource": a("cloudwatch", "alarm:%s_*" % settings.APP_NAME)},
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


# ---- The automatic monitor's function ------------------------------------------

def monitor_function(settings, account):
    """Least privilege for one tick of a run of this app (ds/monitor/auto/tick.py).

    `prepare` gives the role APP_NAMEAutoMonitorRole this policy (startCluster if
    prepare did not); runs of the app share the role and the role outlives them,
    since no role can delete itself. Where AWS lets an action name a resource, it
    names this app's; the actions on "*" are those AWS only allows on "*"."""
    app = settings.APP_NAME
    a = lambda service, what: _arn(service, settings, account, what)
    fn = automonitor.function_name(app)
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": "arn:aws:s3:::%s/*" % settings.AWS_BUCKET},
        {"Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": "arn:aws:s3:::%s" % settings.AWS_BUCKET},
        {"Effect": "Allow", "Action": ["sqs:GetQueueUrl", "sqs:GetQueueAttributes",
                                       "sqs:ListQueueTags", "sqs:DeleteQueue"],
         "Resource": [a("sqs", settings.SQS_QUEUE_NAME),
                      a("sqs", settings.dead_letter_queue_name)]},
        {"Effect": "Allow", "Action": [
            "ec2:DescribeSpotFleetRequests", "ec2:DescribeInstances",
            "ec2:DescribeSpotPriceHistory", "ecs:ListServices", "ecs:ListTaskDefinitions",
            "ecs:DeregisterTaskDefinition", "cloudwatch:ListDashboards",
            "logs:DescribeLogGroups", "logs:DescribeExportTasks"], "Resource": "*"},
        {"Effect": "Allow", "Action": [
            "ec2:DescribeSpotFleetInstances", "ec2:ModifySpotFleetRequest",
            "ec2:CancelSpotFleetRequests"],
         "Resource": a("ec2", "spot-fleet-request/*"),
         "Condition": _ours("aws:ResourceTag/APP_NAME", settings)},
        {"Effect": "Allow", "Action": "ec2:TerminateInstances",  # idle machines (scale-in)
         "Resource": a("ec2", "instance/*"), "Condition": _ours("ec2:ResourceTag/APP_NAME", settings)},
        {"Effect": "Allow", "Action": ["ecs:DescribeServices", "ecs:UpdateService",
                                       "ecs:DeleteService"],
         "Resource": a("ecs", "service/%s/%s" % (settings.ECS_CLUSTER,
                                                 cluster.service_name(settings)))},
        {"Effect": "Allow", "Action": ["ecs:DescribeClusters", "ecs:DeleteCluster"],
         "Resource": a("ecs", "cluster/%s" % settings.ECS_CLUSTER)},
        {"Effect": "Allow", "Action": ["cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"],
         "Resource": a("cloudwatch", "alarm:%s_*" % app)},
        {"Effect": "Allow", "Action": "cloudwatch:DeleteDashboards",
         "Resource": "arn:aws:cloudwatch::%s:dashboard/%s" % (account, app)},
        {"Effect": "Allow", "Action": "logs:CreateExportTask",
         "Resource": a("logs", "log-group:%s*" % settings.LOG_GROUP_NAME)},
        # The function's own log lines, which Lambda writes with the function's role.
        {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream",
                                       "logs:PutLogEvents"],
         "Resource": [a("logs", "log-group:/aws/lambda/%s" % fn),
                      a("logs", "log-group:/aws/lambda/%s:*" % fn)]},
        {"Effect": "Allow", "Action": ["events:RemoveTargets", "events:DeleteRule"],
         "Resource": a("events", "rule/%s" % automonitor.rule_name(app))},
        {"Effect": "Allow", "Action": ["lambda:DeleteFunction", "lambda:RemovePermission"],
         "Resource": a("lambda", "function:%s" % fn)},
    ]}


# ---- What the user's own credentials need (documentation/step_0_prep.md, section 4) ----

def user_run(settings, account):
    """The four steps, monitor, status, failures, redrive and report."""
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Resource": "*", "Action": [
            "sts:GetCallerIdentity",
            "sqs:CreateQueue", "sqs:DeleteQueue", "sqs:GetQueueUrl", "sqs:GetQueueAttributes",
            "sqs:SetQueueAttributes", "sqs:SendMessage", "sqs:ListQueueTags", "sqs:TagQueue",
            "sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage",
            "sqs:StartMessageMoveTask",
            "ecs:CreateCluster", "ecs:DeleteCluster", "ecs:DescribeClusters",
            "ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition",
            "ecs:ListTaskDefinitions",
            "ecs:CreateService", "ecs:UpdateService", "ecs:DeleteService",
            "ecs:DescribeServices", "ecs:ListServices", "ecs:TagResource",
            "ec2:RequestSpotFleet", "ec2:ModifySpotFleetRequest", "ec2:CancelSpotFleetRequests",
            "ec2:DescribeSpotFleetRequests", "ec2:DescribeSpotFleetInstances",
            "ec2:DescribeSpotFleetRequestHistory", "ec2:DescribeInstances",
            "ec2:TerminateInstances", "ec2:DescribeSpotPriceHistory",
            "ec2:DescribeImages", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups",
            "ec2:DescribeKeyPairs", "ec2:DescribeRouteTables", "ec2:DescribeVpcs",
            "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes",
            "servicequotas:GetServiceQuota",
            "iam:GetRole", "iam:GetInstanceProfile", "iam:SimulatePrincipalPolicy",
            "s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
            "s3:GetBucketLocation",
            "logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:TagResource",
            "logs:DescribeLogGroups", "logs:CreateExportTask",
            "logs:DescribeExportTasks", "logs:FilterLogEvents",
            "cloudwatch:PutDashboard", "cloudwatch:ListDashboards",
            "cloudwatch:DeleteDashboards", "cloudwatch:DescribeAlarms",
            "cloudwatch:DeleteAlarms"]},
        # AWS's Spot Fleet permissions for who requests a fleet: its linked roles are
        # made as the account's first fleet is requested.
        {"Effect": "Allow", "Action": "ec2:RunInstances", "Resource": "*"},
        {"Effect": "Allow", "Action": "iam:CreateServiceLinkedRole", "Resource": "*",
         "Condition": {"StringEquals": {"iam:AWSServiceName": [
             "spotfleet.amazonaws.com", "spot.amazonaws.com"]}}},
        # The fleet tags its request with APP_NAME as it is made (fleet.build_request).
        {"Effect": "Allow", "Action": "ec2:CreateTags",
         "Resource": _arn("ec2", settings, account, "spot-fleet-request/*"),
         "Condition": {"StringEquals": {"ec2:CreateAction": "RequestSpotFleet"}}},
        # Handing the roles to the services: the machines', the fleet's, the workers'
        # and the automatic monitor's, all named APP_NAME... by prepare.
        {"Effect": "Allow", "Action": "iam:PassRole",
         "Resource": "arn:aws:iam::%s:role/%s*" % (account, settings.APP_NAME)},
    ]}


def monitor_arns(settings, account):
    """The ARNs of the automatic monitor's role, function and schedule."""
    app = settings.APP_NAME
    return {"role": "arn:aws:iam::%s:role/%s" % (account, automonitor.role_name(app)),
            "function": _arn("lambda", settings, account,
                             "function:%s" % automonitor.function_name(app)),
            "rule": _arn("events", settings, account, "rule/%s" % automonitor.rule_name(app))}


def user_auto_monitor(settings, account):
    """What startCluster adds with AUTO_MONITOR: the function, its schedule, and the
    function's role if prepare did not make it (monitor/install.py)."""
    arns = monitor_arns(settings, account)
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": [
            "iam:CreateRole", "iam:TagRole", "iam:ListRoleTags",
            "iam:ListAttachedRolePolicies", "iam:GetRolePolicy", "iam:PutRolePolicy"],
         "Resource": arns["role"]},
        {"Effect": "Allow", "Action": [
            "lambda:CreateFunction", "lambda:GetFunctionConfiguration",
            "lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration",
            "lambda:GetPolicy", "lambda:AddPermission", "lambda:TagResource",
            "lambda:RemovePermission", "lambda:DeleteFunction"],
         "Resource": arns["function"]},
        {"Effect": "Allow", "Action": ["events:PutRule", "events:PutTargets",
                                       "events:RemoveTargets", "events:DeleteRule"],
         "Resource": arns["rule"]},
    ]}


def user_prepare(settings, account):
    """What `prepare` and `prepare --remove` add to user_run: the roles, instance
    profile, bucket, security group and key pair they make and delete."""
    app = settings.APP_NAME
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Resource": "arn:aws:iam::%s:role/%s*" % (account, app), "Action": [
            "iam:CreateRole", "iam:DeleteRole", "iam:TagRole", "iam:ListRoleTags",
            "iam:ListAttachedRolePolicies", "iam:AttachRolePolicy", "iam:DetachRolePolicy",
            "iam:ListRolePolicies", "iam:GetRolePolicy", "iam:PutRolePolicy",
            "iam:DeleteRolePolicy"]},
        {"Effect": "Allow",
         "Resource": "arn:aws:iam::%s:instance-profile/%s*" % (account, app),
         "Action": ["iam:CreateInstanceProfile", "iam:TagInstanceProfile",
                    "iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile",
                    "iam:DeleteInstanceProfile"]},
        {"Effect": "Allow", "Resource": "arn:aws:s3:::%s" % settings.AWS_BUCKET, "Action": [
            "s3:CreateBucket", "s3:DeleteBucket", "s3:PutBucketPublicAccessBlock",
            "s3:GetBucketTagging", "s3:PutBucketTagging", "s3:GetBucketPolicy",
            "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"]},
        {"Effect": "Allow", "Resource": "*", "Action": [
            "ec2:CreateSecurityGroup", "ec2:DeleteSecurityGroup", "ec2:CreateKeyPair",
            "ec2:DeleteKeyPair", "ec2:CreateTags", "ssm:GetParameter"]},
    ]}




# The actions above that the least-privilege test's runs never need
# (tests/test_least_privilege.py), and why each stays. The test fails when this
# list and what its runs need disagree.
_WHY_NOT_SEEN = {
    "AWS checks it when a resource is tagged as it is made; the emulator does not.": [
        ("user_run", "ec2:CreateTags"), ("user_run", "ecs:TagResource"),
        ("user_run", "logs:TagResource"), ("user_auto_monitor", "iam:TagRole"),
        ("user_auto_monitor", "lambda:TagResource"), ("user_prepare", "iam:TagRole"),
        ("user_prepare", "iam:TagInstanceProfile"), ("user_prepare", "ec2:CreateTags")],
    "startCluster removes the monitor it installed when AWS then refuses the fleet; the "
    "emulator refuses no fleet.": [
        ("user_auto_monitor", "lambda:RemovePermission"),
        ("user_auto_monitor", "lambda:DeleteFunction"),
        ("user_auto_monitor", "events:RemoveTargets"),
        ("user_auto_monitor", "events:DeleteRule")],
    "startCluster run again after a start cut short updates the function in place.": [
        ("user_auto_monitor", "lambda:GetFunctionConfiguration"),
        ("user_auto_monitor", "lambda:UpdateFunctionCode"),
        ("user_auto_monitor", "lambda:UpdateFunctionConfiguration")],
    "Lambda writes the function's log lines with this role; no test runs Lambda.": [
        ("monitor_function", "logs:CreateLogGroup"), ("monitor_function", "logs:CreateLogStream"),
        ("monitor_function", "logs:PutLogEvents")],
    "the idle alarm's terminate action acts only if the alarm's creator may terminate the "
    "machine.": [("worker", "ec2:TerminateInstances")],
    "AWS checks it when a role is handed to a service (the fleet, ECS, Lambda); the emulator "
    "does not.": [("user_run", "iam:PassRole")],
    "AWS's Spot Fleet permissions ask it of who requests a fleet; the emulator does not check "
    "it.": [("user_run", "ec2:RunInstances")],
    "AWS makes the spot services' linked roles as an account's first fleet is requested.": [
        ("user_run", "iam:CreateServiceLinkedRole")],
    "startCluster makes the function's role when prepare did not; the tests' account is "
    "prepared.": [("user_auto_monitor", "iam:CreateRole")],
    "startCluster brings the role's policy up to date when config.py changed since prepare.": [
        ("user_auto_monitor", "iam:PutRolePolicy")],
    "prepare --remove deletes the bucket only when it is empty; the tests' bucket keeps the "
    "results.": [("user_prepare", "s3:DeleteBucket")],
}
NOT_SEEN_IN_TESTS = {key: why for why, keys in _WHY_NOT_SEEN.items() for key in keys}

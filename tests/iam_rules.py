"""How the strict emulator (tests/iam_server.py) decides a call, and how the
least-privilege tests ask the same question of a policy with a statement removed.

What the emulator knows of a call: its action, and its resource only for SQS
queues, S3 buckets and objects, and IAM roles. For other services it passes "*";
then only the action is checked here (a statement's Resource is not compared),
and tests/test_least_privilege.py matches those Resource patterns against the
ARNs of what a run made instead. Conditions are not evaluated (the policies'
conditions are checked by reading them).
"""
import json
import re

# The emulator names some actions differently from AWS's IAM; this maps them to
# AWS's names, so the product's policies use AWS's. Keep it small.
AWS_NAMES = {
    "s3:HeadBucket": "s3:ListBucket",                    # AWS checks HeadBucket as ListBucket
    "s3:PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "s3:GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:HeadObject": "s3:GetObject",                     # AWS checks HeadObject as GetObject
    "sqs:SendMessageBatch": "sqs:SendMessage",           # AWS: batch calls check the single action
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
SERVICE_PREFIXES = {"monitoring": "cloudwatch"}          # CloudWatch signs as "monitoring"
# Calls the emulator gives a role's ARN as resource where AWS checks another
# resource (the instance profile): their resource is taken as unknown ("*").
OTHER_RESOURCE = {"iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile"}


def aws_action(action):
    service, _, name = action.partition(":")
    action = "%s:%s" % (SERVICE_PREFIXES.get(service, service), name)
    return AWS_NAMES.get(action, action)


# EC2 calls whose resources the emulator does not give but AWS checks one by one:
# the request parameter naming them. An id's prefix says its kind.
EC2_IDS = {"ec2:CreateTags": "ResourceId", "ec2:TerminateInstances": "InstanceId",
           "ec2:ModifySpotFleetRequest": "SpotFleetRequestId",
           "ec2:CancelSpotFleetRequests": "SpotFleetRequestId",
           "ec2:DescribeSpotFleetInstances": "SpotFleetRequestId",
           "ec2:DescribeSpotFleetRequestHistory": "SpotFleetRequestId"}
EC2_KINDS = {"i-": "instance", "vol-": "volume", "sfr-": "spot-fleet-request"}


def aws_call(action, resource, data, region, account):
    """(action, [resources]) as AWS checks the call the emulator names so; `data`
    holds the request's parameters ({name: [values]})."""
    if action == "s3:DeleteObjects":  # AWS checks DeleteObject on each key in the body
        return "s3:DeleteObject", [resource + "/*"]
    action = aws_action(action)
    if action in OTHER_RESOURCE:
        return action, ["*"]
    ids = [v for k, values in (data or {}).items() if k == EC2_IDS.get(action) or
           k.startswith("%s." % EC2_IDS.get(action)) for v in values]
    arns = ["arn:aws:ec2:%s:%s:%s/%s" % (region, account, kind, i) for i in ids
            for prefix, kind in EC2_KINDS.items() if i.startswith(prefix)]
    return action, arns or [resource]


def _matches(patterns, value):
    patterns = patterns if isinstance(patterns, list) else [patterns]
    return any(re.match("^%s$" % re.escape(p).replace(r"\*", ".*").replace(r"\?", "."), value,
                        re.I if ":" not in p else 0) for p in patterns)


def statement_allows(statement, action, resource):
    """Whether this Allow statement covers the call; None for a Deny that does."""
    if not _matches(statement.get("Action", []), action):
        return False
    if resource != "*" and not _matches(statement.get("Resource", "*"), resource):
        return False
    return statement["Effect"] == "Allow" or None


def allows(documents, action, resource):
    """AWS's rule: some statement allows it and none denies it."""
    found = False
    for document in documents:
        statements = document["Statement"]
        for statement in statements if isinstance(statements, list) else [statements]:
            verdict = statement_allows(statement, action, resource)
            if verdict is None:
                return False
            found = found or verdict
    return found


def as_document(policy):
    """A policy document as dict, from what the emulator keeps (str, dict or Policy)."""
    if hasattr(policy, "versions"):
        policy = next(v.document for v in policy.versions if v.is_default)
    elif isinstance(policy, dict) and "policy_document" in policy:
        policy = policy["policy_document"]
    return json.loads(policy) if isinstance(policy, str) else policy

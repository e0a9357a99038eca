"""The IAM roles we make (prepare's, and the automatic monitor's): found or made,
tagged DSPreparedFor=<APP_NAME>, and, when ours, their policies kept as
resources/policies.py writes them. `prepare --remove` deletes what carries the tag."""
import json

import botocore.exceptions

from ds.core.aws import error_code, explain
from ds.resources import policies

TAG_KEY = "DSPreparedFor"


def tags(settings):
    return [{"Key": TAG_KEY, "Value": settings.APP_NAME}]


def ours(found, settings):
    """Whether these tags (AWS's Key/Value list) mark something prepare made."""
    return any(t.get("Key") == TAG_KEY and t.get("Value") == settings.APP_NAME
               for t in found or [])


def iam_get(call, **kwargs):
    """An IAM look-up: its answer, or None when the entity does not exist."""
    try:
        return call(**kwargs)
    except botocore.exceptions.ClientError as e:
        if error_code(e) == "NoSuchEntity":
            return None
        raise


def ensure_role(iam, settings, name, service, managed=(), inline=None, say=print, hint=""):
    """Find or create a role trusting `service`; ours get their policies kept current.
    `hint` ends the line of a refusal."""
    found = iam_get(iam.get_role, RoleName=name)
    if found is None:
        with explain("create role %s" % name, hint):
            arn = iam.create_role(RoleName=name, Tags=tags(settings),
                                  AssumeRolePolicyDocument=json.dumps(policies.trust(service)),
                                  Description="Distributed-Something %s" % settings.APP_NAME
                                  )["Role"]["Arn"]
        say("Created role %s." % name)
    else:
        arn = found["Role"]["Arn"]
        if not ours(iam.list_role_tags(RoleName=name).get("Tags"), settings):
            say("Found role %s (not made by prepare; used as it is)." % name)
            return arn
        say("Found role %s." % name)
    attached = {p["PolicyArn"] for p in iam.list_attached_role_policies(
        RoleName=name)["AttachedPolicies"]}
    for policy in managed:
        if policy not in attached:
            with explain("attach %s to role %s" % (policy, name), hint):
                iam.attach_role_policy(RoleName=name, PolicyArn=policy)
            say("Attached %s to role %s." % (policy.rsplit("/", 1)[-1], name))
    for policy_name, document in (inline or {}).items():
        current = iam_get(iam.get_role_policy, RoleName=name, PolicyName=policy_name)
        if current is None or policies.as_dict(current["PolicyDocument"]) != document:
            with explain("set policy %s of role %s" % (policy_name, name), hint):
                iam.put_role_policy(RoleName=name, PolicyName=policy_name,
                                    PolicyDocument=json.dumps(document))
            say("%s policy %s of role %s." % ("Set" if current is None else "Updated",
                                             policy_name, name))
    return arn

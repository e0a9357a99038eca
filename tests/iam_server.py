"""The AWS emulator (moto's server) with IAM enforced, every decision written down.

    python tests/iam_server.py LOGFILE -H 127.0.0.1 -p PORT

moto checks each call's credentials against their policies once enforcement is
on (POST /moto-api/reset-auth 0). This replaces its decision with
iam_rules.allows, which knows AWS's action names, and appends one JSON line per
decision to LOGFILE: who (the caller's ARN), action, resource ("*" when the
emulator does not know it) and allowed. It also answers
iam:SimulatePrincipalPolicy, which moto lacks, by the same rules. AssumeRole is
left to the caller's policy alone: tests assume roles as admin, standing in for the AWS service
(ECS, Lambda, EC2) that would.
"""
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from iam_rules import allows, as_document, aws_call  # noqa: E402

from moto.core.exceptions import JsonRESTError  # noqa: E402
from moto.core.responses import ActionResult  # noqa: E402
from moto.iam.responses import IamResponse  # noqa: E402
from moto.iam import access_control  # noqa: E402
from moto.server import main  # noqa: E402

_lock = threading.Lock()


def _decide(self, resource):
    action, resources = aws_call(self._action, resource, self._data, self._region,
                                 self.account_id)
    checks = [(action, r) for r in resources]
    if action == "s3:GetObject" and not _exists(self, resources[0]):
        # AWS answers 403, not 404, for a missing object to whom may not list the bucket
        checks.append(("s3:ListBucket", resources[0].split("/")[0]))
    documents = [as_document(p) for p in self._access_key.collect_policies()]
    verdicts = [a == "sts:GetCallerIdentity" or allows(documents, a, r) for a, r in checks]
    with _lock, open(LOG, "a") as f:
        for (a, r), allowed in zip(checks, verdicts):
            f.write(json.dumps({"who": self._access_key.arn, "action": a, "resource": r,
                                "allowed": allowed}) + "\n")
    if not all(verdicts):
        action, resource = next(c for c, ok in zip(checks, verdicts) if not ok)
        if self._service in JSON_SERVICES:
            raise _AccessDeniedJson("User: %s is not authorized to perform: %s%s" % (
                self._access_key.arn, action, "" if resource == "*" else
                " on resource: " + resource))
        self._raise_access_denied()


def _exists(request, arn):
    from moto.s3.models import s3_backends
    bucket, _, key = arn[len("arn:aws:s3:::"):].partition("/")
    found = s3_backends[request.account_id]["aws"].buckets.get(bucket)
    return found is not None and key in found.keys


# moto answers a refusal in XML whatever the protocol; these services speak JSON
# (botocore's models say so), and AWS refuses them in JSON as well.
JSON_SERVICES = {"lambda", "ecs", "logs", "events", "ssm", "servicequotas", "sqs"}


class _AccessDeniedJson(JsonRESTError):
    code = 403

    def __init__(self, message):
        super().__init__("AccessDeniedException", message)


_signed_request = access_control.IAMRequestBase._create_aws_request


def _signed_request_without_made_up_body(self):
    """The request as signed. moto stands the parsed parameters in for an empty body
    (right for a form POST whose body was parsed away), also for a GET or DELETE,
    whose signature then never matches (Lambda's GetPolicy, for one)."""
    if self._method in ("GET", "HEAD", "DELETE") and not self._body:
        self._data = {}
    return _signed_request(self)


def _simulate_principal_policy(self):
    """IAM's policy simulator, which moto lacks: the principal's own policies (inline
    and attached), judged by the same rules as every call here."""
    kind, _, name = self._get_param("PolicySourceArn").split(":", 5)[5].partition("/")
    entity = (self.backend.get_user if kind == "user" else self.backend.get_role)(
        name.rsplit("/", 1)[-1])
    documents = [as_document(p) for p in list(entity.policies.values()) +
                 list(entity.managed_policies.values())]
    results = [{"EvalActionName": a, "EvalResourceName": r,
                "EvalDecision": "allowed" if allows(documents, a, r) else "implicitDeny"}
               for a in self._get_param("ActionNames")
               for r in self._get_param("ResourceArns") or ["*"]]
    return ActionResult({"EvaluationResults": results, "IsTruncated": False})


if __name__ == "__main__":
    IamResponse.simulate_principal_policy = _simulate_principal_policy
    LOG = sys.argv.pop(1)
    access_control.IAMRequestBase.check_action_permitted = _decide
    access_control.IAMRequestBase._create_aws_request = _signed_request_without_made_up_body
    sys.exit(main(sys.argv[1:]))

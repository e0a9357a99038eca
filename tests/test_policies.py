"""The IAM policies we write, read as documents: linted by parliament, and their
conditions, which the emulator does not evaluate (tests/test_least_privilege.py
shows what a run needs of them)."""
import json

import pytest
from parliament import analyze_policy_string

from test_fleet import with_
from test_prepare import shipped_config
from test_steps import FLEET

from ds.core.settings import load
from ds.resources import fleet, policies

ACCOUNT = "123456789012"
# Findings we accept, and why:
ACCEPTED = {
    # one user may run any app: the user's run policy names no app's resources
    ("user_run", "RESOURCE_STAR"),
    # prepare writes the bucket's log-export statements (a bucket policy), so it may
    # also write one that lets the user read the bucket: the bucket is the user's
    ("user_prepare", "RESOURCE_POLICY_PRIVILEGE_ESCALATION"),
    # creating a security group or key pair, and reading SSM's public AMI
    # parameter, name no resource known in advance
    ("user_prepare", "RESOURCE_STAR"),
}


@pytest.fixture
def settings(tmp_path):
    (tmp_path / "config.py").write_text(shipped_config("my-lab-ds-bucket"))
    return load(str(tmp_path / "config.py"))


def written(settings):
    """Every policy we write or tell users to ask for, by name."""
    return {
        "worker": policies.worker(settings, ACCOUNT),
        "machine_extra": policies.machine_extra(settings),
        "monitor_function": policies.monitor_function(settings, ACCOUNT),
        "user_run": policies.user_run(settings, ACCOUNT),
        "user_auto_monitor": policies.user_auto_monitor(settings, ACCOUNT),
        "user_prepare": policies.user_prepare(settings, ACCOUNT),
        "log_export": {"Version": "2012-10-17",
                       "Statement": policies.log_export_statements(settings)},
    }


def test_every_policy_passes_the_linter(settings):
    findings = []
    for name, document in written(settings).items():
        for f in analyze_policy_string(json.dumps(document)).findings:
            if (name, f.issue) not in ACCEPTED:
                findings.append((name, f.issue, f.detail))
    assert not findings


def _statements_with(document, action):
    return [s for s in document["Statement"]
            if action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]


def test_machines_and_fleets_are_acted_on_only_when_tagged_with_this_app(settings):
    """The emulator ignores conditions: this reads them."""
    app = settings.APP_NAME
    worker = policies.worker(settings, ACCOUNT)
    monitor = policies.monitor_function(settings, ACCOUNT)
    instances = [st for st in worker["Statement"] if "instance/" in str(st["Resource"])]
    for document, action in [({"Statement": instances}, "ec2:CreateTags"),
                             (worker, "ec2:TerminateInstances"),
                             (monitor, "ec2:TerminateInstances"),
                             (monitor, "ec2:ModifySpotFleetRequest"),
                             (monitor, "ec2:CancelSpotFleetRequests")]:
        found = _statements_with(document, action)
        assert found, action
        for s in found:
            assert s["Resource"] != "*", (action, s)
            tags = {k: v for cond in s["Condition"].values() for k, v in cond.items()
                    if k.endswith("ResourceTag/APP_NAME")}  # the resource's own tag
            assert tags and set(tags.values()) == {app}, (action, s)
    # the volume statement lets the worker set our two tags on disks, nothing else
    volume, = [s for s in _statements_with(worker, "ec2:CreateTags") if "volume/" in s["Resource"]]
    assert volume["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"] == ["APP_NAME", "Name"]


def test_the_fleet_tags_its_machines_and_itself_with_the_app_even_over_its_files_tags(settings):
    own = json.loads(json.dumps(FLEET))
    own["LaunchSpecifications"][0]["TagSpecifications"] = [{"ResourceType": "instance", "Tags": [
        {"Key": "APP_NAME", "Value": "someone else"}, {"Key": "team", "Value": "lab"}]}]
    for source in (FLEET, own):
        req = fleet.build_request(with_(settings, CLUSTER_MACHINES=1), source, "fleet.json")
        assert {"Key": "APP_NAME", "Value": settings.APP_NAME} in [
            t for s in req["TagSpecifications"] if s["ResourceType"] == "spot-fleet-request"
            for t in s["Tags"]]
        for spec in req["LaunchSpecifications"]:
            tags = [t for s in spec["TagSpecifications"] if s["ResourceType"] == "instance"
                    for t in s["Tags"]]
            assert [t["Value"] for t in tags if t["Key"] == "APP_NAME"] == [settings.APP_NAME]
    assert {"Key": "team", "Value": "lab"} in req["LaunchSpecifications"][0][
        "TagSpecifications"][0]["Tags"]  # the file's own tags are kept


def test_every_reason_to_keep_an_action_names_an_action_of_that_policy(settings):
    documents = written(settings)
    for (name, action), why in policies.NOT_SEEN_IN_TESTS.items():
        assert why and _statements_with(documents[name], action), (name, action)


def test_an_assumed_roles_principal_keeps_the_roles_path(boto):
    """IAM's policy simulator needs the role's own ARN; an SSO role's holds a path."""
    from ds.commands.check import principal
    iam = boto("iam")
    arn = iam.create_role(
        RoleName="AWSReservedSSO_Scientist_0123", Path="/aws-reserved/sso.amazonaws.com/",
        AssumeRolePolicyDocument=json.dumps(policies.trust("sso.amazonaws.com")))["Role"]["Arn"]
    assert "/aws-reserved/sso.amazonaws.com/" in arn
    assert principal(iam, "arn:aws:sts::%s:assumed-role/AWSReservedSSO_Scientist_0123/jane"
                     % ACCOUNT) == arn
    user = "arn:aws:iam::%s:user/jane" % ACCOUNT
    assert principal(iam, user) == user

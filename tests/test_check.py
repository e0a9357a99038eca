"""`python run.py check`: on a prepared account it passes; each broken thing gives exactly its line.

The account is prepared once for this module. Each case breaks one thing in
a copy of the config or fleet file (pointing at something missing or wrong,
made here when needed) and never changes what the other cases use.
"""
import json
import os
import re

import boto3
import pytest

from conftest import REGION, REPO, emulator_env, reset, run_py
from test_prepare import FLEET_FILE, aws_like_default_vpc, shipped_config

# the tests share one account (a module fixture): one process runs them, in order
pytestmark = pytest.mark.together

NO_SUCH = {"ami": "ami-0123456789abcdef0", "subnet": "subnet-0123456789abcdef0",
           "sg": "sg-0123456789abcdef0"}


@pytest.fixture(scope="module")
def account(emulator_iam, tmp_path_factory):
    """An emulated account after `prepare`, and the config naming its worker role."""
    emulator = emulator_iam
    reset(emulator)
    home = tmp_path_factory.mktemp("home")
    env = emulator_env(emulator, str(home))
    work = tmp_path_factory.mktemp("prepared")
    (work / "files").mkdir()

    def client(service, region=REGION):
        return boto3.client(service, endpoint_url=emulator, region_name=region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    aws_like_default_vpc(client)
    (work / "config.py").write_text(shipped_config())
    out = run_py(["prepare"], env, cwd=str(work))
    assert out.returncode == 0, out.stderr
    arn = re.search(r"^Set TASK_ROLE_ARN = '(arn:[^']+)'", out.stdout, re.M).group(1)
    config = shipped_config().replace("TASK_ROLE_ARN = ''", "TASK_ROLE_ARN = '%s'" % arn)
    fleet = json.loads((work / FLEET_FILE).read_text())
    return {"env": env, "client": client, "config": config, "fleet": fleet, "dir": work}


def check(account, tmp_path, config=None, fleet=None, job=None):
    """Run `python run.py check JOB FLEET` on copies; return (exit code, non-ok lines)."""
    (tmp_path / "config.py").write_text(config or account["config"])
    (tmp_path / "fleet.json").write_text(json.dumps(fleet or account["fleet"]))
    if job is None:
        with open(os.path.join(REPO, "files", "exampleJob.json")) as f:
            job = json.load(f)
    (tmp_path / "job.json").write_text(json.dumps(job))
    result = run_py(["check", "job.json", "fleet.json"], account["env"], cwd=str(tmp_path))
    assert "Traceback" not in result.stderr, result.stderr
    lines = [l for l in result.stdout.splitlines() if l.startswith(("PROBLEM", "warning",
                                                                      "unchecked"))]
    return result.returncode, lines, result.stdout


def test_prepared_account_passes(account, tmp_path):
    code, lines, out = check(account, tmp_path)
    assert code == 0, out
    assert "No problem found" in out
    # the emulator has no policy simulator and no Service Quotas for EC2: said, not fatal
    assert len(lines) == 2, out
    assert lines[0].startswith("unchecked could not check the rights AUTO_MONITOR needs: "), out
    assert lines[1].startswith("unchecked could not check the spot vCPU quota: "), out


def _spec0(fleet, **changes):
    fleet["LaunchSpecifications"][0].update(changes)
    return fleet


def _nic0(fleet, **changes):
    fleet["LaunchSpecifications"][0]["NetworkInterfaces"][0].update(changes)
    return fleet


def _role_arn(fleet, name):
    return fleet["IamFleetRole"].rsplit("/", 1)[0] + "/" + name


def _plain_ami(a):
    images = a["client"]("ec2").describe_images(Owners=["amazon"])["Images"]
    return next(i["ImageId"] for i in images
                if "ecs" not in (i.get("Name", "") + i.get("Description", "")).lower())


def _group_in_other_vpc(a):
    ec2 = a["client"]("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    return ec2.create_security_group(GroupName="elsewhere", Description="x", VpcId=vpc)["GroupId"]


def _subnet_in(a, zone):
    return a["client"]("ec2").describe_subnets(Filters=[
        {"Name": "default-for-az", "Values": ["true"]},
        {"Name": "availability-zone", "Values": [zone]}])["Subnets"][0]["SubnetId"]


def _bucket_elsewhere(a):
    a["client"]("s3", "eu-west-1").create_bucket(
        Bucket="ds-check-eu", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return a["config"].replace("ds-prepare-test", "ds-check-eu")


# (id, how to break it: account -> {config, fleet, job}, words of the one PROBLEM line)
CASES = [
    ("job file", lambda a: {"job": {"groups": []}}, ["job.json"]),
    ("fleet file shape", lambda a: {"fleet": {k: v for k, v in a["fleet"].items()
                                              if k != "IamFleetRole"}},
     ["fleet.json", "IamFleetRole is missing"]),
    ("bucket missing", lambda a: {"config": a["config"].replace("ds-prepare-test",
                                                                "ds-check-missing")},
     ["bucket ds-check-missing does not exist"]),
    ("bucket region", lambda a: {"config": _bucket_elsewhere(a)},
     ["bucket ds-check-eu is in eu-west-1, not in AWS_REGION us-east-1"]),
    ("fleet role missing", lambda a: {"fleet": dict(a["fleet"], IamFleetRole=_role_arn(
        a["fleet"], "nope"))}, ["role nope does not exist"]),
    ("fleet role trust", lambda a: {"fleet": dict(a["fleet"], IamFleetRole=_role_arn(
        a["fleet"], "ExampleProjectMachineRole"))},
     ["ExampleProjectMachineRole does not trust spotfleet.amazonaws.com"]),
    ("no instance profile", lambda a: {"fleet": _spec0(a["fleet"], IamInstanceProfile={})},
     ["launch specification 1 has no IamInstanceProfile"]),
    ("instance profile missing", lambda a: {"fleet": _spec0(a["fleet"], IamInstanceProfile={
        "Arn": "arn:aws:iam::123456789012:instance-profile/nope"})},
     ["instance profile nope does not exist"]),
    ("task role trust", lambda a: {"config": a["config"].replace("WorkerRole", "SpotFleetRole")},
     ["TASK_ROLE_ARN: role ExampleProjectSpotFleetRole does not trust ecs-tasks.amazonaws.com"]),
    ("AMI missing", lambda a: {"fleet": _spec0(a["fleet"], ImageId=NO_SUCH["ami"])},
     ["AMI %s does not exist in us-east-1" % NO_SUCH["ami"]]),
    ("AMI not ECS", lambda a: {"fleet": _spec0(a["fleet"], ImageId=_plain_ami(a))},
     ["is not ECS-optimized"]),
    ("AMI disk", lambda a: {"config": a["config"].replace("EBS_VOL_SIZE = 30",
                                                          "EBS_VOL_SIZE = 10")},
     ["root disk (10 GB) is smaller than AMI"]),
    ("subnet missing", lambda a: {"fleet": _nic0(a["fleet"], SubnetId=NO_SUCH["subnet"])},
     ["subnet %s does not exist" % NO_SUCH["subnet"]]),
    ("group missing", lambda a: {"fleet": _nic0(a["fleet"], Groups=[NO_SUCH["sg"]])},
     ["security group %s does not exist" % NO_SUCH["sg"]]),
    ("two VPCs", lambda a: {"fleet": _nic0(a["fleet"], Groups=[_group_in_other_vpc(a)])},
     ["are in 2 VPCs"]),
    ("key pair", lambda a: {"fleet": _spec0(a["fleet"], KeyName="nope")},
     ["key pair nope does not exist"]),
    ("type not in zone", lambda a: {"fleet": _nic0(a["fleet"], SubnetId=_subnet_in(
        a, "us-east-1e"))}, ["MACHINE_TYPE m5.xlarge is not offered in us-east-1e"]),
    ("price", lambda a: {"config": a["config"].replace("MACHINE_PRICE = 0.10",
                                                       "MACHINE_PRICE = 0.000001")},
     ["MACHINE_PRICE 1e-06 is below the spot price of m5.xlarge"]),
    ("ASSIGN_IP", lambda a: {"config": a["config"].replace("ASSIGN_IP = 'True'",
                                                           "ASSIGN_IP = 'False'")},
     ["ASSIGN_IP is False", "only through an internet gateway", "ASSIGN_IP = True"]),
    ("no public IP", lambda a: {"fleet": _nic0(a["fleet"], AssociatePublicIpAddress=False)},
     ["launch specification 1 gives machines no public IP", "AssociatePublicIpAddress"]),
]


@pytest.mark.parametrize("break_it, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_broken_thing_gives_exactly_its_line(account, tmp_path, break_it, words):
    broken = break_it(dict(account, fleet=json.loads(json.dumps(account["fleet"]))))
    code, lines, out = check(account, tmp_path, **broken)
    problems = [l for l in lines if l.startswith("PROBLEM")]
    assert code == 1, out
    assert len(problems) == 1, out
    for w in words:
        assert w in problems[0], out
    assert "1 problem found." in out


def test_check_only_reads(account, tmp_path, monkeypatch):
    """Every call check makes is a Describe, Get, List or Head call."""
    from ds.commands import check as check_module
    from ds.core.aws import Session
    from ds.core.settings import load
    for k, v in account["env"].items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    (tmp_path / "config.py").write_text(account["config"])
    settings = load(str(tmp_path / "config.py"))
    aws = Session(settings)
    calls = []
    aws._boto.events.register("before-call", lambda model, **_: calls.append(model.name))
    monkeypatch.chdir(account["dir"])
    report = check_module.run(aws, settings, "config.py", os.path.join(
        REPO, "files", "exampleJob.json"), FLEET_FILE)
    assert not report.problems
    assert len(calls) > 10
    # SimulatePrincipalPolicy: IAM's policy simulator, which reads policies only
    assert all(re.match(r"(Describe|Get|List|Head|SimulatePrincipalPolicy$)", c)
               for c in calls), calls


def test_start_cluster_refuses_before_requesting_a_machine(account, tmp_path):
    broken = _spec0(json.loads(json.dumps(account["fleet"])), ImageId=NO_SUCH["ami"])
    (tmp_path / "config.py").write_text(account["config"])
    (tmp_path / "fleet.json").write_text(json.dumps(broken))
    assert run_py(["setup"], account["env"], cwd=str(tmp_path)).returncode == 0
    result = run_py(["startCluster", "fleet.json"], account["env"], cwd=str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: startCluster requested no machine: fleet.json: AMI ")
    assert len(result.stderr.strip().splitlines()) == 1  # one problem, one line
    assert "AMI %s does not exist" % NO_SUCH["ami"] in result.stderr
    ec2 = account["client"]("ec2")
    assert not ec2.describe_spot_fleet_requests()["SpotFleetRequestConfigs"]
    assert not (tmp_path / "files" / "ExampleProjectSpotFleetRequestId.json").exists()


def test_spot_vcpu_quota_against_cluster_machines(tmp_path, monkeypatch):
    """The emulator has no EC2 quotas: patch one in, in-process."""
    from moto.server import ThreadedMotoServer
    from moto.servicequotas.models import ServiceQuotasBackend
    from ds.commands import check as check_module
    from ds.core.aws import Session
    from ds.core.settings import load

    def quota(self, service_code, quota_code):
        return {"ServiceCode": service_code, "QuotaCode": quota_code, "Value": 8.0}
    monkeypatch.setattr(ServiceQuotasBackend, "get_service_quota", quota)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        url = "http://127.0.0.1:%d" % server.get_host_and_port()[1]
        home = tmp_path / "home"
        home.mkdir()
        for k, v in emulator_env(url, str(home)).items():
            if k.startswith("AWS_"):
                monkeypatch.setenv(k, v)
        seen = {}
        for machines in (2, 3):
            (tmp_path / "config.py").write_text(shipped_config() + "\nCLUSTER_MACHINES = %d\n"
                                                % machines)
            settings = load(str(tmp_path / "config.py"))
            report = check_module.Report()
            check_module.spot_quota(report, Session(settings), settings)
            seen[machines] = report.lines
    finally:
        server.stop()
    assert seen[2] == [("ok", "8 spot vCPUs needed, quota 8.")]
    assert len(seen[3]) == 1 and seen[3][0][0] == "PROBLEM"
    assert "CLUSTER_MACHINES 3 x 4 vCPUs (m5.xlarge) needs 12 spot vCPUs" in seen[3][0][1]

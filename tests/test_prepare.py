"""`python run.py prepare` from an empty emulated account: idempotent, removable, and enough for a run."""
import json
import os
import re
import stat

import pytest

from conftest import REPO, run_py

# prepare attaches AWS managed policies: the emulator must know them.
pytestmark = pytest.mark.managed_policies

FLEET_FILE = "files/ExampleProjectFleet_us-east-1.json"
BUCKET = "ds-prepare-test"


def aws_like_default_vpc(client):
    """AWS gives the default VPC an internet gateway and a 0.0.0.0/0 route; the emulator does not."""
    ec2 = client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc["VpcId"])
    main = ec2.describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [vpc["VpcId"]]},
        {"Name": "association.main", "Values": ["true"]}])["RouteTables"][0]
    ec2.create_route(RouteTableId=main["RouteTableId"], DestinationCidrBlock="0.0.0.0/0",
                     GatewayId=igw)
    return vpc["VpcId"]


def shipped_config(bucket=BUCKET):
    """The repository's config.py with the one edit every user makes: the bucket name."""
    with open(os.path.join(REPO, "config.py")) as f:
        text = f.read()
    assert "AWS_BUCKET = 'your-bucket-name'" in text
    return text.replace("AWS_BUCKET = 'your-bucket-name'", "AWS_BUCKET = '%s'" % bucket)


@pytest.fixture
def user(tmp_path, aws_env, boto):
    """A user's folder: the shipped config and example job, on an AWS-like emulated account."""
    (tmp_path / "config.py").write_text(shipped_config())
    (tmp_path / "files").mkdir()
    with open(os.path.join(REPO, "files", "exampleJob.json")) as f:
        (tmp_path / "files" / "exampleJob.json").write_text(f.read())
    aws_like_default_vpc(boto)

    def run(*args, ok=True):
        result = run_py(list(args), aws_env, cwd=str(tmp_path), timeout=300)
        if ok:
            assert result.returncode == 0, result.stdout + result.stderr
            assert "Traceback" not in result.stderr
        return result
    run.dir = tmp_path
    return run


def snapshot(client):
    """What prepare may touch, as comparable data."""
    iam, ec2, s3 = client("iam"), client("ec2"), client("s3")
    roles = sorted(r["RoleName"] for r in iam.list_roles()["Roles"])
    profiles = sorted(p["InstanceProfileName"]
                      for p in iam.list_instance_profiles()["InstanceProfiles"])
    policies = {r: sorted(iam.list_role_policies(RoleName=r)["PolicyNames"]) for r in roles}
    groups = sorted((g["GroupName"], g["GroupId"])
                    for g in ec2.describe_security_groups()["SecurityGroups"])
    keys = sorted(k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"])
    buckets = sorted(b["Name"] for b in s3.list_buckets()["Buckets"])
    return {"roles": roles, "profiles": profiles, "policies": policies, "groups": groups,
            "keys": keys, "buckets": buckets}


CHANGING = re.compile(r"^(Created|Wrote|Set policy|Updated|Attached|Let |Deleted)", re.M)


def test_prepare_twice_changes_nothing_and_remove_undoes_it(user, boto):
    before = snapshot(boto)
    first = user("prepare", "--key")
    for what in ("role ExampleProjectMachineRole", "instance profile ExampleProjectMachineRole",
                 "role ExampleProjectSpotFleetRole", "role ExampleProjectWorkerRole",
                 "bucket %s" % BUCKET, "security group ExampleProject-workers",
                 "key pair your-key-file", "fleet file %s" % FLEET_FILE):
        assert what in first.stdout, first.stdout
    pem = user.dir / "your-key-file.pem"
    assert stat.S_IMODE(os.stat(pem).st_mode) == 0o600
    assert "BEGIN" in pem.read_text()
    fleet = json.loads((user.dir / FLEET_FILE).read_text())
    after = snapshot(boto)

    second = user("prepare", "--key")
    assert not CHANGING.findall(second.stdout), second.stdout
    assert snapshot(boto) == after
    assert json.loads((user.dir / FLEET_FILE).read_text()) == fleet

    s3 = boto("s3")
    access = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(access.values())
    statements = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"]
    assert {s["Principal"]["Service"] for s in statements} == {"logs.us-east-1.amazonaws.com"}

    removed = user("prepare", "--remove")
    assert "Deleted role ExampleProjectWorkerRole" in removed.stdout
    assert snapshot(boto) == before
    assert not (user.dir / FLEET_FILE).exists() and not pem.exists()
    user("prepare", "--remove")  # a second remove finds nothing and fails nothing
    assert snapshot(boto) == before


def test_fleet_file_covers_every_zone_offering_the_type_with_public_ips(user, boto):
    user("prepare")
    fleet = json.loads((user.dir / FLEET_FILE).read_text())
    ec2 = boto("ec2")
    offered = {o["Location"] for o in ec2.describe_instance_type_offerings(
        LocationType="availability-zone",
        Filters=[{"Name": "instance-type", "Values": ["m5.xlarge"]}])["InstanceTypeOfferings"]}
    subnets = {s["SubnetId"]: s["AvailabilityZone"] for s in ec2.describe_subnets(
        Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]}
    expected = sorted(sid for sid, zone in subnets.items() if zone in offered)
    assert len(expected) < len(subnets)  # the emulator leaves one zone without m5.xlarge
    nics = [s["NetworkInterfaces"][0] for s in fleet["LaunchSpecifications"]]
    assert sorted(n["SubnetId"] for n in nics) == expected
    assert all(n["AssociatePublicIpAddress"] is True for n in nics)  # internet gateway only
    image = fleet["LaunchSpecifications"][0]["ImageId"]
    assert image == boto("ssm").get_parameter(
        Name="/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id")[
        "Parameter"]["Value"]
    group = nics[0]["Groups"][0]
    assert not ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0][
        "IpPermissions"]


def test_fresh_account_to_a_finished_run(user, boto):
    """Done when: prepare, check, setup, submitJob, startCluster, monitor with two edits."""
    out = user("prepare").stdout
    line = re.search(r"^Set TASK_ROLE_ARN = '(arn:[^']+)' in config.py.$", out, re.M)
    assert line, out
    config = user.dir / "config.py"
    config.write_text(config.read_text().replace("TASK_ROLE_ARN = ''",
                                                 "TASK_ROLE_ARN = '%s'" % line.group(1)))
    check = user("check", "files/exampleJob.json", FLEET_FILE)
    assert "No problem found" in check.stdout, check.stdout
    user("setup")
    assert "Queued 12 jobs" in user("submitJob", "files/exampleJob.json").stdout
    started = user("startCluster", FLEET_FILE)
    assert "2 machines are running" in started.stdout, started.stdout

    refused = user("prepare", "--remove", ok=False)
    assert refused.returncode == 1 and "still use" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    sqs = boto("sqs")
    url = sqs.get_queue_url(QueueName="ExampleProjectQueue")["QueueUrl"]
    done = 0
    for _ in range(100):  # act as the workers the emulator does not run
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                   WaitTimeSeconds=1).get("Messages", [])
        for m in msgs:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        done += len(msgs)
        if done >= 12:
            break
    assert done == 12
    monitored = user("monitor", "files/ExampleProjectSpotFleetRequestId.json")
    assert "12 jobs done" in monitored.stdout, monitored.stdout
    user("prepare", "--remove")


def test_documented_policies_are_the_ones_prepare_makes(tmp_path):
    """The manual path of step 0 quotes exactly what ds/resources/policies.py puts in place."""
    from ds.resources import policies
    from ds.core.settings import load
    config = shipped_config("my-lab-ds-bucket").replace("APP_NAME = 'ExampleProject'",
                                                        "APP_NAME = 'MyProject'")
    (tmp_path / "config.py").write_text(config)
    settings = load(str(tmp_path / "config.py"))
    with open(os.path.join(REPO, "documentation", "step_0_prep.md")) as f:
        blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", f.read(), re.S)
                  if '"Statement"' in b]
    expected = [{"Version": "2012-10-17", "Statement": policies.log_export_statements(settings)},
                policies.machine_extra(settings),
                policies.worker(settings, "123456789012")]
    for document in expected:
        assert document in blocks


def test_bucket_in_another_region_is_one_line(user, boto):
    boto("s3").create_bucket(Bucket=BUCKET,
                             CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    result = user("prepare", ok=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "error: Bucket %s is in eu-west-1, not in AWS_REGION us-east-1: set AWS_REGION = "
        "'eu-west-1' or choose another AWS_BUCKET in config.py." % BUCKET)
    assert "ExampleProjectMachineRole" not in [
        r["RoleName"] for r in boto("iam").list_roles()["Roles"]]  # nothing made

"""`python run.py prepare` from an empty emulated account: idempotent, removable, and enough for a run."""
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys

import pytest

from conftest import REPO, run_py, user_runner
from worker_helpers import Proc

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


def readme_aws_path():
    """The README's AWS path: its code lines in order, from its own text."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    section = text.split("## From a fresh AWS account", 1)[1].split("\n## ", 1)[0]
    lines = [l[4:].split("  #")[0].strip() for l in section.splitlines() if l.startswith("    ")]
    return [l for l in lines if l]


def readme_edits():
    """The config.py lines README's step 2 tells every user to write."""
    return [l for l in readme_aws_path() if re.match(r"^[A-Z_]+ = ", l)]


def edit(text, line):
    """config.py text with `line` (NAME = value) in place of NAME's line."""
    name = line.split(" = ")[0]
    assert re.search(r"^%s = " % name, text, re.M), name
    return re.sub(r"^%s = .*$" % name, lambda m: line, text, count=1, flags=re.M)


def shipped_config(bucket=BUCKET):
    """The repository's config.py with README's edits, and `bucket` as the bucket."""
    with open(os.path.join(REPO, "config.py")) as f:
        text = f.read()
    for line in readme_edits():
        text = edit(text, line)
    return edit(text, "AWS_BUCKET = '%s'" % bucket)


@pytest.fixture
def user(tmp_path, aws_env, boto):
    """A user's folder: the shipped config and example job, on an AWS-like emulated account."""
    (tmp_path / "config.py").write_text(shipped_config())
    (tmp_path / "files").mkdir()
    with open(os.path.join(REPO, "files", "exampleJob.json")) as f:
        (tmp_path / "files" / "exampleJob.json").write_text(f.read())
    aws_like_default_vpc(boto)
    return user_runner(aws_env, tmp_path)


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
    pem = user.dir / "home" / ".ssh" / "your-key-file.pem"
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


def ecs_stand_in(env, boto, app, count):
    """Worker processes with the registered task definition's environment, as ECS
    would run them on the fleet's machines (the emulator runs no container)."""
    ecs = boto("ecs")
    arn = ecs.list_task_definitions(familyPrefix=app + "Task")["taskDefinitionArns"][-1]
    container = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"][
        "containerDefinitions"][0]
    env = dict(env, **{e["name"]: e["value"] for e in container["environment"]})
    env.setdefault("AWS_REGION", env["AWS_DEFAULT_REGION"])
    return [Proc.worker(env, os.path.join(env["HOME"], "worker%d.log" % i))
            for i in range(count)]


@pytest.mark.slow
def test_readme_aws_path_from_an_empty_account_to_outputs_on_disk(user, boto, aws_env,
                                                                  workers):
    """Done when: README's AWS path, command by command, with only the edits it names."""
    config = user.dir / "config.py"
    with open(os.path.join(REPO, "config.py")) as f:
        config.write_text(f.read())  # as shipped: the README's edits are part of the path
    shutil.copytree(os.path.join(REPO, "files", "exampleData"), user.dir / "files" / "exampleData")
    said = {}
    for line in readme_aws_path():
        if re.match(r"^[A-Z_]+ = ", line):
            config.write_text(edit(config.read_text(), line))
            continue
        if not line.startswith("python run.py "):
            # credentials and the image: the AWS command line tool, Docker Hub and ECR,
            # which the emulator does not stand in for
            assert line.split()[0] in ("aws", "docker", "make"), line
            continue
        args = shlex.split(line)[2:]
        said[args[0]] = out = user(*args).stdout
        if args[0] == "prepare":  # "copy that line into config.py"
            role = re.search(r"^Set (TASK_ROLE_ARN = '[^']+') in config.py.$", out, re.M)
            config.write_text(edit(config.read_text(), role.group(1)))
        if args[0] == "startCluster":
            workers.procs.extend(ecs_stand_in(aws_env, boto, "ExampleProject", 2))
    assert "No problem found" in said["check"] and "calls run as arn:aws:" in said["check"]
    assert "Uploaded 13 files from files/exampleData" in said["upload"], said["upload"]
    assert "Queued 12 jobs" in said["submitJob"]
    assert "Run ExampleProject finished: 12 jobs done, 0 in the dead-letter queue" \
        in said["monitor"], said["monitor"]
    assert "could not be read" not in said["status"], said["status"]
    assert "Nothing to redrive" in said["redrive"]
    # the report written after the clean-up counts what the run's end recorded
    page = (user.dir / "ExampleProject-report.html").read_text()
    assert '<b id="done">12</b>' in page and '<b id="failed">0</b>' in page
    assert "Downloaded 12 files" in said["download"], said["download"]
    # the outputs on disk are what the example's tool makes of each well's inputs
    job = json.loads((user.dir / "files" / "exampleJob.json").read_text())
    for group in job["groups"]:
        expected = user.dir / ("expected-%s.json" % group["well"])
        subprocess.run([sys.executable, str(user.dir / "files" / "exampleData" / "summarize.py"),
                        str(user.dir / "files" / "exampleData" / "measurements" /
                            ("%s.csv" % group["well"])), str(expected)], check=True)
        got = user.dir / "outputs" / group["output"] / ("%s.json" % group["well"])
        assert json.loads(got.read_text()) == json.loads(expected.read_text())
    again = user("download", "files/exampleJob.json").stdout
    assert "Downloaded 0 files of 12 job output folders to outputs/ (12 files already " \
           "there)." in again, again


def test_shipped_config_makes_nothing_and_says_what_to_change(user, boto):
    with open(os.path.join(REPO, "config.py")) as f:
        (user.dir / "config.py").write_text(f.read())
    before = snapshot(boto)
    refused = user("prepare", ok=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.splitlines() == [
        "error: config.py: AWS_BUCKET is still the example's 'your-bucket-name': set it to a "
        "bucket name of your own (prepare creates it).",
        "error: config.py: DOCKERHUB_TAG is still the example's "
        "'yourname/distributed-something:latest': set it to the worker image you push "
        "(README, 'Build and push the worker image')."]
    assert snapshot(boto) == before
    checked = user("check", "files/exampleJob.json", ok=False)
    assert checked.returncode == 1
    problems = [l for l in checked.stdout.splitlines() if l.startswith("PROBLEM")]
    assert any("AWS_BUCKET is still the example's" in l for l in problems), checked.stdout
    assert any("DOCKERHUB_TAG is still the example's" in l for l in problems), checked.stdout


def test_key_lands_with_the_ssh_keys_and_git_status_stays_clean(user, aws_env):
    checkout = user.dir / "checkout"  # a clone: the repository's files, committed
    shutil.copytree(str(user.dir / "files"), str(checkout / "files"))
    for name in ("config.py", ".gitignore"):
        shutil.copy(os.path.join(REPO, name) if name == ".gitignore" else
                    str(user.dir / name), str(checkout / name))

    def git(*args):
        return subprocess.run(("git", "-c", "user.name=t", "-c", "user.email=t@t") + args,
                              cwd=str(checkout), capture_output=True, text=True,
                              check=True).stdout
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "checkout")
    made = run_py(["prepare", "--key"], aws_env, cwd=str(checkout))
    assert made.returncode == 0, made.stdout + made.stderr
    pem = os.path.join(aws_env["HOME"], ".ssh", "your-key-file.pem")
    assert "its private key is in %s (mode 0600)" % pem in made.stdout, made.stdout
    assert stat.S_IMODE(os.stat(pem).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(pem)).st_mode) == 0o700
    assert git("status", "--porcelain", "--ignored") == \
        "!! files/ExampleProjectFleet_us-east-1.json\n"
    # a key saved into the checkout by hand (the manual path's `aws ec2 create-key-pair`)
    (checkout / "my-ds-key.pem").write_text("-----BEGIN RSA PRIVATE KEY-----\n")
    assert git("status", "--porcelain") == ""


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
    account = "123456789012"
    expected = [{"Version": "2012-10-17", "Statement": policies.log_export_statements(settings)},
                policies.machine_extra(settings),
                policies.worker(settings, account),
                policies.monitor_function(settings, account),
                # section 4: what the user asks for; tests/test_least_privilege.py runs with it
                policies.user_run(settings, account),
                policies.user_auto_monitor(settings, account),
                policies.user_prepare(settings, account)]
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


def test_remove_waits_for_a_run_whose_automatic_monitor_is_still_ending(user, boto):
    user("prepare")
    before = snapshot(boto)
    boto("s3").put_object(Bucket=BUCKET, Key="monitors/ExampleProject.json", Body=b"{}")
    refused = user("prepare", "--remove", ok=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: Not removing anything: the automatic monitor of a run that is still ending "
        "still uses what prepare made; run `python run.py monitor` to end the run (or cancel "
        "it), then try again.")
    assert snapshot(boto) == before

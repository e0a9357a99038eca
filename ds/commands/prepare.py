"""`python run.py prepare`: make an account and region ready for runs, and take it away again.

Everything made here carries the tag DSPreparedFor=<APP_NAME>; `--remove`
deletes only what carries it, so roles, buckets or keys the user had before
are used but never deleted. Running prepare twice changes nothing.
"""
import json
import os

import botocore.exceptions

from ds.core.aws import error_code, explain, is_gone
from ds.core.errors import UserError
from ds.core.jsonfile import read_json, write_json
from ds.core.settings import placeholders
from ds.monitor.auto import state
from ds.resources import automonitor, network, policies, roles
from ds.resources.roles import ensure_role, iam_get

AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
ACTIVE_FLEET_STATES = ("submitted", "active", "modifying")
LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


def role_names(settings):
    app = settings.APP_NAME
    return {"machine": app + "MachineRole", "fleet": app + "SpotFleetRole",
            "worker": app + "WorkerRole", "monitor": automonitor.role_name(app)}


def fleet_file_path(settings):
    return "files/%sFleet_%s.json" % (settings.APP_NAME, settings.AWS_REGION)


def key_pair_name(settings):
    name = settings.SSH_KEY_NAME
    return name[:-4] if name.endswith(".pem") else name


def key_file(name):
    """Where `prepare --key` saves a private key: with the user's other SSH keys,
    never in the checkout, where `git add` would offer it."""
    return os.path.join(os.path.expanduser("~"), ".ssh", name + ".pem")


def ensure_instance_profile(iam, settings, name, say=print):
    found = iam_get(iam.get_instance_profile, InstanceProfileName=name)
    if found is None:
        with explain("create instance profile %s" % name):
            profile = iam.create_instance_profile(InstanceProfileName=name,
                                                  Tags=roles.tags(settings))["InstanceProfile"]
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        say("Created instance profile %s for role %s." % (name, name))
    else:
        profile = found["InstanceProfile"]
        if not profile.get("Roles"):
            with explain("add role %s to instance profile %s" % (name, name)):
                iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        say("Found instance profile %s." % name)
    return profile["Arn"]


# ---- S3 ----------------------------------------------------------------------

def ensure_bucket(s3, settings, say=print):
    bucket, region = settings.AWS_BUCKET, settings.AWS_REGION
    try:
        s3.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as e:
        if not is_gone(e):
            raise UserError("Bucket %s exists but these credentials may not use it (someone "
                            "else's?): choose another AWS_BUCKET in config.py." % bucket)
        args = {"Bucket": bucket}
        if region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        with explain("create bucket %s" % bucket):
            s3.create_bucket(**args)
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True,
                "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
            s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": roles.tags(settings)})
        say("Created bucket %s in %s (public access blocked)." % (bucket, region))
        return
    where = bucket_region(s3, bucket)
    if where != region:
        raise UserError("Bucket %s is in %s, not in AWS_REGION %s: set AWS_REGION = '%s' or "
                        "choose another AWS_BUCKET in config.py." % (bucket, where, region, where))
    say("Found bucket %s in %s." % (bucket, region))


def bucket_region(s3, bucket):
    return s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"


def _bucket_policy(s3, bucket):
    try:
        return json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except botocore.exceptions.ClientError as e:
        if error_code(e) == "NoSuchBucketPolicy":
            return None
        raise


def _others(policy):
    return [s for s in (policy or {}).get("Statement", [])
            if s.get("Sid") not in policies.LOG_EXPORT_SIDS]


def ensure_log_export_policy(s3, settings, say=print):
    """Add our two statements to the bucket policy, keeping any others it has."""
    bucket = settings.AWS_BUCKET
    policy = _bucket_policy(s3, bucket)
    ours = policies.log_export_statements(settings)
    if policy and [s for s in policy.get("Statement", [])
                   if s.get("Sid") in policies.LOG_EXPORT_SIDS] == ours:
        say("Found the log-export statements in the policy of bucket %s." % bucket)
        return
    document = {"Version": "2012-10-17", "Statement": _others(policy) + ours}
    with explain("set the policy of bucket %s" % bucket):
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(document))
    say("Let CloudWatch Logs export into bucket %s (bucket policy)." % bucket)


# ---- EC2 ---------------------------------------------------------------------

def usable_subnets(ec2, vpc_id, types, say=print):
    """The VPC's subnets whose zone offers every MACHINE_TYPE."""
    offered = network.zones_offering(ec2, types)
    keep = []
    for subnet in network.subnets(ec2, vpc_id):
        zone = subnet["AvailabilityZone"]
        missing = [t for t in types if zone not in offered.get(t, ())]
        if missing:
            say("Left out subnet %s: %s does not offer %s." % (subnet["SubnetId"], zone,
                                                            ", ".join(missing)))
        else:
            keep.append(subnet)
    if not keep:
        raise UserError("No availability zone of %s offers %s: change MACHINE_TYPE in "
                        "config.py." % (vpc_id, ", ".join(types)))
    return keep


def ensure_security_group(ec2, settings, vpc_id, say=print):
    name = network.security_group_name(settings)
    group = network.find_security_group(ec2, vpc_id, name)
    if group:
        say("Found security group %s (%s)." % (name, group["GroupId"]))
        return group["GroupId"]
    with explain("create security group %s" % name):
        gid = ec2.create_security_group(
            GroupName=name, VpcId=vpc_id,
            Description="Distributed-Something %s workers: no inbound" % settings.APP_NAME,
            TagSpecifications=[{"ResourceType": "security-group",
                                "Tags": roles.tags(settings)}])["GroupId"]
    say("Created security group %s (%s) with no inbound rule." % (name, gid))
    return gid


def ecs_ami(ssm, ec2, say=print):
    with explain("read the ECS-optimized AMI id from SSM parameter %s" % AMI_PARAMETER):
        ami = ssm.get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
        image = ec2.describe_images(ImageIds=[ami])["Images"][0]
    say("Found ECS-optimized AMI %s (%s)." % (ami, image.get("Name", "no name")))
    return image


def find_key_pair(ec2, name):
    try:
        return ec2.describe_key_pairs(KeyNames=[name])["KeyPairs"][0]
    except botocore.exceptions.ClientError as e:
        if "NotFound" in error_code(e):
            return None
        raise


def ensure_key_pair(ec2, settings, make, say=print):
    """The key pair's name for the fleet file, or None; made only when asked."""
    name = key_pair_name(settings)
    if not name:
        return None
    if find_key_pair(ec2, name):
        say("Found key pair %s." % name)
        return name
    if not make:
        say("No key pair %s: machines get no SSH key (`prepare --key` makes one)." % name)
        return None
    path = key_file(name)
    if os.path.exists(path):
        raise UserError("%s exists but AWS has no key pair %s: move that file away or change "
                        "SSH_KEY_NAME in config.py, then run prepare --key again." % (path, name))
    with explain("create key pair %s" % name):
        material = ec2.create_key_pair(KeyName=name, TagSpecifications=[
            {"ResourceType": "key-pair", "Tags": roles.tags(settings)}])["KeyMaterial"]
    # 0700 and 0600 from the first byte: ssh refuses a private key others may read.
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(material)
    say("Created key pair %s; its private key is in %s (mode 0600)." % (name, path))
    return name


# ---- The fleet file ----------------------------------------------------------

def fleet_document(settings, fleet_role, profile, image, subnets, group, key, public):
    """One launch specification per subnet; `public[subnet id]` says who needs a public IP."""
    specs = []
    for subnet in subnets:
        spec = {"ImageId": image["ImageId"]}
        if key:
            spec["KeyName"] = key
        spec["IamInstanceProfile"] = {"Arn": profile}
        spec["BlockDeviceMappings"] = [{
            "DeviceName": image.get("RootDeviceName", "/dev/xvda"),
            "Ebs": {"DeleteOnTermination": True, "VolumeType": "gp3",
                    "VolumeSize": settings.EBS_VOL_SIZE}}]
        spec["NetworkInterfaces"] = [{
            "DeviceIndex": 0, "SubnetId": subnet["SubnetId"], "DeleteOnTermination": True,
            "AssociatePublicIpAddress": public[subnet["SubnetId"]], "Groups": [group]}]
        specs.append(spec)
    return {"_comment": "Written by `python run.py prepare` for %s in %s."
                        % (settings.APP_NAME, settings.AWS_REGION),
            "IamFleetRole": fleet_role, "AllocationStrategy": "lowestPrice",
            "TerminateInstancesWithExpiration": True, "LaunchSpecifications": specs,
            "Type": "maintain"}


def write_fleet_file(path, document, say=print):
    if os.path.isfile(path):
        try:
            if read_json(path, "fleet file") == document:
                say("Fleet file %s is up to date." % path)
                return
        except UserError:
            pass  # unreadable: rewrite it
    write_json(path, document)
    say("Wrote fleet file %s (%d launch specification%s)." % (
        path, len(document["LaunchSpecifications"]),
        "" if len(document["LaunchSpecifications"]) == 1 else "s"))


# ---- The command -------------------------------------------------------------

def prepare(aws, settings, make_key=False, say=print):
    stand_ins = placeholders(settings)
    if stand_ins:  # else a bucket literally named your-bucket-name, or someone else's
        raise UserError("\nerror: ".join(stand_ins))  # one line each
    iam, ec2, s3 = aws.client("iam"), aws.client("ec2"), aws.client("s3")
    with explain("tell who these credentials belong to"):
        account = aws.client("sts").get_caller_identity()["Account"]
    # The bucket first: a bucket in another region stops prepare before it makes anything.
    ensure_bucket(s3, settings, say=say)
    ensure_log_export_policy(s3, settings, say=say)
    names = role_names(settings)
    ensure_role(iam, settings, names["machine"], policies.MACHINE_SERVICE,
                [policies.MACHINE_MANAGED], {"ecs-config": policies.machine_extra(settings)},
                say=say)
    profile = ensure_instance_profile(iam, settings, names["machine"], say=say)
    fleet_role = ensure_role(iam, settings, names["fleet"], policies.FLEET_SERVICE,
                             [policies.FLEET_MANAGED], say=say)
    worker = ensure_role(iam, settings, names["worker"], policies.WORKER_SERVICE,
                         inline={"worker": policies.worker(settings, account)}, say=say)
    ensure_role(iam, settings, names["monitor"], policies.MONITOR_SERVICE,
                inline={"tick": policies.monitor_function(settings, account)}, say=say)
    with explain("look up the default VPC and its subnets"):
        vpc = network.default_vpc(ec2)
        subnets = usable_subnets(ec2, vpc, settings.MACHINE_TYPE, say=say)
        exits = {s["SubnetId"]: network.way_out(ec2, s["SubnetId"], vpc) for s in subnets}
    say("Found %d subnet%s of default VPC %s: %s." % (
        len(subnets), "" if len(subnets) == 1 else "s", vpc,
        ", ".join("%s (%s)" % (s["SubnetId"], s["AvailabilityZone"]) for s in subnets)))
    closed = sorted(s for s, kind in exits.items() if kind == "none")
    if closed:
        say("warning: no route to the internet from %s; machines there reach ECS, SQS and S3 "
            "only through VPC endpoints." % ", ".join(closed))
    group = ensure_security_group(ec2, settings, vpc, say=say)
    image = ecs_ami(aws.client("ssm"), ec2, say=say)
    key = ensure_key_pair(ec2, settings, make_key, say=say)
    # A machine behind an internet gateway alone reaches nothing without a public IP.
    public = {sid: kind == "igw" for sid, kind in exits.items()}
    path = fleet_file_path(settings)
    write_fleet_file(path, fleet_document(settings, fleet_role, profile, image, subnets, group,
                                          key, public), say=say)
    if any(public.values()) and not settings.ASSIGN_IP:
        say("Set ASSIGN_IP = True in config.py: these subnets reach the internet only "
            "through an internet gateway, so machines need a public IP.")
    if settings.TASK_ROLE_ARN != worker:
        say("Set TASK_ROLE_ARN = '%s' in config.py." % worker)
    say("Next: python run.py check files/exampleJob.json %s" % path)
    return path


# ---- prepare --remove --------------------------------------------------------

def _in_use(ec2, group, profile_arn, fleet_role_arn):
    """What still runs with our security group, profile or fleet role."""
    users = []
    pages = ec2.get_paginator("describe_spot_fleet_requests").paginate()
    for page in pages:
        for f in page.get("SpotFleetRequestConfigs", []):
            if f.get("SpotFleetRequestState") not in ACTIVE_FLEET_STATES:
                continue
            text = json.dumps(f.get("SpotFleetRequestConfig", {}), default=str)
            if any(x and x in text for x in (group, profile_arn, fleet_role_arn)):
                users.append("spot fleet %s" % f["SpotFleetRequestId"])
    if group:
        pages = ec2.get_paginator("describe_instances").paginate(Filters=[
            {"Name": "instance.group-id", "Values": [group]},
            {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES}])
        users += ["machine %s" % i["InstanceId"] for page in pages
                  for r in page["Reservations"] for i in r["Instances"]]
    return users


def _delete_role(iam, name):
    for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=name, PolicyArn=p["PolicyArn"])
    for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
    iam.delete_role(RoleName=name)


def remove(aws, settings, say=print):
    """Delete what prepare made (and only that); refuse while a fleet or machine uses it."""
    iam, ec2, s3 = aws.client("iam"), aws.client("ec2"), aws.client("s3")
    names = role_names(settings)
    with explain("look up what prepare made"):
        vpc = network.default_vpc(ec2)
        group = network.find_security_group(ec2, vpc, network.security_group_name(settings))
        group = group if group and roles.ours(group.get("Tags"), settings) else None
        profile = iam_get(iam.get_instance_profile, InstanceProfileName=names["machine"])
        profile = profile["InstanceProfile"] if profile and roles.ours(
            profile["InstanceProfile"].get("Tags"), settings) else None
        fleet_role = iam_get(iam.get_role, RoleName=names["fleet"])
        users = _in_use(ec2, group and group["GroupId"], profile and profile["Arn"],
                        fleet_role and fleet_role["Role"]["Arn"])
        if state.load(s3, settings.AWS_BUCKET, state.key_for(settings.APP_NAME)) is not None:
            users.append("the automatic monitor of a run that is still ending")
    if users:
        raise UserError("Not removing anything: %s still use%s what prepare made; run "
                        "`python run.py monitor` to end the run (or cancel it), then try again."
                        % (", ".join(users), "s" if len(users) == 1 else ""))
    path = fleet_file_path(settings)
    if os.path.isfile(path):
        os.remove(path)
        say("Deleted fleet file %s." % path)
    with explain("delete what prepare made"):
        _remove_key_pair(ec2, settings, say)
        if group:
            ec2.delete_security_group(GroupId=group["GroupId"])
            say("Deleted security group %s (%s)." % (group["GroupName"], group["GroupId"]))
        if profile:
            for role in profile.get("Roles", []):
                iam.remove_role_from_instance_profile(
                    InstanceProfileName=profile["InstanceProfileName"], RoleName=role["RoleName"])
            iam.delete_instance_profile(InstanceProfileName=profile["InstanceProfileName"])
            say("Deleted instance profile %s." % profile["InstanceProfileName"])
        for name in (names["machine"], names["fleet"], names["worker"], names["monitor"]):
            if iam_get(iam.get_role, RoleName=name) and roles.ours(
                    iam.list_role_tags(RoleName=name).get("Tags"), settings):
                _delete_role(iam, name)
                say("Deleted role %s." % name)
        _remove_bucket(s3, settings, say)


def _remove_key_pair(ec2, settings, say):
    name = key_pair_name(settings)
    pair = find_key_pair(ec2, name) if name else None
    if pair and roles.ours(pair.get("Tags"), settings):
        ec2.delete_key_pair(KeyName=name)
        say("Deleted key pair %s." % name)
        if os.path.isfile(key_file(name)):
            os.remove(key_file(name))
            say("Deleted %s." % key_file(name))


def _remove_bucket(s3, settings, say):
    bucket = settings.AWS_BUCKET
    try:
        s3.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError:
        return  # gone or not ours to read: nothing to undo
    policy = _bucket_policy(s3, bucket)
    if policy and _others(policy) != policy.get("Statement", []):
        rest = _others(policy)
        if rest:
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(dict(policy, Statement=rest)))
        else:
            s3.delete_bucket_policy(Bucket=bucket)
        say("Removed the log-export statements from the policy of bucket %s." % bucket)
    try:
        tags = s3.get_bucket_tagging(Bucket=bucket).get("TagSet")
    except botocore.exceptions.ClientError:
        tags = []
    if not roles.ours(tags, settings):
        return
    if s3.list_objects_v2(Bucket=bucket, MaxKeys=1).get("KeyCount", 0):
        say("Kept bucket %s: it holds data (empty it and run prepare --remove again to delete "
            "it)." % bucket)
        return
    s3.delete_bucket(Bucket=bucket)
    say("Deleted bucket %s." % bucket)

"""`python run.py check`: every problem that would stop a run, one line each, read-only.

Each line starts with ok, PROBLEM, warning or unchecked (AWS could not
answer; the other checks go on). Only Describe, Get, List and Head calls, and
IAM's policy simulator, are made. startCluster runs the account checks before it requests a machine.
"""
import datetime
import os
import re

import botocore.exceptions
from botocore.parsers import ResponseParserError

from ds.core.aws import error_code, is_gone
from ds.core.errors import UserError
from ds.core.jsonfile import read_json
from ds.core.settings import placeholders
from ds.commands import prepare
from ds.resources import fleet, jobs, network, policies
from ds.resources.roles import iam_get

# Spot vCPU quota of the standard families (A, C, D, H, I, M, R, T, Z).
STANDARD_SPOT_QUOTA = "L-34B43A08"
STANDARD_FAMILIES = "acdhimrtz"


class Report:
    def __init__(self):
        self.lines = []

    def add(self, level, text):
        self.lines.append((level, text))

    def ok(self, text):
        self.add("ok", text)

    def problem(self, text):
        self.add("PROBLEM", text)

    def warning(self, text):
        self.add("warning", text)

    @property
    def problems(self):
        return [text for level, text in self.lines if level == "PROBLEM"]

    def guarded(self, what, check, *args):
        """Run one check; an endpoint that cannot answer makes it 'unchecked', not fatal."""
        try:
            return check(self, *args)
        except botocore.exceptions.ClientError as e:
            err = e.response.get("Error", {})
            self.add("unchecked", "could not check %s: %s (%s)." % (
                what, err.get("Message") or "no reason given", err.get("Code", "error")))
        except (botocore.exceptions.BotoCoreError, ResponseParserError) as e:
            self.add("unchecked", "could not check %s: %s." % (what, str(e).splitlines()[0]))


def _name(arn):
    return (arn or "").rsplit("/", 1)[-1]


def _trusts(role, service):
    doc = policies.as_dict(role["AssumeRolePolicyDocument"])
    for st in doc.get("Statement", []):
        principal = (st.get("Principal") or {}).get("Service", [])
        principal = [principal] if isinstance(principal, str) else principal
        if st.get("Effect") == "Allow" and service in principal:
            return True
    return False


def _nics(spec):
    return spec.get("NetworkInterfaces") or [{}]


def _subnet_ids(specs):
    ids = [n.get("SubnetId") for s in specs for n in _nics(s)]
    ids += [part.strip() for s in specs for part in (s.get("SubnetId") or "").split(",")]
    return sorted({i for i in ids if i})


def _group_ids(specs):
    ids = [g for s in specs for n in _nics(s) for g in n.get("Groups", [])]
    ids += [g.get("GroupId") for s in specs for g in s.get("SecurityGroups", [])]
    return sorted({i for i in ids if i})


# ---- each check: report lines, raise botocore errors when AWS cannot answer -----------

def credentials(report, aws):
    try:
        who = aws.client("sts").get_caller_identity()
    except botocore.exceptions.NoCredentialsError:
        report.problem("no AWS credentials found: run `aws configure` or set AWS_PROFILE in "
                       "config.py.")
        return False
    except botocore.exceptions.ClientError as e:
        report.problem("the credentials do not work (%s): run `aws configure` or fix "
                       "AWS_PROFILE in config.py." % error_code(e))
        return False
    except (botocore.exceptions.BotoCoreError, ResponseParserError) as e:
        report.problem("could not reach AWS (%s): check your network and AWS_REGION; "
                       "nothing in the account was checked." % str(e).splitlines()[0])
        return False
    report.ok("credentials work: calls run as %s (account %s)." % (who["Arn"], who["Account"]))
    return True


def stand_ins(report, settings):
    for message in placeholders(settings):
        report.problem(message)


def bucket(report, aws, settings):
    s3, name = aws.client("s3"), settings.AWS_BUCKET
    try:
        s3.head_bucket(Bucket=name)
    except botocore.exceptions.ClientError as e:
        if is_gone(e):
            report.problem("bucket %s does not exist: run `python run.py prepare` or fix "
                           "AWS_BUCKET in config.py." % name)
            return
        raise
    where = prepare.bucket_region(s3, name)
    if where != settings.AWS_REGION:
        report.problem("bucket %s is in %s, not in AWS_REGION %s: use a bucket in %s or "
                       "change AWS_REGION." % (name, where, settings.AWS_REGION,
                                               settings.AWS_REGION))
    else:
        report.ok("bucket %s is in %s." % (name, where))


def role(report, iam, arn, service, field):
    found = iam_get(iam.get_role, RoleName=_name(arn))
    if found is None:
        report.problem("%s: role %s does not exist: run `python run.py prepare` or fix %s."
                       % (field, _name(arn), field))
    elif not _trusts(found["Role"], service):
        report.problem("%s: role %s does not trust %s: give it that trust policy or use "
                       "another role." % (field, _name(arn), service))
    else:
        report.ok("role %s exists and trusts %s." % (_name(arn), service))


def instance_profiles(report, iam, specs, path):
    names = set()
    for i, spec in enumerate(specs, 1):
        p = spec.get("IamInstanceProfile") or {}
        if not (p.get("Arn") or p.get("Name")):
            report.problem("%s: launch specification %d has no IamInstanceProfile; machines "
                           "cannot join ECS without one: run `python run.py prepare`." % (path, i))
        names.add(p.get("Name") or _name(p.get("Arn")))
    for name in sorted(n for n in names if n):
        found = iam_get(iam.get_instance_profile, InstanceProfileName=name)
        if found is None:
            report.problem("%s: instance profile %s does not exist: run `python run.py "
                           "prepare` or fix IamInstanceProfile." % (path, name))
            continue
        roles = found["InstanceProfile"].get("Roles", [])
        if not roles:
            report.problem("instance profile %s has no role: add one trusting %s." % (
                name, policies.MACHINE_SERVICE))
        elif not _trusts(roles[0], policies.MACHINE_SERVICE):
            report.problem("instance profile %s: role %s does not trust %s." % (
                name, roles[0]["RoleName"], policies.MACHINE_SERVICE))
        else:
            report.ok("instance profile %s exists with role %s." % (name, roles[0]["RoleName"]))


def images(report, ec2, settings, specs, path):
    for ami in sorted({s.get("ImageId") for s in specs if s.get("ImageId")}):
        try:
            image = ec2.describe_images(ImageIds=[ami])["Images"]
        except botocore.exceptions.ClientError as e:
            if "AMIID" not in error_code(e):
                raise
            image = []
        if not image:
            report.problem("%s: AMI %s does not exist in %s: run `python run.py prepare` or "
                           "fix ImageId." % (path, ami, settings.AWS_REGION))
            continue
        image = image[0]
        text = ("%s %s" % (image.get("Name", ""), image.get("Description", ""))).lower()
        if "ecs" not in text:
            report.problem("%s: AMI %s (%s) is not ECS-optimized; machines would never join "
                           "the cluster: use the AMI `python run.py prepare` finds."
                           % (path, ami, image.get("Name", "no name")))
            continue
        root = image.get("RootDeviceName")
        snap = max([m["Ebs"].get("VolumeSize", 0) for m in image.get("BlockDeviceMappings", [])
                    if m.get("DeviceName") == root and "Ebs" in m] or [0])
        small = [m["Ebs"]["VolumeSize"] for s in specs if s.get("ImageId") == ami
                 for m in s.get("BlockDeviceMappings", []) if m.get("DeviceName") == root
                 and (m.get("Ebs") or {}).get("VolumeSize", snap) < snap]
        if small:
            report.problem("the root disk (%d GB) is smaller than AMI %s's %d GB snapshot: raise "
                           "EBS_VOL_SIZE in config.py to at least %d." % (min(small), ami, snap,
                                                                          snap))
        else:
            report.ok("AMI %s is ECS-optimized (%s)." % (ami, image.get("Name", "no name")))


def _describe_each(call, key, ids, param):
    """{id: description} for those that exist; AWS fails a whole list if one is missing."""
    found = {}
    for i in ids:
        try:
            found[i] = call(**{param: [i]})[key][0]
        except botocore.exceptions.ClientError as e:
            if "NotFound" not in error_code(e) and "Malformed" not in error_code(e):
                raise
    return found


def network_shape(report, ec2, specs, path):
    """Subnets and security groups: exist, share one VPC. Returns the subnets found."""
    subnet_ids, group_ids = _subnet_ids(specs), _group_ids(specs)
    subnets = _describe_each(ec2.describe_subnets, "Subnets", subnet_ids, "SubnetIds")
    groups = _describe_each(ec2.describe_security_groups, "SecurityGroups", group_ids,
                            "GroupIds")
    for i in subnet_ids:
        if i not in subnets:
            report.problem("%s: subnet %s does not exist in this region: run `python run.py "
                           "prepare` or fix SubnetId." % (path, i))
    for i in group_ids:
        if i not in groups:
            report.problem("%s: security group %s does not exist in this region: run "
                           "`python run.py prepare` or fix Groups." % (path, i))
    vpcs = {x["VpcId"] for x in list(subnets.values()) + list(groups.values())}
    if len(vpcs) > 1:
        report.problem("%s: the subnets and security groups are in %d VPCs (%s); they must "
                       "share one." % (path, len(vpcs), ", ".join(sorted(vpcs))))
    elif subnets or groups:
        report.ok("%d subnet%s and %d security group%s in %s." % (
            len(subnets), "" if len(subnets) == 1 else "s", len(groups),
            "" if len(groups) == 1 else "s", vpcs.pop()))
    return subnets


def key_pairs(report, ec2, specs, path):
    for name in sorted({s.get("KeyName") for s in specs if s.get("KeyName")}):
        if prepare.find_key_pair(ec2, name) is None:
            report.problem("%s: key pair %s does not exist: run `python run.py prepare --key` "
                           "or fix KeyName." % (path, name))
        else:
            report.ok("key pair %s exists." % name)


def types_offered(report, ec2, settings, subnets):
    offered = network.zones_offering(ec2, settings.MACHINE_TYPE)
    bad = False
    for t in settings.MACHINE_TYPE:
        for sid, subnet in sorted(subnets.items()):
            if subnet["AvailabilityZone"] not in offered.get(t, ()):
                bad = True
                report.problem("MACHINE_TYPE %s is not offered in %s (subnet %s): drop that "
                               "subnet from the fleet file or that type from MACHINE_TYPE."
                               % (t, subnet["AvailabilityZone"], sid))
    if not bad:
        report.ok("%s offered in every subnet's zone." % ", ".join(settings.MACHINE_TYPE))


def spot_price(report, ec2, settings, subnets):
    zones = {s["AvailabilityZone"] for s in subnets.values()}
    pages = ec2.get_paginator("describe_spot_price_history").paginate(
        InstanceTypes=settings.MACHINE_TYPE, ProductDescriptions=["Linux/UNIX"],
        StartTime=datetime.datetime.now(datetime.timezone.utc))
    latest = {}
    for page in pages:
        for p in page["SpotPriceHistory"]:
            if zones and p["AvailabilityZone"] not in zones:
                continue
            key = (p["InstanceType"], p["AvailabilityZone"])
            if key not in latest or p["Timestamp"] > latest[key]["Timestamp"]:
                latest[key] = p
    for t in settings.MACHINE_TYPE:
        prices = sorted((float(p["SpotPrice"]), z) for (typ, z), p in latest.items() if typ == t)
        if not prices:
            report.add("unchecked", "could not check MACHINE_PRICE for %s: AWS gave no spot "
                                    "price." % t)
        elif settings.MACHINE_PRICE < prices[0][0]:
            report.problem("MACHINE_PRICE %g is below the spot price of %s (%g in %s): raise "
                           "MACHINE_PRICE in config.py." % (settings.MACHINE_PRICE, t,
                                                            prices[0][0], prices[0][1]))
        else:
            report.ok("MACHINE_PRICE %g is above the spot price of %s (%g in %s)."
                      % (settings.MACHINE_PRICE, t, prices[0][0], prices[0][1]))


def spot_quota(report, aws, settings):
    standard = [t for t in settings.MACHINE_TYPE if t[0].lower() in STANDARD_FAMILIES]
    for t in sorted(set(settings.MACHINE_TYPE) - set(standard)):
        report.add("unchecked", "the spot vCPU quota for %s is not checked (only the standard "
                                "families are)." % t)
    if not standard:
        return
    found = aws.client("ec2").describe_instance_types(InstanceTypes=standard)["InstanceTypes"]
    vcpus = {i["InstanceType"]: i["VCpuInfo"]["DefaultVCpus"] for i in found}
    biggest = max(vcpus, key=vcpus.get)
    quota = aws.client("service-quotas").get_service_quota(
        ServiceCode="ec2", QuotaCode=STANDARD_SPOT_QUOTA)["Quota"]["Value"]
    need = settings.CLUSTER_MACHINES * vcpus[biggest]
    if need > quota:
        report.problem("CLUSTER_MACHINES %d x %d vCPUs (%s) needs %d spot vCPUs, above this "
                       "account's quota of %g: lower CLUSTER_MACHINES or ask AWS for more "
                       "(Service Quotas, \"All Standard Spot Instance Requests\")."
                       % (settings.CLUSTER_MACHINES, vcpus[biggest], biggest, need, quota))
    else:
        report.ok("%d spot vCPUs needed, quota %g." % (need, quota))


def public_ip(report, ec2, settings, specs, subnets, path):
    """A subnet whose only way out is an internet gateway needs public IPs."""
    closed, fine, no_ip = [], [], []
    for i, spec in enumerate(specs, 1):
        for nic in _nics(spec):
            subnet = subnets.get(nic.get("SubnetId"))
            if not subnet:
                continue
            kind = network.way_out(ec2, subnet["SubnetId"], subnet["VpcId"])
            public = nic.get("AssociatePublicIpAddress", subnet.get("MapPublicIpOnLaunch"))
            if kind == "none":
                closed.append(subnet["SubnetId"])
            elif kind == "igw" and not public:
                no_ip.append((i, subnet["SubnetId"]))
            else:
                fine.append(subnet["SubnetId"])
    where = ", ".join(sorted({sid for _, sid in no_ip}))
    if no_ip and not settings.ASSIGN_IP:
        report.problem("ASSIGN_IP is False, but %s reach%s the internet only through an "
                       "internet gateway: machines would never join the cluster; set "
                       "ASSIGN_IP = True in config.py." % (where, "es" if "," not in where
                                                          else ""))
    elif no_ip:
        report.problem("%s: launch specification%s %s give%s machines no public IP in %s, "
                       "whose only way out is an internet gateway: set "
                       "\"AssociatePublicIpAddress\": true." % (
                           path, "" if len(no_ip) == 1 else "s",
                           ", ".join(str(i) for i, _ in no_ip),
                           "s" if len(no_ip) == 1 else "", where))
    if closed:
        report.warning("no route to the internet from %s: machines reach ECS, SQS and S3 "
                       "there only through VPC endpoints." % ", ".join(sorted(set(closed))))
    if fine:
        report.ok("machines in %s can reach ECS, SQS and S3." % ", ".join(sorted(set(fine))))


def task_role(report, iam, settings):
    if not settings.TASK_ROLE_ARN:
        report.warning("TASK_ROLE_ARN is empty: the workers use the machines' role; set it "
                       "to the role `python run.py prepare` printed.")
        return
    role(report, iam, settings.TASK_ROLE_ARN, policies.WORKER_SERVICE, "TASK_ROLE_ARN")


def principal(iam, arn):
    """The IAM entity behind a caller's ARN: an assumed role's session is its role,
    whose ARN may hold a path (SSO's roles do)."""
    found = re.match(r"^arn:[^:]+:sts::\d+:assumed-role/([^/]+)/", arn)
    return iam.get_role(RoleName=found.group(1))["Role"]["Arn"] if found else arn


def monitor_rights(report, aws, settings):
    """AUTO_MONITOR: may these credentials install the automatic monitor? Asked of
    IAM's policy simulator (iam:SimulatePrincipalPolicy), which sees identity
    policies only: a refusal it cannot see still ends startCluster in one line
    before any machine is requested."""
    if not settings.AUTO_MONITOR:
        return
    who = aws.client("sts").get_caller_identity()
    arns = policies.monitor_arns(settings, who["Account"])
    asks = {arns["role"]: ["iam:PassRole"],
            arns["function"]: ["lambda:CreateFunction", "lambda:GetPolicy",
                               "lambda:AddPermission"],
            arns["rule"]: ["events:PutRule", "events:PutTargets"]}
    iam = aws.client("iam")
    source = principal(iam, who["Arn"])
    refused = []
    for resource, actions in asks.items():
        results = iam.simulate_principal_policy(
            PolicySourceArn=source, ActionNames=actions,
            ResourceArns=[resource])["EvaluationResults"]
        refused += [r["EvalActionName"] for r in results if r["EvalDecision"] != "allowed"]
    if refused:
        report.problem("AUTO_MONITOR: these credentials may not %s, which installing the "
                       "automatic monitor needs: ask for the AUTO_MONITOR permissions of "
                       "documentation/step_0_prep.md, or set AUTO_MONITOR = False in "
                       "config.py." % ", ".join(refused))
    else:
        report.ok("AUTO_MONITOR: these credentials may install the automatic monitor.")


def account_checks(aws, settings, config, path, report=None):
    """The checks that need AWS, on a built fleet request. Returns the Report."""
    report = report or Report()
    stand_ins(report, settings)
    if not credentials(report, aws):
        return report
    iam, ec2 = aws.client("iam"), aws.client("ec2")
    specs = config["LaunchSpecifications"]
    g = report.guarded
    g("the bucket", bucket, aws, settings)
    g("IamFleetRole", role, iam, config["IamFleetRole"], policies.FLEET_SERVICE,
      "IamFleetRole in %s" % path)
    g("the instance profiles", instance_profiles, iam, specs, path)
    g("TASK_ROLE_ARN", task_role, iam, settings)
    g("the rights AUTO_MONITOR needs", monitor_rights, aws, settings)
    g("the AMIs", images, ec2, settings, specs, path)
    subnets = g("the subnets and security groups", network_shape, ec2, specs, path)
    g("the key pairs", key_pairs, ec2, specs, path)
    if subnets:
        g("the types offered per zone", types_offered, ec2, settings, subnets)
        g("MACHINE_PRICE against the spot price", spot_price, ec2, settings, subnets)
        g("the public IPs against the subnets' routes", public_ip, ec2, settings, specs,
          subnets, path)
    g("the spot vCPU quota", spot_quota, aws, settings)
    return report


def run(aws, settings, config_path, jobfile=None, fleetfile=None):
    report = Report()
    report.ok("%s: settings and their types." % config_path)
    if jobfile:
        try:
            n = len(jobs.load_messages(jobfile, settings.COMMAND))
            report.ok("%s: %d job%s." % (jobfile, n, "" if n == 1 else "s"))
        except UserError as e:
            report.problem(str(e))
    fleetfile = fleetfile or prepare.fleet_file_path(settings)
    config = None
    if os.path.isfile(fleetfile):
        try:
            config = fleet.build_request(settings, read_json(fleetfile, "fleet file"),
                                         fleetfile)
            report.ok("%s: %d launch specification%s." % (
                fleetfile, len(config["LaunchSpecifications"]),
                "" if len(config["LaunchSpecifications"]) == 1 else "s"))
        except UserError as e:
            report.problem(str(e))
    else:
        report.problem("%s: fleet file not found: run `python run.py prepare` or name your "
                       "fleet file." % fleetfile)
    if config:
        account_checks(aws, settings, config, fleetfile, report)
    else:
        stand_ins(report, settings)
        credentials(report, aws)
        report.guarded("the bucket", bucket, aws, settings)
    return report


def main(aws, settings, config_path, jobfile=None, fleetfile=None):
    report = run(aws, settings, config_path, jobfile, fleetfile)
    for level, text in report.lines:
        print("%-9s %s" % (level, text))
    n = len(report.problems)
    print("%d problem%s found." % (n, "" if n == 1 else "s") if n else
          "No problem found: ready for setup, submitJob and startCluster.")
    return 1 if n else 0

"""Where the machines start: the default VPC's subnets, their way out, a security group."""
from ds.core.errors import UserError


def default_vpc(ec2):
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise UserError("This region has no default VPC: create one with `aws ec2 "
                        "create-default-vpc`, or follow the manual path of "
                        "documentation/step_0_prep.md.")
    return vpcs[0]["VpcId"]


def subnets(ec2, vpc_id):
    pages = ec2.get_paginator("describe_subnets").paginate(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    found = [s for page in pages for s in page["Subnets"]]
    return sorted(found, key=lambda s: (s["AvailabilityZone"], s["SubnetId"]))


def zones_offering(ec2, types):
    """{instance type: set of availability zones that offer it}."""
    pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
        LocationType="availability-zone",
        Filters=[{"Name": "instance-type", "Values": list(types)}])
    offered = {t: set() for t in types}
    for page in pages:
        for o in page["InstanceTypeOfferings"]:
            offered.setdefault(o["InstanceType"], set()).add(o["Location"])
    return offered


def route_table(ec2, subnet_id, vpc_id):
    """The subnet's own route table, else its VPC's main one."""
    own = ec2.describe_route_tables(Filters=[
        {"Name": "association.subnet-id", "Values": [subnet_id]}])["RouteTables"]
    if own:
        return own[0]
    main = ec2.describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]},
        {"Name": "association.main", "Values": ["true"]}])["RouteTables"]
    return main[0] if main else {"Routes": []}


def way_out(ec2, subnet_id, vpc_id):
    """How the subnet reaches the internet: 'igw', 'nat', 'other' or 'none'.

    'igw' alone means a machine there needs a public IP to reach ECS, SQS and
    S3. VPC endpoints are not looked at: 'none' may still work with them.
    """
    kinds = set()
    for r in route_table(ec2, subnet_id, vpc_id).get("Routes", []):
        if r.get("DestinationCidrBlock") != "0.0.0.0/0" or r.get("State") == "blackhole":
            continue
        if r.get("GatewayId", "").startswith("igw-"):
            kinds.add("igw")
        elif r.get("NatGatewayId"):
            kinds.add("nat")
        else:
            kinds.add("other")
    if "nat" in kinds:
        return "nat"
    if "other" in kinds:
        return "other"
    return "igw" if kinds else "none"


def security_group_name(settings):
    return "%s-workers" % settings.APP_NAME


def find_security_group(ec2, vpc_id, name):
    found = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]},
        {"Name": "group-name", "Values": [name]}])["SecurityGroups"]
    return found[0] if found else None

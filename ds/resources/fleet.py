"""EC2 Spot Fleet: build the request from the fleet file, watch it, explain its errors."""
import copy
import datetime
import math
import uuid

import botocore.exceptions

from ds.core.aws import explain, is_gone
from ds.core.errors import UserError
from ds.core import wait
from ds.resources import boot

# Spot fleet error sub-types that no amount of waiting fixes.
CONFIG_ERRORS = {"iamFleetRoleInvalid", "spotFleetRequestConfigurationInvalid",
                 "allLaunchSpecsTemporarilyBlacklisted", "launchSpecUnusable"}
# Words in an event's description -> the setting to fix.
FIELD_HINTS = [
    (("image id", "imageid", "ami id"), "ImageId in the fleet file"),
    (("subnet",), "SubnetId in the fleet file"),
    (("key pair", "keypair", "keyname", "key name"), "KeyName in the fleet file"),
    (("security group", "groupid"), "Groups in the fleet file"),
    (("instance profile", "iaminstanceprofile"), "IamInstanceProfile in the fleet file"),
    (("iamfleetrole", "fleet role", "not authorized", "permission"),
     "IamFleetRole in the fleet file"),
    (("instance type", "instancetype", "not supported"), "MACHINE_TYPE in config.py"),
    (("price",), "MACHINE_PRICE in config.py"),
]
CAPACITY_WORDS = ("capacity", "price-too-low", "price too low", "limit", "no spot capacity")
REQUIRED_KEYS = ("IamFleetRole", "LaunchSpecifications")


def _launch_specs_for_types(specs, types):
    """Pair MACHINE_TYPE entries with launch specifications.

    Equal lengths pair up in order; otherwise every specification is paired
    with every type (a prepared fleet file has one specification per subnet,
    and more instance types in more zones = more spot pools to draw from).
    """
    if len(types) == len(specs):
        pairs = zip(specs, types)
    else:
        pairs = [(s, t) for s in specs for t in types]
    out = []
    for spec, machine in pairs:
        spec = copy.deepcopy(spec)
        spec["InstanceType"] = machine
        out.append(spec)
    return out


def _set_volume_size(spec, size):
    """Size the Docker data volume: DS's second device, else the only one."""
    disks = [m for m in spec.get("BlockDeviceMappings", []) if "Ebs" in m]
    if disks:
        target = disks[1] if len(disks) > 1 else disks[0]
        target["Ebs"]["VolumeSize"] = size


def _drop_comments(value):
    """A copy without "_comment" keys, at any depth (AWS rejects unknown fields)."""
    if isinstance(value, dict):
        return {k: _drop_comments(v) for k, v in value.items() if "_comment" not in k}
    if isinstance(value, list):
        return [_drop_comments(v) for v in value]
    return value


def build_request(settings, fleet, path, now=None):
    """The SpotFleetRequestConfig for request_spot_fleet."""
    if not isinstance(fleet, dict):
        raise UserError("%s: the fleet file must be a JSON object." % path)
    for key in REQUIRED_KEYS:
        if key not in fleet:
            raise UserError("%s: %s is missing; see files/exampleFleet_us-east-1.json." % (path, key))
    config = _drop_comments(fleet)
    specs = config["LaunchSpecifications"]
    if not isinstance(specs, list) or not specs or not all(isinstance(s, dict) for s in specs):
        raise UserError("%s: LaunchSpecifications must be a non-empty list of objects." % path)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    config["ValidFrom"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    config["ValidUntil"] = (now + datetime.timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")
    config["TargetCapacity"] = settings.CLUSTER_MACHINES
    config["SpotPrice"] = "%g" % settings.MACHINE_PRICE
    config.setdefault("TerminateInstancesWithExpiration", True)
    config.setdefault("Type", "maintain")
    check_fields(config, path)
    data = boot.user_data(settings)
    config["LaunchSpecifications"] = _launch_specs_for_types(specs, settings.MACHINE_TYPE)
    for spec in config["LaunchSpecifications"]:
        spec["UserData"] = data
        _set_volume_size(spec, settings.EBS_VOL_SIZE)
        if not settings.ASSIGN_IP:
            for nic in spec.get("NetworkInterfaces", []):
                nic["AssociatePublicIpAddress"] = False
        spec.setdefault("TagSpecifications", [{"ResourceType": "instance", "Tags": [
            {"Key": "Name", "Value": settings.APP_NAME + "-worker"}]}])
        _tag(spec["TagSpecifications"], "instance", settings.APP_NAME)
    _tag(config.setdefault("TagSpecifications", []), "spot-fleet-request", settings.APP_NAME)
    return config


def _tag(specifications, kind, app):
    """APP_NAME=app on the `kind` resources, kept over a fleet file's own tags: the
    workers' and the monitor's policies act only on machines and fleets carrying it
    (resources/policies.py)."""
    found = [s for s in specifications if isinstance(s, dict) and s.get("ResourceType") == kind]
    if not found:
        found = [{"ResourceType": kind, "Tags": []}]
        specifications.append(found[0])
    tags = [t for t in found[0].get("Tags", []) if t.get("Key") != "APP_NAME"]
    found[0]["Tags"] = [{"Key": "APP_NAME", "Value": app}] + tags


def check_fields(config, path):
    """Field names and kinds as EC2's own API model has them, before anything is
    changed on AWS (a typo found only by request_spot_fleet would leave the
    uploaded ECS agent config behind)."""
    import botocore.session
    from botocore.validate import ParamValidator
    shape = botocore.session.get_session().get_service_model("ec2").operation_model(
        "RequestSpotFleet").input_shape
    report = ParamValidator().validate({"SpotFleetRequestConfig": config}, shape)
    if report.has_errors():
        first = report.generate_report().splitlines()[0]
        raise UserError("%s: %s." % (path, first.replace("SpotFleetRequestConfig.", "")
                                     .replace("SpotFleetRequestConfig", "the file")))


def request(ec2, config, path, config_path="config.py"):
    with explain("start the spot fleet", "Fix %s (or MACHINE_TYPE / MACHINE_PRICE in "
                 "%s) and run startCluster again." % (path, config_path)):
        # One token per startCluster: a request repeated after a lost answer
        # gets the same fleet back instead of a second, billing one.
        config = dict(config, ClientToken=config.get("ClientToken") or uuid.uuid4().hex)
        return ec2.request_spot_fleet(SpotFleetRequestConfig=config)["SpotFleetRequestId"]


def describe(ec2, fleet_id):
    """The fleet request's description, or None if AWS no longer knows it."""
    try:
        found = ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[fleet_id])
    except botocore.exceptions.ClientError as e:
        if is_gone(e):
            return None
        raise
    configs = found.get("SpotFleetRequestConfigs", [])
    if not configs or configs[0].get("SpotFleetRequestState", "").startswith("cancelled"):
        return None
    return configs[0]


def instances(ec2, fleet_id):
    """Ids of the fleet's active instances."""
    pages = ec2.get_paginator("describe_spot_fleet_instances").paginate(
        SpotFleetRequestId=fleet_id)
    return [i["InstanceId"] for page in pages for i in page.get("ActiveInstances", [])]


def error_events(ec2, fleet_id, since):
    """The fleet's error events since `since`, or None if the history can't be read.

    Some endpoints (and older emulators) fail this call outright, even with a
    response botocore cannot parse; the run must not stop for that.
    """
    events, token = [], None
    try:
        while True:
            args = {"SpotFleetRequestId": fleet_id, "StartTime": since, "EventType": "error"}
            if token:
                args["NextToken"] = token
            page = ec2.describe_spot_fleet_request_history(**args)
            events.extend(page.get("HistoryRecords", []))
            token = page.get("NextToken")
            if not token:
                return events
    except Exception:  # incl. botocore.parsers.ResponseParserError, which is no BotoCoreError
        return None


def describe_event(record):
    """One readable line for a history record, whatever fields AWS left out."""
    info = record.get("EventInformation") or {}
    kind = info.get("EventSubType") or record.get("EventType") or "unknown event"
    text = (info.get("EventDescription") or "no description given").strip()
    when = record.get("Timestamp")
    stamp = when.strftime("%H:%M:%S ") if hasattr(when, "strftime") else ""
    return "%sspot fleet %s: %s" % (stamp, kind, text)


def field_to_fix(record):
    info = record.get("EventInformation") or {}
    # AWS prefixes the message with the launch spec ("m5.xlarge, ami-..., Linux/UNIX: ...");
    # only the message after it says what is wrong.
    message = (info.get("EventDescription") or "").split(": ", 1)[-1]
    text = ("%s %s" % (info.get("EventSubType", ""), message)).lower()
    for words, field in FIELD_HINTS:
        if any(w in text for w in words):
            return field
    return "the fleet file"


def is_config_error(record):
    info = record.get("EventInformation") or {}
    text = (info.get("EventDescription") or "").lower()
    if any(w in text for w in CAPACITY_WORDS):
        return False
    return info.get("EventSubType") in CONFIG_ERRORS


def target(ec2, fleet_id):
    """The machines the fleet asks for now, or None if it is gone."""
    config = describe(ec2, fleet_id)
    return config["SpotFleetRequestConfig"]["TargetCapacity"] if config else None


def scale_down(ec2, fleet_id, capacity):
    """Lower the target capacity without terminating running machines."""
    return _retarget(ec2, fleet_id, capacity, lambda new, old: new < old) is not None


def scale_up(ec2, fleet_id, capacity):
    """Raise the target capacity; returns the target it had, or None if unchanged."""
    return _retarget(ec2, fleet_id, capacity, lambda new, old: new > old)


def _retarget(ec2, fleet_id, capacity, change):
    config = describe(ec2, fleet_id)
    # AWS changes the target of an active "maintain" fleet only (a "request"
    # fleet's is fixed; a fleet still "modifying" takes it at a later look)
    if (not config or config.get("SpotFleetRequestState") != "active"
            or config["SpotFleetRequestConfig"].get("Type", "maintain") != "maintain"):
        return None
    current = config["SpotFleetRequestConfig"]["TargetCapacity"]
    if not change(capacity, current):
        return None
    with explain("change the target of spot fleet %s to %d" % (fleet_id, capacity)):
        ec2.modify_spot_fleet_request(SpotFleetRequestId=fleet_id, TargetCapacity=capacity,
                                      ExcessCapacityTerminationPolicy="noTermination")
    return current


def cancel(ec2, fleet_id):
    """Cancel the request and terminate its machines. Returns whether it existed."""
    if not describe(ec2, fleet_id):
        return False
    try:
        with explain("cancel spot fleet %s" % fleet_id):
            ec2.cancel_spot_fleet_requests(SpotFleetRequestIds=[fleet_id],
                                           TerminateInstances=True)
    except UserError:
        # A cancel whose answer was lost is retried and may find the request
        # gone (the emulator then fails the call outright): that is done.
        if describe(ec2, fleet_id):
            raise
    return True


def machines_needed(jobs, jobs_per_machine):
    return int(math.ceil(float(jobs) / jobs_per_machine))


def wait_for_machines(ec2, fleet_id, wanted, started, timeout, quiet_history=False):
    """Wait until the fleet runs `wanted` machines (or as many as it asks for now, if
    fewer; none once it is gone); report every error event once.

    A configuration error cancels the request and raises UserError naming the
    field; a capacity shortage is reported and the wait goes on. Returns the
    number of machines running when the wait ends.
    """
    seen = set()
    state = {"running": 0, "history_ok": not quiet_history}  # the emulator has no history

    def check():
        events = error_events(ec2, fleet_id, started)
        if events is None and state["history_ok"]:
            state["history_ok"] = False
            print("(The fleet's event history could not be read; errors will show in the "
                  "EC2 console under Spot Requests.)")
        for record in events or []:
            key = (str(record.get("Timestamp")), describe_event(record))
            if key in seen:
                continue
            seen.add(key)
            print(describe_event(record))
            if is_config_error(record):
                cancel(ec2, fleet_id)
                raise UserError("The spot fleet cannot start (%s); fix %s and run "
                                "startCluster again. The request was cancelled."
                                % (describe_event(record).rstrip("."), field_to_fix(record)))
        # the monitor may lower the target meanwhile, or end the run altogether
        now_asked = target(ec2, fleet_id)
        if now_asked is None:
            return True
        state["running"] = len(instances(ec2, fleet_id))
        return state["running"] >= min(wanted, now_asked)

    if not wait.until(check, "machines", timeout=timeout, longest=30, fail=False):
        print("%d of %d machines are running after %d s; the fleet keeps asking for the "
              "rest, and monitor takes it from here." % (state["running"], wanted, timeout))
    return state["running"]

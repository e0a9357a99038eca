"""The spot fleet request: built from the fleet file as DS does, and its errors explained."""
import base64
import datetime
import json

import pytest

from conftest import REGION, emulator_env, real_fleet, reset, run_py, write_json
from test_steps import DS_CONFIG, FLEET

from ds.resources import fleet
from ds.core.errors import UserError
from ds.core.settings import Settings, load


@pytest.fixture
def settings(tmp_path):
    (tmp_path / "config.py").write_text(DS_CONFIG)
    return load(str(tmp_path / "config.py"))


def with_(settings, **changes):
    s = Settings(settings)
    s.update(changes)
    return s


def test_request_carries_the_config(settings):
    now = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    req = fleet.build_request(settings, FLEET, "fleet.json", now=now)
    assert req["TargetCapacity"] == 3 and req["SpotPrice"] == "0.13"
    assert req["ValidFrom"] == "2026-01-02T03:04:05Z"
    assert req["ValidUntil"] == "2027-01-02T03:04:05Z"
    assert [s["InstanceType"] for s in req["LaunchSpecifications"]] == ["m5.xlarge", "c5.xlarge"]
    for spec in req["LaunchSpecifications"]:
        assert spec["BlockDeviceMappings"][1]["Ebs"]["VolumeSize"] == 40
        assert spec["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 8
        assert spec["NetworkInterfaces"][0]["AssociatePublicIpAddress"] is False
        script = base64.b64decode(spec["UserData"]).decode()
        assert "s3://ds-test-bucket/ecsconfigs/DSTest_ecs.config" in script
        assert "ECS_CLUSTER=dstestcluster" in script and "dm.basesize=18G" in script
    assert FLEET["LaunchSpecifications"][0]["NetworkInterfaces"][0][
        "AssociatePublicIpAddress"] is True  # the user's file is not changed


def test_assign_ip_true_keeps_the_fleet_files_choice(settings):
    req = fleet.build_request(with_(settings, ASSIGN_IP=True), FLEET, "f.json")
    assert req["LaunchSpecifications"][0]["NetworkInterfaces"][0]["AssociatePublicIpAddress"]


@pytest.mark.parametrize("types, n_specs, expected", [
    (["a"], 1, ["a"]),
    (["a", "b", "c"], 1, ["a", "b", "c"]),
    (["a"], 3, ["a", "a", "a"]),
    (["a", "b"], 2, ["a", "b"]),
])
def test_machine_types_pair_with_launch_specifications(settings, types, n_specs, expected):
    f = dict(FLEET, LaunchSpecifications=[dict(FLEET["LaunchSpecifications"][0], KeyName=str(i))
                                          for i in range(n_specs)])
    req = fleet.build_request(with_(settings, MACHINE_TYPE=types), f, "f.json")
    assert [s["InstanceType"] for s in req["LaunchSpecifications"]] == expected


def test_unequal_counts_pair_every_specification_with_every_type(settings):
    specs = [dict(FLEET["LaunchSpecifications"][0], KeyName=k) for k in ("x", "y")]
    req = fleet.build_request(with_(settings, MACHINE_TYPE=["a", "b", "c"]),
                              dict(FLEET, LaunchSpecifications=specs), "f.json")
    assert sorted((s["KeyName"], s["InstanceType"]) for s in req["LaunchSpecifications"]) == \
        [(k, t) for k in ("x", "y") for t in ("a", "b", "c")]


@pytest.mark.parametrize("size, tasks, per_task", [
    (40, 2, 18), (7, 2, 1), (3, 1, 1), (30, 4, 5), (31, 3, 8), (6, 2, 1)])
def test_each_task_gets_its_share_rounded_down(tmp_path, size, tasks, per_task):
    """The tasks together never claim more disk than the volume has."""
    (tmp_path / "config.py").write_text(DS_CONFIG + "EBS_VOL_SIZE = %d\nTASKS_PER_MACHINE = %d\n"
                                        % (size, tasks))
    req = fleet.build_request(load(str(tmp_path / "config.py")), FLEET, "f.json")
    script = base64.b64decode(req["LaunchSpecifications"][0]["UserData"]).decode()
    assert "dm.basesize=%dG" % per_task in script
    assert tasks * (per_task + 2) <= size


@pytest.mark.parametrize("size, tasks", [(5, 2), (2, 1), (8, 3)])
def test_too_small_disk_is_refused_when_the_config_is_read(tmp_path, size, tasks):
    path = str(tmp_path / "other.py")
    with open(path, "w") as f:
        f.write(DS_CONFIG + "EBS_VOL_SIZE = %d\nTASKS_PER_MACHINE = %d\n" % (size, tasks))
    with pytest.raises(UserError) as e:
        load(path)
    assert str(e.value) == ("%s: EBS_VOL_SIZE %d GB is too small for %d tasks per machine; "
                            "give each task at least 3 GB." % (path, size, tasks))


@pytest.mark.parametrize("record, words", [
    ({}, ["unknown event", "no description given"]),
    ({"EventType": "error", "EventInformation": {"EventSubType": "spotInstanceCountLimitExceeded"}},
     ["spotInstanceCountLimitExceeded", "no description given"]),
    ({"EventType": "error", "Timestamp": datetime.datetime(2026, 1, 1, 9, 30),
      "EventInformation": {"EventDescription": "The image id '[ami-1]' does not exist"}},
     ["09:30:00", "error", "ami-1"]),
])
def test_every_event_reads_as_one_line(record, words):
    line = fleet.describe_event(record)
    assert "\n" not in line
    for w in words:
        assert w in line


# ---- against an emulator whose fleet history we write ----------------------

@pytest.fixture
def history_server(tmp_path, monkeypatch):
    """An in-process emulator that answers describe_spot_fleet_request_history.

    The emulator does not implement that call; these tests give it one that
    returns the records in `records`, as AWS would.
    """
    from moto.core.responses import ActionResult
    from moto.ec2.responses.spot_fleets import SpotFleets
    from moto.server import ThreadedMotoServer
    records = []

    def history(self):
        return ActionResult({
            "SpotFleetRequestId": self._get_param("SpotFleetRequestId"),
            "StartTime": datetime.datetime.now(datetime.timezone.utc),
            "LastEvaluatedTime": datetime.datetime.now(datetime.timezone.utc),
            "HistoryRecords": records})
    monkeypatch.setattr(SpotFleets, "describe_spot_fleet_request_history", history,
                        raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    url = "http://127.0.0.1:%d" % server.get_host_and_port()[1]
    reset(url)  # in-process emulators share their state: start from an empty account
    home = tmp_path / "home"
    home.mkdir()
    env = emulator_env(url, str(home))
    import boto3
    s3 = boto3.client("s3", endpoint_url=url, region_name=REGION, aws_access_key_id="t",
                      aws_secret_access_key="t")
    s3.create_bucket(Bucket="ds-test-bucket")
    (tmp_path / "config.py").write_text(DS_CONFIG)
    write_json(tmp_path / "fleet.json", real_fleet(
        lambda service: boto3.client(service, endpoint_url=url, region_name=REGION,
                                     aws_access_key_id="t", aws_secret_access_key="t"), FLEET))
    assert run_py(["setup"], env, cwd=str(tmp_path)).returncode == 0
    write_json(tmp_path / "job.json", {"groups": [{"well": "A01"}]})
    assert run_py(["submitJob", "job.json"], env, cwd=str(tmp_path)).returncode == 0
    ec2 = boto3.client("ec2", endpoint_url=url, region_name=REGION, aws_access_key_id="t",
                       aws_secret_access_key="t")
    yield records, env, ec2
    server.stop()


def event(subtype, description=None):
    info = {"EventSubType": subtype}
    if description is not None:
        info["EventDescription"] = description
    return {"EventType": "error", "Timestamp": datetime.datetime.now(datetime.timezone.utc),
            "EventInformation": info}


def test_configuration_error_cancels_and_names_the_field(history_server, tmp_path):
    records, env, ec2 = history_server
    records.append(event("spotFleetRequestConfigurationInvalid",
                         "r5.24xlarge, ami-12c6146b, Linux/UNIX: The key pair 'key' does not exist"))
    result = run_py(["startCluster", "fleet.json"], env, cwd=str(tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "KeyName in the fleet file" in result.stderr
    assert "key pair 'key' does not exist" in result.stderr
    fleet_id = json.loads((tmp_path / "files" / "DSTestSpotFleetRequestId.json").read_text())[
        "MONITOR_FLEET_ID"]
    states = [c["SpotFleetRequestState"] for c in ec2.describe_spot_fleet_requests(
        SpotFleetRequestIds=[fleet_id])["SpotFleetRequestConfigs"]]
    assert states in ([], ["cancelled"], ["cancelled_terminating"])


def test_capacity_shortage_and_missing_fields_are_reported_not_cancelled(history_server,
                                                                         tmp_path):
    records, env, ec2 = history_server
    records.append(event("launchSpecTemporarilyBlacklisted"))  # no EventDescription (DCP crash)
    records.append(event("allLaunchSpecsTemporarilyBlacklisted",
                         "m5.xlarge, ami-1, Linux/UNIX, us-east-1a: insufficient capacity"))
    result = run_py(["startCluster", "fleet.json"], env, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "spot fleet launchSpecTemporarilyBlacklisted: no description given" in result.stdout
    assert "insufficient capacity" in result.stdout
    fleet_id = json.loads((tmp_path / "files" / "DSTestSpotFleetRequestId.json").read_text())[
        "MONITOR_FLEET_ID"]
    state = ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[fleet_id])[
        "SpotFleetRequestConfigs"][0]["SpotFleetRequestState"]
    assert state == "active"

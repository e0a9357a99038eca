"""Mistakes a user can make end in one plain line and a non-zero exit, and lose nothing."""
import json

import pytest

from conftest import real_fleet, run_py, write_json
from test_steps import DS_CONFIG, FLEET, JOB, queue_url


def one_line_error(result):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def user(tmp_path, aws_env, boto):
    (tmp_path / "config.py").write_text(DS_CONFIG)
    (tmp_path / "files").mkdir()
    boto("s3").create_bucket(Bucket="ds-test-bucket")

    def run(*args):
        return run_py(list(args), aws_env, cwd=str(tmp_path))
    run.dir = tmp_path
    run.fleet = real_fleet(boto, FLEET)
    return run


def test_missing_config(user):
    line = one_line_error(user("--config", "nope.py", "setup"))
    assert "nope.py" in line and "not found" in line


@pytest.mark.parametrize("text, words", [
    ("APP_NAME = 'x'\nAWS_BUCKET = \n", ["line 2", "syntax"]),
    (DS_CONFIG + "CREATE_DASHBOARD = 'yes'\n", ["CREATE_DASHBOARD", "True or False"]),
    (DS_CONFIG + "CLUSTER_MACHINES = 'three'\n", ["CLUSTER_MACHINES", "whole number"]),
    (DS_CONFIG + "AWS_BUCKET = 's3://my-bucket'\n", ["AWS_BUCKET", "bucket name"]),
    (DS_CONFIG.replace("APP_NAME = 'DSTest'", "APP_NAME = 'DSTest'\nX = undefined_name"),
     ["line 3", "NameError"]),
    (DS_CONFIG.replace("DOCKERHUB_TAG = 'someone/something:1.0'\n", ""), ["DOCKERHUB_TAG",
                                                                          "missing"]),
    # fails first at `APP_NAME + 'Queue'`; the wrong type is what to fix
    (DS_CONFIG.replace("APP_NAME = 'DSTest'", "APP_NAME = 5"),
     ["config.py: APP_NAME must be a text in quotes, not 5."]),
    (DS_CONFIG.replace("APP_NAME = 'DSTest'", "APP_NAME = 'Plat\u00e91'"),
     ["APP_NAME 'Plat\u00e91' may hold only ASCII letters, digits, - and _"]),
    # every limit troubleshooting.md quotes
    (DS_CONFIG + "MACHINE_TYPE = []\n",
     ["config.py: MACHINE_TYPE must be a list of names like ['m5.xlarge'], not []."]),
    (DS_CONFIG + "CLUSTER_MACHINES = 0\n", ["config.py: CLUSTER_MACHINES must be at least 1, "
                                            "not 0."]),
    (DS_CONFIG + "SECONDS_TO_START = -1\n", ["config.py: SECONDS_TO_START cannot be negative."]),
    (DS_CONFIG + "SQS_MESSAGE_VISIBILITY = 50000\n",
     ["config.py: SQS_MESSAGE_VISIBILITY is at most 43200 seconds (12 h) in SQS; "]),
    (DS_CONFIG + "JOB_RETRIES = 1001\n", ["config.py: JOB_RETRIES is at most 1000 in SQS."]),
    (DS_CONFIG + "MEMORY = 3.5\n", ["config.py: MEMORY must be a whole number, not 3.5."]),
    (DS_CONFIG + "MACHINE_PRICE = 0\n",
     ["config.py: MACHINE_PRICE must be above 0 (USD per machine-hour)."]),
    (DS_CONFIG + "MACHINE_PRICE = 'nan'\n",
     ["config.py: MACHINE_PRICE must be above 0 (USD per machine-hour)."]),
    (DS_CONFIG + "SQS_QUEUE_NAME = 'Q' * 81\n",
     ["SQS_QUEUE_NAME", "is longer than 80 characters, the SQS limit"]),
    (DS_CONFIG + "SQS_DEAD_LETTER_QUEUE = 'arn:aws:sqs:us-east-1:123456789012:' + 'D' * 81\n",
     ["SQS_DEAD_LETTER_QUEUE", "is longer than 80 characters"]),
])
def test_bad_config(user, text, words):
    (user.dir / "config.py").write_text(text)
    line = one_line_error(user("setup"))
    for w in words:
        assert w in line, line


def test_config_messages_name_the_file_given_with_config(user):
    (user.dir / "other.py").write_text(DS_CONFIG + "EBS_VOL_SIZE = 5\n")
    line = one_line_error(user("--config", "other.py", "setup"))
    assert line == ("error: other.py: EBS_VOL_SIZE 5 GB is too small for 2 tasks per machine; "
                    "give each task at least 3 GB.")
    (user.dir / "other.py").write_text(DS_CONFIG.replace("ds-test-bucket", "no-such-bucket"))
    line = one_line_error(user("--config", "other.py", "setup"))
    assert line.endswith("fix AWS_BUCKET in other.py.")
    (user.dir / "other.py").write_text(DS_CONFIG)
    line = one_line_error(user("--config", "other.py", "submitJob", "files/job.json"))
    assert "files/job.json" in line  # no job file yet
    write_json(user.dir / "files" / "job.json", JOB)
    line = one_line_error(user("--config", "other.py", "submitJob", "files/job.json"))
    assert line.endswith("(or fix SQS_QUEUE_NAME in other.py).")


def test_bucket_that_does_not_exist(user):
    (user.dir / "config.py").write_text(DS_CONFIG.replace("ds-test-bucket", "no-such-bucket"))
    line = one_line_error(user("setup"))
    assert "no-such-bucket" in line and "does not exist" in line


def test_submit_before_setup(user):
    write_json(user.dir / "files" / "job.json", JOB)
    line = one_line_error(user("submitJob", "files/job.json"))
    assert "DSTestQueue" in line and "setup" in line


@pytest.mark.parametrize("content, words", [
    ('{"groups": [{"a": 1},]}', ["line 1", "not valid JSON"]),
    ('{"pipeline": "x"}', ["groups"]),
    ('{"groups": []}', ["non-empty"]),
    ('[1, 2]', ["JSON object"]),
])
def test_bad_job_file(user, content, words):
    user("setup")
    (user.dir / "files" / "job.json").write_text(content)
    line = one_line_error(user("submitJob", "files/job.json"))
    assert "files/job.json" in line
    for w in words:
        assert w in line, line


def test_bad_group_sends_nothing(user, boto):
    """A bad group near the end must not leave the good ones before it half-submitted."""
    user("setup")
    job = dict(JOB, groups=JOB["groups"] + ["not-an-object"])
    write_json(user.dir / "files" / "job.json", job)
    line = one_line_error(user("submitJob", "files/job.json"))
    assert "groups[23]" in line
    sqs = boto("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url(sqs, "DSTestQueue"),
                                     AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_group_missing_a_command_placeholder(user):
    (user.dir / "config.py").write_text(DS_CONFIG + "COMMAND = 'tool {well} {channel}'\n")
    user("setup")
    write_json(user.dir / "files" / "job.json", JOB)
    line = one_line_error(user("submitJob", "files/job.json"))
    assert "groups[0]" in line and "{channel}" in line


@pytest.mark.parametrize("change, words", [
    (lambda f: f.pop("IamFleetRole"), ["IamFleetRole", "missing"]),
    (lambda f: f.update(LaunchSpecifications=[]), ["LaunchSpecifications"]),
    (lambda f: f["LaunchSpecifications"][0]["BlockDeviceMappings"][0].update(Ebs=None),
     ["LaunchSpecifications[0].BlockDeviceMappings[0].Ebs", "None"]),
    (lambda f: f["LaunchSpecifications"][0].update(NetworkInterfaces={"DeviceIndex": 0}),
     ["LaunchSpecifications[0].NetworkInterfaces", "list"]),
    (lambda f: f.update(TargetCapcity=3), ['"TargetCapcity"']),
])
def test_bad_fleet_file(user, change, words, boto):
    user("setup")
    fleet = json.loads(json.dumps(user.fleet))
    change(fleet)
    write_json(user.dir / "files" / "fleet.json", fleet)
    line = one_line_error(user("startCluster", "files/fleet.json"))
    assert "files/fleet.json" in line
    for w in words:
        assert w in line, line
    # refused before anything changed on AWS: no ECS agent config left behind
    assert not boto("s3").list_objects_v2(Bucket="ds-test-bucket").get("Contents")


def test_start_before_setup(user):
    write_json(user.dir / "files" / "fleet.json", user.fleet)
    line = one_line_error(user("startCluster", "files/fleet.json"))
    assert "setup" in line and "DSTestService" in line


def test_aws_refusal_is_one_line(user):
    (user.dir / "config.py").write_text(DS_CONFIG + "SQS_QUEUE_NAME = 'bad name!'\n")
    line = one_line_error(user("setup"))
    assert "AWS refused to create queue bad name!" in line


def test_monitor_file_errors(user):
    line = one_line_error(user("monitor", "files/none.json"))
    assert "files/none.json" in line and "not found" in line
    write_json(user.dir / "files" / "m.json", {"MONITOR_APP_NAME": "x"})
    line = one_line_error(user("monitor", "files/m.json"))
    assert "MONITOR_FLEET_ID" in line
    write_json(user.dir / "files" / "m.json", ["not", "a", "monitor", "file"])
    for command in ("monitor", "status", "report"):
        line = one_line_error(user(command, "files/m.json"))
        assert line == "error: files/m.json: not a monitor file (startCluster writes one).", line
    write_json(user.dir / "files" / "m.json", {
        "MONITOR_FLEET_ID": "sfr-1", "MONITOR_APP_NAME": "DSTest",
        "MONITOR_ECS_CLUSTER": "dstestcluster", "MONITOR_QUEUE_NAME": "DSTestQueue",
        "MONITOR_BUCKET_NAME": "ds-test-bucket", "MONITOR_LOG_GROUP_NAME": "DSTest",
        "MONITOR_START_TIME": "yesterday"})
    line = one_line_error(user("monitor", "files/m.json"))
    assert line == ("error: files/m.json: MONITOR_START_TIME must be a number, not "
                    "'yesterday'; use the file startCluster wrote.")


def submit_one(user):
    write_json(user.dir / "files" / "job.json", {"groups": [{"well": "A01"}]})
    assert user("submitJob", "files/job.json").returncode == 0


def test_start_cluster_with_nothing_queued_requests_no_machine(user, boto):
    user("setup")
    write_json(user.dir / "files" / "fleet.json", user.fleet)
    line = one_line_error(user("startCluster", "files/fleet.json"))
    assert line == ("error: startCluster requested no machine: queue DSTestQueue holds no job. "
                    "Submit jobs first (python run.py submitJob JOBFILE), then start the "
                    "cluster."), line
    assert not boto("ec2").describe_spot_fleet_requests()["SpotFleetRequestConfigs"]
    assert not (user.dir / "files" / "DSTestSpotFleetRequestId.json").exists()


def test_second_fleet_for_a_live_run_is_refused(user):
    user("setup")
    submit_one(user)
    write_json(user.dir / "files" / "fleet.json", user.fleet)
    assert user("startCluster", "files/fleet.json").returncode == 0
    line = one_line_error(user("startCluster", "files/fleet.json"))
    assert "still active" in line and "monitor" in line


def test_comments_anywhere_in_the_fleet_file_are_dropped_and_bad_fields_named(user, boto):
    user("setup")
    submit_one(user)
    fleet = json.loads(json.dumps(user.fleet))
    fleet["LaunchSpecifications"][0]["_comment_ami"] = "the ECS-optimized AMI"
    write_json(user.dir / "files" / "fleet.json", fleet)
    assert user("startCluster", "files/fleet.json").returncode == 0
    sqs = boto("sqs")  # no worker runs here: the job is taken out by hand, and...
    sqs.purge_queue(QueueUrl=sqs.get_queue_url(QueueName="DSTestQueue")["QueueUrl"])
    user("monitor", "files/DSTestSpotFleetRequestId.json")  # ...monitor cleans up that run
    user("setup")
    fleet["LaunchSpecifications"][0]["ImageID"] = "ami-1"  # a typo AWS rejects
    write_json(user.dir / "files" / "fleet.json", fleet)
    line = one_line_error(user("startCluster", "files/fleet.json"))
    assert '"ImageID"' in line and "files/fleet.json" in line


def test_misspelt_knob_is_warned_about_and_empty_command_noted(user):
    (user.dir / "config.py").write_text(DS_CONFIG + "CLUSTER_MACHINE = 5\n")
    result = user("setup")
    assert result.returncode == 0
    assert "sets CLUSTER_MACHINE; did you mean CLUSTER_MACHINES?" in result.stderr
    assert "DOWNLOAD_FILES" not in result.stderr  # a DS knob, passed to the worker silently
    assert "COMMAND is empty" in result.stdout


def test_upload_of_a_missing_folder_and_download_with_no_outputs(user, boto):
    line = one_line_error(user("upload", "no-such-folder"))
    assert line == ("error: no-such-folder: folder not found; name the folder your job file's "
                    "inputs are in (e.g. files/exampleData).")
    write_json(user.dir / "files" / "job.json", {"groups": [{"well": "A01"}]})
    line = one_line_error(user("download", "files/job.json"))
    assert line == ('error: files/job.json: no job names an "output", so there is nothing to '
                    'download.')
    assert not boto("s3").list_objects_v2(Bucket="ds-test-bucket").get("Contents")

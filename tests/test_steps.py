"""End to end: setup, submitJob, startCluster, monitor as a user runs them, against the emulator."""
import base64
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO, real_fleet, run_py, write_json

# A config.py as the original Distributed-Something writes it: its knobs only,
# string booleans, the dead-letter queue as a full ARN.
DS_CONFIG = """
APP_NAME = 'DSTest'
DOCKERHUB_TAG = 'someone/something:1.0'
AWS_REGION = 'us-east-1'
AWS_PROFILE = 'default'
SSH_KEY_NAME = 'key.pem'
AWS_BUCKET = 'ds-test-bucket'
ECS_CLUSTER = 'dstestcluster'
CLUSTER_MACHINES = 3
TASKS_PER_MACHINE = 2
MACHINE_TYPE = ['m5.xlarge', 'c5.xlarge']
MACHINE_PRICE = 0.13
EBS_VOL_SIZE = 40
DOWNLOAD_FILES = 'False'
ASSIGN_IP = 'False'
DOCKER_CORES = 2
CPU_SHARES = DOCKER_CORES * 1024
MEMORY = 15000
SECONDS_TO_START = 3*60
SQS_QUEUE_NAME = APP_NAME + 'Queue'
SQS_MESSAGE_VISIBILITY = 1*60
SQS_DEAD_LETTER_QUEUE = 'arn:aws:sqs:us-east-1:123456789012:DSTestDead'
JOB_RETRIES = 3
LOG_GROUP_NAME = APP_NAME
AUTO_MONITOR = 'True'
CREATE_DASHBOARD = 'True'
CLEAN_DASHBOARD = 'true'
CHECK_IF_DONE_BOOL = 'False'
EXPECTED_NUMBER_FILES = 7
MIN_FILE_SIZE_BYTES = 1
NECESSARY_STRING = ''
"""

FLEET = {
    "IamFleetRole": "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role",
    "AllocationStrategy": "lowestPrice",
    "TerminateInstancesWithExpiration": True,
    "LaunchSpecifications": [{
        "ImageId": "ami-12c6146b", "KeyName": "key",
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "VolumeType": "gp2"}},
            {"DeviceName": "/dev/xvdcz", "Ebs": {"VolumeType": "gp2"}}],
        "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": "subnet-1",
                               "AssociatePublicIpAddress": True, "Groups": ["sg-1"]}]}],
    "Type": "maintain",
}

JOB = {
    "_comment1": "dropped",
    "pipeline": "analysis.cppipe",
    "output": "out",
    "groups": [{"plate": "P1", "well": "A%02d" % i, "well_comment": "dropped"}
               for i in range(1, 24)],
}


@pytest.fixture
def project(tmp_path, aws_env, boto):
    """A user's working folder with a DS-style config, job and fleet files, and a bucket."""
    config = tmp_path / "config.py"
    config.write_text(DS_CONFIG)
    (tmp_path / "files").mkdir()
    write_json(tmp_path / "files" / "job.json", JOB)
    write_json(tmp_path / "files" / "fleet.json", real_fleet(boto, FLEET))
    boto("s3").create_bucket(Bucket="ds-test-bucket")

    def run(*args, check=True, timeout=120):
        result = run_py(["--config", str(config)] + list(args), aws_env, cwd=str(tmp_path),
                        timeout=timeout)
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result
    run.dir = tmp_path
    run.config = config
    run.env = aws_env
    return run


def queue_url(sqs, name):
    return sqs.get_queue_url(QueueName=name)["QueueUrl"]


def drain(sqs, url):
    """Act as the workers: take every message and delete it."""
    taken = 0
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                   WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            return taken
        for m in msgs:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        taken += len(msgs)


def test_setup_creates_queues_task_definition_and_service(project, boto):
    project("setup")
    sqs, ecs = boto("sqs"), boto("ecs")
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url(sqs, "DSTestQueue"),
                                     AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=queue_url(sqs, "DSTestDead"),
                                       AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert json.loads(attrs["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn,
                                                  "maxReceiveCount": 3}
    assert attrs["VisibilityTimeout"] == "60"
    assert attrs["MessageRetentionPeriod"] == str(14 * 24 * 3600)
    td = ecs.describe_task_definition(taskDefinition="DSTestTask")["taskDefinition"]
    env = {e["name"]: e["value"] for e in td["containerDefinitions"][0]["environment"]}
    assert env["SQS_QUEUE_URL"] == queue_url(sqs, "DSTestQueue")
    assert env["AWS_BUCKET"] == "ds-test-bucket" and env["DOCKER_CORES"] == "2"
    assert env["SECONDS_TO_START"] == "180" and env["EXPECTED_NUMBER_FILES"] == "7"
    assert not [k for k in env if "SECRET" in k or "ACCESS_KEY" in k or "TOKEN" in k]
    assert "testing" not in json.dumps(td)  # the test's credentials never reach ECS
    assert td["containerDefinitions"][0]["image"] == "someone/something:1.0"
    svc = ecs.describe_services(cluster="dstestcluster", services=["DSTestService"])["services"][0]
    assert svc["desiredCount"] == 0 and svc["status"] == "ACTIVE"

    second = project("setup")  # safe to repeat: only the revision changes
    assert "DSTestTask:2" in second.stdout
    again = sqs.get_queue_attributes(QueueUrl=queue_url(sqs, "DSTestQueue"),
                                     AttributeNames=["All"])["Attributes"]
    assert {k: again[k] for k in ("RedrivePolicy", "VisibilityTimeout")} == \
        {k: attrs[k] for k in ("RedrivePolicy", "VisibilityTimeout")}
    assert len(sqs.list_queues(QueueNamePrefix="DSTest")["QueueUrls"]) == 2


def test_submit_sends_one_message_per_group(project, boto):
    project("setup")
    result = project("submitJob", "files/job.json")
    assert "Queued 23 jobs" in result.stdout
    sqs = boto("sqs")
    url = queue_url(sqs, "DSTestQueue")
    bodies = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                   VisibilityTimeout=60, WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            break
        bodies += [json.loads(m["Body"]) for m in msgs]
    assert len(bodies) == 23
    wells = sorted(b["group"]["well"] for b in bodies)
    assert wells == sorted(g["well"] for g in JOB["groups"])
    for b in bodies:
        assert b["pipeline"] == "analysis.cppipe" and b["output"] == "out"
        assert "_comment1" not in b and "well_comment" not in b["group"]
        assert set(b) == {"pipeline", "output", "group", "job_key"}


def test_four_steps_and_monitor_removes_everything(project, boto):
    project("setup")
    project("submitJob", "files/job.json")
    result = project("startCluster", "files/fleet.json")
    assert "The run monitors itself: schedule DSTestAutoMonitorSchedule" in result.stdout
    monitor_file = project.dir / "files" / "DSTestSpotFleetRequestId.json"
    info = json.loads(monitor_file.read_text())
    fleet_id = info["MONITOR_FLEET_ID"]
    ec2, ecs, sqs = boto("ec2"), boto("ecs"), boto("sqs")
    cw, logs, s3 = boto("cloudwatch"), boto("logs"), boto("s3")

    config = ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[fleet_id])[
        "SpotFleetRequestConfigs"][0]["SpotFleetRequestConfig"]
    assert config["TargetCapacity"] == 3 and float(config["SpotPrice"]) == 0.13
    specs = config["LaunchSpecifications"]
    assert sorted(s["InstanceType"] for s in specs) == ["c5.xlarge", "m5.xlarge"]
    user_data = base64.b64decode(specs[0]["UserData"]).decode()
    assert "ECS_CLUSTER=dstestcluster" in user_data and "dm.basesize=18G" in user_data
    svc = ecs.describe_services(cluster="dstestcluster", services=["DSTestService"])["services"][0]
    assert svc["desiredCount"] == 6
    groups = {g["logGroupName"]: g for g in logs.describe_log_groups(
        logGroupNamePrefix="DSTest")["logGroups"]}
    assert set(groups) == {"DSTest", "DSTest_perInstance"}
    assert all(g["retentionInDays"] == 60 for g in groups.values())
    assert cw.list_dashboards(DashboardNamePrefix="DSTest")["DashboardEntries"]
    assert s3.get_object(Bucket="ds-test-bucket", Key="ecsconfigs/DSTest_ecs.config")
    # what run-worker.sh creates on each machine; more than one delete call's worth
    for i in range(130):
        cw.put_metric_alarm(AlarmName="DSTest_i-%017x" % i, MetricName="CPUUtilization",
                            Namespace="AWS/EC2", Statistic="Average", Period=60,
                            EvaluationPeriods=15, Threshold=1,
                            ComparisonOperator="LessThanThreshold")
    cw.put_metric_alarm(AlarmName="Other_i-1", MetricName="CPUUtilization",
                        Namespace="AWS/EC2", Statistic="Average", Period=60,
                        EvaluationPeriods=15, Threshold=1, ComparisonOperator="LessThanThreshold")

    logs.create_log_stream(logGroupName="DSTest", logStreamName="P1-A01")
    logs.put_log_events(logGroupName="DSTest", logStreamName="P1-A01", logEvents=[
        {"timestamp": int(time.time() * 1000), "message": "END job P1-A01 outcome SUCCESS"}])
    assert drain(sqs, queue_url(sqs, "DSTestQueue")) == 23
    project.config.write_text(DS_CONFIG + "\nMONITOR_TIME = 1\n")
    result = project("monitor", str(monitor_file))
    assert "23 jobs done, 0 in the dead-letter queue" in result.stdout

    assert not sqs.list_queues(QueueNamePrefix="DSTest").get("QueueUrls")
    assert not ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[fleet_id])[
        "SpotFleetRequestConfigs"]
    assert not [s for s in ecs.describe_services(cluster="dstestcluster",
                                                 services=["DSTestService"])["services"]
                if s["status"] == "ACTIVE"]
    assert not ecs.list_task_definitions(familyPrefix="DSTestTask", status="ACTIVE")[
        "taskDefinitionArns"]
    assert not [c for c in ecs.describe_clusters(clusters=["dstestcluster"])["clusters"]
                if c["status"] == "ACTIVE"]
    assert not cw.list_dashboards(DashboardNamePrefix="DSTest")["DashboardEntries"]
    assert not cw.describe_alarms(AlarmNamePrefix="DSTest")["MetricAlarms"]
    assert cw.describe_alarms(AlarmNamePrefix="Other")["MetricAlarms"]  # not ours: kept
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="ds-test-bucket")["Contents"]]
    assert "ecsconfigs/DSTest_ecs.config" not in keys
    assert any(k.startswith("exportedlogs/DSTest/") for k in keys)

    again = project("monitor", str(monitor_file))
    assert "Nothing is left" in again.stdout


def test_monitor_scales_down_keeps_failed_jobs_and_resumes(project, boto):
    project.config.write_text(DS_CONFIG + "\nMONITOR_TIME = 1\n")
    project("setup")
    project("submitJob", "files/job.json")
    project("startCluster", "files/fleet.json")
    monitor_file = str(project.dir / "files" / "DSTestSpotFleetRequestId.json")
    fleet_id = json.loads(open(monitor_file).read())["MONITOR_FLEET_ID"]
    sqs, ec2 = boto("sqs"), boto("ec2")
    url, dlq = queue_url(sqs, "DSTestQueue"), queue_url(sqs, "DSTestDead")
    # 22 jobs finish, 1 lands in the dead-letter queue, 5 are taken and still running
    taken = []
    while len(taken) < 23:
        taken += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                     VisibilityTimeout=600)["Messages"]
    for m in taken[5:22]:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    sqs.send_message(QueueUrl=dlq, MessageBody=taken[22]["Body"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=taken[22]["ReceiptHandle"])
    running = taken[:5]

    proc = start_monitor(project, monitor_file)
    target = wait_for_capacity(ec2, fleet_id, lambda t: t < 3)
    proc.kill()  # the laptop closes mid-run
    out = proc.communicate()[0]
    assert target == 2, out  # 5 jobs in flight, 4 per machine (2 tasks x 2 cores)
    assert "5 running" in out
    # machines are not terminated by the scale-down
    assert len(ec2.describe_spot_fleet_instances(SpotFleetRequestId=fleet_id)[
        "ActiveInstances"]) == 3

    for m in running:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    result = project("monitor", monitor_file)  # started again: continues and finishes
    assert "22 jobs done, 1 in the dead-letter queue" in result.stdout
    assert "Kept dead-letter queue DSTestDead" in result.stdout
    assert [u for u in sqs.list_queues(QueueNamePrefix="DSTest")["QueueUrls"]] == [dlq]


def start_monitor(project, monitor_file, *extra):
    return subprocess.Popen([sys.executable, os.path.join(REPO, "run.py"), "--config",
                             str(project.config), "monitor", monitor_file] + list(extra),
                            cwd=str(project.dir), env=project.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for_capacity(ec2, fleet_id, ok, timeout=60):
    """Poll the fleet's target capacity until ok(capacity); return the last value."""
    deadline = time.monotonic() + timeout
    while True:
        target = ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[fleet_id])[
            "SpotFleetRequestConfigs"][0]["SpotFleetRequestConfig"]["TargetCapacity"]
        if ok(target) or time.monotonic() > deadline:
            return target
        time.sleep(0.2)


def test_ds_style_trailing_true_means_cheapest(project, boto):
    # the laptop monitor of its own (--cheapest is the laptop monitor's option)
    project.config.write_text(DS_CONFIG + "\nMONITOR_TIME = 1\nAUTO_MONITOR = False\n")
    project("setup")
    project("submitJob", "files/job.json")
    project("startCluster", "files/fleet.json")
    path = project.dir / "files" / "DSTestSpotFleetRequestId.json"
    info = json.loads(path.read_text())
    info["MONITOR_START_TIME"] = str(int(time.time()) - 20 * 60)  # started 20 minutes ago
    path.write_text(json.dumps(info))
    ec2 = boto("ec2")

    plain = start_monitor(project, str(path))
    unchanged = wait_for_capacity(ec2, info["MONITOR_FLEET_ID"], lambda t: t != 3, timeout=3)
    plain.kill()
    plain.communicate()
    assert unchanged == 3  # jobs are still queued: no reason to shrink

    cheap = start_monitor(project, str(path), "True")
    target = wait_for_capacity(ec2, info["MONITOR_FLEET_ID"], lambda t: t == 1)
    cheap.kill()
    out = cheap.communicate()[0]
    assert target == 1, out
    assert "Cheapest mode" in out

    bad = project("monitor", str(path), "maybe", check=False)
    assert bad.returncode == 1 and "True or False" in bad.stderr


def test_monitor_finishes_a_teardown_that_stopped_midway(project, boto):
    project.config.write_text(DS_CONFIG + "\nMONITOR_TIME = 1\n")
    project("setup")
    project("submitJob", "files/job.json")
    project("startCluster", "files/fleet.json")
    monitor_file = str(project.dir / "files" / "DSTestSpotFleetRequestId.json")
    fleet_id = json.loads(open(monitor_file).read())["MONITOR_FLEET_ID"]
    sqs, ecs, ec2, cw = boto("sqs"), boto("ecs"), boto("ec2"), boto("cloudwatch")
    # a monitor that died after the queue, the fleet and the service were gone
    sqs.delete_queue(QueueUrl=queue_url(sqs, "DSTestQueue"))
    ec2.cancel_spot_fleet_requests(SpotFleetRequestIds=[fleet_id], TerminateInstances=True)
    ecs.update_service(cluster="dstestcluster", service="DSTestService", desiredCount=0)
    ecs.delete_service(cluster="dstestcluster", service="DSTestService")

    result = project("monitor", monitor_file)
    assert "Deregistered task definition DSTestTask" in result.stdout
    assert not ecs.list_task_definitions(familyPrefix="DSTestTask", status="ACTIVE")[
        "taskDefinitionArns"]
    assert not cw.list_dashboards(DashboardNamePrefix="DSTest")["DashboardEntries"]
    assert "Run DSTest finished" in result.stdout
    assert "Nothing is left" in project("monitor", monitor_file).stdout


def test_monitor_rerun_after_the_queue_was_deleted_reports_the_recorded_counts(
        project, boto, refused_url):
    project.config.write_text(DS_CONFIG + "\nMONITOR_TIME = 1\nAUTO_MONITOR = False\n")
    project("setup")
    project("submitJob", "files/job.json")
    project("startCluster", "files/fleet.json")
    monitor_file = str(project.dir / "files" / "DSTestSpotFleetRequestId.json")
    sqs = boto("sqs")
    url, dlq = queue_url(sqs, "DSTestQueue"), queue_url(sqs, "DSTestDead")
    taken = []
    while len(taken) < 23:
        taken += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                     VisibilityTimeout=600)["Messages"]
    for m in taken[:22]:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    sqs.send_message(QueueUrl=dlq, MessageBody=taken[22]["Body"])  # 1 job failed every try
    sqs.delete_message(QueueUrl=url, ReceiptHandle=taken[22]["ReceiptHandle"])

    # CloudWatch Logs cannot be reached: monitor dies at the log export,
    # after the queue is deleted
    env = dict(project.env, AWS_ENDPOINT_URL_CLOUDWATCH_LOGS=refused_url, AWS_MAX_ATTEMPTS="2")
    died = run_py(["--config", str(project.config), "monitor", monitor_file], env,
                  cwd=str(project.dir))
    assert died.returncode == 1 and "Traceback" not in died.stderr, died.stderr
    assert "Deleted queue DSTestQueue." in died.stdout
    assert "Run DSTest finished" not in died.stdout
    info = json.loads(open(monitor_file).read())
    assert (info["MONITOR_JOBS_DONE"], info["MONITOR_JOBS_DEAD"]) == (22, 1)

    result = project("monitor", monitor_file)
    assert "The queue is already gone (an earlier monitor removed it); finishing the " \
           "clean-up." in result.stdout
    assert "Run DSTest finished: 22 jobs done, 1 in the dead-letter queue" in result.stdout
    assert "Exported log group DSTest " in result.stdout
    assert json.loads(open(monitor_file).read())["MONITOR_FINISHED"] is True

"""A run only ever touches what it made, even when another run's name starts with its own."""
import json

from conftest import real_fleet, run_py, write_json
from test_steps import DS_CONFIG, FLEET, JOB, drain, queue_url

RUNS = ("Plate1", "Plate1_Analysis")   # the troubleshooting page suggests such names


def config_for(app):
    text = DS_CONFIG.replace("APP_NAME = 'DSTest'", "APP_NAME = '%s'" % app)
    text = text.replace("'arn:aws:sqs:us-east-1:123456789012:DSTestDead'", "APP_NAME + 'Dead'")
    return text + "\nMONITOR_TIME = 1\n"


def put_idle_alarm(cw, name):
    cw.put_metric_alarm(AlarmName=name, MetricName="CPUUtilization", Namespace="AWS/EC2",
                        Statistic="Average", Period=60, EvaluationPeriods=15, Threshold=1,
                        ComparisonOperator="LessThanThreshold")


def state(boto, app):
    """Everything run `app` made, as the emulator holds it."""
    sqs, ecs, cw, logs = boto("sqs"), boto("ecs"), boto("cloudwatch"), boto("logs")
    queues = sorted(u.rsplit("/", 1)[-1] for u in sqs.list_queues(
        QueueNamePrefix=app).get("QueueUrls", []))
    services = [(s["serviceName"], s["desiredCount"], s["taskDefinition"])
                for s in ecs.describe_services(cluster="dstestcluster",
                                               services=[app + "Service"])["services"]
                if s["status"] == "ACTIVE"]
    families = sorted(a for a in ecs.list_task_definitions(
        familyPrefix=app + "Task", status="ACTIVE")["taskDefinitionArns"])
    dashboards = sorted(d["DashboardName"] for d in cw.list_dashboards(
        DashboardNamePrefix=app)["DashboardEntries"])
    alarms = sorted(a["AlarmName"] for a in cw.describe_alarms(
        AlarmNamePrefix=app)["MetricAlarms"])
    groups = sorted(g["logGroupName"] for g in logs.describe_log_groups(
        logGroupNamePrefix=app)["logGroups"])
    return {"queues": queues, "services": services, "task definitions": families,
            "dashboards": dashboards, "alarms": alarms, "log groups": groups}


def only(app, found):
    """Keep what belongs to `app` alone: drop names that belong to the longer run."""
    if app != RUNS[0]:
        return found
    return {k: [v for v in vals if RUNS[1] not in str(v)] for k, vals in found.items()}


def test_two_runs_sharing_a_name_prefix_keep_each_others_resources(tmp_path, aws_env, boto):
    (tmp_path / "files").mkdir()
    write_json(tmp_path / "files" / "job.json", JOB)
    write_json(tmp_path / "files" / "fleet.json", real_fleet(boto, FLEET))
    boto("s3").create_bucket(Bucket="ds-test-bucket")
    ec2, cw, sqs, logs = boto("ec2"), boto("cloudwatch"), boto("sqs"), boto("logs")

    def run(app, *args):
        config = tmp_path / ("%s.py" % app)
        config.write_text(config_for(app))
        result = run_py(["--config", str(config)] + list(args), aws_env, cwd=str(tmp_path))
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    for app in RUNS:
        run(app, "setup")
        run(app, "submitJob", "files/job.json")
        run(app, "startCluster", "files/fleet.json")
        fleet_id = json.loads((tmp_path / "files" / ("%sSpotFleetRequestId.json" % app))
                              .read_text())["MONITOR_FLEET_ID"]
        for inst in ec2.describe_spot_fleet_instances(
                SpotFleetRequestId=fleet_id)["ActiveInstances"]:
            put_idle_alarm(cw, "%s_%s" % (app, inst["InstanceId"]))  # as the worker names it
    first, second = RUNS
    before = state(boto, second)
    assert before["alarms"] and before["dashboards"] == [second]
    assert before["queues"] == [second + "Dead", second + "Queue"] and before["services"]
    mine = only(first, state(boto, first))
    assert len(mine["alarms"]) == 3 and mine["queues"] == [first + "Dead", first + "Queue"]

    # the first run's own log group is gone; the prefix must not find the other's
    logs.delete_log_group(logGroupName=first)
    assert drain(sqs, queue_url(sqs, first + "Queue")) == len(JOB["groups"])
    out = run(first, "monitor", "files/%sSpotFleetRequestId.json" % first).stdout
    assert "Deleted 3 alarms." in out
    assert "ECS cluster dstestcluster still has services or machines; leaving it in place." \
        in out
    assert "Could not export" not in out and "Exported log group %s " % first not in out

    assert state(boto, second) == before
    assert not any(only(first, state(boto, first))[k] for k in
                   ("queues", "services", "task definitions", "dashboards", "alarms"))

    assert drain(sqs, queue_url(sqs, second + "Queue")) == len(JOB["groups"])
    out = run(second, "monitor", "files/%sSpotFleetRequestId.json" % second).stdout
    assert "Deleted ECS cluster dstestcluster." in out
    for app in RUNS:
        left = state(boto, app)
        assert not any(left[k] for k in ("queues", "services", "task definitions",
                                         "dashboards", "alarms")), left

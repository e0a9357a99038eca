"""Least privilege, proven on an emulator that enforces IAM (tests/iam_server.py).

One account, from empty to empty: its admin makes a scientist's user holding
exactly what documentation/step_0_prep.md section 4 asks for (the page is
tested against ds/resources/policies.py, which is read here). Every part of two
runs then uses only its own identity:
- the laptop commands, as the scientist;
- the workers (run-worker.sh: instance-setup, the workers), with the worker
  role's session from a stand-in of the task-role endpoint;
- the machines' boot script's read of the ECS agent config, with the machine role;
- the automatic monitor's ticks, the packaged handler with the function role.
The first run has AUTO_MONITOR on and ends by its ticks; the second has it off
and ends by `monitor` on the laptop. Every call the emulator checked is written
down; the tests below read that record.
"""
import base64
import contextlib
import json
import os
import re
import shutil
import sys

import pytest

from conftest import REPO, user_runner
from iam_rules import allows, as_document, statement_allows
from iam_world import ACCOUNT
from test_automonitor import packaged_tick
from test_dsapp import role_endpoint
from test_prepare import FLEET_FILE, aws_like_default_vpc, edit, shipped_config
from test_worker_launcher import FakeIMDS
from worker_helpers import RUN_WORKER, Workers, wait_until

sys.path.insert(0, REPO)
from ds.core.settings import load  # noqa: E402
from ds.resources import boot, policies  # noqa: E402

pytestmark = [pytest.mark.together, pytest.mark.slow]  # one module fixture: both runs

APP = "ExampleProject"
BUCKET = "ds-least-privilege"
MONITOR_KEY = "monitors/%s.json" % APP
MONITOR_FILE = "files/%sSpotFleetRequestId.json" % APP
FAILING_WELL = "Z99"   # a well whose measurements file has no rows: its tool fails


def user_policies(settings):
    """The scientist's policies: step 0's, section 4, as the page is tested against."""
    return [policies.user_run(settings, ACCOUNT), policies.user_auto_monitor(settings, ACCOUNT),
            policies.user_prepare(settings, ACCOUNT)]


def project(folder):
    """The shipped config with README's edits, the example job plus one job that fails,
    and the example data."""
    (folder / "config.py").write_text(shipped_config(BUCKET))
    shutil.copytree(os.path.join(REPO, "files", "exampleData"), folder / "files" / "exampleData")
    (folder / "files" / "exampleData" / "measurements" / (FAILING_WELL + ".csv")).write_text(
        "cell,area\n")
    with open(os.path.join(REPO, "files", "exampleJob.json")) as f:
        job = json.load(f)
    job["groups"].append({"well": FAILING_WELL, "input": [
        "exampleData/summarize.py", "exampleData/measurements/%s.csv" % FAILING_WELL],
        "output": "exampleOutput/Plate1/" + FAILING_WELL})
    (folder / "files" / "exampleJob.json").write_text(json.dumps(job))
    return len(job["groups"])


class Account:
    """The world of one module: admin's clients, the identities, the workers."""

    def __init__(self, world, folder):
        self.world, self.folder = world, folder
        self.workers = Workers(folder)
        self.commands = []   # (command, first call, after its last call) in the record

    def settings(self):
        return load(str(self.folder / "config.py"))

    def queue_counts(self, name):
        sqs = self.world.client("sqs")
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return int(a["ApproximateNumberOfMessages"]), int(
            a["ApproximateNumberOfMessagesNotVisible"])

    def fleet(self):
        ec2 = self.world.client("ec2")
        fleet_id = json.loads((self.folder / MONITOR_FILE).read_text())["MONITOR_FLEET_ID"]
        config = ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[fleet_id])[
            "SpotFleetRequestConfigs"][0]["SpotFleetRequestConfig"]
        machines = [i["InstanceId"] for i in ec2.describe_spot_fleet_instances(
            SpotFleetRequestId=fleet_id)["ActiveInstances"]]
        return config, machines

    def boot_machine(self, config):
        """What the boot script does first with the machine role: fetch the ECS agent
        config from the bucket (`aws s3 cp` in resources/boot.py's user data)."""
        script = base64.b64decode(config["LaunchSpecifications"][0]["UserData"]).decode()
        bucket, key = re.search(r"aws s3 cp s3://([^/]+)/(\S+) ", script).groups()
        machine = self.world.session(self.world.assume(APP + "MachineRole"))
        body = machine.client("s3", endpoint_url=self.world.url).get_object(
            Bucket=bucket, Key=key)["Body"].read().decode()
        assert "ECS_CLUSTER=" in body

    def start_container(self, machine, name):
        """run-worker.sh as ECS runs it on `machine`: the registered task definition's
        environment, the worker role's session from the task-role endpoint, the
        machine's instance metadata; no keys."""
        ecs = self.world.client("ecs")
        arn = ecs.list_task_definitions(familyPrefix=APP + "Task")["taskDefinitionArns"][-1]
        container = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"][
            "containerDefinitions"][0]
        url = self.stack.enter_context(role_endpoint(self.world.assume(APP + "WorkerRole")))
        env = {k: v for k, v in self.world.base_env.items()
               if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
        env.update({e["name"]: e["value"] for e in container["environment"]})
        env.update(AWS_CONTAINER_CREDENTIALS_FULL_URI=url, AWS_EC2_METADATA_DISABLED="false",
                   AWS_EC2_METADATA_SERVICE_ENDPOINT=self.imds, WORKER_PYTHON=sys.executable,
                   AWS_REGION=env["AWS_DEFAULT_REGION"], HOME=str(self.folder / "home"))
        FakeIMDS.instance_id = machine
        return self.workers.start_script(["bash", RUN_WORKER], env, name)

    def hold_one_job(self, machine):
        """Take one job as a worker on `machine` busy with a long one would: in flight,
        with the machine's busy record (worker/busy.py). Returns (the job's body, a
        function that lets it go back to the queue)."""
        sqs, s3 = self.world.client("sqs"), self.world.client("s3")
        url = sqs.get_queue_url(QueueName=APP + "Queue")["QueueUrl"]
        job = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1,
                                  VisibilityTimeout=600)["Messages"][0]
        record = "busy/%s/%s/long-job" % (APP, machine)
        s3.put_object(Bucket=BUCKET, Key=record, Body=b"a long job")

        def release():
            s3.delete_object(Bucket=BUCKET, Key=record)
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=job["ReceiptHandle"],
                                          VisibilityTimeout=0)
        return job["Body"], release

    def runner(self, key, label=None):
        """`python run.py ...` as the holder of `key`; the calls each command makes
        are remembered under its name (or `label`)."""
        run = user_runner(dict(self.world.env_for(key), HOME=str(self.folder / "home")),
                          self.folder)

        def command(*args, ok=True):
            start = len(self.world.decisions())
            result = run(*args, ok=ok)
            self.commands.append((label or args[0], start, len(self.world.decisions())))
            return result
        return command

    def tick(self):
        """One tick of the packaged function, with its role's session."""
        env = self.world.env_for(self.world.assume(APP + "AutoMonitorRole"))
        return packaged_tick(self.folder, env, BUCKET, MONITOR_KEY)


@pytest.fixture(scope="module")
def account(iam_world, tmp_path_factory):
    """Two runs and a prepare --remove, every part as its own identity; yields the
    Account with what each command printed in `said`."""
    import http.server
    import threading
    folder = tmp_path_factory.mktemp("scientist")
    (folder / "home").mkdir()
    (folder / "files").mkdir()
    jobs = project(folder)
    world = iam_world
    aws_like_default_vpc(world.client)
    a = Account(world, folder)
    a.jobs = jobs
    a.stack = contextlib.ExitStack()  # the task-role endpoints
    imds = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeIMDS)
    threading.Thread(target=imds.serve_forever, daemon=True).start()
    a.imds = "http://127.0.0.1:%d" % imds.server_address[1]
    config_py = folder / "config.py"
    # a cluster of its own, deleted at the run's end (the shipped 'default' never is)
    config_py.write_text(edit(config_py.read_text(), "ECS_CLUSTER = 'dsleastprivilege'"))
    a.key = key = world.user("scientist", user_policies(a.settings()))
    user = a.runner(key)
    a.said = said = {}
    try:
        said["prepare"] = user("prepare", "--key").stdout
        role = re.search(r"^Set (TASK_ROLE_ARN = '[^']+') in config.py.$", said["prepare"],
                         re.M).group(1)
        (folder / "config.py").write_text(edit((folder / "config.py").read_text(), role))
        said["check"] = user("check", "files/exampleJob.json", FLEET_FILE).stdout
        said["upload"] = user("upload", "files/exampleData").stdout
        run_with_the_automatic_monitor(a, user)
        run_with_the_laptop_monitor(a, user, world)
        said["remove"] = user("prepare", "--remove").stdout
        yield a
    finally:
        a.workers.close()
        a.stack.close()
        imds.shutdown()
        imds.server_close()


def run_with_the_automatic_monitor(a, user):
    said = a.said
    user("setup")
    user("setup")  # run again, it brings what exists up to date
    said["submitJob"] = user("submitJob", "files/exampleJob.json").stdout
    said["startCluster"] = a.runner(a.key, "startCluster with AUTO_MONITOR")(
        "startCluster", FLEET_FILE).stdout
    config, machines = a.fleet()
    a.boot_machine(config)
    # what Lambda does as the function first logs: its group, /aws/lambda/<function name>
    a.world.client("logs").create_log_group(logGroupName="/aws/lambda/%sAutoMonitor" % APP)
    assert '"finished": false' in a.tick()  # jobs queued: a look
    body, release = a.hold_one_job(machines[0])
    a.start_container(machines[0], "container1")
    queue, dead = APP + "Queue", APP + "DeadMessages"
    failing_held = FAILING_WELL in body
    wait_until(lambda: a.queue_counts(queue) == (0, 1) and
               a.queue_counts(dead)[0] == (0 if failing_held else 1),
               120, "every job done but the one held", interval=0.5)
    a.arns = made(a, machines)
    said["scale-in ticks"] = a.tick() + a.tick()
    assert "Ended idle machine %s" % machines[1] in said["scale-in ticks"], said["scale-in ticks"]
    release()
    wait_until(lambda: a.queue_counts(queue) == (0, 0) and a.queue_counts(dead)[0] == 1,
               120, "every job done but %s, which is in the dead-letter queue" % FAILING_WELL,
               interval=0.5)
    said["status"] = user("status", MONITOR_FILE).stdout
    said["failures"] = user("failures").stdout
    # what a user does next: mend the input, upload it again, send the job round again
    (a.folder / "files" / "exampleData" / "measurements" / (FAILING_WELL + ".csv")).write_text(
        (a.folder / "files" / "exampleData" / "measurements" / "A01.csv").read_text())
    user("upload", "files/exampleData")
    said["redrive"] = user("redrive").stdout
    wait_until(lambda: a.queue_counts(queue) == (0, 0) and a.queue_counts(dead)[0] == 0,
               120, "the redriven job to be done", interval=0.5)
    for _ in range(30):
        if '"finished": true' in a.tick():
            break
    else:
        raise AssertionError("the ticks did not end the run")
    said["after the last tick"] = left_of_ours(a.world)
    said["monitor"] = user("monitor", MONITOR_FILE).stdout
    said["report"] = user("report", MONITOR_FILE).stdout
    said["download"] = user("download", "files/exampleJob.json").stdout
    a.workers.close()


def left_of_ours(world):
    """What of the app the account holds, by kind."""
    ecs, cw, s3 = world.client("ecs"), world.client("cloudwatch"), world.client("s3")
    return {
        "queues": world.client("sqs").list_queues(QueueNamePrefix=APP).get("QueueUrls", []),
        "services": [x["serviceName"] for x in ecs.describe_services(
            cluster="dsleastprivilege", services=[APP + "Service"])["services"]
            if x["status"] == "ACTIVE"],
        "task definitions": ecs.list_task_definitions(familyPrefix=APP, status="ACTIVE")[
            "taskDefinitionArns"],
        "functions": [f["FunctionName"] for f in world.client("lambda").list_functions()[
            "Functions"]],
        "schedules": world.client("events").list_rules(NamePrefix=APP)["Rules"],
        "alarms": cw.describe_alarms(AlarmNamePrefix=APP)["MetricAlarms"],
        "dashboards": cw.list_dashboards(DashboardNamePrefix=APP)["DashboardEntries"],
        "state": [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="monitors/").get(
            "Contents", [])],
        "roles": sorted(r["RoleName"] for r in world.client("iam").list_roles()["Roles"]
                        if r["RoleName"].startswith(APP)),
    }


def made(a, machines):
    """The ARNs of what the run has made, as AWS names them (EC2's, which it does not
    return, from their ids)."""
    w, s = a.world, a.settings()
    ecs, sqs, iam = w.client("ecs"), w.client("sqs"), w.client("iam")
    fn = w.client("lambda").get_function(FunctionName=APP + "AutoMonitor")["Configuration"]
    ec2 = w.client("ec2")
    ids = machines + [v["VolumeId"] for v in ec2.describe_volumes(Filters=[
        {"Name": "attachment.instance-id", "Values": machines}])["Volumes"]] + [
        json.loads((a.folder / MONITOR_FILE).read_text())["MONITOR_FLEET_ID"]]
    kinds = {"i-": "instance", "vol-": "volume", "sfr-": "spot-fleet-request"}
    return (
        [c["clusterArn"] for c in ecs.describe_clusters(clusters=[s.ECS_CLUSTER])["clusters"]] +
        [x["serviceArn"] for x in ecs.describe_services(
            cluster=s.ECS_CLUSTER, services=[APP + "Service"])["services"]] +
        [fn["FunctionArn"], w.client("events").describe_rule(Name=APP + "AutoMonitorSchedule")[
            "Arn"]] +
        [x["AlarmArn"] for x in w.client("cloudwatch").describe_alarms(
            AlarmNamePrefix=APP)["MetricAlarms"]] +
        [w.client("cloudwatch").get_dashboard(DashboardName=APP)["DashboardArn"]] +
        # a log group's ARN, as IAM names it and as DescribeLogGroups gives it (":*")
        [arn for prefix in (APP, "/aws/lambda/" + fn["FunctionName"])
         for g in w.client("logs").describe_log_groups(logGroupNamePrefix=prefix)["logGroups"]
         for arn in (g["arn"], g["arn"][:-2] if g["arn"].endswith(":*") else g["arn"])] +
        [sqs.get_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName=q)["QueueUrl"],
                                  AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
         for q in (s.SQS_QUEUE_NAME, s.dead_letter_queue_name)] +
        ["arn:aws:s3:::" + BUCKET] + ["arn:aws:s3:::%s/%s" % (BUCKET, key) for key in (
            MONITOR_KEY, boot.ecs_config_key(s))] +
        [r["Arn"] for r in iam.list_roles()["Roles"]] +
        [p["Arn"] for p in iam.list_instance_profiles()["InstanceProfiles"]] +
        ["arn:aws:ec2:%s:%s:%s/%s" % (s.AWS_REGION, ACCOUNT, kind, i) for i in ids
         for prefix, kind in kinds.items() if i.startswith(prefix)])


def run_with_the_laptop_monitor(a, user, world):
    """First a user without the AUTO_MONITOR permissions tries, then the scientist runs
    with AUTO_MONITOR off and `monitor` ends the run."""
    said = a.said
    user("setup")
    user("submitJob", "files/exampleJob.json")
    settings = a.settings()
    key = world.user("no-lambda", [policies.user_run(settings, ACCOUNT),
                                   policies.user_prepare(settings, ACCOUNT)])
    refuse = user_runner(dict(world.env_for(key), HOME=str(a.folder / "home")), a.folder)
    said["refused"] = refuse("startCluster", FLEET_FILE, ok=False)
    # without the simulator too: check cannot tell, the install itself is refused
    blind = without({"run": policies.user_run(settings, ACCOUNT),
                     "prepare": policies.user_prepare(settings, ACCOUNT)},
                    "run", 0, "iam:SimulatePrincipalPolicy")
    key = world.user("no-lambda-no-simulator", list(blind.values()))
    refuse = user_runner(dict(world.env_for(key), HOME=str(a.folder / "home")), a.folder)
    said["check_blind"] = refuse("check", "files/exampleJob.json", FLEET_FILE).stdout
    said["refused_at_install"] = refuse("startCluster", FLEET_FILE, ok=False)
    said["fleets_after_refusal"] = world.client("ec2").describe_spot_fleet_requests()[
        "SpotFleetRequestConfigs"]
    config_py = a.folder / "config.py"
    config_py.write_text(edit(config_py.read_text(), "AUTO_MONITOR = 'False'"))
    config_py.write_text(edit(config_py.read_text(), "MONITOR_TIME = 1"))
    user("startCluster", FLEET_FILE)
    _, machines = a.fleet()
    a.workers = Workers(a.folder)
    _, release = a.hold_one_job(machines[0])
    a.start_container(machines[0], "container2")
    start = len(world.decisions())
    monitor = a.workers.start_script(
        [sys.executable, os.path.join(REPO, "run.py"), "monitor", MONITOR_FILE],
        dict(world.env_for(a.key), HOME=str(a.folder / "home")), "monitor2")
    monitor.wait_for(r"Ended idle machine %s" % machines[1], timeout=120)
    release()
    monitor.p.wait(120)
    a.commands.append(("monitor", start, len(world.decisions())))
    said["monitor2"] = monitor.output()
    assert monitor.p.returncode == 0, said["monitor2"]
    a.workers.close()


def test_a_whole_run_works_with_only_the_permissions_the_docs_give(account):
    said = account.said
    assert "Created role %sAutoMonitorRole" % APP in said["prepare"], said["prepare"]
    assert "No problem found" in said["check"], said["check"]
    assert "ok        AUTO_MONITOR: these credentials may install the automatic monitor." \
        in said["check"], said["check"]
    for run in ("monitor", "monitor2"):
        assert "Run %s finished: %d jobs done, 0 in the dead-letter queue" % (
            APP, account.jobs) in said[run], said[run]
    assert FAILING_WELL in said["failures"], said["failures"]
    assert "Downloaded %d files" % account.jobs in said["download"], said["download"]
    denied = [d for d in account.world.decisions() if not d["allowed"]
              and "/no-lambda" not in d["who"]]
    assert not denied, denied


def test_a_user_without_the_monitors_rights_gets_one_line_and_no_fleet(account):
    refused = account.said["refused"]
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stdout + refused.stderr
    line = lines[0]
    # check's look, as startCluster's pre-flight, stops it before anything is made
    assert line == (
        "error: startCluster requested no machine: AUTO_MONITOR: these credentials may not "
        "lambda:CreateFunction, lambda:GetPolicy, lambda:AddPermission, events:PutRule, "
        "events:PutTargets, which installing the automatic monitor needs: ask for the "
        "AUTO_MONITOR permissions of documentation/step_0_prep.md, or set AUTO_MONITOR = "
        "False in config.py."), line
    refused = account.said["refused_at_install"]
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stdout + refused.stderr
    assert lines[0].startswith("error: AWS refused to create Lambda function %sAutoMonitor: User: "
                               "arn:aws:iam::%s:user/no-lambda-no-simulator is not authorized "
                               "to perform: lambda:CreateFunction" % (APP, ACCOUNT)), lines[0]
    assert lines[0].endswith("No machine was requested. Ask for the AUTO_MONITOR permissions of "
                             "documentation/step_0_prep.md (section 4), or set AUTO_MONITOR = "
                             "False in config.py and run monitor yourself."), lines[0]
    assert re.search(r"^unchecked could not check the rights AUTO_MONITOR needs: User: \S+ "
                     r"is not authorized to perform: iam:SimulatePrincipalPolicy",
                     account.said["check_blind"], re.M), account.said["check_blind"]
    assert not account.said["fleets_after_refusal"]


def test_the_last_tick_and_prepare_remove_leave_nothing_of_ours(account):
    # the last tick leaves only what prepare made: the four roles
    left = account.said["after the last tick"]
    assert left.pop("roles") == sorted(APP + r for r in (
        "AutoMonitorRole", "MachineRole", "SpotFleetRole", "WorkerRole"))
    assert not any(left.values()), left
    world = account.world
    iam = world.client("iam")
    assert not [r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(APP)]
    assert not iam.list_instance_profiles()["InstanceProfiles"]
    assert not world.client("lambda").list_functions()["Functions"]
    assert not world.client("events").list_rules(NamePrefix=APP)["Rules"]
    ec2 = world.client("ec2")
    assert not [g for g in ec2.describe_security_groups()["SecurityGroups"]
                if g["GroupName"].startswith(APP)]
    s3 = world.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert MONITOR_KEY not in keys
    # the bucket holds the user's data and results: kept, and prepare says so
    assert "Kept bucket %s: it holds data" % BUCKET in account.said["remove"]


# ---- Every statement needed -------------------------------------------------------

# Which of the scientist's policies each command runs with (section 4 of step 0):
# user_run for everything, with an addition for prepare and for AUTO_MONITOR.
ADDITIONS = {"prepare": ["user_prepare"], "startCluster with AUTO_MONITOR": ["user_auto_monitor"]}


def parts(account):
    """Each part of the two runs: (its policies as ds/resources/policies.py writes
    them, {name: document}; the calls it made, as the emulator recorded them)."""
    s = account.settings()
    decisions = account.world.decisions()
    iam = account.world.client("iam")
    managed = iam.get_policy(PolicyArn=policies.MACHINE_MANAGED)["Policy"]
    machine_managed = as_document(iam.get_policy_version(
        PolicyArn=policies.MACHINE_MANAGED, VersionId=managed["DefaultVersionId"])[
        "PolicyVersion"]["Document"])
    user = {"user_run": policies.user_run(s, ACCOUNT),
            "user_auto_monitor": policies.user_auto_monitor(s, ACCOUNT),
            "user_prepare": policies.user_prepare(s, ACCOUNT)}
    found = []
    scientist = "arn:aws:iam::%s:user/scientist" % ACCOUNT
    for command, first, end in account.commands:
        names = ["user_run"] + ADDITIONS.get(command, [])
        found.append(({n: user[n] for n in names},
                      [d for d in decisions[first:end] if d["who"] == scientist]))
    assert sum(len(calls) for _, calls in found) == len(
        [d for d in decisions if d["who"] == scientist])  # every command is counted

    def calls_of(who):
        return [d for d in decisions if d["who"].startswith(who)]
    role = "arn:aws:sts::%s:assumed-role/%s%%s/" % (ACCOUNT, APP)
    found += [
        ({"worker": policies.worker(s, ACCOUNT)}, calls_of(role % "WorkerRole")),
        ({"machine_extra": policies.machine_extra(s), "(AWS managed)": machine_managed},
         calls_of(role % "MachineRole")),
        ({"monitor_function": policies.monitor_function(s, ACCOUNT)},
         calls_of(role % "AutoMonitorRole")),
    ]
    return found


def _actions(statement):
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def without(documents, name, index, action):
    """The documents with `action` taken out of statement `index` of policy `name`
    (the statement goes when it was its only action)."""
    less = json.loads(json.dumps(documents))
    statements = less[name]["Statement"]
    rest = [a for a in _actions(statements[index]) if a != action]
    if rest:
        statements[index]["Action"] = rest
    else:
        del statements[index]
    return less


def needed(documents, calls):
    """(policy, statement, action) of ours whose removal refuses one of `calls`."""
    found = set()
    for name, document in documents.items():
        if name.startswith("("):
            continue  # AWS's, not ours
        for index, statement in enumerate(document["Statement"]):
            for action in _actions(statement):
                less = list(without(documents, name, index, action).values())
                if any(not allows(less, c["action"], c["resource"]) for c in calls):
                    found.add((name, index, action))
    return found


def test_every_action_of_every_policy_is_needed_by_some_call_of_the_run(account):
    everything, used = set(), set()
    for documents, calls in parts(account):
        calls = [c for c in calls if c["allowed"]]
        # the policies as written allow every call this part made
        refused = [c for c in calls
                   if not allows(list(documents.values()), c["action"], c["resource"])]
        assert not refused, (list(documents), refused)
        used |= needed(documents, calls)
        everything |= {(name, i, a) for name, d in documents.items() if not name.startswith("(")
                       for i, st in enumerate(d["Statement"]) for a in _actions(st)}
    unused = sorted({(name, action) for name, _, action in everything - used})
    print("\n".join("%s: %s" % u for u in unused))
    assert unused == sorted(policies.NOT_SEEN_IN_TESTS)
    assert all(policies.NOT_SEEN_IN_TESTS.values())  # each says why it stays


def test_every_resource_a_policy_names_is_something_the_run_made(account):
    """Resource patterns are checked by the emulator only for SQS, S3 and IAM roles:
    every pattern of ours must match the ARN of something the run made."""
    names = [(name, r) for documents, _ in parts(account) for name, d in documents.items()
             if not name.startswith("(") for st in d["Statement"]
             for r in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])
             if r != "*"]
    assert len(names) > 20
    unmatched = sorted({(name, r) for name, r in names
                        if not any(statement_allows({"Effect": "Allow", "Action": "x",
                                                     "Resource": r}, "x", arn)
                                   for arn in account.arns)})
    assert not unmatched, (unmatched, account.arns)

"""DS-family apps (Distributed-CellProfiler, -Fiji, -HelloWorld) run unchanged.

Their config.py carries the app's own knobs, which must reach the app's own
worker through the task definition; credentials must never go there; and an
image with its own worker (tests/fixtures/dsapp/, written in the DS style)
runs its jobs under this control plane.
"""
import contextlib
import http.server
import json
import os
import runpy
import shutil
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO, real_fleet, run_py, write_json
from test_user_errors import one_line_error
from test_steps import FLEET
from worker_helpers import Proc, s3_keys

FIXTURE = os.path.join(REPO, "tests", "fixtures", "dsapp")

# A config.py in Distributed-CellProfiler's shape, with its knobs (written
# here from DCP's documented knob list; only the bucket names are changed).
DCP_CONFIG = """
APP_NAME = 'DCPTest'
LOG_GROUP_NAME = APP_NAME
DOCKERHUB_TAG = 'cellprofiler/distributed-cellprofiler:2.0.0_4.2.4'
AWS_REGION = 'us-east-1'
AWS_PROFILE = 'default'
SSH_KEY_NAME = 'your-key-file.pem'
AWS_BUCKET = 'dcp-test-bucket'
SOURCE_BUCKET = 'dcp-test-bucket'
WORKSPACE_BUCKET = 'dcp-test-bucket'
DESTINATION_BUCKET = 'dcp-test-bucket'
UPLOAD_FLAGS = ''
ECS_CLUSTER = 'default'
CLUSTER_MACHINES = 3
TASKS_PER_MACHINE = 1
MACHINE_TYPE = ['m5.xlarge']
MACHINE_PRICE = 0.20
EBS_VOL_SIZE = 30
DOWNLOAD_FILES = 'False'
DOCKER_CORES = 4
CPU_SHARES = DOCKER_CORES * 1024
MEMORY = 15000
SECONDS_TO_START = 3*60
SQS_QUEUE_NAME = APP_NAME + 'Queue'
SQS_MESSAGE_VISIBILITY = 1*60
SQS_DEAD_LETTER_QUEUE = 'user_DeadMessages'
AUTO_MONITOR = 'True'
CREATE_DASHBOARD = 'True'
CLEAN_DASHBOARD = 'True'
CHECK_IF_DONE_BOOL = 'False'
EXPECTED_NUMBER_FILES = 7
MIN_FILE_SIZE_BYTES = 1
NECESSARY_STRING = ''
USE_PLUGINS = 'False'
UPDATE_PLUGINS = 'False'
PLUGINS_COMMIT = 'False'
INSTALL_REQUIREMENTS = 'False'
REQUIREMENTS = ''
ALWAYS_CONTINUE = True
"""
DCP_APP_KNOBS = ["SOURCE_BUCKET", "WORKSPACE_BUCKET", "DESTINATION_BUCKET", "UPLOAD_FLAGS",
                 "DOWNLOAD_FILES", "USE_PLUGINS", "UPDATE_PLUGINS", "PLUGINS_COMMIT",
                 "INSTALL_REQUIREMENTS", "REQUIREMENTS", "ALWAYS_CONTINUE"]
CREDENTIAL_CHECK = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

# The fixture app: DCP's shape, its own worker (COMMAND empty), quick to run.
FIXTURE_CONFIG = DCP_CONFIG.replace("APP_NAME = 'DCPTest'", "APP_NAME = 'DSAppTest'") + """
DOCKER_CORES = 2
SECONDS_TO_START = 0
CLUSTER_MACHINES = 1
MONITOR_TIME = 1
UPLOAD_FLAGS = '--acl bucket-owner-full-control'
MY_NAME = 'the fixture app'
"""
NAMES = ["Alice", "Bob", "Carol", "Dan", "Eve", "Frank"]
JOB = {"output": "dsapp-out", "groups": [{"name": n, "plate": "P1"} for n in NAMES]}


def project(tmp_path, aws_env, text):
    (tmp_path / "config.py").write_text(text)
    (tmp_path / "files").mkdir(exist_ok=True)
    write_json(tmp_path / "files" / "job.json", JOB)
    write_json(tmp_path / "files" / "fleet.json", FLEET)

    def run(*args, check=True):
        result = run_py(list(args), aws_env, cwd=str(tmp_path))
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result
    run.dir, run.config = tmp_path, str(tmp_path / "config.py")
    return run


def registered_container(ecs, family):
    td = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    return td["containerDefinitions"][0]


def environment(container):
    return {e["name"]: e["value"] for e in container["environment"]}


def test_dcp_config_passes_setup_and_its_knobs_reach_the_task_definition(
        tmp_path, aws_env, boto):
    boto("s3").create_bucket(Bucket="dcp-test-bucket")
    user = project(tmp_path, aws_env, DCP_CONFIG)
    result = user("setup")
    assert result.stderr == ""  # no warnings for DCP's own knobs
    config = runpy.run_path(user.config)
    container = registered_container(boto("ecs"), "DCPTestTask")
    env = environment(container)
    for name in DCP_APP_KNOBS:
        assert env[name] == str(config[name]), name  # as DCP's run.py writes it
    assert env["ALWAYS_CONTINUE"] == "True" and env["SECONDS_TO_START"] == "180"
    assert env["ECS_CLUSTER"] == "default"
    assert not [k for k in env if k in CREDENTIAL_CHECK or "SECRET" in k or "TOKEN" in k]
    assert "testing" not in json.dumps(container)  # the test's credentials never reach ECS
    assert container.get("privileged") is True  # its own worker mounts with s3fs (FUSE)
    passed = [l for l in result.stdout.splitlines() if "app's own settings" in l]
    assert passed == ["It passes your app's own settings from config.py to the worker: %s."
                      % ", ".join(sorted(DCP_APP_KNOBS))]


def test_near_miss_of_a_knob_is_warned_about_and_still_passed(tmp_path, aws_env, boto):
    boto("s3").create_bucket(Bucket="dcp-test-bucket")
    user = project(tmp_path, aws_env, DCP_CONFIG + "MACHINE_TYPES = ['c5.xlarge']\n"
                                                   "COMMAND = 'echo {plate}'\n")
    result = user("setup")
    assert result.stderr.splitlines() == [
        "warning: config.py sets MACHINE_TYPES; did you mean MACHINE_TYPE? "
        "It is passed to the worker as it is."]
    container = registered_container(boto("ecs"), "DCPTestTask")
    assert environment(container)["MACHINE_TYPES"] == "['c5.xlarge']"
    assert "privileged" not in container or container["privileged"] is False  # our worker


@pytest.mark.parametrize("name", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                  "AWS_SESSION_TOKEN", "S3FS_SECRET", "DB_PASSWORD",
                                  "GITHUB_TOKEN"])
def test_credentials_in_config_are_refused_and_nothing_is_created(tmp_path, aws_env, boto,
                                                                   name):
    boto("s3").create_bucket(Bucket="dcp-test-bucket")
    user = project(tmp_path, aws_env, DCP_CONFIG + "%s = 'abc123'\n" % name)
    line = one_line_error(user("setup", check=False))
    assert name in line and "TASK_ROLE_ARN" in line and "abc123" not in line
    assert boto("sqs").list_queues().get("QueueUrls", []) == []
    assert boto("ecs").list_task_definitions()["taskDefinitionArns"] == []
    line = one_line_error(user("submitJob", "files/job.json", check=False))
    assert name in line  # every command reads the config, so every command refuses


class RoleCredentials(http.server.BaseHTTPRequestHandler):
    """Stands in for the ECS task role: the container credentials endpoint
    (AWS_CONTAINER_CREDENTIALS_FULL_URI), so no keys are in the environment."""

    credentials = {"AccessKeyId": "role", "SecretAccessKey": "role", "SessionToken": "role"}

    def do_GET(self):
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        c = getattr(self.server, "credentials", self.credentials)
        body = json.dumps({"AccessKeyId": c["AccessKeyId"], "SecretAccessKey":
                           c["SecretAccessKey"], "Token": c["SessionToken"],
                           "Expiration": expires}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def role_endpoint(credentials=None):
    """The task role's credentials endpoint on 127.0.0.1, serving `credentials` (a
    role session, as STS gives it) or stand-in keys; yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RoleCredentials)
    if credentials:
        server.credentials = credentials
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d/role" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def task_role():
    with role_endpoint() as url:
        yield url


def task_environment(config_path, aws_env, role_url, home):
    """The registered task definition's environment, read back as the local
    launcher reads it, plus what ECS and the machine add: a role, no keys."""
    from ds.commands.launcher import Launcher
    from ds.core.settings import load
    from ds.core.aws import Session
    settings = load(config_path)
    aws = Session(settings)
    count, container, _minimum = Launcher(aws.client("ecs"), aws.client("ec2"), settings,
                                          home).desired()
    assert count == 1 and container["image"].startswith("cellprofiler/")
    env = environment(container)
    assert not [k for k in env if k in CREDENTIAL_CHECK]
    env.update(
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
        HOME=home,
        AWS_ENDPOINT_URL=aws_env["AWS_ENDPOINT_URL"],  # AWS itself, here
        AWS_CONFIG_FILE=aws_env["AWS_CONFIG_FILE"],    # empty: no profile on the machine
        AWS_SHARED_CREDENTIALS_FILE=aws_env["AWS_SHARED_CREDENTIALS_FILE"],
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONTAINER_CREDENTIALS_FULL_URI=role_url,  # the task role
        PYTHONUNBUFFERED="1",
    )
    return env


def expected_output(name, config):
    return {"greeting": "Hello %s, from %s" % (name, config["MY_NAME"]),
            "group": {"name": name, "plate": "P1"}, "use_plugins": str(config["USE_PLUGINS"]),
            "upload_flags": str(config["UPLOAD_FLAGS"]), "cluster": config["ECS_CLUSTER"]}


def test_ds_style_worker_runs_with_the_registered_environment(tmp_path, aws_env, boto,
                                                              task_role):
    s3 = boto("s3")
    s3.create_bucket(Bucket="dcp-test-bucket")
    user = project(tmp_path, aws_env, FIXTURE_CONFIG)
    write_json(tmp_path / "files" / "fleet.json", real_fleet(boto, FLEET))
    user("setup")
    assert "Queued 6 jobs" in user("submitJob", "files/job.json").stdout
    user("startCluster", "files/fleet.json")
    env = task_environment(user.config, aws_env, task_role, str(tmp_path / "home"))
    assert not [k for k in env if k in CREDENTIAL_CHECK]
    worker = Proc(["bash", os.path.join(FIXTURE, "run-worker.sh")], env,
                  tmp_path / "task1.log")
    try:
        worker.p.wait(180)  # it exits by itself when the queue is empty
    finally:
        rc = worker.stop()
    assert rc == 0, worker.output()

    config = runpy.run_path(user.config)
    keys = sorted(s3_keys(s3, "dcp-test-bucket", "dsapp-out/"))
    assert keys == sorted("dsapp-out/%s.json" % n for n in NAMES)
    for name in NAMES:
        body = s3.get_object(Bucket="dcp-test-bucket", Key="dsapp-out/%s.json" % name)["Body"]
        assert json.loads(body.read()) == expected_output(name, config)

    result = user("monitor", "files/DSAppTestSpotFleetRequestId.json")
    assert "Run DSAppTest finished: 6 jobs done" in result.stdout
    sqs, ecs, cw = boto("sqs"), boto("ecs"), boto("cloudwatch")
    assert sqs.list_queues(QueueNamePrefix="DSAppTest").get("QueueUrls", []) == []
    assert sqs.list_queues(QueueNamePrefix="user_DeadMessages").get("QueueUrls", []) == []
    assert ecs.list_task_definitions(familyPrefix="DSAppTest", status="ACTIVE")[
        "taskDefinitionArns"] == []
    services = ecs.describe_services(cluster="default", services=["DSAppTestService"])
    assert all(s["status"] == "INACTIVE" for s in services["services"])
    assert cw.list_dashboards(DashboardNamePrefix="DSAppTest")["DashboardEntries"] == []
    fleets = boto("ec2").describe_spot_fleet_requests()["SpotFleetRequestConfigs"]
    assert not [f for f in fleets if f["SpotFleetRequestState"] == "active"]


# ---- the same app as an image, with `python run.py local --docker` ---------

def _fixture_image():
    base = os.environ.get("DS_WORKER_IMAGE")
    if not base or not shutil.which("podman") or subprocess.run(
            ["podman", "image", "exists", base]).returncode != 0:
        pytest.skip("no worker image to build the DS-style app on: run `bash .ci/podman.sh "
                    "&& . .ci/cache/podman.env` first (needs podman; CI does this)")
    tag = "localhost/dsapp-fixture:test"
    r = subprocess.run(["podman", "build", "--pull=never", "--network", "none",
                        "--build-arg", "BASE=" + base, "-t", tag, FIXTURE],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return tag


@pytest.fixture
def user_env(tmp_path):
    """A laptop with no AWS account: no AWS variables at all, an empty HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    (tmp_path / "home").mkdir(exist_ok=True)
    env.update(HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1")
    return env


def local_docker(tmp_path, env, config_text):
    (tmp_path / "config.py").write_text(config_text)
    write_json(tmp_path / "job.json", JOB)
    return subprocess.run([sys.executable, "run.py", "--config", str(tmp_path / "config.py"),
                           "local", str(tmp_path / "job.json"), "--docker",
                           "--out", str(tmp_path / "out")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=400)


def test_ds_style_image_runs_with_local_docker(tmp_path, user_env):
    image = _fixture_image()
    text = FIXTURE_CONFIG + "DOCKERHUB_TAG = %r\n" % image
    result = local_docker(tmp_path, user_env, text)
    assert result.returncode == 0, result.stdout + result.stderr
    config = runpy.run_path(str(tmp_path / "config.py"))
    for name in NAMES:
        with open(tmp_path / "out" / "dsapp-out" / (name + ".json")) as f:
            assert json.load(f) == expected_output(name, config)
    assert "succeeded        6" in result.stdout and "failed           0" in result.stdout
    assert "(counted from the queue: the image's worker writes no job records)" \
        in result.stdout


def test_ds_style_image_missing_a_knob_stops_the_run_naming_it(tmp_path, user_env):
    image = _fixture_image()
    text = FIXTURE_CONFIG.replace("MY_NAME = 'the fixture app'\n", "") + \
        "DOCKERHUB_TAG = %r\n" % image
    result = local_docker(tmp_path, user_env, text)
    assert "Traceback" not in result.stderr, result.stdout + result.stderr
    line = one_line_error(result)
    assert "Could not start local workers" in line and "KeyError: 'MY_NAME'" in line, \
        result.stdout + result.stderr


def test_a_line_written_in_pieces_stays_whole_beside_the_other_stream(tmp_path):
    """The cause of the missing-knob test's rare failure ("the last said: : 'MY_NAME'"):
    with PYTHONUNBUFFERED (the worker image sets it) a traceback's last line is
    written in pieces, and a wrapper's line on stdout, merged into one pipe, could
    land between them. Each stream is read line by line, as the awslogs driver does."""
    from ds.commands.awslogs import ContainerLog
    from ds.commands.launcher import last_line
    script = ("import sys, time\n"
              "sys.stderr.write('KeyError'); sys.stderr.flush(); time.sleep(0.3)\n"
              "print('[run-worker] all workers stopped (status 1)', flush=True)\n"
              "time.sleep(0.3); sys.stderr.write(\": 'MY_NAME'\\n\")\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    log = ContainerLog(None, {"name": "app"}, str(tmp_path / "task1.log"))
    log.follow(proc.stdout, proc.stderr)
    proc.wait()
    log.close()
    assert last_line(str(tmp_path / "task1.log"), "App") == "KeyError: 'MY_NAME'"


def test_the_container_engines_notes_are_not_quoted_as_the_workers_last_words(tmp_path):
    from ds.commands.launcher import last_line
    log = tmp_path / "task1.log"
    log.write_text("Traceback (most recent call last):\n  File \"generic-worker.py\"\n"
                   "KeyError: 'MY_NAME'\n\n"
                   "WARN[0004] Failed to add conmon to cgroupfs sandbox cgroup: file exists\n"
                   'time="2026-11-23T14:00:00Z" level=error msg="cleaning up container"\n')
    assert last_line(str(log), "DSAppTest") == "KeyError: 'MY_NAME'"
    log.write_text("ERRO[0000] only the engine spoke\n")
    assert last_line(str(log), "DSAppTest") == "ERRO[0000] only the engine spoke"

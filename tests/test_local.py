"""`python run.py local`: the whole run on this machine, as a user starts it."""
import collections
import csv
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO, client_at, own_emulator, write_json

EXAMPLE = os.path.join(REPO, "files", "exampleData", "measurements")


@pytest.fixture
def user_env(tmp_path):
    """A laptop with no AWS account: no AWS variables at all, an empty HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    home = tmp_path / "home"
    home.mkdir()
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    return env


def local(args, env, timeout=240):
    return subprocess.run([sys.executable, "run.py", "local"] + args, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def expected_summary(well):
    """Computed here from the CSV, independently of the example tool."""
    with open(os.path.join(EXAMPLE, well + ".csv")) as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    out = {"cells": len(rows)}
    for i, name in enumerate(header):
        if name == "cell":
            continue
        col = [float(r[i]) for r in rows]
        out[name] = {"mean": sum(col) / len(col), "sd": statistics.pstdev(col) *
                     (len(col) / (len(col) - 1)) ** 0.5, "min": min(col), "max": max(col)}
    return out


def check_outputs(out_dir, wells):
    for well in wells:
        path = os.path.join(out_dir, "exampleOutput", "Plate1", well, well + ".json")
        with open(path) as f:
            got = json.load(f)
        want = expected_summary(well)
        assert got["cells"] == want["cells"]
        for col in ("area", "intensity", "eccentricity"):
            for stat in ("mean", "sd", "min", "max"):
                assert got[col][stat] == pytest.approx(want[col][stat], rel=1e-9), (well, col)


WELLS = sorted(f[:-4] for f in os.listdir(EXAMPLE))


def test_example_runs_locally_with_no_aws_account(user_env, tmp_path):
    out = tmp_path / "out"
    result = local(["--out", str(out)], user_env)
    assert result.returncode == 0, result.stdout + result.stderr
    check_outputs(str(out), WELLS)
    assert "jobs submitted   12" in result.stdout
    assert "succeeded        12" in result.stdout and "failed           0" in result.stdout
    assert "per job          min" in result.stdout
    assert str(out) in result.stdout
    assert "Traceback" not in result.stderr
    # Only what is true of a local run: no console, no history, no monitor to run by hand.
    for aws_only in ("CloudWatch console", "event history", "Next: python run.py monitor"):
        assert aws_only not in result.stdout + result.stderr


def config_with(tmp_path, **changes):
    """The repo's config.py with some knobs changed, as a user would edit it."""
    text = open(os.path.join(REPO, "config.py")).read()
    lines = []
    for line in text.splitlines():
        name = line.split("=")[0].strip()
        if name in changes:
            line = "%s = %r" % (name, changes.pop(name))
        lines.append(line)
    lines += ["%s = %r" % kv for kv in changes.items()]
    path = tmp_path / "config.py"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def worker_pids(app_name):
    """Worker processes of this run (their environment names the app)."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read()
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if b"generic-worker.py" in cmd and ("APP_NAME=" + app_name).encode() in env:
            pids.append(int(pid))
    return pids


def test_worker_killed_mid_run_and_every_output_still_arrives(user_env, tmp_path):
    config = config_with(
        tmp_path, APP_NAME="LocalKill", SQS_MESSAGE_VISIBILITY=5,
        COMMAND="sleep 1; python3 {input_dir}/summarize.py {input_dir}/{well}.csv "
                "{output_dir}/{well}.json")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "run.py", "--config", config, "local", "--out",
                             str(out)], cwd=REPO, env=user_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline:
        busy = [l for l in lines if " running," in l and not l.split("queued, ")[1]
                .startswith("0 running")]
        pids = worker_pids("LocalKill")
        if busy and pids:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)  # a machine vanishes mid-job
        time.sleep(0.1)
    assert killed, "no worker was ever busy:\n" + "".join(lines)
    proc.wait(240)
    reader.join(5)
    output = "".join(lines)
    assert proc.returncode == 0, output
    check_outputs(str(out), WELLS)
    assert "succeeded        12" in output


def test_failing_job_is_reported_with_its_log(user_env, tmp_path):
    job = json.load(open(os.path.join(REPO, "files", "exampleJob.json")))
    job["groups"].append({"well": "Z99", "input": ["exampleData/summarize.py"],
                          "output": "exampleOutput/Plate1/Z99"})
    write_json(tmp_path / "job.json", job)
    config = config_with(tmp_path, APP_NAME="LocalFail", JOB_RETRIES=2)
    result = subprocess.run([sys.executable, "run.py", "--config", config, "local",
                             str(tmp_path / "job.json"), "--out", str(tmp_path / "out")],
                            cwd=REPO, env=user_env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "succeeded        12" in result.stdout and "failed           1" in result.stdout
    assert "Job Z99 failed (2 tries)" in result.stdout
    assert "\n  failed jobs      Z99\n" in result.stdout
    tail = result.stdout.split("Job Z99 failed")[1]
    assert "Z99.csv" in tail and "outcome FAILED" in tail  # the tool's own complaint, and the end
    check_outputs(str(tmp_path / "out"), WELLS)


def test_bad_job_file_is_one_line_and_starts_nothing(user_env, tmp_path):
    (tmp_path / "job.json").write_text('{"groups": [')
    result = local([str(tmp_path / "job.json")], user_env)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "not valid JSON" in result.stderr
    assert "emulator" not in result.stdout


def _podman_ready():
    image = os.environ.get("DS_WORKER_IMAGE")
    if not image or not shutil.which("podman"):
        return None
    ok = subprocess.run(["podman", "image", "exists", image]).returncode == 0
    return image if ok else None


def test_local_run_with_containers(user_env, tmp_path):
    image = _podman_ready()
    if not image:
        pytest.skip("no worker image: run `bash .ci/podman.sh && . .ci/cache/podman.env` "
                    "first (needs podman; CI does this)")
    config = config_with(tmp_path, APP_NAME="LocalDocker", DOCKERHUB_TAG=image)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "run.py", "--config", config, "local", "--docker",
                             "--out", str(out)], cwd=REPO, env=user_env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    check_outputs(str(out), WELLS)
    assert "succeeded        12" in result.stdout


def test_workers_that_cannot_start_stop_the_run_with_one_line(user_env, tmp_path):
    if not _podman_ready():
        pytest.skip("no worker image: run `bash .ci/podman.sh && . .ci/cache/podman.env` "
                    "first (needs podman; CI does this)")
    config = config_with(tmp_path, APP_NAME="LocalNoImage",
                         DOCKERHUB_TAG="localhost/no-such-image:1")
    result = subprocess.run([sys.executable, "run.py", "--config", config, "local", "--docker",
                             "--out", str(tmp_path / "out")], cwd=REPO, env=user_env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Could not start local workers" in result.stderr
    assert "no-such-image" in result.stderr


def test_ctrl_c_stops_every_worker(user_env, tmp_path):
    config = config_with(tmp_path, APP_NAME="LocalCtrlC", COMMAND="sleep 30")
    proc = subprocess.Popen([sys.executable, "run.py", "--config", config, "local", "--out",
                             str(tmp_path / "out")], cwd=REPO, env=user_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not worker_pids("LocalCtrlC") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert worker_pids("LocalCtrlC"), "workers never started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Stopped" in err and "Traceback" not in err
    assert worker_pids("LocalCtrlC") == []


def test_workers_that_die_at_birth_are_quoted_in_their_own_words(user_env, tmp_path):
    config = config_with(tmp_path, APP_NAME="LocalNoCommand", COMMAND="")
    result = subprocess.run([sys.executable, "run.py", "--config", config, "local",
                             "--out", str(tmp_path / "out")], cwd=REPO, env=user_env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: Could not start local workers: 3 workers in a row "
                               "exited at once; the last said: worker: missing environment "
                               "variable(s) COMMAND"), lines[0]


def test_outputs_to_another_bucket_arrive_and_no_aws_only_lines(user_env, tmp_path):
    job = json.load(open(os.path.join(REPO, "files", "exampleJob.json")))
    job["groups"] = job["groups"][:2]
    job["groups"][1]["output"] = "s3://other-lab-bucket/exampleOutput/Plate1/A02"
    write_json(tmp_path / "job.json", job)
    result = local([str(tmp_path / "job.json"), "--out", str(tmp_path / "out")], user_env)
    assert result.returncode == 0, result.stdout + result.stderr
    check_outputs(str(tmp_path / "out"), ["A01", "A02"])
    for aws_only in ("CloudWatch console", "Next: python run.py monitor", "event history"):
        assert aws_only not in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "error: --workers must be at least 1."),
    (["--data", "no-such-folder"], "error: no-such-folder: data folder not found; pass --data "
                                   "DIR (the folder your job file's inputs are in)."),
    (["--spot-notice", "soon"], "error: --spot-notice soon: give AFTER or AFTER,PERIOD in "
                                "seconds, such as --spot-notice 30 or --spot-notice 30,10; "
                                "AFTER below a third of SQS_MESSAGE_VISIBILITY."),
])
def test_local_option_mistakes_are_one_line(user_env, tmp_path, args, message):
    result = local(args + ["--out", str(tmp_path / "out")], user_env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [message]


def test_a_spot_notice_gives_the_job_back_at_once(tmp_path):
    """J1's machine gets a spot interruption notice 3 s into J1 (the only job that
    runs that long) and would end 30 s later: ECS stops its worker at the notice,
    so the other machine takes J1 again within seconds, and the interrupted try
    is shown as interrupted, not failed."""
    from ds.operate import joblog
    marks = tmp_path / "marks"
    marks.mkdir()
    # J1's first try would take 20 s; every other try and job takes a second
    command = ("if [ {well} = J1 ] && mkdir {marks}/J1 2>/dev/null; then sleep 20; fi; "
               "sleep 1; echo {well} > {output_dir}/{well}.txt")
    wells = ["J1"] + ["S%d" % i for i in range(1, 7)]
    write_json(tmp_path / "job.json", {"marks": str(marks), "groups": [
        {"well": w, "output": "out/%s" % w} for w in wells]})
    config = config_with(tmp_path, APP_NAME="SpotRun", COMMAND=command)
    with own_emulator(tmp_path) as (url, env):
        result = subprocess.run(
            [sys.executable, "run.py", "--config", config, "local", str(tmp_path / "job.json"),
             "--workers", "2", "--spot-notice", "3,30", "--out", str(tmp_path / "out")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stdout + result.stderr
        tries = joblog.read(client_at(url, "logs"), "SpotRun")["J1"].tries
    assert "Spot interruption notice (emulated) for machine" in result.stdout
    assert "succeeded        %d" % len(wells) in result.stdout
    assert [t.outcome for t in tries] == ["INTERRUPTED", "SUCCESS"], \
        [t.as_dict() for t in tries]
    # taken again within seconds of the notice, not when the machine ended
    assert tries[1].start_ms - tries[0].start_ms < 10000, [t.as_dict() for t in tries]
    page = (tmp_path / "out" / "SpotRun-report.html").read_text(encoding="utf-8")
    assert "J1, try 1: INTERRUPTED" in page


def test_a_spot_notice_on_the_last_machine_ends_the_run_in_one_line(user_env, tmp_path):
    """The emulated fleet replaces no machine: with the only one gone and its job
    back on the queue, the run says why it stops instead of waiting for ever."""
    write_json(tmp_path / "job.json", {"groups": [{"well": "J1", "output": "out/J1"}]})
    config = config_with(tmp_path, APP_NAME="LastMachine", COMMAND="sleep 60")
    result = subprocess.run(
        [sys.executable, "run.py", "--config", config, "local", str(tmp_path / "job.json"),
         "--workers", "1", "--spot-notice", "1,2", "--out", str(tmp_path / "out")],
        cwd=REPO, env=user_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: The spot notice ended the last machine, and the emulated fleet, unlike AWS's, "
        "never replaces one; give --spot-notice a machine to spare (more --workers and more "
        "jobs than one machine runs at once, or an earlier AFTER)."], result.stdout + result.stderr


def test_the_fleet_asks_for_the_machines_the_jobs_fill_and_more_as_jobs_come(tmp_path):
    """CLUSTER_MACHINES 8 and 6 jobs of one slot on machines of 2 slots: startCluster
    asks for 3 machines, 2 jobs on each; 10 more jobs submitted mid-run raise the
    target to 8 and all 16 run at once. Every job waits for a go-ahead, so each
    one's machine (INSTANCE_ID) is read while all are running."""
    marks = tmp_path / "marks"
    marks.mkdir()
    command = ("echo $INSTANCE_ID > {marks}/{well}; "
               "while [ ! -e {marks}/go ]; do sleep 0.2; done; echo {well} > {output_dir}/w.txt")

    def job_file(name, wells):
        write_json(tmp_path / name, {"marks": str(marks), "groups": [
            {"well": w, "output": "out/%s" % w} for w in wells]})
        return str(tmp_path / name)

    def machines_running(count):
        """{machine: jobs on it} once `count` jobs have started."""
        deadline = time.monotonic() + 120
        while len([p for p in marks.iterdir() if p.name != "go"]) < count:
            assert time.monotonic() < deadline and run.poll() is None, log.read_text()
            time.sleep(0.2)
        time.sleep(0.5)  # each mark is written in one go, but let the last land
        return collections.Counter(p.read_text().strip() for p in marks.iterdir())

    config = config_with(tmp_path, APP_NAME="FitRun", COMMAND=command, CLUSTER_MACHINES=8,
                         TASKS_PER_MACHINE=1, DOCKER_CORES=2)
    first = job_file("job.json", ["F%d" % i for i in range(6)])
    later = job_file("later.json", ["L%d" % i for i in range(10)])
    log = tmp_path / "run.log"
    with own_emulator(tmp_path) as (url, env), open(log, "w") as out:
        run = subprocess.Popen([sys.executable, "run.py", "--config", config, "local", first,
                                "--out", str(tmp_path / "out")],
                               cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            assert sorted(machines_running(6).values()) == [2, 2, 2], log.read_text()
            submitted = subprocess.run([sys.executable, "run.py", "--config", config,
                                        "submitJob", later], cwd=REPO, env=env,
                                       capture_output=True, text=True, timeout=60)
            assert submitted.returncode == 0, submitted.stdout + submitted.stderr
            assert sorted(machines_running(16).values()) == [2] * 8, log.read_text()
            (marks / "go").touch()
            assert run.wait(timeout=180) == 0, log.read_text()
        finally:
            if run.poll() is None:
                run.kill()
    text = log.read_text()
    assert ("The queue holds 6 jobs and a machine runs 2 at once (TASKS_PER_MACHINE x "
            "DOCKER_CORES), so 3 of the 8 machines of CLUSTER_MACHINES are asked for" in text), text
    assert "Requested 3 machines" in text, text
    assert "16 jobs queued or running: the fleet now asks for 8 machines (was 3" in text, text

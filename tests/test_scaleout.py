"""Scale-out: the fleet asks for the machines the queued jobs fill, and for more as
jobs come, up to CLUSTER_MACHINES; never fewer (that is the scale-in's part).

setup, submitJob and startCluster as a user runs them against the emulator;
the monitor's look (steps.Run.poll) driven here, so looks are counted, not timed.
"""
import json
import sys
import time

import pytest

from conftest import REPO, real_fleet, run_py, write_json

sys.path.insert(0, REPO)
from ds.core.aws import Session  # noqa: E402
from ds.core.runfile import run_settings  # noqa: E402
from ds.core.settings import load  # noqa: E402
from ds.monitor.steps import Run  # noqa: E402

BUCKET = "scaleout-bucket"
CONFIG = """
APP_NAME = 'GrowTest'
DOCKERHUB_TAG = 'someone/something:1.0'
AWS_REGION = 'us-east-1'
AWS_BUCKET = '%s'
CLUSTER_MACHINES = 4
TASKS_PER_MACHINE = 2
DOCKER_CORES = 1
CREATE_DASHBOARD = 'False'
AUTO_MONITOR = 'False'
COMMAND = 'true'
""" % BUCKET
FLEET = {
    "IamFleetRole": "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role",
    "AllocationStrategy": "lowestPrice",
    "LaunchSpecifications": [{"ImageId": "ami-12c6146b", "KeyName": "key"}],
    "Type": "maintain",
}


class Grow:
    """A run of GrowTest started with 3 jobs: 2 slots a machine, at most 4 machines."""

    def __init__(self, tmp_path, env, boto):
        self.dir, self.env, self.boto = tmp_path, env, boto
        self.config = tmp_path / "config.py"
        self.config.write_text(CONFIG)
        (tmp_path / "files").mkdir()
        write_json(tmp_path / "files" / "fleet.json", real_fleet(boto, FLEET))
        boto("s3").create_bucket(Bucket=BUCKET)
        self.sent = 0
        self.user("setup")
        self.submit(3)
        self.started = self.user("startCluster", "files/fleet.json").stdout
        self.monitor_file = str(tmp_path / "files" / "GrowTestSpotFleetRequestId.json")
        self.fleet_id = json.load(open(self.monitor_file))["MONITOR_FLEET_ID"]
        sqs = boto("sqs")
        self.url = sqs.get_queue_url(QueueName="GrowTestQueue")["QueueUrl"]

    def user(self, *args):
        result = run_py(["--config", str(self.config)] + list(args), self.env,
                        cwd=str(self.dir), timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def submit(self, n):
        path = self.dir / ("jobs%d.json" % self.sent)
        write_json(path, {"groups": [{"n": self.sent + i} for i in range(n)]})
        self.sent += n
        self.user("submitJob", str(path))

    def look(self, cheapest=False, started=None):
        """One look of the monitor, as config.py says now."""
        settings, fleet_id, began, per_machine = run_settings(load(str(self.config)),
                                                              self.monitor_file)
        run = Run(Session(settings), settings, fleet_id, started or began, per_machine,
                  lambda text: None)
        return run.poll(self.url, cheapest)

    def target(self):
        return self.boto("ec2").describe_spot_fleet_requests(SpotFleetRequestIds=[
            self.fleet_id])["SpotFleetRequestConfigs"][0]["SpotFleetRequestConfig"][
            "TargetCapacity"]

    def tasks(self):
        service, = self.boto("ecs").describe_services(
            cluster="default", services=["GrowTestService"])["services"]
        return service["desiredCount"]


@pytest.fixture
def grow(tmp_path, aws_env, boto):
    return Grow(tmp_path, aws_env, boto)


def test_start_asks_for_the_machines_the_jobs_fill(grow):
    assert ("The queue holds 3 jobs and a machine runs 2 at once (TASKS_PER_MACHINE x "
            "DOCKER_CORES), so 2 of the 4 machines of CLUSTER_MACHINES are asked for; jobs "
            "you submit later raise that, up to 4." in grow.started), grow.started
    assert "Requested 2 machines" in grow.started
    assert (grow.target(), grow.tasks()) == (2, 2 * 2)


def test_a_look_raises_the_target_for_jobs_submitted_later_up_to_cluster_machines(grow,
                                                                                 capsys):
    grow.look()
    assert (grow.target(), grow.tasks()) == (2, 4)   # 3 jobs: nothing to add
    grow.submit(2)
    grow.look()
    assert (grow.target(), grow.tasks()) == (3, 6)
    assert ("5 jobs queued or running: the fleet now asks for 3 machines (was 2; at most "
            "CLUSTER_MACHINES 4)." in capsys.readouterr().out)
    grow.submit(10)
    grow.look()
    assert (grow.target(), grow.tasks()) == (4, 8)
    # the run's own CLUSTER_MACHINES, not an edited config.py's
    grow.config.write_text(CONFIG.replace("CLUSTER_MACHINES = 4", "CLUSTER_MACHINES = 9"))
    grow.look()
    assert (grow.target(), grow.tasks()) == (4, 8)


def test_a_look_never_lowers_the_target_or_the_tasks(grow):
    grow.submit(5)
    grow.look()
    assert (grow.target(), grow.tasks()) == (4, 8)
    sqs = grow.boto("sqs")
    sqs.purge_queue(QueueUrl=grow.url)
    grow.submit(1)
    grow.look()
    assert (grow.target(), grow.tasks()) == (4, 8)


def test_a_look_cut_short_between_the_target_and_the_tasks_is_finished_by_the_next(grow):
    grow.submit(3)   # 6 jobs: 3 machines
    grow.boto("ec2").modify_spot_fleet_request(SpotFleetRequestId=grow.fleet_id,
                                               TargetCapacity=3)
    assert (grow.target(), grow.tasks()) == (3, 4)
    grow.look()
    assert (grow.target(), grow.tasks()) == (3, 6)


def test_cheapest_stops_the_fleet_growing(grow, capsys):
    grow.submit(10)
    grow.look(cheapest=True, started=time.time() - 16 * 60)
    assert grow.target() == 1 and grow.tasks() == 4
    assert "Cheapest mode" in capsys.readouterr().out


def test_a_look_at_a_fleet_that_is_gone_changes_nothing(grow):
    grow.submit(10)
    grow.boto("ec2").cancel_spot_fleet_requests(SpotFleetRequestIds=[grow.fleet_id],
                                                TerminateInstances=True)
    grow.look()
    assert grow.tasks() == 4


def test_start_rereads_counts_that_trail_a_submission(aws_env, boto, monkeypatch):
    """SQS's counts may show none for a while after a submission; submitJob's running
    total says jobs were sent, so startCluster reads the counts again (here the jobs
    show after a second), and gives up after SQS_COUNT_LAG with none."""
    import threading
    from ds.commands import start
    from ds.core.settings import Settings
    from ds.resources import queue
    sqs = boto("sqs")
    url = sqs.create_queue(QueueName="LagQueue")["QueueUrl"]
    queue.add_submitted(sqs, url, 3)   # as submitJob records it; the messages not yet seen
    settings = Settings(SQS_QUEUE_NAME="LagQueue")
    late = threading.Timer(1.0, lambda: [sqs.send_message(QueueUrl=url, MessageBody=str(i))
                                         for i in range(3)])
    late.start()
    try:
        assert start.queued_jobs(sqs, url, settings) == 3
    finally:
        late.join()
    sqs.purge_queue(QueueUrl=url)
    monkeypatch.setattr(start, "SQS_COUNT_LAG", 2)
    began = time.monotonic()
    assert start.queued_jobs(sqs, url, settings) == 0
    assert time.monotonic() - began >= 1   # it did read again before giving up

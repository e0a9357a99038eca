"""setup, submitJob and startCluster: what each step asks of AWS, in order."""
import datetime
import json
import os
import sys
import time

import botocore.exceptions

from .aws import explain
from .errors import Stopped, UserError
from . import cluster, cost, dashboard, fleet, jobs, logs, queue

STARTUP_TIMEOUT = 15 * 60   # how long startCluster waits for the fleet's machines


def check_bucket(s3, bucket, config="config.py"):
    # explain() outside: missing credentials or no network are no ClientError
    with explain("check bucket %s" % bucket):
        try:
            s3.head_bucket(Bucket=bucket)
        except botocore.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise UserError("Bucket %s does not exist: create it (aws s3 mb s3://%s) or "
                                "fix AWS_BUCKET in %s." % (bucket, bucket, config))
            if code in ("403", "AccessDenied", "Forbidden"):
                raise UserError("Bucket %s exists but these credentials may not use it: fix "
                                "AWS_BUCKET or AWS_PROFILE in %s." % (bucket, config))
            raise


def setup(aws, settings):
    """Queues, ECS cluster, task definition and service (desired count 0)."""
    check_bucket(aws.client("s3"), settings.AWS_BUCKET, settings.path)
    url, dlq_url, run_id = queue.ensure_queues(aws.client("sqs"), settings)
    print("Queue %s is ready (dead-letter queue %s after %d failed tries)."
          % (settings.SQS_QUEUE_NAME, settings.dead_letter_queue_name, settings.JOB_RETRIES))
    ecs = aws.client("ecs")
    if cluster.ensure_cluster(ecs, settings):
        print("Created ECS cluster %s." % settings.ECS_CLUSTER)
    arn = cluster.register_task_definition(ecs, settings, url, {
        "RUN_ID": run_id, "SQS_DEAD_LETTER_QUEUE_URL": dlq_url})
    print("Registered task definition %s." % arn.rsplit("/", 1)[-1])
    if settings.app_knobs:
        print("It passes your app's own settings from config.py to the worker: %s."
              % ", ".join(sorted(settings.app_knobs)))
    cluster.ensure_service(ecs, settings, arn)
    print("Service %s is ready with 0 workers; submitJob and startCluster come next."
          % cluster.service_name(settings))
    if not settings.COMMAND:
        print("Note: COMMAND is empty. That suits an image with its own worker (as the original "
              "Distributed-Something builds); this project's worker needs COMMAND "
              "(documentation/worker.md).")


def submit_job(aws, settings, path, save_on_stop=True):
    """One SQS message per group of the job file; nothing is sent if any group is bad."""
    bodies = jobs.load_messages(path, settings.COMMAND)
    sqs = aws.client("sqs")
    url = queue.require_url(sqs, settings.SQS_QUEUE_NAME, settings.path)
    progress = None
    if len(bodies) >= 1000:
        from tqdm import tqdm
        progress = tqdm(total=len(bodies), unit="job", desc="Submitting", file=sys.stderr)
    stopped = False
    try:
        unsent = queue.send_all(sqs, url, bodies, progress)
    except queue.Interrupted as e:  # Ctrl-C: what was sent stays sent, the rest is saved
        if not save_on_stop:  # a local run: its emulator and queue go away anyway
            raise KeyboardInterrupt
        unsent, stopped = e.unsent, True
    finally:
        if progress is not None:
            progress.close()
    sent = len(bodies) - len(unsent)
    if sent:
        with explain("record the number of submitted jobs on queue %s" % settings.SQS_QUEUE_NAME,
                     "The jobs are queued; only monitor's done count will be off."):
            queue.add_submitted(sqs, url, sent)
    if stopped and unsent:
        rest = save_unsent(path, bodies, unsent)
        raise Stopped("Stopped: %d of %d jobs were sent; the other %d are saved in %s: submit "
                      "that file to send them (the %d sent are not repeated)."
                      % (sent, len(bodies), len(unsent), rest, sent))
    print("Queued %d job%s from %s on %s." % (sent, "" if sent == 1 else "s", path,
                                              settings.SQS_QUEUE_NAME))
    if unsent:
        rest = save_unsent(path, bodies, unsent)
        raise UserError("%d job%s could not be sent; they are saved in %s: submit that file "
                        "once AWS answers again (the %d sent are not repeated)."
                        % (len(unsent), "" if len(unsent) == 1 else "s", rest, sent))
    return sent


def save_unsent(path, bodies, unsent):
    """Write the groups that were not sent as a job file of their own."""
    first = json.loads(bodies[unsent[0]])
    shared = {k: v for k, v in first.items() if k not in ("group", "job_key")}
    shared["groups"] = [json.loads(bodies[i])["group"] for i in unsent]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = "%s.unsent-%s.json" % (os.path.splitext(path)[0], stamp)
    with open(out, "w") as f:
        json.dump(shared, f, indent=2)
    return out


def write_monitor_file(settings, fleet_id, path):
    info = {
        "MONITOR_FLEET_ID": fleet_id,
        "MONITOR_APP_NAME": settings.APP_NAME,
        "MONITOR_ECS_CLUSTER": settings.ECS_CLUSTER,
        "MONITOR_QUEUE_NAME": settings.SQS_QUEUE_NAME,
        "MONITOR_DEAD_LETTER_QUEUE": settings.dead_letter_queue_name,
        "MONITOR_BUCKET_NAME": settings.AWS_BUCKET,
        "MONITOR_LOG_GROUP_NAME": settings.LOG_GROUP_NAME,
        "MONITOR_START_TIME": str(int(time.time())),
        "MONITOR_JOBS_PER_MACHINE": settings.jobs_per_machine,
        "CLEAN_DASHBOARD": settings.CLEAN_DASHBOARD,
        "MONITOR_FINISHED": False,
        "MONITOR_STARTUP_DONE": False,  # set once the workers are asked for
    }
    jobs.write_json(path, info)  # a half-written monitor file would strand the run


def refuse_second_fleet(ec2, monitor_path):
    """Two fleets for one run would bill twice and leave one unknown to monitor.

    Returns the fleet id of a start that was cut short (AWS kept failing, or
    Ctrl-C), so a rerun finishes that start instead of requesting another.
    """
    if not os.path.isfile(monitor_path):
        return None
    try:
        with open(monitor_path) as f:
            info = json.load(f)
        old = info.get("MONITOR_FLEET_ID")
    except (ValueError, OSError, AttributeError):
        return None
    if old:
        with explain("look up spot fleet %s" % old):
            running = fleet.describe(ec2, old)
        if running and info.get("MONITOR_STARTUP_DONE") is False:
            return old
        if running:
            raise UserError("Spot fleet %s of this run is still active (%s): run `python run.py "
                            "monitor %s`, or cancel that fleet, before starting another."
                            % (old, monitor_path, monitor_path))


def preflight(aws, settings, config, path):
    """Refuse before a single machine is billed if the account cannot run this fleet."""
    from . import check
    problems = check.account_checks(aws, settings, config, path).problems
    if problems:
        raise UserError("startCluster requested no machine: %d problem%s found:\n  %s\nFix %s "
                        "and run startCluster again (`python run.py check` lists everything)."
                        % (len(problems), "" if len(problems) == 1 else "s",
                           "\n  ".join(problems), "it" if len(problems) == 1 else "them"))


def start_cluster(aws, settings, path, timeout=STARTUP_TIMEOUT, monitor_path=None, local=False):
    """Request the spot fleet, start the workers, wait for machines.

    `local`: a local run, which has no console, fleet history or next step to point to.

    A local run skips the account checks: its stand-in fleet names no real
    subnet, AMI or role, and the emulator starts its machines anyway.
    """
    config = fleet.build_request(settings, jobs.read_json(path, "fleet file"), path)
    ecs, ec2 = aws.client("ecs"), aws.client("ec2")
    monitor_path = monitor_path or fleet.monitor_file_path(settings)
    unfinished = refuse_second_fleet(ec2, monitor_path)
    if not cluster.describe_service(ecs, settings):
        raise UserError("Service %s does not exist: run `python run.py setup` first."
                        % cluster.service_name(settings))
    if not local:
        preflight(aws, settings, config, path)
    s3 = aws.client("s3")
    check_bucket(s3, settings.AWS_BUCKET, settings.path)
    with explain("upload the ECS agent config to s3://%s" % settings.AWS_BUCKET):
        s3.put_object(Bucket=settings.AWS_BUCKET, Key=fleet.ecs_config_key(settings),
                      Body=fleet.ecs_config(settings).encode())
    print(cost.ceiling_line(settings))
    started = datetime.datetime.now(datetime.timezone.utc)
    if unfinished:
        fleet_id = unfinished
        print("Finishing the start of spot fleet %s." % fleet_id)
    else:
        fleet_id = fleet.request(ec2, config, path, settings.path)
        write_monitor_file(settings, fleet_id, monitor_path)
        print("Requested %d machine%s (%s) as spot fleet %s." % (
            settings.CLUSTER_MACHINES, "" if settings.CLUSTER_MACHINES == 1 else "s",
            ", ".join(settings.MACHINE_TYPE), fleet_id))
    logs.ensure_groups(aws.client("logs"), settings)
    tasks = settings.CLUSTER_MACHINES * settings.TASKS_PER_MACHINE
    cluster.set_desired_count(ecs, settings, tasks)
    print("Service %s asks for %d worker task%s." % (cluster.service_name(settings), tasks,
                                                    "" if tasks == 1 else "s"))
    if settings.CREATE_DASHBOARD:
        dashboard.create(aws.client("cloudwatch"), settings)
        if not local:
            print("Dashboard %s is in the CloudWatch console." % settings.APP_NAME)
    info = jobs.read_json(monitor_path, "monitor file")
    info["MONITOR_STARTUP_DONE"] = True  # from here on a rerun must not touch this fleet
    jobs.write_json(monitor_path, info)
    if settings.AUTO_MONITOR:
        from .automonitor import start
        start(aws, settings, monitor_path)
    running = fleet.wait_for_machines(ec2, fleet_id, settings.CLUSTER_MACHINES, started, timeout,
                                      quiet_history=local)
    if local:
        print("%d machine%s running." % (running, " is" if running == 1 else "s are"))
        return fleet_id
    if settings.AUTO_MONITOR:
        print("%d machine%s running. To watch (optional): python run.py monitor %s"
              % (running, " is" if running == 1 else "s are", monitor_path))
        return fleet_id
    print("%d machine%s running. Next: python run.py monitor %s"
          % (running, " is" if running == 1 else "s are", monitor_path))
    return fleet_id

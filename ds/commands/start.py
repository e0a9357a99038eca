"""`python run.py startCluster FLEETFILE`: the spot fleet, the workers, and (with
AUTO_MONITOR) the automatic monitor; refused before anything is billed if the
account cannot run the fleet."""
import datetime

from ds.core import runfile, wait
from ds.core.aws import explain
from ds.core.errors import UserError
from ds.core.jsonfile import read_json
from ds.commands.setup import check_bucket
from ds.monitor import install, scaleout
from ds.monitor.auto import function
from ds.operate import cost
from ds.resources import boot, cluster, dashboard, fleet, logs, queue

STARTUP_TIMEOUT = 15 * 60   # how long startCluster waits for the fleet's machines
SQS_COUNT_LAG = 60          # seconds SQS's message counts may trail a submission


def refuse_second_fleet(ec2, monitor_path):
    """Two fleets for one run would bill twice and leave one unknown to monitor.

    Returns the fleet id of a start that was cut short (AWS kept failing, or
    Ctrl-C), so a rerun finishes that start instead of requesting another.
    """
    old, startup_done = runfile.previous_start(monitor_path)
    if old:
        with explain("look up spot fleet %s" % old):
            running = fleet.describe(ec2, old)
        if running and startup_done is False:
            return old
        if running:
            raise UserError("Spot fleet %s of this run is still active (%s): run `python run.py "
                            "monitor %s`, or cancel that fleet, before starting another."
                            % (old, monitor_path, monitor_path))


def preflight(aws, settings, config, path):
    """Refuse before a single machine is billed if the account cannot run this fleet."""
    from ds.commands import check
    problems = check.account_checks(aws, settings, config, path).problems
    if len(problems) == 1:
        raise UserError("startCluster requested no machine: %s" % problems[0])
    if problems:
        raise UserError("startCluster requested no machine: %d problem%s found:\n  %s\nFix %s "
                        "and run startCluster again (`python run.py check` lists everything)."
                        % (len(problems), "" if len(problems) == 1 else "s",
                           "\n  ".join(problems), "it" if len(problems) == 1 else "them"))


def machines_for_queue(aws, settings, unfinished):
    """The machines to ask for: as many as the queued jobs fill at once, at most
    CLUSTER_MACHINES (monitor/scaleout.py); says so when that is fewer. A start
    cut short keeps the target its fleet was given."""
    if unfinished:
        return fleet.target(aws.client("ec2"), unfinished) or settings.CLUSTER_MACHINES
    sqs = aws.client("sqs")
    url = queue.require_url(sqs, settings.SQS_QUEUE_NAME, settings.path)
    with explain("count the jobs in queue %s" % settings.SQS_QUEUE_NAME):
        jobs = queued_jobs(sqs, url, settings)
    if not jobs:
        raise UserError("startCluster requested no machine: queue %s holds no job. Submit "
                        "jobs first (python run.py submitJob JOBFILE), then start the cluster."
                        % settings.SQS_QUEUE_NAME)
    machines = scaleout.machines_for(jobs, settings)
    if machines < settings.CLUSTER_MACHINES:
        print("The queue holds %d job%s and a machine runs %d at once (TASKS_PER_MACHINE x "
              "DOCKER_CORES), so %d of the %d machines of CLUSTER_MACHINES are asked for; "
              "jobs you submit later raise that, up to %d."
              % (jobs, "" if jobs == 1 else "s", settings.jobs_per_machine, machines,
                 settings.CLUSTER_MACHINES, settings.CLUSTER_MACHINES))
    return machines


def queued_jobs(sqs, url, settings):
    """The jobs in the queue. SQS's counts may trail a submission by up to a
    minute: when they show none though submitJob has sent some (its running
    total), they are read again for that minute."""
    def count():
        return sum(queue.counts(sqs, url))
    jobs = count()
    if jobs or not queue.submitted(sqs, url):
        return jobs
    return wait.until(count, "the jobs sent to queue %s to show in its counts"
                      % settings.SQS_QUEUE_NAME, timeout=SQS_COUNT_LAG, fail=False) or 0


def _request(aws, settings, ec2, config, path):
    """The fleet, with the automatic monitor in place first: no machine ever runs
    without something that will end it. What this start installed is removed again
    when AWS refuses the rest (not on Ctrl-C: the fleet may exist by then)."""
    if not settings.AUTO_MONITOR:
        return fleet.request(ec2, config, path, settings.path)
    install.refuse_while_a_run_ends(aws.client("s3"), settings)
    try:
        install.install(aws, settings)
        return fleet.request(ec2, config, path, settings.path)
    except UserError:
        try:
            function.remove(aws, settings.APP_NAME)
        except UserError:
            pass  # the refusal is what the user must read; a leftover function ticks idly
        raise


def start_cluster(aws, settings, path, timeout=STARTUP_TIMEOUT, monitor_path=None, local=False):
    """Request the spot fleet, start the workers, wait for machines.

    `local`: a local run, which has no console, fleet history or next step to point to.

    A local run skips the account checks: its stand-in fleet names no real
    subnet, AMI or role, and the emulator starts its machines anyway.
    """
    config = fleet.build_request(settings, read_json(path, "fleet file"), path)
    ecs, ec2 = aws.client("ecs"), aws.client("ec2")
    monitor_path = monitor_path or runfile.default_path(settings)
    unfinished = refuse_second_fleet(ec2, monitor_path)
    if not cluster.describe_service(ecs, settings):
        raise UserError("Service %s does not exist: run `python run.py setup` first."
                        % cluster.service_name(settings))
    if not local:
        preflight(aws, settings, config, path)
    config["TargetCapacity"] = machines = machines_for_queue(aws, settings, unfinished)
    s3 = aws.client("s3")
    check_bucket(s3, settings.AWS_BUCKET, settings.path)
    with explain("upload the ECS agent config to s3://%s" % settings.AWS_BUCKET):
        s3.put_object(Bucket=settings.AWS_BUCKET, Key=boot.ecs_config_key(settings),
                      Body=boot.ecs_config(settings).encode())
    print(cost.ceiling_line(settings))
    started = datetime.datetime.now(datetime.timezone.utc)
    if unfinished:
        fleet_id = unfinished
        print("Finishing the start of spot fleet %s." % fleet_id)
        if settings.AUTO_MONITOR:  # brought up to date in place, or made if it was cut short
            install.install(aws, settings)
    else:
        fleet_id = _request(aws, settings, ec2, config, path)
        runfile.create(settings, fleet_id, monitor_path)
        print("Requested %d machine%s (%s) as spot fleet %s." % (
            machines, "" if machines == 1 else "s", ", ".join(settings.MACHINE_TYPE), fleet_id))
    if settings.AUTO_MONITOR:  # at once: the machines are billed from now on
        install.start(aws, settings, monitor_path)
    logs.ensure_groups(aws.client("logs"), settings)
    tasks = machines * settings.TASKS_PER_MACHINE
    cluster.raise_desired_count(ecs, settings, tasks)  # a rerun never takes workers away
    print("Service %s asks for %d worker task%s." % (cluster.service_name(settings), tasks,
                                                    "" if tasks == 1 else "s"))
    if settings.CREATE_DASHBOARD:
        dashboard.create(aws.client("cloudwatch"), settings)
        if not local:
            print("Dashboard %s is in the CloudWatch console." % settings.APP_NAME)
    # From here on a rerun must not touch this fleet.
    runfile.update(monitor_path, MONITOR_STARTUP_DONE=True)
    running = fleet.wait_for_machines(ec2, fleet_id, machines, started, timeout,
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

"""ECS: the cluster, the worker's task definition, and the service that runs it.

The task definition's environment is the worker's whole configuration. It
never carries AWS keys: the worker gets its permissions from TASK_ROLE_ARN
when set, otherwise from the instance's role.
"""
import contextlib
from ds.core.aws import explain, unless_gone
from ds.core import wait


def task_family(settings):
    return settings.APP_NAME + "Task"


def service_name(settings):
    return settings.APP_NAME + "Service"


def worker_environment(settings, queue_url, run=None):
    """What the worker reads: names of the resources, the job settings, and the app's
    own knobs from config.py (a DS-family worker reads those with os.environ['NAME']).
    Ours come after the app's, so an app knob can never change what the control plane
    relies on. `run` adds the run's records: {"RUN_ID": ..., "SQS_DEAD_LETTER_QUEUE_URL": ...}.
    """
    env = dict(settings.app_knobs)
    env.update({
        "APP_NAME": settings.APP_NAME,
        "SQS_QUEUE_URL": queue_url,
        "AWS_BUCKET": settings.AWS_BUCKET,
        "AWS_REGION": settings.AWS_REGION,
        "AWS_DEFAULT_REGION": settings.AWS_REGION,
        "LOG_GROUP_NAME": settings.LOG_GROUP_NAME,
        "DOCKER_CORES": settings.DOCKER_CORES,
        "SECONDS_TO_START": settings.SECONDS_TO_START,
        "SQS_MESSAGE_VISIBILITY": settings.SQS_MESSAGE_VISIBILITY,
        "CHECK_IF_DONE_BOOL": settings.CHECK_IF_DONE_BOOL,
        "EXPECTED_NUMBER_FILES": settings.EXPECTED_NUMBER_FILES,
        "MIN_FILE_SIZE_BYTES": settings.MIN_FILE_SIZE_BYTES,
        "NECESSARY_STRING": settings.NECESSARY_STRING,
        "COMMAND": settings.COMMAND,
        "JOB_RETRIES": settings.JOB_RETRIES,
        "ECS_CLUSTER": settings.ECS_CLUSTER,
    })
    env.update(run or {})
    return [{"name": k, "value": str(v)} for k, v in env.items()]


def _active_cluster(ecs, name):
    found = ecs.describe_clusters(clusters=[name])["clusters"]
    return bool(found) and found[0]["status"] == "ACTIVE"


def ensure_cluster(ecs, settings):
    name = settings.ECS_CLUSTER
    with explain("look up ECS cluster %s" % name):
        if _active_cluster(ecs, name):
            return False
        ecs.create_cluster(clusterName=name, tags=[{"key": "APP_NAME", "value": settings.APP_NAME}])
    wait.until(lambda: _active_cluster(ecs, name), "ECS cluster %s to become active" % name)
    return True


def register_task_definition(ecs, settings, queue_url, run=None):
    """Register a new revision of APP_NAME + 'Task'; return its ARN."""
    container = {
        "name": settings.APP_NAME,
        "image": settings.DOCKERHUB_TAG,
        "cpu": settings.CPU_SHARES,
        "memory": settings.MEMORY,
        "essential": True,
        "environment": worker_environment(settings, queue_url, run),
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": settings.LOG_GROUP_NAME,
            "awslogs-region": settings.AWS_REGION,
            "awslogs-stream-prefix": settings.APP_NAME}},
    }
    if not settings.COMMAND:
        # An image with its own worker (COMMAND empty), as DS-family apps build, mounts
        # the bucket with s3fs, which needs FUSE; their own run.py asks for this too.
        container["privileged"] = True
    args = {"family": task_family(settings), "containerDefinitions": [container],
            "tags": [{"key": "APP_NAME", "value": settings.APP_NAME}]}
    if settings.TASK_ROLE_ARN:
        args["taskRoleArn"] = settings.TASK_ROLE_ARN
    with explain("register task definition %s" % task_family(settings),
                 "Check DOCKERHUB_TAG, CPU_SHARES, MEMORY and TASK_ROLE_ARN in %s."
                 % settings.path):
        return ecs.register_task_definition(**args)["taskDefinition"]["taskDefinitionArn"]


def describe_service(ecs, settings):
    """The service's description, or None if it does not exist (or is deleted)."""
    with explain("look up ECS service %s" % service_name(settings)):
        try:
            found = ecs.describe_services(cluster=settings.ECS_CLUSTER,
                                          services=[service_name(settings)])["services"]
        except ecs.exceptions.ClusterNotFoundException:
            return None
    if found and found[0]["status"] != "INACTIVE":
        return found[0]
    return None


# ECS may stop every task of a machine at its spot interruption notice (the
# agent's ECS_ENABLE_SPOT_INSTANCE_DRAINING sets it DRAINING) before a replacement
# runs: with the default minimum of 100% ECS would wait for replacements, and
# with every machine full the task would run on until the machine is gone, two
# minutes later, its job held. Stopped, the worker lets its job go at once. A
# maximum of 100% never runs more workers than asked for.
DEPLOYMENT = {"minimumHealthyPercent": 0, "maximumPercent": 100}


def ensure_service(ecs, settings, task_definition_arn):
    """Create the service at desired count 0 if there is none; then point it at the
    new revision with DEPLOYMENT (an existing service may predate it)."""
    name = service_name(settings)
    with explain("create ECS service %s" % name):
        if not describe_service(ecs, settings):
            ecs.create_service(cluster=settings.ECS_CLUSTER, serviceName=name,
                               taskDefinition=task_definition_arn, desiredCount=0,
                               launchType="EC2", deploymentConfiguration=DEPLOYMENT,
                               tags=[{"key": "APP_NAME", "value": settings.APP_NAME}])
        ecs.update_service(cluster=settings.ECS_CLUSTER, service=name,
                           taskDefinition=task_definition_arn,
                           deploymentConfiguration=DEPLOYMENT)
    wait.until(lambda: (describe_service(ecs, settings) or {}).get("status") == "ACTIVE",
               "ECS service %s to become active" % name)


def set_desired_count(ecs, settings, count):
    with explain("set the desired count of ECS service %s" % service_name(settings),
                 "Run `python run.py setup` first."):
        # scaling to 0 a service another monitor just deleted is done
        with unless_gone() if count == 0 else contextlib.nullcontext():
            ecs.update_service(cluster=settings.ECS_CLUSTER, service=service_name(settings),
                               desiredCount=count)


def raise_desired_count(ecs, settings, count):
    """Ask for `count` tasks if the service asks for fewer. Never lowers it: ECS
    would choose which tasks to stop, and might stop workers holding jobs."""
    service = describe_service(ecs, settings)
    if service and service["desiredCount"] < count:
        set_desired_count(ecs, settings, count)


def delete_service(ecs, settings):
    """Scale the service to 0 and delete it. Returns whether there was one."""
    if not describe_service(ecs, settings):
        return False
    set_desired_count(ecs, settings, 0)
    with explain("delete ECS service %s" % service_name(settings)), unless_gone():
        ecs.delete_service(cluster=settings.ECS_CLUSTER, service=service_name(settings),
                           force=True)
    return True


def task_definition_arns(ecs, settings):
    """Active revisions of APP_NAME + 'Task' (familyPrefix alone also matches longer names)."""
    family = task_family(settings)
    with explain("list task definitions %s" % family):
        pages = ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family,
                                                                    status="ACTIVE")
        return [arn for page in pages for arn in page["taskDefinitionArns"]
                if arn.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family]


def deregister_task_definitions(ecs, settings):
    """Deregister every active revision of the family. Returns how many."""
    arns = task_definition_arns(ecs, settings)
    with explain("deregister task definition %s" % task_family(settings)):
        for arn in arns:
            with unless_gone():
                ecs.deregister_task_definition(taskDefinition=arn)
    return len(arns)


def delete_cluster_if_unused(ecs, settings):
    """Delete ECS_CLUSTER unless it is 'default' or still runs something."""
    name = settings.ECS_CLUSTER
    if name == "default":
        return False
    with explain("delete ECS cluster %s" % name):
        found = ecs.describe_clusters(clusters=[name])["clusters"]
        if not found or found[0]["status"] != "ACTIVE":
            return False
        c = found[0]
        services = [s for page in ecs.get_paginator("list_services").paginate(cluster=name)
                    for s in page["serviceArns"]]
        live = [s for i in range(0, len(services), 10)  # describe takes 10 at a time
                for s in ecs.describe_services(cluster=name, services=services[i:i + 10])[
                    "services"] if s["status"] == "ACTIVE"]
        busy = live or c.get("runningTasksCount") or c.get("pendingTasksCount")
        if busy or c.get("registeredContainerInstancesCount"):
            print("ECS cluster %s still has services or machines; leaving it in place." % name)
            return False
        with unless_gone():
            ecs.delete_cluster(cluster=name)
    return True

"""What a machine does when it boots: join the run's ECS cluster (the agent's
config, kept in the bucket) and size Docker's disk."""
import base64


def ecs_config(settings):
    """The ECS agent's config: which cluster to join, which log drivers to allow.

    Spot draining: on the 2-minute interruption notice the agent stops the
    machine's tasks, so the workers get SIGTERM and release their jobs at once
    instead of holding them until their lease runs out.
    """
    return ("ECS_CLUSTER=%s\nECS_AVAILABLE_LOGGING_DRIVERS=[\"json-file\",\"awslogs\"]\n"
            "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true\n" % settings.ECS_CLUSTER)


def ecs_config_key(settings):
    return "ecsconfigs/%s_ecs.config" % settings.APP_NAME


def docker_base_size(settings):
    """Disk per container: the data volume shared by TASKS_PER_MACHINE, less 2 GB slack.

    Rounded down, so the containers together never claim more than the volume;
    settings.load() makes sure this is at least 1 GB.
    """
    return settings.EBS_VOL_SIZE // settings.TASKS_PER_MACHINE - 2


def user_data(settings):
    """Boot script: join ECS_CLUSTER (config from the bucket) and size Docker's disk."""
    script = """#!/bin/bash
# Written by Distributed-Something startCluster for %(app)s.
mkdir -p /etc/ecs
if ! command -v aws >/dev/null; then yum -y install awscli >/dev/null 2>&1 || true; fi
aws s3 cp s3://%(bucket)s/%(key)s /etc/ecs/ecs.config || cat > /etc/ecs/ecs.config <<'CFG'
%(config)sCFG
# Per-container disk: only Docker's devicemapper driver (older ECS AMIs) takes this;
# overlay2 refuses the option, so it is set only where devicemapper is in use.
if grep -qs devicemapper /etc/sysconfig/docker-storage; then
  echo 'OPTIONS="${OPTIONS} --storage-opt dm.basesize=%(size)dG"' >> /etc/sysconfig/docker
fi
""" % {"app": settings.APP_NAME, "bucket": settings.AWS_BUCKET, "key": ecs_config_key(settings),
       "config": ecs_config(settings), "size": docker_base_size(settings)}
    return base64.b64encode(script.encode()).decode()

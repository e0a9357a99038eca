"""`python run.py setup`: the queues, the ECS cluster, the worker's task definition
and its service (no workers yet)."""
import botocore.exceptions

from ds.core.aws import error_code, explain, is_gone
from ds.core.errors import UserError
from ds.resources import cluster, queue


def check_bucket(s3, bucket, config="config.py"):
    # explain() outside: missing credentials or no network are no ClientError
    with explain("check bucket %s" % bucket):
        try:
            s3.head_bucket(Bucket=bucket)
        except botocore.exceptions.ClientError as e:
            if is_gone(e):
                raise UserError("Bucket %s does not exist: create it with `python run.py "
                                "prepare` or fix AWS_BUCKET in %s." % (bucket, config))
            if error_code(e) in ("403", "AccessDenied", "Forbidden"):
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

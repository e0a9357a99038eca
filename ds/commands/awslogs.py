"""What ECS's awslogs driver does for a local run's tasks: each container's output
goes into the task definition's log group, one stream per task, named as the
driver names it (awslogs-stream-prefix/container name/task id).

On AWS the worker's START and END lines reach the log group twice: in the
job's own stream and in this copy. A local run writes both too, so every
reader is tested against the log group as it looks on AWS. The task's output
also stays in a local file, which the launcher reads when a worker cannot
start.
"""
import logging
import threading
import uuid

import watchtower

SEND_INTERVAL = 1.0   # seconds between batches; the driver sends about as often


def stream_name(container, task_id):
    """The driver's stream name for this container of task `task_id`."""
    options = container["logConfiguration"]["options"]
    return "%s/%s/%s" % (options["awslogs-stream-prefix"], container["name"], task_id)


class ContainerLog:
    """Copies one task's output, line by line, to a local file and to CloudWatch."""

    def __init__(self, logs, container, path):
        self.name = path              # the local file, as for an open file
        self.task_id = uuid.uuid4().hex
        self.file = open(path, "wb")
        self.logger = logging.getLogger("ds.awslogs.%s" % self.task_id)
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.handler = None
        options = (container.get("logConfiguration") or {}).get("options") or {}
        if logs is not None and container.get("logConfiguration", {}).get(
                "logDriver") == "awslogs":
            self.handler = watchtower.CloudWatchLogHandler(
                log_group_name=options["awslogs-group"],
                log_stream_name=stream_name(container, self.task_id),
                boto3_client=logs, create_log_group=False, send_interval=SEND_INTERVAL)
            self.handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(self.handler)
        self.thread = None

    def follow(self, pipe):
        """Copy `pipe` (the task's stdout) until it closes, in a thread of its own."""
        self.thread = threading.Thread(target=self._copy, args=(pipe,), daemon=True)
        self.thread.start()

    def _copy(self, pipe):
        for raw in iter(pipe.readline, b""):
            self.file.write(raw)
            self.file.flush()
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line:
                self.logger.info(line)
        pipe.close()

    def close(self):
        """Wait for the output to end (the task has exited), then send what is left."""
        if self.thread is not None:
            self.thread.join(10)
        self.file.close()
        if self.handler is not None:
            self.logger.removeHandler(self.handler)
            self.handler.close()   # flushes the last batch
            self.handler = None

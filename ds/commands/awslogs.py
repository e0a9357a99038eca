"""What ECS's awslogs driver does for a local run's tasks: each container's output
goes into the task definition's log group, one stream per task, named as the
driver names it (awslogs-stream-prefix/container name/task id).

On AWS the worker's START and END lines reach the log group twice: in the
job's own stream and in this copy. A local run writes both too, so every
reader is tested against the log group as it looks on AWS. The task's output
also stays in a local file, which the launcher reads when a worker cannot
start.

Like the driver, it reads the container's stdout and stderr apart, each line
by line. Merged into one pipe, a line written in pieces (Python's traceback
with PYTHONUNBUFFERED, as the worker image sets it) could be cut by a line of
the other stream ("KeyError" + a wrapper's line + ": 'MY_NAME'"), and the
launcher would quote the wrong last words.
"""
import logging
import threading
import uuid

import watchtower

SEND_INTERVAL = 1.0   # seconds between batches; the driver sends about as often


def stream_name(options, container, task_id):
    """The driver's stream name for this container of task `task_id`."""
    return "%s/%s/%s" % (options.get("awslogs-stream-prefix", container["name"]),
                         container["name"], task_id)


class ContainerLog:
    """Copies one task's output, line by line, to a local file and to CloudWatch."""

    def __init__(self, logs, container, path):
        self.name = path              # the local file, as for an open file
        self.task_id = uuid.uuid4().hex
        self.file = open(path, "wb")
        # a logger of its own, outside logging's registry, which keeps every
        # logger for ever: a long run starts many tasks
        self.logger = logging.Logger("ds.awslogs.%s" % self.task_id, logging.INFO)
        self.handler = None
        config = container.get("logConfiguration") or {}
        options = config.get("options") or {}
        if logs is not None and config.get("logDriver") == "awslogs" \
                and options.get("awslogs-group"):
            self.handler = watchtower.CloudWatchLogHandler(
                log_group_name=options["awslogs-group"],
                log_stream_name=stream_name(options, container, self.task_id),
                boto3_client=logs, create_log_group=False, send_interval=SEND_INTERVAL)
            self.handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(self.handler)
        self.threads = []
        self.lock = threading.Lock()   # whole lines, one at a time

    def follow(self, *pipes):
        """Copy each of `pipes` (the task's stdout, stderr) until it closes."""
        for pipe in pipes:
            thread = threading.Thread(target=self._copy, args=(pipe,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _copy(self, pipe):
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self.lock:
                if self.file.closed:
                    break    # a child outlived the task: its words are not the task's
                self.file.write(raw if raw.endswith(b"\n") else raw + b"\n")
                self.file.flush()
                if line:
                    self.logger.info(line)
        pipe.close()

    def close(self):
        """Wait for the output to end (the task has exited), then send what is left."""
        for thread in self.threads:
            thread.join(10)
        with self.lock:
            self.file.close()
        if self.handler is not None:
            self.logger.removeHandler(self.handler)
            self.handler.close()   # flushes the last batch
            self.handler = None

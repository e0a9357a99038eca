"""SQS: the job queue and its dead-letter queue, submission, and counts."""
import json
import time

import botocore.exceptions
from concurrent.futures import ThreadPoolExecutor

from ds.core.aws import error_code, explain, is_gone, unless_gone
from ds.core.errors import UserError
from ds.resources import records

RETENTION_SECONDS = 14 * 24 * 3600   # SQS's maximum: a paused run loses nothing
# SQS refuses a message (or a batch) larger than this many bytes: 1 MiB since
# August 2025 (256 KiB before). setup sets it on the queues, which may be older.
MAX_MESSAGE_BYTES = 1048576
SUBMITTED_TAG = "submitted"          # running total of jobs sent, read by monitor
SEND_THREADS = 8
SEND_ROUNDS = 6                      # tries for entries SQS reports as failed
RECREATE_TIMEOUT = 90                # SQS forbids reusing a name for 60 s after deletion
BACKSTOP_MIN, BACKSTOP_MAX = 100, 1000  # SQS's redrive limit when our worker counts failures


def find_url(sqs, name):
    """The queue's URL, or None if there is no such queue."""
    # explain() outside: missing credentials or no network are no ClientError
    with explain("look up queue %s" % name):
        try:
            return sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except botocore.exceptions.ClientError as e:
            if is_gone(e):
                return None
            raise


def require_url(sqs, name, config="config.py"):
    url = find_url(sqs, name)
    if url is None:
        raise UserError("Queue %s does not exist: run `python run.py setup` first "
                        "(or fix SQS_QUEUE_NAME in %s)." % (name, config))
    return url


def _ensure(sqs, name, attributes, tags):
    """Create the queue, or bring an existing one to these attributes."""
    url = find_url(sqs, name)
    if url:
        with explain("update queue %s" % name):
            sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        return url
    deadline = time.monotonic() + RECREATE_TIMEOUT
    wait = 1.0
    while True:
        try:
            return sqs.create_queue(QueueName=name, Attributes=attributes,
                                    tags=tags)["QueueUrl"]
        except botocore.exceptions.ClientError as e:
            if "QueueDeletedRecently" not in error_code(e) or time.monotonic() > deadline:
                with explain("create queue %s" % name):
                    raise
            print("Queue %s was deleted less than a minute ago; SQS lets us recreate it "
                  "shortly, waiting..." % name)
            time.sleep(wait)  # backoff on a refusal, not a fixed wait
            wait = min(wait * 2, 15)


def redrive_limit(settings):
    """SQS's maxReceiveCount. Every receive counts there, interruptions too, so
    our worker counts only its tool's failures itself (JOB_RETRIES) and SQS's
    limit is a high backstop. An image with its own worker (no COMMAND) has
    only SQS's count, so it keeps JOB_RETRIES."""
    if not settings.COMMAND:
        return settings.JOB_RETRIES
    return min(max(BACKSTOP_MIN, 10 * settings.JOB_RETRIES), BACKSTOP_MAX)


def ensure_queues(sqs, settings):
    """Dead-letter queue, then the job queue redriving into it.

    Returns (job queue URL, dead-letter queue URL, run id). A new job queue
    gets a new run id; an existing one keeps its own, so rerunning setup
    during a run changes nothing the workers rely on.
    """
    tags = {"APP_NAME": settings.APP_NAME}
    # Queues made before SQS raised its limit keep 256 KiB unless told otherwise.
    size = str(MAX_MESSAGE_BYTES)
    dlq_url = _ensure(sqs, settings.dead_letter_queue_name,
                      {"MessageRetentionPeriod": str(RETENTION_SECONDS),
                       "MaximumMessageSize": size}, tags)
    with explain("read the dead-letter queue's ARN"):
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"]
                                           )["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn,
                          "maxReceiveCount": str(redrive_limit(settings))})
    url = _ensure(sqs, settings.SQS_QUEUE_NAME, {
        "VisibilityTimeout": str(settings.SQS_MESSAGE_VISIBILITY),
        "MessageRetentionPeriod": str(RETENTION_SECONDS),
        "ReceiveMessageWaitTimeSeconds": "20",
        "MaximumMessageSize": size,
        "RedrivePolicy": redrive,
    }, dict(tags, **{records.RUN_ID_TAG: records.new_run_id()}))
    with explain("read the run id of queue %s" % settings.SQS_QUEUE_NAME):
        run_id = records.run_id(sqs, url)
        if not run_id:  # a queue made before run ids existed
            run_id = records.new_run_id()
            sqs.tag_queue(QueueUrl=url, Tags={records.RUN_ID_TAG: run_id})
    return url, dlq_url, run_id


def batches(bodies):
    """Split (index, body) pairs into SQS batches: at most 10 entries and 1 MiB."""
    batch, size = [], 0
    for i, body in enumerate(bodies):
        n = len(body.encode("utf-8"))
        if batch and (len(batch) == 10 or size + n > MAX_MESSAGE_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((i, body))
        size += n
    if batch:
        yield batch


def _send_batch(sqs, url, batch):
    """Send one batch; retry only the entries SQS reports failed. Return unsent indices."""
    pending = {str(n): item for n, item in enumerate(batch)}
    for attempt in range(SEND_ROUNDS):
        if attempt:
            time.sleep(0.05 * 2 ** attempt)  # backoff after a partial failure
        entries = [{"Id": k, "MessageBody": body} for k, (_, body) in pending.items()]
        try:
            reply = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        except Exception:  # the whole call failed after botocore's own retries
            if attempt == SEND_ROUNDS - 1:
                raise
            continue
        for ok in reply.get("Successful", []):
            pending.pop(ok["Id"], None)
        permanent = [f for f in reply.get("Failed", []) if f.get("SenderFault")]
        if not pending or len(permanent) == len(pending):
            break
    return [i for i, _ in pending.values()]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during send_all; `unsent` holds the indices that were not sent."""

    def __init__(self, unsent):
        super().__init__()
        self.unsent = unsent


def _unsent(batch, future):
    if future.cancelled():
        return [i for i, _ in batch]
    try:
        return future.result()
    except Exception:
        return [i for i, _ in batch]


def send_all(sqs, url, bodies, progress=None, threads=SEND_THREADS):
    """Send every body; return the indices that could not be sent.

    On Ctrl-C the batches not yet started are cancelled, those on the wire
    finish, and Interrupted says which bodies were not sent.
    """
    pool = ThreadPoolExecutor(max_workers=threads)
    futures = []
    try:
        for batch in batches(bodies):  # a loop, so an interrupt here keeps what was submitted
            futures.append((batch, pool.submit(_send_batch, sqs, url, batch)))
        for batch, future in futures:
            future.exception()  # waits for the batch; its failures are counted below
            if progress is not None:
                progress.update(len(batch))
    except KeyboardInterrupt:
        for _batch, future in futures:
            future.cancel()
        pool.shutdown(wait=True)
        sent_or_not = set(i for batch, _ in futures for i, _ in batch)
        unsent = [i for batch, f in futures for i in _unsent(batch, f)]
        unsent += [i for i in range(len(bodies)) if i not in sent_or_not]  # not yet submitted
        raise Interrupted(sorted(unsent))
    pool.shutdown(wait=True)
    return sorted(i for batch, f in futures for i in _unsent(batch, f))


def add_submitted(sqs, url, count):
    """Keep a running total of submitted jobs on the queue, for monitor's progress."""
    tags = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
    total = int(tags.get(SUBMITTED_TAG, "0")) + count
    sqs.tag_queue(QueueUrl=url, Tags={SUBMITTED_TAG: str(total)})


def submitted(sqs, url):
    return int(sqs.list_queue_tags(QueueUrl=url).get("Tags", {}).get(SUBMITTED_TAG, "0"))


def counts(sqs, url):
    """(visible, in flight) messages of a queue."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                      "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return (int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]))


def dead_letters(sqs, settings):
    """Jobs in the run's dead-letter queue (0 if there is none)."""
    url = find_url(sqs, settings.dead_letter_queue_name)
    return sum(counts(sqs, url)) if url else 0


def delete(sqs, name):
    url = find_url(sqs, name)
    if url:
        # A delete whose answer was lost is retried and finds the queue gone.
        with explain("delete queue %s" % name), unless_gone():
            sqs.delete_queue(QueueUrl=url)
        return True
    return False

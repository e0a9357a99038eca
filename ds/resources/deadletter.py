"""The dead-letter queue: read the failed jobs without taking them out, and move
them back onto the job queue."""
import time

import botocore.exceptions
from botocore.config import Config
from botocore.parsers import ResponseParserError

from ds.core.aws import explain
from ds.resources.jobs import worker_parser
from ds.resources import queue, records

PEEK_LEASE = 120      # seconds the messages stay hidden while we read or move them
EMPTY_POLLS = 2       # empty answers in a row that mean "nothing more to read"


class Letter:
    """One message of the dead-letter queue."""

    def __init__(self, message):
        self.message = message
        self.body = message["Body"]
        self.receipt = message["ReceiptHandle"]
        self.name = job_name(self.body)
        self.key = next(iter(records.keys_of([self.body])), None)


def unique(letters):
    """One letter per job: copies of a job (same job key) count once. A letter
    with no job key is a job of its own."""
    seen, found = set(), []
    for letter in letters:
        if letter.key is None or letter.key not in seen:
            found.append(letter)
        seen.add(letter.key)
    return found


def job_name(body):
    """The job's name (its log stream) as the worker derives it."""
    dsjob = worker_parser()
    try:
        return dsjob.job_name(dsjob.parse_message(body))
    except dsjob.JobError:
        return "unreadable-message"


def peek(sqs, url):
    """Every message of the queue, hidden for PEEK_LEASE seconds; call release() after.

    SQS hands out at most 10 a call and short polls sample its servers, so read
    until the expected count is reached or a few long-ish polls come back empty.
    """
    expected = sum(queue.counts(sqs, url))
    letters, seen, empty = [], set(), 0
    while len(letters) < expected and empty < EMPTY_POLLS:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                  VisibilityTimeout=PEEK_LEASE,
                                  AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
        empty = 0 if got else empty + 1
        for m in got:
            if m["MessageId"] not in seen:
                seen.add(m["MessageId"])
                letters.append(Letter(m))
    return letters


def release(sqs, url, letters):
    """Make the messages visible again at once: reading takes nothing out."""
    for i in range(0, len(letters), 10):
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
            {"Id": str(n), "ReceiptHandle": l.receipt, "VisibilityTimeout": 0}
            for n, l in enumerate(letters[i:i + 10])])


def move(sqs, dlq_url, queue_url, letters):
    """Put each job of `letters` back once, however many copies of it the
    dead-letter queue holds, and delete every copy.

    Send first, delete second: a crash in between leaves a duplicate (which the
    done records absorb), never a lost job. A new message starts with a receive
    count of 0: each job gets JOB_RETRIES tries anew. Returns (the letters
    whose job went back, the copies that could not be deleted)."""
    jobs = unique(letters)
    unsent = {id(jobs[i]) for i in queue.send_all(sqs, queue_url, [l.body for l in jobs])}
    unsent_keys = {l.key for l in jobs if id(l) in unsent and l.key is not None}

    def stays(letter):   # its job is not back on the queue: it stays here
        return id(letter) in unsent or letter.key in unsent_keys
    undeleted = delete(sqs, dlq_url, [l for l in letters if not stays(l)])
    release(sqs, dlq_url, [l for l in letters if stays(l)])
    return [l for l in jobs if id(l) not in unsent], undeleted


def delete(sqs, url, letters, tries=3):
    """Delete the letters, trying again the ones SQS failed on its side (a
    SenderFault, such as a stale receipt, never heals); return those not deleted."""
    left, given_up = list(letters), []
    for attempt in range(tries):
        failed = []
        for i in range(0, len(left), 10):
            batch = left[i:i + 10]
            answer = sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(n), "ReceiptHandle": l.receipt} for n, l in enumerate(batch)])
            for f in answer.get("Failed", []):
                (given_up if f.get("SenderFault") else failed).append(batch[int(f["Id"])])
        left = failed
        if not left:
            break
        time.sleep(2 ** attempt)  # SQS's own trouble: give it a moment
    return given_up + left


def start_move_task(aws, dlq_url, queue_url):
    """SQS's own redrive (AWS): True if it started, False where the endpoint lacks it."""
    # One try only: an endpoint without the API answers 500, which the shared
    # client's adaptive retries would repeat for many seconds.
    sqs = aws.client("sqs", Config(retries={"max_attempts": 1, "mode": "standard"}))
    arn = lambda url: sqs.get_queue_attributes(  # noqa: E731
        QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    try:
        with explain("read the queues' ARNs"):
            source, target = arn(dlq_url), arn(queue_url)
        sqs.start_message_move_task(SourceArn=source, DestinationArn=target)
        return True
    except botocore.exceptions.ClientError as e:
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = e.response.get("Error", {}).get("Code", "")
        if status >= 500 or "NotImplemented" in code or "InvalidAction" in code \
                or "UnsupportedOperation" in code:
            return False
        with explain("start SQS's message move task"):
            raise
    except (ResponseParserError, botocore.exceptions.BotoCoreError):
        return False


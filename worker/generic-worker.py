"""The Distributed-Something worker: SQS job in, tool run, S3 outputs out.

One process handles one job at a time:
  receive (long poll) -> heartbeat keeps the message invisible -> skip it if
  its job key is already done in this run -> download inputs -> run COMMAND
  -> upload outputs -> done record -> delete (success) | count the tool's
  failure and make it visible again, or move it to the dead-letter queue
  after JOB_RETRIES failures. Interruptions and AWS trouble release the job
  without counting a failure (ds/resources/records.py has the record layout).

Configuration comes only from the environment (the ECS task definition);
see documentation/worker.md. Source compatible with Python 2.7 and 3.8+.
"""
from __future__ import print_function

import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import awscompat  # noqa: E402
import busy  # noqa: E402
import dsjob  # noqa: E402  (lives next to this file, not on sys.path)

import boto3  # noqa: E402
from botocore.exceptions import BotoCoreError, ClientError  # noqa: E402

try:
    import watchtower
except ImportError:  # logs then go to stdout only
    watchtower = None

LONG_POLL_SECONDS = 20
# After SIGTERM the tool gets this long to exit before SIGKILL; ECS gives the
# whole container 30 s by default, and the message must be released first.
TOOL_TERM_GRACE = 1.5
MAX_BACKOFF = 60.0
# A job's own calls (records, inputs, outputs, settling its message) are
# carried through AWS trouble however long it lasts: the first wait after a
# failure, and the longest. Short first waits matter: a call botocore gave up
# on is usually answered on the next try.
CARRY_FIRST_WAIT = 0.25
CARRY_LONGEST_WAIT = 30.0
# A job released over AWS trouble comes back after this long, not at once:
# retrying at once in a storm only adds to it.
AWS_TROUBLE_DELAY = 10
RECORDS = "ds-records"  # the layout is ds/resources/records.py's; keep them in step
# Seconds between CloudWatch sends. watchtower's default (60 s) holds a try's
# lines until it ends, so a try killed outright (SIGKILL, a lost machine, an
# OOM kill) would leave no line at all; status, failures and the run report
# need its START line within seconds.
LOG_SEND_INTERVAL = 2

LOG = logging.getLogger("ds.worker")


def _not_found(error):
    """An S3 answer that says the object is not there (HEAD says 404, GET NoSuchKey)."""
    return error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def monotonic():
    # time.monotonic is Python 3 only; on 2.7 wall time is the best we have.
    return getattr(time, "monotonic", time.time)()


def _int_env(name, default):
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise SystemExit("worker: environment variable %s=%r is not an integer"
                         % (name, value))


class Settings(object):
    """The env contract, read once at start."""

    def __init__(self, env):
        self.app_name = env.get("APP_NAME", "DS")
        self.queue_url = env.get("SQS_QUEUE_URL", "")
        self.bucket = env.get("AWS_BUCKET", "")
        self.region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        self.log_group = env.get("LOG_GROUP_NAME", "")
        self.lease = max(1, _int_env("SQS_MESSAGE_VISIBILITY", 600))
        self.check_if_done = dsjob.env_bool(env.get("CHECK_IF_DONE_BOOL"))
        self.expected_files = _int_env("EXPECTED_NUMBER_FILES", 1)
        self.min_size = _int_env("MIN_FILE_SIZE_BYTES", 1)
        self.necessary = env.get("NECESSARY_STRING", "")
        self.command = env.get("COMMAND", "")
        self.scratch = env.get("WORKER_SCRATCH") or tempfile.gettempdir()
        # The machine this worker runs on (run-worker.sh asks EC2; local
        # runs name an emulated machine); tags the busy records.
        self.instance_id = env.get("INSTANCE_ID", "").strip()
        self.run_id = env.get("RUN_ID", "")
        self.job_retries = max(1, _int_env("JOB_RETRIES", 3))
        self.dead_letter_url = env.get("SQS_DEAD_LETTER_QUEUE_URL", "")
        missing = [n for n, v in (("SQS_QUEUE_URL", self.queue_url),
                                  ("COMMAND", self.command)) if not v]
        if missing:
            raise SystemExit("worker: missing environment variable(s) %s; the "
                             "ECS task definition (run.py setup) sets them"
                             % ", ".join(missing))


class Stopping(Exception):
    """SIGTERM/SIGINT arrived while a job was in progress."""


class Job(object):
    """State of the job in progress, shared with the signal-handling thread."""

    def __init__(self, message):
        self.message = message
        self.receipt = message["ReceiptHandle"]
        self.id = message.get("MessageId", "")  # the done and dead records name it
        self.attempt = message.get("Attributes", {}).get(
            "ApproximateReceiveCount", "?")
        self.name = "unnamed"
        self.key = None  # the job key, when the message has one and RUN_ID is set
        self.proc = None
        self.finished = threading.Event()  # set once the message is settled
        self.lock = threading.Lock()       # serializes settle vs. release


class Worker(object):
    def __init__(self, settings):
        self.s = settings
        session = boto3.session.Session(region_name=settings.region)
        # Clients are thread-safe; the session is not, so make them all here.
        self.sqs = awscompat.client(session, "sqs")
        self.s3 = awscompat.client(session, "s3")
        self.logs = (awscompat.client(session, "logs")
                     if settings.log_group else None)
        self.stop = threading.Event()
        self.job = None
        self._log_group_ready = False
        self.worker_id = "%s:%d" % (socket.gethostname(), os.getpid())
        self.tag = "[%s %s]" % (settings.app_name, self.worker_id)
        self.busy = busy.BusyRecord(self.s3, settings.bucket,
                                    settings.app_name, settings.instance_id,
                                    LOG)

    # ---- logging -------------------------------------------------------
    def _ensure_log_group(self):
        # Once per process rather than once per job handler: saves a
        # CreateLogGroup call on every job (measured: ~5 ms/job on moto).
        if self._log_group_ready:
            return
        try:
            self.logs.create_log_group(logGroupName=self.s.log_group)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != \
                    "ResourceAlreadyExistsException":
                raise
        self._log_group_ready = True

    def _job_handler(self, name):
        if watchtower is None or self.logs is None:
            return None
        try:
            self._ensure_log_group()
            try:
                return watchtower.CloudWatchLogHandler(
                    log_group_name=self.s.log_group, log_stream_name=name,
                    boto3_client=self.logs, create_log_group=False,
                    send_interval=LOG_SEND_INTERVAL)
            except TypeError:
                # watchtower < 1.0 (the Python 2.7 image) spells the kwargs
                # differently and builds its own client from a session,
                # which would ignore an emulator endpoint on old boto3; it
                # makes no call before the first send, so swap ours in.
                handler = watchtower.CloudWatchLogHandler(
                    log_group=self.s.log_group, stream_name=name,
                    create_log_group=False, send_interval=LOG_SEND_INTERVAL)
                handler.cwl_client = self.logs
                return handler
        except Exception as e:  # CloudWatch trouble must not stop the work
            LOG.warning("%s CloudWatch logging unavailable for %s: %s",
                        self.tag, name, e)
            return None

    # ---- SQS -----------------------------------------------------------
    def run(self):
        LOG.info("%s worker started pid=%d queue=%s lease=%ss instance=%s",
                 self.tag, os.getpid(), self.s.queue_url, self.s.lease,
                 self.s.instance_id or "-")
        failures = 0
        while not self.stop.is_set():
            try:
                resp = self.sqs.receive_message(
                    QueueUrl=self.s.queue_url, MaxNumberOfMessages=1,
                    WaitTimeSeconds=LONG_POLL_SECONDS,
                    VisibilityTimeout=self.s.lease,
                    AttributeNames=["ApproximateReceiveCount"])
                failures = 0
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code", "")
                if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
                    LOG.error("%s queue %s does not exist; run `python run.py "
                              "setup` first", self.tag, self.s.queue_url)
                    return 2
                failures += 1
                self._backoff("receive_message", e, failures)
                continue
            except BotoCoreError as e:
                failures += 1
                self._backoff("receive_message", e, failures)
                continue
            for message in resp.get("Messages", []):
                if self.stop.is_set():
                    # Arrived as we were told to stop: hand it straight back.
                    self._set_visibility(message["ReceiptHandle"], 0)
                    continue
                self.handle(message)
        return 0

    def _backoff(self, what, error, failures):
        delay = min(MAX_BACKOFF, 2 ** min(failures, 6)) * random.uniform(0.5, 1)
        LOG.warning("%s %s failed (%s); retrying in %.1fs", self.tag, what,
                    error, delay)
        self.stop.wait(delay)

    def _set_visibility(self, receipt, seconds):
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.s.queue_url, ReceiptHandle=receipt,
                VisibilityTimeout=seconds)
            return True
        except (ClientError, BotoCoreError) as e:
            LOG.warning("%s change_message_visibility(%s) failed: %s",
                        self.tag, seconds, e)
            return False

    def _heartbeat(self, job, done):
        # Extend the lease every lease/3 s so a slow job is never handed to
        # a second worker; a failed beat is tried again within its interval,
        # and two missed beats still leave a third of the lease.
        interval = self.s.lease / 3.0
        while not done.wait(interval):
            if not self._extend(job, done, interval):
                LOG.warning("%s %s: heartbeat failed; another worker may "
                            "receive this job", self.tag, job.name)
            self.busy.mark(job.name)

    def _extend(self, job, done, within):
        """Extend job's lease, trying again until `within` seconds pass."""
        give_up = monotonic() + within
        wait = CARRY_FIRST_WAIT
        while not self._set_visibility(job.receipt, self.s.lease):
            if monotonic() + wait > give_up or done.wait(wait):
                return False
            wait *= 2
        return True

    # ---- one job -------------------------------------------------------
    def handle(self, message):
        job = Job(message)
        self.job = job
        received = monotonic()
        self.busy.mark(message.get("MessageId", "job"))
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job, done))
        beat.daemon = True
        beat.start()
        log = logging.getLogger("ds.job.%d" % os.getpid())
        log.propagate = False
        log.setLevel(logging.INFO)
        stdout = logging.StreamHandler(sys.stdout)
        log.addHandler(stdout)
        cw = None
        outcome, exit_code, tool_seconds = "FAILED", None, 0.0
        try:
            try:
                parsed = dsjob.parse_message(message["Body"])
                job.name = dsjob.job_name(parsed)
            except dsjob.JobError as e:
                parsed = None
                error = e
            if parsed is not None and self.s.run_id and self.s.bucket:
                key = parsed.get("job_key")
                job.key = (key if isinstance(key, dsjob._STRING_TYPES)
                           and key.isalnum() else None)
            stdout.setFormatter(logging.Formatter(
                "%(asctime)s " + self.tag + " " + job.name + ": %(message)s"))
            cw = self._job_handler(job.name)
            if cw is not None:
                cw.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
                log.addHandler(cw)
            # The worker names the report's timeline row of this try.
            log.info("START job %s attempt %s message %s worker %s", job.name,
                     job.attempt, message.get("MessageId"), self.worker_id)
            if parsed is None:
                raise error
            outcome, exit_code, tool_seconds = self.work(job, parsed, log)
        except Stopping:
            outcome = "INTERRUPTED"
        except dsjob.JobError as e:
            log.error("job error: %s", e)
        except Exception as e:  # a bug, or AWS trouble in a call not carried
            if awscompat.transient(e):
                log.warning("AWS trouble, released for a later try (no try "
                            "spent): %s", e)
                outcome = "RELEASED"
            else:
                log.exception("unexpected error: %s", e)
        finally:
            done.set()
            beat.join()
            with job.lock:
                if job.finished.is_set():
                    outcome = "INTERRUPTED"  # released by the signal handler
                else:
                    # The record goes first: while it exists the job is in flight,
                    # so the scale-in never counts it for a machine that has let
                    # the job go while another machine takes it.
                    self.busy.clear()
                    outcome = self._settle(job, outcome, log)
                job.finished.set()
            total = monotonic() - received  # receive-to-delete, for overhead
            log.info("END job %s outcome %s exit_code %s attempt %s "
                     "duration %.3fs tool %.3fs", job.name, outcome, exit_code,
                     job.attempt, total, tool_seconds)
            for h in (stdout, cw):
                if h is not None:
                    log.removeHandler(h)
                    h.flush()
                    h.close()
            self.job = None

    def _settle(self, job, outcome, log):
        """Delete, release or dead-letter the message; return the outcome."""
        if outcome in ("SUCCESS", "SKIPPED-already-done", "SKIPPED-duplicate"):
            if outcome == "SKIPPED-duplicate":
                self._record_duplicate(job, log)
            try:
                self._carry("delete_message", lambda: self.sqs.delete_message(
                    QueueUrl=self.s.queue_url, ReceiptHandle=job.receipt), log)
            except (ClientError, BotoCoreError, Stopping) as e:
                # The done record is written: a second delivery is skipped.
                log.warning("delete_message failed: %s", e)
        elif outcome == "RELEASED":
            self._set_visibility(job.receipt, AWS_TROUBLE_DELAY)
        elif outcome == "INTERRUPTED":
            self._set_visibility(job.receipt, 0)  # back at once, no try spent
        elif outcome == "GIVE-UP":
            self._dead_letter(job, log)
            return "FAILED"
        elif job.key is None:
            return self._count_receives(job, log)
        else:
            return self._count_failure(job, log)
        return outcome

    def _record_duplicate(self, job, log):
        """A second message of a job done once (the job submitted twice): the
        monitor and status subtract these records from the messages submitted,
        so the job counts once. The done record names the message that did the
        job; that same message delivered again (a lost delete, a lost lease) is
        no second submission."""
        try:
            done_by = self._read_record("done", job.key, log)
            if not done_by or done_by == job.id:
                return   # the same message again, or a record too old to say
            self._carry("writing the duplicate record", lambda: self.s3.put_object(
                Bucket=self.s.bucket,
                Key=self._record("duplicate", done_by + "-" + job.id), Body=b"1"), log)
        except (ClientError, BotoCoreError, Stopping) as e:
            log.warning("could not record this duplicate (%s); the run's "
                        "counts show it as a job of its own", e)

    def _record(self, kind, key):
        return "%s/%s/%s/%s/%s" % (RECORDS, self.s.app_name, self.s.run_id,
                                   kind, key)

    def _carry(self, what, call, log):
        """call() until AWS answers it, however long a storm lasts.

        Errors that are not AWS trouble (awscompat.transient) raise at once;
        a stop request raises Stopping. botocore's own retries come first;
        this loop has no retry quota for a storm to empty, and the heartbeat
        holds the job's lease meanwhile."""
        wait, tries = CARRY_FIRST_WAIT, 0
        while True:
            try:
                return call()
            except Exception as e:
                if not awscompat.transient(e):
                    raise
                tries += 1
                if tries in (1, 10) or tries % 100 == 0:
                    log.warning("%s failed %d time%s (%s); trying again until AWS "
                                "answers", what, tries, "" if tries == 1 else "s", e)
            if self.stop.wait(wait * random.uniform(0.5, 1)):
                raise Stopping()
            wait = min(wait * 2, CARRY_LONGEST_WAIT)

    def _read_record(self, kind, key, log):
        """The record's text, or None if there is none."""
        def read():
            try:
                body = self.s3.get_object(Bucket=self.s.bucket,
                                          Key=self._record(kind, key))["Body"]
                return body.read().decode("utf-8", "replace")
            except ClientError as e:
                if _not_found(e):
                    return None
                raise
        return self._carry("reading the %s record" % kind, read, log)

    def _is_done(self, job, log):
        return self._is_object(self.s.bucket, self._record("done", job.key), log)

    def _failures(self, job, log):
        text = self._read_record("failed", job.key, log) or "0"
        return int(text) if text.strip().isdigit() else 0

    def _count_failure(self, job, log):
        """The tool failed: count it; at JOB_RETRIES failures dead-letter it."""
        try:
            failures = self._failures(job, log) + 1
            self._carry("counting the failure", lambda: self.s3.put_object(
                Bucket=self.s.bucket, Key=self._record("failed", job.key),
                Body=str(failures).encode("ascii")), log)
        except (ClientError, BotoCoreError, Stopping) as e:
            log.warning("could not count this failure (%s); released, SQS's "
                        "redrive limit is the backstop", e)
            self._set_visibility(job.receipt, AWS_TROUBLE_DELAY)
            return "FAILED"
        if failures < self.s.job_retries or not self.s.dead_letter_url:
            log.info("failure %d of %d allowed; released for another try",
                     failures, self.s.job_retries)
            self._set_visibility(job.receipt, 0)
            return "FAILED"
        self._dead_letter(job, log)
        return "FAILED"

    def _count_receives(self, job, log):
        """A failed message with no job key (unreadable, or from an older
        submission) has no failure record: SQS's receive count is its count, so
        it gets JOB_RETRIES tries like any job, not SQS's backstop of 100."""
        received = int(job.attempt) if str(job.attempt).isdigit() else 0
        if received < self.s.job_retries or not self.s.dead_letter_url:
            self._set_visibility(job.receipt, 0)
        else:
            self._dead_letter(job, log)
        return "FAILED"

    def _dead_letter(self, job, log):
        """Move the job to the dead-letter queue (a copy there, then the delete).

        The dead record, written once the copy is there, names the message
        moved: if the delete fails, that message comes back, and this finds its
        copy already sent and only deletes. The job in another message (put
        back by SQS's move task, say) is sent as any job."""
        try:
            sent_for = (self._read_record("dead", job.key, log)
                        if job.key is not None else None)
            if sent_for and sent_for == job.id:
                log.info("already in the dead-letter queue (an earlier move of "
                         "this message sent it there); deleting this copy")
            else:
                self._carry("send_message to the dead-letter queue",
                            lambda: self.sqs.send_message(
                                QueueUrl=self.s.dead_letter_url,
                                MessageBody=job.message["Body"]), log)
                if job.key is not None:
                    self._carry("writing the dead record", lambda: self.s3.put_object(
                        Bucket=self.s.bucket, Key=self._record("dead", job.key),
                        Body=job.id.encode("utf-8")), log)
            self._carry("delete_message", lambda: self.sqs.delete_message(
                QueueUrl=self.s.queue_url, ReceiptHandle=job.receipt), log)
            log.info("failed JOB_RETRIES=%d times; moved to the dead-letter "
                     "queue", self.s.job_retries)
        except (ClientError, BotoCoreError, Stopping) as e:
            # The next receive fails the count check again and retries this.
            log.warning("could not move the job to the dead-letter queue: %s", e)
            self._set_visibility(job.receipt, AWS_TROUBLE_DELAY)

    def work(self, job, parsed, log):
        s = self.s
        spec = dsjob.merge(parsed)
        inputs = [dsjob.split_s3(i, s.bucket) for i in dsjob.inputs(spec)]
        output = None
        if "output" in spec:
            bucket, key = dsjob.split_s3(spec["output"], s.bucket, "output")
            output = (bucket, dsjob.as_prefix(key))
        if job.key is not None and self._is_done(job, log):
            log.info("job key %s is already done in run %s: deleting this "
                     "second delivery without running the tool", job.key,
                     s.run_id)
            return "SKIPPED-duplicate", None, 0.0
        if (job.key is not None and s.dead_letter_url and job.attempt != "1"
                and self._failures(job, log) >= s.job_retries):
            # Its last failure was counted, but the move to the dead-letter
            # queue did not happen (a lost machine, AWS trouble): finish it.
            log.info("already failed JOB_RETRIES=%d times", s.job_retries)
            return "GIVE-UP", None, 0.0
        # Render before touching S3 so a bad template fails in milliseconds.
        scratch = tempfile.mkdtemp(prefix=job.name[:60] + "-", dir=s.scratch)
        try:
            in_dir = os.path.join(scratch, "input")
            out_dir = os.path.join(scratch, "output")
            os.mkdir(in_dir)
            os.mkdir(out_dir)
            command = dsjob.render(s.command, spec, {
                "input_dir": in_dir, "output_dir": out_dir,
                "job_name": job.name})
            if s.check_if_done:
                if output is None:
                    log.info("check-if-done: job has no \"output\"; running it")
                elif self._remote_done(output, log):
                    log.info("already done: s3://%s/%s has %d+ files of >= %d "
                             "bytes%s; skipping", output[0], output[1],
                             s.expected_files, s.min_size,
                             " containing %r" % s.necessary if s.necessary else "")
                    return "SKIPPED-already-done", None, 0.0
            for bucket, key in inputs:
                self._check_stop()
                self._download(bucket, key, in_dir, log)
            self._check_stop()
            log.info("RUN %s", command)
            started = monotonic()
            code = self._run_tool(job, command, scratch, in_dir, out_dir, log)
            tool_seconds = monotonic() - started
            self._check_stop()
            if code != 0:
                log.error("tool exited with code %s", code)
                return "FAILED", code, tool_seconds
            produced = list(_walk(out_dir))
            if s.check_if_done and not dsjob.is_done(
                    ((rel, os.path.getsize(p)) for rel, p in produced),
                    s.expected_files, s.min_size, s.necessary):
                log.error("tool exited 0 but its output folder does not meet "
                          "the done condition (%d files; want %d of >= %d "
                          "bytes%s)", len(produced), s.expected_files,
                          s.min_size, ", one named like %r" % s.necessary
                          if s.necessary else "")
                return "FAILED", code, tool_seconds
            if produced and output is None:
                log.error("tool wrote %d file(s) but the job has no \"output\" "
                          "key, so they would be lost", len(produced))
                return "FAILED", code, tool_seconds
            if job.key is not None and self._is_done(job, log):
                # Another copy (a lease lost in a storm) finished first.
                log.info("job key %s was completed by another worker while "
                         "this one ran; not uploading", job.key)
                return "SKIPPED-duplicate", code, tool_seconds
            for rel, path in produced:
                self._upload(path, output[0], output[1] + rel, log)
            if output is not None:
                log.info("uploaded %d file(s) to s3://%s/%s", len(produced),
                         output[0], output[1])
            if job.key is not None:
                # After the outputs, before the delete: a second delivery of
                # a done job is then skipped, never a half-uploaded one.
                self._carry("writing the done record", lambda: self.s3.put_object(
                    Bucket=s.bucket, Key=self._record("done", job.key),
                    Body=job.id.encode("utf-8")), log)
            return "SUCCESS", code, tool_seconds
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _check_stop(self):
        if self.stop.is_set():
            raise Stopping()

    def _list(self, bucket, prefix, log):
        """[(key, size)] of every object under prefix."""
        def read():
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix)
            return [(o["Key"], o["Size"]) for page in pages
                    for o in page.get("Contents", [])]
        return self._carry("listing s3://%s/%s" % (bucket, prefix), read, log)

    def _remote_done(self, output, log):
        return dsjob.is_done(self._list(output[0], output[1], log),
                             self.s.expected_files, self.s.min_size,
                             self.s.necessary)

    def _is_object(self, bucket, key, log):
        def head():
            try:
                self.s3.head_object(Bucket=bucket, Key=key)
                return True
            except ClientError as e:
                if _not_found(e):
                    return False
                raise
        return self._carry("looking for s3://%s/%s" % (bucket, key), head, log)

    def _fetch(self, bucket, key, dest, log):
        self._carry("download of s3://%s/%s" % (bucket, key),
                    lambda: self.s3.download_file(bucket, key, dest), log)

    def _download(self, bucket, key, in_dir, log):
        if key and not key.endswith("/") and self._is_object(bucket, key, log):
            self._fetch(bucket, key, os.path.join(in_dir, key.rsplit("/", 1)[-1]), log)
            log.info("downloaded s3://%s/%s", bucket, key)
            return
        prefix = dsjob.as_prefix(key)
        count = 0
        for obj_key, _size in self._list(bucket, prefix, log):
            rel = obj_key[len(prefix):]
            if not rel or rel.endswith("/"):
                continue  # folder marker objects made by the S3 console
            dest = os.path.normpath(os.path.join(in_dir, rel))
            if not dest.startswith(in_dir + os.sep):
                raise dsjob.JobError("input key %r would land outside the "
                                     "input folder" % obj_key)
            parent = os.path.dirname(dest)
            if not os.path.isdir(parent):
                os.makedirs(parent)
            self._fetch(bucket, obj_key, dest, log)
            count += 1
        if not count:
            raise dsjob.JobError("input s3://%s/%s matched no object (neither "
                                 "a key nor a prefix)" % (bucket, key))
        log.info("downloaded %d file(s) from s3://%s/%s", count, bucket, prefix)

    def _upload(self, path, bucket, key, log):
        # A stop request cuts the carrying short: the message is then
        # released and the job rerun elsewhere.
        self._carry("upload of s3://%s/%s" % (bucket, key),
                    lambda: self.s3.upload_file(path, bucket, key), log)

    def _run_tool(self, job, command, cwd, in_dir, out_dir, log):
        shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
        env = dict(os.environ, INPUT_DIR=in_dir, OUTPUT_DIR=out_dir,
                   JOB_NAME=job.name)
        # Own session = own process group, so stop() can kill the tool and
        # everything it spawned without touching this worker.
        # stdin from /dev/null: a tool that prompts must fail, not hang.
        with open(os.devnull, "rb") as devnull:
            proc = subprocess.Popen([shell, "-c", command], cwd=cwd, env=env,
                                    stdin=devnull, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT,
                                    preexec_fn=os.setsid, close_fds=True)
        job.proc = proc
        if self.stop.is_set():  # a signal raced with the start
            _kill_group(proc, signal.SIGKILL)
        for raw in iter(proc.stdout.readline, b""):
            log.info("| %s", raw.decode("utf-8", "replace").rstrip("\r\n"))
        proc.stdout.close()
        return proc.wait()

    # ---- stopping --------------------------------------------------------
    def shutdown(self):
        """Called from the main thread after SIGTERM/SIGINT."""
        self.stop.set()
        job = self.job
        if job is None:
            return
        proc = job.proc
        if proc is not None and proc.poll() is None:
            _kill_group(proc, signal.SIGTERM)
            deadline = monotonic() + TOOL_TERM_GRACE
            while proc.poll() is None and monotonic() < deadline:
                job.finished.wait(0.05)  # poll for the tool's exit
            _kill_group(proc, signal.SIGKILL)
        # Give the job thread a moment to settle the message itself (it logs
        # the outcome); if it is stuck (e.g. mid-download) release it here.
        if not job.finished.wait(2.0):
            with job.lock:
                if not job.finished.is_set():
                    self.busy.clear()  # first, as when the job thread settles
                    self._set_visibility(job.receipt, 0)
                    job.finished.set()
                    LOG.info("%s released job %s for another worker",
                             self.tag, job.name)


def _kill_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except OSError:
        pass  # already gone


def _walk(root):
    """(relative path with "/" separators, absolute path) of every file."""
    for dirpath, _dirs, files in os.walk(root):
        for f in sorted(files):
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            yield rel, path


def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(message)s")
    # botocore logs every retry at INFO; keep the job logs readable.
    for name in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    worker = Worker(Settings(os.environ))
    stop_signal = []

    def on_signal(signum, _frame):
        stop_signal.append(signum)
        worker.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    # The job loop runs in a thread so the main thread stays free to react
    # to signals at once, even while the loop sits in a 20 s long poll.
    result = []
    loop = threading.Thread(target=lambda: result.append(worker.run()))
    loop.daemon = True
    loop.start()
    while loop.is_alive() and not worker.stop.is_set():
        # A timeout keeps the wait interruptible by signals on Python 2.7.
        worker.stop.wait(1.0)
    if stop_signal:
        LOG.info("%s signal %d: stopping", worker.tag, stop_signal[0])
        worker.shutdown()
        job = worker.job
        if job is None or job.finished.is_set():
            # An idle loop is inside a long poll it cannot abandon: leave
            # without it. A job thread still logging its end gets a moment.
            loop.join(0.5 if job is not None else 0)
        sys.stdout.flush()
        LOG.info("%s stopped", worker.tag)
        sys.stdout.flush()
        os._exit(0)  # daemon threads may sit in a long poll; don't wait
    loop.join()
    sys.stdout.flush()
    return result[0] if result else 1


if __name__ == "__main__":
    sys.exit(main())

"""boto3 sessions, and AWS refusals turned into one plain line.

Every command talks to AWS through `session(settings)`. The standard
AWS_ENDPOINT_URL (read by boto3 itself) points all of it at an emulator.
"""
import contextlib
import os
import random
import sys
import threading
import time

import boto3
import botocore.exceptions
from botocore.parsers import ResponseParserError
from botocore.config import Config

import awscompat  # the worker's classifier (worker/, on the path by ds/__init__)
from ds.core.errors import UserError

# botocore's "standard" mode with 5 tries rides out a blip inside one call.
# Not "adaptive": its client-side rate limiter slows every later call of the
# process after a throttle, and both modes share a retry quota that empties in
# a storm and then fails calls at once. Long storms are Patience's job below,
# with a backoff of seconds, not botocore's. The standard AWS_MAX_ATTEMPTS /
# AWS_RETRY_MODE still win when set (an explicit Config would otherwise
# silence them).
CLIENT_CONFIG = Config(retries={"max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS") or 5),
                                "mode": os.environ.get("AWS_RETRY_MODE") or "standard"},
                       max_pool_connections=32)
COMMAND_PATIENCE = 5 * 60     # setup, submitJob, startCluster give up after this long
FIRST_BACKOFF = 0.25          # seconds; doubles on every failure of the same call
LONGEST_BACKOFF = 30.0
STATUS_EVERY = 10.0           # seconds between repeats of the storm status line
# Client methods that return helpers rather than make a call.
_NOT_CALLS = ("get_paginator", "get_waiter", "can_paginate", "close")
_REMOVALS = ("delete_", "deregister_", "cancel_", "remove_")
# Parts of the error codes AWS gives for a thing that is not there (NoSuchKey,
# ResourceNotFoundException, NoSuchEntity, AWS.SimpleQueueService.NonExistentQueue,
# ClusterNotFoundException, ServiceNotActiveException, S3's bare 404...).
GONE = ("NotFound", "NonExistent", "DoesNotExist", "NoSuch", "NotActive", "404")


def _gone_after_retry(name, error, retried):
    """A removal retried after a lost answer finds its target gone: that is done.

    Teardown must not fail over its own earlier success."""
    if not name.startswith(_REMOVALS) or not hasattr(error, "response"):
        return False
    retried = retried or error.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
    return bool(retried) and is_gone(error)


class Patience:
    """Retries a whole AWS call while its errors are transient (awscompat.transient).

    `limit` is seconds (None: forever, for monitor). A connection error counts
    as transient only once that client's service has answered: no network or
    a wrong endpoint on the first call ends the command at once.
    """

    def __init__(self, limit=COMMAND_PATIENCE, out=None):
        self.limit = limit
        self.out = out or sys.stdout
        self.tries = self.failed = 0
        self.lock = threading.Lock()
        self._last_shown = 0.0

    def call(self, owner, fn, *args, **kwargs):
        """Call fn for `owner` (a PatientClient: it remembers whether its service answered)."""
        started = time.monotonic()
        delay = FIRST_BACKOFF
        retried = False
        while True:
            with self.lock:
                self.tries += 1
            try:
                result = fn(*args, **kwargs)
            except Exception as e:
                if _gone_after_retry(getattr(fn, "__name__", ""), e, retried):
                    return {}
                if not awscompat.transient(e, connected=owner.reached):
                    raise
                if self.limit is not None and time.monotonic() - started > self.limit:
                    raise
                self._note(e)
                time.sleep(delay * random.uniform(0.5, 1))  # backoff while AWS fails calls
                delay = min(delay * 2, LONGEST_BACKOFF)
                retried = True
                continue
            owner.reached = True
            return result

    def _note(self, error):
        with self.lock:
            self.failed += 1
            now = time.monotonic()
            if now - self._last_shown < STATUS_EVERY:
                return
            self._last_shown = now
        last = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        print("AWS is failing calls: %d of %d tries failed so far (last: %s)"
              % (self.failed, self.tries, last), file=self.out, flush=True)


class PatientClient:
    """A boto3 client whose every call goes through Patience; lists are read whole."""

    def __init__(self, client, patience):
        self._client, self._patience = client, patience
        self.reached = False

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name.startswith("_") or name in _NOT_CALLS or not callable(attr):
            if name == "get_paginator":
                return lambda op: _PatientPaginator(attr(op), self)
            return attr
        return lambda *a, **kw: self._patience.call(self, attr, *a, **kw)


class _PatientPaginator:
    def __init__(self, paginator, client):
        self._paginator, self._client = paginator, client

    def paginate(self, **kwargs):
        # A list is read again from its start if a page fails: lists are reads.
        return self._client._patience.call(
            self._client, lambda: list(self._paginator.paginate(**kwargs)))


class Session:
    """One boto3 session for a command; clients are made once and shared."""

    def __init__(self, settings):
        self.region = settings.AWS_REGION
        profile = settings.AWS_PROFILE or None
        available = boto3.session.Session().available_profiles
        if profile and profile not in available:
            if profile != "default":
                raise UserError("%s: AWS_PROFILE %r is not in your AWS config "
                                "(~/.aws/credentials); run `aws configure --profile %s` "
                                "or fix AWS_PROFILE." % (settings.path, profile, profile))
            profile = None  # DS configs say 'default'; env credentials may stand in
        self._boto = boto3.session.Session(profile_name=profile, region_name=self.region)
        self._clients = {}
        self.patience = Patience()

    def client(self, service, config=None):
        """The shared client; `config` gives a separate one with other settings."""
        if config is not None:
            return self._boto.client(service, config=CLIENT_CONFIG.merge(config))
        if service not in self._clients:
            self._clients[service] = PatientClient(
                self._boto.client(service, config=CLIENT_CONFIG), self.patience)
        return self._clients[service]

    def wait_forever(self):
        """From now on, transient errors never end the command (monitor)."""
        self.patience.limit = None


def error_code(exc):
    return exc.response.get("Error", {}).get("Code", "") if hasattr(exc, "response") else ""


@contextlib.contextmanager
def explain(what, hint=""):
    """Turn an AWS failure inside the block into a UserError naming `what`.

    `what` completes "AWS refused to ...", e.g. "create queue MyQueue".
    """
    try:
        yield
    except botocore.exceptions.ClientError as e:
        err = e.response.get("Error", {})
        msg = "AWS refused to %s: %s (%s)." % (what, err.get("Message") or "no reason given",
                                               err.get("Code", "error"))
        raise UserError(msg + (" " + hint if hint else ""))
    except botocore.exceptions.NoCredentialsError:
        raise UserError("No AWS credentials found: run `aws configure` (or set AWS_PROFILE "
                        "in config.py), or try `python run.py local`, which needs none.")
    except botocore.exceptions.EndpointConnectionError as e:
        where = ("AWS_ENDPOINT_URL" if os.environ.get("AWS_ENDPOINT_URL")
                 else "your network and AWS_REGION")
        raise UserError("Could not reach AWS to %s (%s); check %s." % (what, e, where))
    except botocore.exceptions.ParamValidationError as e:
        detail = " ".join(l.strip() for l in str(e).splitlines()[1:] if l.strip())
        raise UserError("Cannot %s: %s%s" % (what, detail or e, " " + hint if hint else ""))
    except (botocore.exceptions.BotoCoreError, ResponseParserError) as e:
        raise UserError("AWS failed to %s: %s. Try again; if it persists, check the AWS "
                        "status page for your region." % (what, str(e).splitlines()[0]))


def is_gone(exc):
    """Whether AWS refused because the thing asked about does not exist."""
    code = error_code(exc)
    return bool(code) and any(g in code for g in GONE)


@contextlib.contextmanager
def unless_gone():
    """A removal that finds its target already gone is done: another monitor (the
    automatic one, say) removed it between our look and our call."""
    try:
        yield
    except botocore.exceptions.ClientError as e:
        if not is_gone(e):
            raise

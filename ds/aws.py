"""boto3 sessions, and AWS refusals turned into one plain line.

Every command talks to AWS through `session(settings)`. The standard
AWS_ENDPOINT_URL (read by boto3 itself) points all of it at an emulator.
"""
import contextlib
import os

import boto3
import botocore.exceptions
from botocore.parsers import ResponseParserError
from botocore.config import Config

from .errors import UserError

# Adaptive retries ride out throttling on big runs without our own sleeps.
# The standard AWS_MAX_ATTEMPTS / AWS_RETRY_MODE still win when set (an
# explicit Config would otherwise silence them).
CLIENT_CONFIG = Config(retries={"max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS") or 10),
                                "mode": os.environ.get("AWS_RETRY_MODE") or "adaptive"},
                       max_pool_connections=32)


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

    def client(self, service, config=None):
        """The shared client; `config` gives a separate one with other settings."""
        if config is not None:
            return self._boto.client(service, config=CLIENT_CONFIG.merge(config))
        if service not in self._clients:
            self._clients[service] = self._boto.client(service, config=CLIENT_CONFIG)
        return self._clients[service]


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

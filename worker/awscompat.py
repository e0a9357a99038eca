"""boto3 clients for the worker scripts, on new and old boto3 alike.

boto3 >= 1.28 reads AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_<SERVICE>) by
itself, so on those versions nothing is added here. The Python 2.7 image is
stuck on boto3 <= 1.17, which ignores them: a local run against the AWS
emulator would silently call the real AWS endpoints instead. Only then is
the endpoint passed explicitly. Python 2.7 and 3.8+.
"""
import os

import botocore


def _version(text):
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


# botocore 1.31 is the release that learned the endpoint variables.
READS_ENDPOINT_ENV = _version(botocore.__version__) >= (1, 31)


def _retry_config():
    # botocore's "standard" retries (5 tries per call) where it has them
    # (1.15+). Its retry quota empties in a long storm and then gives failing
    # calls no second try; the worker's own loop (Worker._carry) carries
    # them from there. Not "legacy", which has no quota: its waits are
    # longer, and with them a 150-job storm took twice as long and a failed
    # heartbeat cost a job a second run (one run each, issue 24). Why not
    # "adaptive": see ds/core/aws.py, which makes the same choice for the
    # control plane.
    if _version(botocore.__version__) < (1, 15):
        return None
    from botocore.config import Config
    return Config(retries={"max_attempts": 5, "mode": "standard"})


def client(session, service):
    kwargs = {}
    config = _retry_config()
    if config is not None:
        kwargs["config"] = config
    if not READS_ENDPOINT_ENV:
        url = (os.environ.get("AWS_ENDPOINT_URL_" + service.upper())
               or os.environ.get("AWS_ENDPOINT_URL"))
        if url:
            kwargs["endpoint_url"] = url
    return session.client(service, **kwargs)


# Error codes AWS uses for "slow down" and "try again": they pass by themselves.
_TRANSIENT_CODES = frozenset([
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "SlowDown",
    "RequestLimitExceeded", "ProvisionedThroughputExceededException",
    "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete",
    "InternalError", "InternalFailure", "ServiceUnavailable", "ServiceUnavailableException",
    "InternalServerError", "KMS.ThrottlingException",
])


def transient(error, connected=True):
    """True for an AWS error that passes by itself: throttling, 5xx, timeouts,
    dropped connections. Access denied, bad requests and missing resources are
    not. `connected=False` (nothing has reached AWS yet) makes connection
    errors permanent: a wrong endpoint or no network does not heal by waiting.
    The worker and the control plane both decide with this one function."""
    from botocore import exceptions as bx
    response = getattr(error, "response", None)
    if isinstance(error, bx.ClientError) and response:
        code = response.get("Error", {}).get("Code", "")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code in _TRANSIENT_CODES or str(code) in ("500", "502", "503", "504"):
            return True
        return status >= 500
    if isinstance(error, (bx.ReadTimeoutError, bx.ConnectTimeoutError)):
        return connected
    if isinstance(error, bx.ConnectionError):  # includes EndpointConnectionError
        return connected
    # An answer botocore cannot parse is not retried: the emulator answers
    # calls it lacks (spot fleet history) that way, and waiting never helps.
    # boto3's transfers wrap the AWS error: upload_file raises while handling
    # it, and s3transfer's RetriesExceededError (a download's connection kept
    # dropping) names it as last_exception.
    cause = (getattr(error, "last_exception", None) or getattr(error, "__cause__", None)
             or getattr(error, "__context__", None))
    return cause is not None and cause is not error and transient(cause, connected)

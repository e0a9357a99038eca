"""boto3 clients for the worker scripts, on new and old boto3 alike.

boto3 >= 1.28 reads AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_<SERVICE>) by
itself, so on those versions nothing is added here. The Python 2.7 image is
stuck on boto3 <= 1.17, which ignores them: a local run against the AWS
emulator would silently call the real AWS endpoints instead. Only then is
the endpoint passed explicitly. Python 2.7 and 3.9+.
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


def client(session, service):
    kwargs = {}
    if not READS_ENDPOINT_ENV:
        url = (os.environ.get("AWS_ENDPOINT_URL_" + service.upper())
               or os.environ.get("AWS_ENDPOINT_URL"))
        if url:
            kwargs["endpoint_url"] = url
    return session.client(service, **kwargs)

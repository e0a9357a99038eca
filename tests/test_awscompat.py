"""worker/awscompat.py's transient(): which errors a worker waits out.

The errors are built as boto3 and s3transfer raise them: a transfer wraps
the AWS error, and a wrapped storm must still read as one."""
import os
import sys

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, ReadTimeoutError
from s3transfer.exceptions import RetriesExceededError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "worker"))
import awscompat  # noqa: E402


def client_error(code, status):
    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def upload_failure(aws_error):
    """What upload_file raises: its own error, while handling AWS's."""
    try:
        try:
            raise aws_error
        except ClientError as e:
            raise S3UploadFailedError("Failed to upload f to b/k: %s" % e)
    except S3UploadFailedError as wrapped:
        return wrapped


@pytest.mark.parametrize("code,status,passes", [
    ("ServiceUnavailable", 503, True), ("SlowDown", 503, True), ("InternalError", 500, True),
    ("AccessDenied", 403, False), ("NoSuchBucket", 404, False)])
def test_an_upload_failure_is_as_transient_as_the_aws_error_inside(code, status, passes):
    assert awscompat.transient(client_error(code, status)) is passes
    assert awscompat.transient(upload_failure(client_error(code, status))) is passes


def test_a_download_whose_connection_kept_dropping_is_transient():
    dropped = RetriesExceededError(ReadTimeoutError(endpoint_url="http://127.0.0.1:1/b/k"))
    assert awscompat.transient(dropped)
    assert not awscompat.transient(RetriesExceededError(ValueError("not AWS")))

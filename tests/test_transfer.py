"""`upload` and `download` as a user runs them: the worker's own folders, nothing
else, nothing stale, and every failure in one line."""
import os
import time

import pytest

from conftest import run_py, user_runner, write_json
from faultproxy import FaultProxy

BUCKET = "transfer-test-bucket"
CONFIG = """
APP_NAME = 'TransferTest'
DOCKERHUB_TAG = 'someone/something:1.0'
AWS_BUCKET = '%s'
COMMAND = 'cp {input_dir}/* {output_dir}/'
""" % BUCKET


@pytest.fixture
def user(tmp_path, aws_env, boto):
    (tmp_path / "config.py").write_text(CONFIG)
    boto("s3").create_bucket(Bucket=BUCKET)
    return user_runner(aws_env, tmp_path)


def put(s3, key, body):
    s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())


def test_download_brings_each_jobs_folder_only_and_refreshes_what_changed(user, boto):
    s3 = boto("s3")
    put(s3, "out/A1/", "")                      # a folder marker, as the S3 console makes
    put(s3, "out/A1/a.txt", "one")
    put(s3, "out/A10/a.txt", "ten")             # another job's folder, not A1's
    write_json(user.dir / "job.json", {"groups": [
        {"well": "A1", "output": "out/A1"}, {"well": "A2", "output": "/out/A1/"}]})
    first = user("download", "job.json").stdout
    assert "Downloaded 1 file of 1 job output folder to outputs/." in first, first
    got = sorted(os.path.relpath(os.path.join(r, f), str(user.dir / "outputs"))
                 for r, _d, files in os.walk(str(user.dir / "outputs")) for f in files)
    assert got == [os.path.join("out", "A1", "a.txt")]

    again = user("download", "job.json").stdout
    assert "Downloaded 0 files of 1 job output folder to outputs/ (1 file already there)." \
        in again, again
    time.sleep(1.1)  # S3 keeps whole seconds
    put(s3, "out/A1/a.txt", "two")              # a rerun: same size, new content
    user("download", "job.json")
    assert (user.dir / "outputs" / "out" / "A1" / "a.txt").read_text() == "two"


def test_upload_sends_the_folder_once_and_again_what_changed(user, boto):
    data = user.dir / "plate1"
    (data / "sub").mkdir(parents=True)
    (data / "a.csv").write_text("1,2")
    (data / "sub" / "b.csv").write_text("3,4")
    assert "Uploaded 2 files from plate1 to s3://%s/plate1/." % BUCKET in \
        user("upload", "plate1").stdout
    # written later in the very second S3 stamped the upload with (it keeps whole seconds)
    for path, key in ((data / "a.csv", "plate1/a.csv"), (data / "sub" / "b.csv", "plate1/sub/b.csv")):
        stamp = boto("s3").head_object(Bucket=BUCKET, Key=key)["LastModified"].timestamp()
        os.utime(str(path), (stamp + 0.9, stamp + 0.9))
    assert "Uploaded 0 files from plate1 to s3://%s/plate1/ (2 files already there)." % BUCKET \
        in user("upload", "plate1").stdout
    time.sleep(1.1)
    (data / "a.csv").write_text("5,6")          # edited: same size, newer
    assert "Uploaded 1 file from plate1 to s3://%s/plate1/ (1 file already there)." % BUCKET \
        in user("upload", "plate1").stdout
    body = boto("s3").get_object(Bucket=BUCKET, Key="plate1/a.csv")["Body"].read()
    assert body == b"5,6"


def test_failures_are_one_line(user, boto):
    write_json(user.dir / "job.json", {"groups": [{"well": "A1", "output": "out/A1"}]})
    (user.dir / "outputs").write_text("a file where the folder would go")
    put(boto("s3"), "out/A1/a.txt", "one")
    result = user("download", "job.json", ok=False)
    line, = result.stderr.strip().splitlines()
    assert result.returncode == 1 and line.startswith("error: ")
    (user.dir / "outputs").unlink()
    write_json(user.dir / "job.json", {"groups": [
        {"well": "A1", "output": "s3://no-such-bucket/out/A1"}]})
    result = user("download", "job.json", ok=False)
    line, = result.stderr.strip().splitlines()
    assert line.startswith("error: AWS refused to download the outputs of job.json: ") \
        and "NoSuchBucket" in line, line


def test_an_upload_aws_refuses_is_one_line(user, aws_env):
    """A user whose policy lacks s3:PutObject: boto3 wraps AWS's refusal in its own error."""
    (user.dir / "plate1").mkdir()
    (user.dir / "plate1" / "a.csv").write_text("1,2")
    with FaultProxy(aws_env["AWS_ENDPOINT_URL"], deny=lambda method, path: method == "PUT") \
            as proxy:
        result = run_py(["upload", "plate1"], dict(aws_env, AWS_ENDPOINT_URL=proxy.url),
                        cwd=str(user.dir))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    line, = result.stderr.strip().splitlines()
    assert line == ("error: AWS refused to upload plate1 to s3://%s/plate1/: Access Denied "
                    "(AccessDenied)." % BUCKET), line

"""`python run.py upload FOLDER` and `python run.py download [JOBFILE]`: a run's
files between this computer and AWS_BUCKET, laid out as `local` lays them out.

upload sends FOLDER to s3://AWS_BUCKET/<FOLDER's name>/..., the paths a job
file's "input" names; download brings every job's "output" folder to
OUT/<output>/..., as a local run leaves its outputs in local-output/. As
`aws s3 sync` does, a file is skipped when the copy at the other end has the
same size and is not older, so either can be run again after a stop, or
while a run is still going.
"""
import concurrent.futures
import os

import boto3.exceptions

from ds.core.aws import explain
from ds.core.errors import UserError
from ds.commands.setup import check_bucket
from ds.resources import jobs

THREADS = 8   # files moved at once; boto3's clients may be shared between threads


def folder_files(folder):
    """(path, key) of every file under `folder`, keyed under the folder's own name."""
    if not os.path.isdir(folder):
        raise UserError("%s: folder not found; name the folder your job file's inputs are "
                        "in (e.g. files/exampleData)." % folder)
    base = os.path.basename(os.path.normpath(folder))
    return [(os.path.join(root, name),
             "/".join([base] + os.path.relpath(os.path.join(root, name), folder).split(os.sep)))
            for root, _dirs, files in os.walk(folder) for name in sorted(files)]


def remote_objects(s3, bucket, prefix):
    """{key: (size, last modified as a timestamp)} of the files under `prefix`;
    the S3 console's folder markers (keys ending in /) are no files."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: (o["Size"], o["LastModified"].timestamp())
            for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/")}


def output_locations(bodies, bucket):
    """(bucket, prefix) of every job's "output" folder, exactly as the worker
    uploads to it (its own parser: "out/A1" is the folder out/A1/, not out/A10)."""
    dsjob = jobs.worker_parser()
    found = set()
    for body in bodies:
        output = dsjob.merge(dsjob.parse_message(body)).get("output")
        if isinstance(output, str) and output:
            b, key = dsjob.split_s3(output, bucket, "output")
            found.add((b, dsjob.as_prefix(key)))
    return sorted(found)


def _fresh(size, mtime, other_size, other_mtime):
    """Whether a copy (size, mtime) need not be replaced by the other end's. In whole
    seconds: S3 keeps no more of LastModified, so a file uploaded in the second it
    was written looks older than the file by a fraction it does not have."""
    return size == other_size and int(mtime) >= int(other_mtime)


def _move_all(calls, what, progress):
    """Run the transfers, THREADS at a time, with a progress bar when asked. The
    first failure, or Ctrl-C, cancels the transfers not yet begun."""
    if not calls:
        return
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(calls), unit="file", desc=what, leave=False,
                   disable=None)  # None: only on a terminal
    pool = concurrent.futures.ThreadPoolExecutor(THREADS)
    try:
        for future in concurrent.futures.as_completed([pool.submit(c) for c in calls]):
            future.result()
            if bar:
                bar.update()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.shutdown()
        if bar:
            bar.close()


def _one_file(call, path):
    """One transfer, its failures as explain() and the user read them."""
    try:
        call()
    except boto3.exceptions.S3UploadFailedError as e:
        # boto3 raises it while handling AWS's own error, which explain() words
        raise e.__cause__ or e.__context__ or e
    except OSError as e:
        raise UserError("%s: %s." % (path, e.strerror or e))


def upload_folder(s3, bucket, folder, progress=False):
    """Send `folder` to the bucket; returns (files sent, files already there)."""
    files = folder_files(folder)
    there = remote_objects(s3, bucket, os.path.basename(os.path.normpath(folder)) + "/")
    todo = [(p, k) for p, k in files if k not in there or not _fresh(
        there[k][0], there[k][1], os.path.getsize(p), os.path.getmtime(p))]
    _move_all([lambda p=p, k=k: _one_file(lambda: s3.upload_file(p, bucket, k), p)
               for p, k in todo], "uploading", progress)
    return len(todo), len(files) - len(todo)


def download_outputs(s3, locations, out_dir, progress=False):
    """Bring the files under each (bucket, prefix) to out_dir/<key>; returns
    (files fetched, files already there)."""
    root = os.path.abspath(out_dir)
    todo, kept = {}, 0
    for bucket, prefix in locations:
        for key, (size, modified) in sorted(remote_objects(s3, bucket, prefix).items()):
            target = os.path.abspath(os.path.join(root, *key.split("/")))
            if not target.startswith(root + os.sep):
                raise UserError("s3://%s/%s would land outside %s; not downloading it."
                                % (bucket, key, out_dir))
            if os.path.isfile(target) and _fresh(os.path.getsize(target),
                                                 os.path.getmtime(target), size, modified):
                kept += 1
            else:
                todo[target] = (bucket, key, modified)
    for folder in sorted({os.path.dirname(t) for t in todo}):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise UserError("%s: cannot make this folder for the outputs (%s)."
                            % (folder, e.strerror or e))

    def fetch(bucket, key, target, modified):
        s3.download_file(bucket, key, target)
        os.utime(target, (modified, modified))  # as old as the object: a rerun compares
    _move_all([lambda t=t, v=v: _one_file(lambda: fetch(v[0], v[1], t, v[2]), t)
               for t, v in sorted(todo.items())], "downloading", progress)
    return len(todo), kept


def _files(n):
    return "%d file%s" % (n, "" if n == 1 else "s")


def upload(aws, settings, folder):
    s3, bucket = aws.client("s3"), settings.AWS_BUCKET
    check_bucket(s3, bucket, settings.path)
    base = os.path.basename(os.path.normpath(folder))
    with explain("upload %s to s3://%s/%s/" % (folder, bucket, base)):
        sent, kept = upload_folder(s3, bucket, folder, progress=True)
    print("Uploaded %s from %s to s3://%s/%s/%s." % (
        _files(sent), folder, bucket, base,
        " (%s already there)" % _files(kept) if kept else ""))


def download(aws, settings, jobfile, out):
    locations = output_locations(jobs.load_messages(jobfile, settings.COMMAND),
                                 settings.AWS_BUCKET)
    if not locations:
        raise UserError("%s: no job names an \"output\", so there is nothing to download."
                        % jobfile)
    s3 = aws.client("s3")
    check_bucket(s3, settings.AWS_BUCKET, settings.path)
    with explain("download the outputs of %s" % jobfile):
        fetched, kept = download_outputs(s3, locations, out, progress=True)
    folders = "%d job output folder%s" % (len(locations), "" if len(locations) == 1 else "s")
    if not fetched + kept:
        print("No outputs yet in the %s of %s (first: s3://%s/%s)." % (
            folders, jobfile, locations[0][0], locations[0][1]))
        return
    print("Downloaded %s of %s to %s/%s." % (
        _files(fetched), folders, os.path.normpath(out),
        " (%s already there)" % _files(kept) if kept else ""))

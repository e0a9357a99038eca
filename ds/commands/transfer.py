"""`python run.py upload FOLDER` and `python run.py download [JOBFILE]`: a run's
files between this computer and AWS_BUCKET, laid out as `local` lays them out.

upload sends FOLDER to s3://AWS_BUCKET/<FOLDER's name>/..., the paths a job
file's "input" names; download brings every job's "output" prefix to
OUT/<prefix>/..., as a local run leaves its outputs in local-output/. A file
already there with the same size is skipped, so either can be run again after
a stop, or while a run is still going.
"""
import concurrent.futures
import json
import os

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


def remote_sizes(s3, bucket, prefix):
    """{key: size} of the objects under `prefix`."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def output_locations(bodies, bucket):
    """(bucket, prefix) of every job's "output", as the worker reads it."""
    found = set()
    for body in bodies:
        message = json.loads(body)
        job = dict(message)
        job.update(message.get("group", {}))
        output = job.get("output")
        if not isinstance(output, str) or not output:
            continue
        if output.startswith("s3://"):
            b, _, prefix = output[5:].partition("/")
            found.add((b, prefix))
        else:
            found.add((bucket, output))
    return sorted(found)


def _same_size(path, size):
    return os.path.isfile(path) and os.path.getsize(path) == size


def _move_all(calls, what, progress):
    """Run the transfers, THREADS at a time, with a progress bar when asked."""
    if not calls:
        return
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(calls), unit="file", desc=what, leave=False)
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        for future in concurrent.futures.as_completed([pool.submit(c) for c in calls]):
            future.result()  # the first failure ends the command, in one line
            if bar:
                bar.update()
    if bar:
        bar.close()


def upload_folder(s3, bucket, folder, progress=False):
    """Send `folder` to the bucket; returns (files sent, files already there)."""
    files = folder_files(folder)
    there = remote_sizes(s3, bucket, os.path.basename(os.path.normpath(folder)) + "/")
    todo = [(p, k) for p, k in files if there.get(k) != os.path.getsize(p)]
    _move_all([lambda p=p, k=k: s3.upload_file(p, bucket, k) for p, k in todo],
              "uploading", progress)
    return len(todo), len(files) - len(todo)


def download_outputs(s3, locations, out_dir, progress=False):
    """Bring the objects under each (bucket, prefix) to out_dir/<key>; returns
    (files fetched, files already there)."""
    todo, kept = [], 0
    for bucket, prefix in locations:
        for key, size in sorted(remote_sizes(s3, bucket, prefix).items()):
            target = os.path.join(out_dir, *key.split("/"))
            if _same_size(target, size):
                kept += 1
            else:
                todo.append((bucket, key, target))
    for target in {os.path.dirname(t) for _b, _k, t in todo}:
        os.makedirs(target, exist_ok=True)
    _move_all([lambda b=b, k=k, t=t: s3.download_file(b, k, t) for b, k, t in todo],
              "downloading", progress)
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
    for bucket in sorted({b for b, _p in locations}):
        check_bucket(s3, bucket, settings.path)
    with explain("download the outputs of %s" % jobfile):
        fetched, kept = download_outputs(s3, locations, out, progress=True)
    if not fetched + kept:
        print("No outputs yet under the %d output prefix%s of %s (first: s3://%s/%s)." % (
            len(locations), "" if len(locations) == 1 else "es", jobfile, *locations[0]))
        return
    print("Downloaded %s of %d job output prefix%s to %s/%s." % (
        _files(fetched), len(locations), "" if len(locations) == 1 else "es",
        os.path.normpath(out), " (%s already there)" % _files(kept) if kept else ""))

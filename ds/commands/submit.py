"""`python run.py submitJob JOBFILE`: one SQS message per group of the job file.
The whole file is checked first; nothing is sent if any group is bad."""
import datetime
import json
import os
import sys

from ds.core.aws import explain
from ds.core.errors import Stopped, UserError
from ds.resources import jobs, queue


def submit_job(aws, settings, path, save_on_stop=True):
    """One SQS message per group of the job file; nothing is sent if any group is bad."""
    bodies = jobs.load_messages(path, settings.COMMAND)
    sqs = aws.client("sqs")
    url = queue.require_url(sqs, settings.SQS_QUEUE_NAME, settings.path)
    progress = None
    if len(bodies) >= 1000:
        from tqdm import tqdm
        progress = tqdm(total=len(bodies), unit="job", desc="Submitting", file=sys.stderr)
    stopped = False
    try:
        unsent = queue.send_all(sqs, url, bodies, progress)
    except queue.Interrupted as e:  # Ctrl-C: what was sent stays sent, the rest is saved
        if not save_on_stop:  # a local run: its emulator and queue go away anyway
            raise KeyboardInterrupt
        unsent, stopped = e.unsent, True
    finally:
        if progress is not None:
            progress.close()
    sent = len(bodies) - len(unsent)
    if sent:
        with explain("record the number of submitted jobs on queue %s" % settings.SQS_QUEUE_NAME,
                     "The jobs are queued; only monitor's done count will be off."):
            queue.add_submitted(sqs, url, sent)
    if stopped and unsent:
        rest = save_unsent(path, bodies, unsent)
        raise Stopped("Stopped: %d of %d jobs were sent; the other %d are saved in %s: submit "
                      "that file to send them (the %d sent are not repeated)."
                      % (sent, len(bodies), len(unsent), rest, sent))
    print("Queued %d job%s from %s on %s." % (sent, "" if sent == 1 else "s", path,
                                              settings.SQS_QUEUE_NAME))
    if unsent:
        rest = save_unsent(path, bodies, unsent)
        raise UserError("%d job%s could not be sent; they are saved in %s: submit that file "
                        "once AWS answers again (the %d sent are not repeated)."
                        % (len(unsent), "" if len(unsent) == 1 else "s", rest, sent))
    return sent


def save_unsent(path, bodies, unsent):
    """Write the groups that were not sent as a job file of their own."""
    first = json.loads(bodies[unsent[0]])
    shared = {k: v for k, v in first.items() if k not in ("group", "job_key")}
    shared["groups"] = [json.loads(bodies[i])["group"] for i in unsent]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = "%s.unsent-%s.json" % (os.path.splitext(path)[0], stamp)
    with open(out, "w") as f:
        json.dump(shared, f, indent=2)
    return out

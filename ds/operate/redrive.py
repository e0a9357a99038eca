"""`python run.py redrive [JOBNAME ...]`: failed jobs back onto the job queue."""
from ds.core.aws import explain
from ds.core.errors import UserError
from ds.resources import cluster, deadletter, queue, records


def redrive(aws, settings, names=()):
    sqs = aws.client("sqs")
    dlq_name = settings.dead_letter_queue_name
    with explain("look up the queues of run %s" % settings.APP_NAME):
        dlq_url = queue.find_url(sqs, dlq_name)
        if dlq_url is None or not sum(queue.counts(sqs, dlq_url)):
            print("Nothing to redrive: dead-letter queue %s is empty or gone." % dlq_name)
            return 0
        url = queue.require_url(sqs, settings.SQS_QUEUE_NAME, settings.path)
    fresh_queue = not queue.submitted(sqs, url)
    waiting = sum(queue.counts(sqs, dlq_url))
    forget = lambda letters: _forget_failures(aws, settings, url, letters)  # noqa: E731
    if not names and _move_task_started(aws, sqs, dlq_url, url, forget):
        print("Started SQS's move task: every job in %s goes back to %s."
              % (dlq_name, settings.SQS_QUEUE_NAME))
        moved = None
    else:
        moved = _move_ourselves(sqs, dlq_url, url, names, dlq_name, forget)
        print("Put %d job%s back on queue %s with %d fresh tries each." % (
            moved, "" if moved == 1 else "s", settings.SQS_QUEUE_NAME, settings.JOB_RETRIES))
    if fresh_queue:
        # A queue set up again after monitor's clean-up counts from 0: count the
        # jobs coming back, so status and monitor have a total to count against.
        with explain("record the number of redriven jobs on queue %s" % settings.SQS_QUEUE_NAME):
            queue.add_submitted(sqs, url, waiting if moved is None else moved)
    _say_if_no_workers(aws, settings)
    return moved


def _move_ourselves(sqs, dlq_url, url, names, dlq_name, forget):
    with explain("move jobs from %s" % dlq_name):
        letters = deadletter.peek(sqs, dlq_url)
        if names:
            known = {l.name for l in letters}
            unknown = sorted(set(names) - known)
            if unknown:
                deadletter.release(sqs, dlq_url, letters)
                raise UserError("%s %s not in dead-letter queue %s; nothing was moved. "
                                "`python run.py failures` lists the jobs there."
                                % (", ".join(unknown), "is" if len(unknown) == 1 else "are",
                                   dlq_name))
            chosen = [l for l in letters if l.name in set(names)]
            deadletter.release(sqs, dlq_url, [l for l in letters if l.name not in set(names)])
        else:
            chosen = letters
        forget(chosen)
        moved, undeleted = deadletter.move(sqs, dlq_url, url, chosen)
    jobs = deadletter.unique(chosen)
    if len(moved) < len(jobs):
        raise UserError("%d of %d jobs could not be sent and stay in %s; run redrive again."
                        % (len(jobs) - len(moved), len(jobs), dlq_name))
    if undeleted:
        print("%d cop%s of jobs now back on the queue could not be deleted from %s; within "
              "%d s they count as failed there again until you delete them in the SQS "
              "console (each job runs once)."
              % (len(undeleted), "y" if len(undeleted) == 1 else "ies", dlq_name,
                 deadletter.PEEK_LEASE))
    return len(moved)


def _forget_failures(aws, settings, url, letters):
    """The worker counts each job's tool failures in the bucket and dead-letters
    it at JOB_RETRIES; a redriven job starts that count again."""
    sqs = aws.client("sqs")
    with explain("clear the failure counts of the redriven jobs in bucket %s"
                 % settings.AWS_BUCKET):
        run_id = records.run_id(sqs, url)
        keys = records.keys_of(l.body for l in letters)
        if run_id and keys:
            records.clear_failures(aws.client("s3"), settings.AWS_BUCKET, settings.APP_NAME,
                                   run_id, keys)


def _move_task_started(aws, sqs, dlq_url, url, forget):
    """SQS's own move task takes every job; their failures are forgotten first."""
    with explain("read the dead-letter queue"):
        letters = deadletter.peek(sqs, dlq_url)
        deadletter.release(sqs, dlq_url, letters)
    forget(letters)
    return deadletter.start_move_task(aws, dlq_url, url)


def _say_if_no_workers(aws, settings):
    service = cluster.describe_service(aws.client("ecs"), settings)
    if not service or not service.get("desiredCount"):
        print("No workers are running, so nothing will take these jobs: start them with "
              "`python run.py startCluster YOUR_FLEET_FILE`, then run monitor.")

"""Operating a run: status, failures, redrive and report, from parsed arguments."""


def dispatch(aws, settings, args):
    if args.command == "status":
        from . import status
        status.run(aws, settings, args.monitorfile, args.json)
    elif args.command == "failures":
        from . import failures
        failures.run(aws, settings, args.json)
    elif args.command == "redrive":
        from .redrive import redrive
        redrive(aws, settings, args.jobnames)
    elif args.command == "report":
        write_report(aws, settings, args.monitorfile)


def write_report(aws, settings, monitor_path):
    """The run report on demand, with the counts the run has now."""
    from . import cost, report, status
    from .aws import explain
    settings, fleet_id, _started = status.for_run(settings, monitor_path)
    with explain("read the state of run %s" % settings.APP_NAME):
        jobs = status.jobs(aws, settings)
        dead = status.dead_letters(aws, settings)
        ec2 = aws.client("ec2")
        rows = cost.machines(ec2, fleet_id)
        hours, usd, _ = cost.estimate(ec2, rows) if rows else (None, None, 0)
    done = jobs["done"] if jobs else None
    path = report.write(aws, settings, ".", done, dead, hours, usd)
    print("Run report: %s (a copy is in s3://%s/%s)." % (path, settings.AWS_BUCKET,
                                                         report.bucket_key(settings)))

"""From parsed command-line arguments to the command that does the work.

Each command's module is imported only when that command runs, so `status`
does not pay for the report's template engine, nor `local` for prepare's.
"""
from ds.core.aws import Session, explain
from ds.core.settings import load, to_bool


def dispatch(args):
    settings = load(args.config)
    # Any AWS failure a step did not explain itself (no credentials, no
    # network) still ends in one line, never a traceback.
    with explain("run %s" % args.command):
        return _run(settings, args)


def _run(settings, args):
    if args.command == "local":
        from ds.commands import local
        return local.run(settings, args)
    aws = Session(settings)
    if args.command == "setup":
        from ds.commands.setup import setup
        setup(aws, settings)
    elif args.command == "submitJob":
        from ds.commands.submit import submit_job
        submit_job(aws, settings, args.jobfile)
    elif args.command == "startCluster":
        from ds.commands.start import start_cluster
        start_cluster(aws, settings, args.fleetfile)
    elif args.command == "monitor":
        from ds.monitor.laptop import monitor
        cheapest = args.cheapest or to_bool(args.cheapest_flag, "the monitor's last argument",
                                            "command line")
        monitor(aws, settings, args.monitorfile, cheapest=cheapest)
    elif args.command == "prepare":
        from ds.commands import prepare
        if args.remove:
            prepare.remove(aws, settings)
        else:
            prepare.prepare(aws, settings, make_key=args.key)
    elif args.command == "check":
        from ds.commands import check
        return check.main(aws, settings, args.config, args.jobfile, args.fleetfile)
    elif args.command == "status":
        from ds.operate import status
        status.run(aws, settings, args.monitorfile, args.json)
    elif args.command == "failures":
        from ds.operate import failures
        failures.run(aws, settings, args.json)
    elif args.command == "redrive":
        from ds.operate.redrive import redrive
        redrive(aws, settings, args.jobnames)
    elif args.command == "upload":
        from ds.commands import transfer
        transfer.upload(aws, settings, args.folder)
    elif args.command == "download":
        from ds.commands import transfer
        transfer.download(aws, settings, args.jobfile, args.out)
    elif args.command == "report":
        from ds.operate import report
        report.on_demand(aws, settings, args.monitorfile)
    return 0

"""From parsed command-line arguments to the step that does the work."""
from .aws import Session, explain
from .settings import load, to_bool


def dispatch(args):
    settings = load(args.config)
    # Any AWS failure a step did not explain itself (no credentials, no
    # network) still ends in one line, never a traceback.
    with explain("run %s" % args.command):
        return _run(settings, args)


def _run(settings, args):
    if args.command == "local":
        from . import local
        return local.run(settings, args)
    aws = Session(settings)
    if args.command == "setup":
        from .commands import setup
        setup(aws, settings)
    elif args.command == "submitJob":
        from .commands import submit_job
        submit_job(aws, settings, args.jobfile)
    elif args.command == "startCluster":
        from .commands import start_cluster
        start_cluster(aws, settings, args.fleetfile)
    elif args.command == "monitor":
        from .monitor import monitor
        cheapest = args.cheapest or to_bool(args.cheapest_flag, "the monitor's last argument",
                                            "command line")
        monitor(aws, settings, args.monitorfile, cheapest=cheapest)
    elif args.command == "prepare":
        from . import prepare
        if args.remove:
            prepare.remove(aws, settings)
        else:
            prepare.prepare(aws, settings, make_key=args.key)
    elif args.command == "check":
        from . import check
        return check.main(aws, settings, args.config, args.jobfile, args.fleetfile)
    elif args.command in ("status", "failures", "redrive", "report"):
        from . import operate
        operate.dispatch(aws, settings, args)
    return 0

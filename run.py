#!/usr/bin/env python3
"""Distributed-Something: run a Dockerized tool over many jobs on AWS, or on this machine.

    python run.py setup
    python run.py submitJob files/exampleJob.json
    python run.py startCluster files/exampleFleet_us-east-1.json
    python run.py monitor files/APP_NAMESpotFleetRequestId.json [--cheapest]
    python run.py local [files/exampleJob.json]
    python run.py prepare [--key] [--remove]
    python run.py check [files/exampleJob.json] [files/APP_NAMEFleet_REGION.json]
    python run.py status [MONITORFILE] [--json] | failures [--json] | redrive [JOBNAME ...]
    python run.py report [MONITORFILE]
    python run.py upload FOLDER | download [JOBFILE] [--out DIR]

The work is done by the ds/ package; this file only reads the command line.
"""
import argparse
import os
import signal
import sys

DEFAULT_JOB = "files/exampleJob.json"


def parse(argv):
    p = argparse.ArgumentParser(prog="run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="config.py", help="the config file (default: config.py)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("setup", help="create the queues, task definition and service")
    sj = sub.add_parser("submitJob", help="queue one job per group of a job file")
    sj.add_argument("jobfile")
    sc = sub.add_parser("startCluster", help="start the spot fleet and the workers")
    sc.add_argument("fleetfile")
    mo = sub.add_parser("monitor", help="watch the run, then remove everything it made")
    mo.add_argument("monitorfile")
    mo.add_argument("cheapest_flag", nargs="?", default="False", metavar="True|False",
                    help="Distributed-Something's spelling of --cheapest")
    mo.add_argument("--cheapest", action="store_true",
                    help="after 15 minutes, stop replacing machines that are lost")
    lo = sub.add_parser("local", help="the whole run on this machine, no AWS account needed")
    lo.add_argument("jobfile", nargs="?", default=DEFAULT_JOB)
    lo.add_argument("--workers", type=int, default=None,
                    help="worker processes (default: the service's desired count)")
    lo.add_argument("--data", default="files/exampleData",
                    help="local folder uploaded to the bucket before the run")
    lo.add_argument("--out", default="local-output", help="where the outputs are downloaded")
    lo.add_argument("--spot-notice", metavar="AFTER[,PERIOD]", default=None,
                    help="the first machine with a job running for AFTER seconds gets a spot "
                         "interruption notice and ends PERIOD (default 120) seconds later, "
                         "as on AWS")
    lo.add_argument("--docker", action="store_true",
                    help="run workers as containers of DOCKERHUB_TAG (docker or podman)")
    pr = sub.add_parser("prepare", help="make roles, bucket, network and a fleet file (or --remove them)")
    pr.add_argument("--key", action="store_true",
                    help="also make the key pair SSH_KEY_NAME, its private key saved in ~/.ssh/")
    pr.add_argument("--remove", action="store_true", help="delete everything prepare made")
    ch = sub.add_parser("check", help="look for problems in config, files and account (read-only)")
    ch.add_argument("jobfile", nargs="?", default=None)
    ch.add_argument("fleetfile", nargs="?", default=None)
    st = sub.add_parser("status", help="one screen on a run: progress, failures, machines, cost")
    st.add_argument("monitorfile", nargs="?", default=None,
                    help="the file startCluster wrote (default: files/APP_NAMESpotFleetRequestId.json)")
    st.add_argument("--json", action="store_true", help="print the same as JSON")
    fa = sub.add_parser("failures", help="jobs in the dead-letter queue, why, and their last log lines")
    fa.add_argument("--json", action="store_true", help="print the same as JSON")
    rd = sub.add_parser("redrive", help="put failed jobs (all, or the named ones) back on the queue")
    rd.add_argument("jobnames", nargs="*", metavar="JOBNAME")
    rp = sub.add_parser("report", help="write the run report (HTML) here and to the bucket")
    rp.add_argument("monitorfile", nargs="?", default=None,
                    help="the file startCluster wrote (default: files/APP_NAMESpotFleetRequestId.json)")
    up = sub.add_parser("upload", help="send a folder of inputs to the bucket (as local --data)")
    up.add_argument("folder", help="e.g. files/exampleData, sent to s3://AWS_BUCKET/exampleData/")
    dl = sub.add_parser("download", help="bring the jobs' outputs from the bucket to this computer")
    dl.add_argument("jobfile", nargs="?", default=DEFAULT_JOB)
    dl.add_argument("--out", default="outputs", help="where they go (default: outputs)")
    return p.parse_args(argv)


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    # Ctrl-C and a plain `kill` both stop cleanly, even when started from a
    # shell or service that ignores SIGINT for background jobs.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    from ds.core.errors import UserError
    try:
        from ds import cli
        code = cli.dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's exit
        return code
    except UserError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `run.py status | head -1`: the reader has gone, so has the rest of the output.
        # Send what is still buffered nowhere, so Python's exit does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt as e:
        if str(e):  # ds.core.errors.Stopped: says what was done and what is left
            print(e, file=sys.stderr)
        elif args.command == "local":
            print("Stopped; the local run's workers and emulator are gone.", file=sys.stderr)
        else:
            print("Stopped. Run the same command again to continue.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

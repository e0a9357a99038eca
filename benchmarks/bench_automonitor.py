"""What one tick of the automatic monitor costs: package size and AWS calls.

Against an in-process AWS emulator (moto), runs setup, submitJob and
startCluster with AUTO_MONITOR = True (functions are stored, never invoked),
then counts the AWS calls of:
1. a tick that only looks (jobs still queued), the common case;
2. the same look through the laptop monitor's Run.poll alone, the baseline
   (what `monitor` costs per MONITOR_TIME), in the same run, with the ratio;
3. the ticks from an empty queue to the end (teardown, export, removal).

    python benchmarks/bench_automonitor.py
"""
import collections
import json
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

CONFIG = """
APP_NAME = 'Bench'
DOCKERHUB_TAG = 'bench/worker:1'
AWS_BUCKET = 'bench-bucket'
ECS_CLUSTER = 'benchcluster'
CLUSTER_MACHINES = 2
AUTO_MONITOR = True
"""


class Counter:
    """Counts the API calls every client of a Session makes (botocore's event hook)."""

    def __init__(self, session):
        self.calls = collections.Counter()
        for service in ("s3", "sqs", "ec2", "ecs", "cloudwatch", "logs", "lambda", "events",
                        "iam"):
            session.client(service).meta.events.register(
                "before-call", lambda model, **kw: self.calls.update(
                    ["%s.%s" % (model.service_model.service_name, model.name)]))

    def take(self):
        out, self.calls = self.calls, collections.Counter()
        return out


# USD per request (us-east-1 list prices; EC2's Describe calls are free). The busy
# records are listed once per tick once nothing is left to hand out (one LIST more).
PRICE = {"s3.GetObject": 0.0004 / 1000, "s3.PutObject": 0.005 / 1000,
         "s3.ListObjectsV2": 0.005 / 1000, "sqs": 0.40 / 1e6, "cloudwatch": 0.01 / 1000,
         "lambda.request": 0.20 / 1e6, "lambda.GB-second": 0.0000166667}
TICK_SECONDS = 1.0   # assumed billed duration of a warm tick (about a dozen calls)


def print_cost_per_day(tick, per_day, memory_mb):
    """What ticking all day costs, from the calls one tick made and list prices.
    EventBridge does not bill a scheduled rule's events (at the custom-event price of
    $1 per million they would add $0.0014 a day)."""
    def price(call):
        return PRICE.get(call, PRICE.get(call.split(".")[0], 0.0))
    calls = sum(price(call) * n for call, n in tick.items()) + PRICE["s3.ListObjectsV2"]
    function = (PRICE["lambda.request"]
                + PRICE["lambda.GB-second"] * TICK_SECONDS * memory_mb / 1024.0)
    print("cost per day of ticking: $%.3f (requests $%.3f, function $%.3f, at %.0f s and "
          "%d MB per tick)" % (per_day * (calls + function), per_day * calls,
                               per_day * function, TICK_SECONDS, memory_mb))


def main():
    import logging
    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)  # the request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    os.environ.update(AWS_ENDPOINT_URL="http://127.0.0.1:%d" % server.get_host_and_port()[1],
                      AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    from ds.commands.local import LOCAL_FLEET
    from ds.commands.setup import setup
    from ds.commands.start import start_cluster
    from ds.commands.submit import submit_job
    from ds.core import runfile
    from ds.core.aws import Session
    from ds.core.settings import load
    from ds.monitor import install, steps
    from ds.monitor.auto import state, tick as automonitor
    work = tempfile.mkdtemp()
    with open(os.path.join(work, "config.py"), "w") as f:
        f.write(CONFIG)
    with open(os.path.join(work, "job.json"), "w") as f:
        json.dump({"groups": [{"n": i} for i in range(20)]}, f)
    with open(os.path.join(work, "fleet.json"), "w") as f:
        json.dump(LOCAL_FLEET, f)
    s = load(os.path.join(work, "config.py"))
    s["AWS_PROFILE"] = ""
    aws = Session(s)
    aws.client("s3").create_bucket(Bucket=s.AWS_BUCKET)
    path = os.path.join(work, "monitor.json")
    setup(aws, s)
    submit_job(aws, s, os.path.join(work, "job.json"))
    start_cluster(aws, s, os.path.join(work, "fleet.json"), timeout=60,
                  monitor_path=path, local=True)
    code = install.package()
    print("\npackage: %d files, %d bytes (%.1f kB)" % (len(install.sources()), len(code),
                                                       len(code) / 1024.0))

    count = Counter(aws)
    key = state.key_for(s.APP_NAME)
    automonitor.tick(aws, s.AWS_BUCKET, key, show=lambda text: None)
    tick = count.take()
    ms, fleet_id, started, per_machine = runfile.run_settings(s, path)
    run = steps.Run(aws, ms, fleet_id, started, per_machine, lambda text: None)
    run.poll(run.queue_url(), False)
    base = count.take()
    print("a watching tick: %d calls; the laptop monitor's poll (baseline): %d calls; "
          "ratio %.2f" % (sum(tick.values()), sum(base.values()),
                          sum(tick.values()) / float(sum(base.values()))))
    print("  tick:     " + ", ".join("%s %d" % kv for kv in sorted(tick.items())))
    print("  baseline: " + ", ".join("%s %d" % kv for kv in sorted(base.items())))
    per_day = 24 * 60 // install.RATE_MINUTES
    print("invocations per day at %s: %d; calls per day while watching: %d"
          % (install.schedule(), per_day, per_day * sum(tick.values())))
    print_cost_per_day(tick, per_day, install.MEMORY_MB)

    sqs = aws.client("sqs")
    url = run.queue_url()
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            break
        for m in msgs:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    count.take()
    ticks = 0
    while True:
        ticks += 1
        if automonitor.tick(aws, s.AWS_BUCKET, key, show=lambda text: None):
            break
    end = count.take()
    print("from an empty queue to nothing left: %d tick%s, %d calls"
          % (ticks, "" if ticks == 1 else "s", sum(end.values())))
    server.stop()


if __name__ == "__main__":
    main()

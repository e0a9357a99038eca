"""Installing the automatic monitor: package, role, function, schedule (startCluster).

One function per run (APP_NAME + 'AutoMonitor'). Its role, APP_NAMEAutoMonitorRole,
belongs to the app: `prepare` makes it (or startCluster, the first time), runs of
the app share it, and its policy names only the app's queues, bucket, cluster,
alarms, logs, schedule and function (resources/policies.py). The last tick removes
the function, its schedule and the run's state (monitor/auto/function.py), but not
the role: a role cannot delete itself. Every call here is idempotent:
startCluster run again updates what exists.
"""
import ast
import functools
import io
import json
import os
import zipfile

import botocore.exceptions

from ds import REPO as ROOT
from ds.core import runfile, wait
from ds.core.aws import error_code, explain
from ds.core.errors import UserError
from ds.core.settings import KNOBS
from ds.monitor.auto import state
from ds.resources import automonitor, policies, roles

RUNTIME = "python3.12"
HANDLER = "ds.monitor.auto.tick.handler"
# The schedule: one tick a minute, EventBridge's shortest rate. An idle machine
# ends at the next tick; 5-minute ticks paid ~1% more machine-hours on the
# 10,000-job simulation and ~9% more on a fleet of 1,000 (documentation/costs.md),
# while ticking each minute costs about 4 cents a day (benchmarks/bench_automonitor.py).
RATE_MINUTES = 1
TIMEOUT = 300             # seconds one tick may run (tick.TICK_BUDGET is less)
MEMORY_MB = 256
ENTRY = "ds/monitor/auto/tick.py"
NEEDS = ("No machine was requested. Ask for the AUTO_MONITOR permissions of "
         "documentation/step_0_prep.md (section 4), or set AUTO_MONITOR = False in config.py "
         "and run monitor yourself.")


def module_file(name):
    """The repository file of module `name` (ds.x.y, or one of worker/'s), or None."""
    parts = name.split(".")
    if parts[0] != "ds":
        path = "worker/%s.py" % name
        return path if len(parts) == 1 and os.path.isfile(os.path.join(ROOT, path)) else None
    for path in ("/".join(parts) + ".py", "/".join(parts) + "/__init__.py"):
        if os.path.isfile(os.path.join(ROOT, path)):
            return path
    return None


def imports_of(path):
    """The modules of this repository that the file at `path` imports, anywhere in it."""
    with open(os.path.join(ROOT, path)) as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update("%s.%s" % (node.module, a.name) for a in node.names)  # submodules
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    found = set()
    for name in names:
        parts = name.split(".")
        for n in range(1, len(parts) + 1):  # a package's __init__ runs before its modules
            found.add(module_file(".".join(parts[:n])))
    found.discard(None)
    found.discard(path)
    return found


def sources():
    """The repository files the handler needs: its module and everything it imports
    from this repository, followed all the way. Read from the repository, never
    copied by hand."""
    todo, found = [ENTRY], set()
    while todo:
        path = todo.pop()
        if path not in found:
            found.add(path)
            todo.extend(imports_of(path))
    return sorted(found)


@functools.lru_cache(maxsize=1)
def package():
    """The deployment package: a zip built in memory from sources(), once per process
    (install() sends it, start() prints its size)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sources():
            info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(os.path.join(ROOT, path), "rb") as f:
                z.writestr(info, f.read())
    return buf.getvalue()


def ensure_role(aws, settings, account):
    """The function's role: prepare's if it made one, else made here. Kept after
    the run (a role cannot delete itself); `prepare --remove` deletes it."""
    name = automonitor.role_name(settings.APP_NAME)
    with explain("set up IAM role %s for the automatic monitor" % name, NEEDS):
        return roles.ensure_role(
            aws.client("iam"), settings, name, policies.MONITOR_SERVICE,
            inline={"tick": policies.monitor_function(settings, account)},
            say=lambda line: line.startswith("Found") or print(line), hint=NEEDS)


def ensure_function(lam, settings, role_arn, code):
    name = automonitor.function_name(settings.APP_NAME)

    def create():
        try:
            return lam.create_function(
                FunctionName=name, Runtime=RUNTIME, Role=role_arn, Handler=HANDLER,
                Code={"ZipFile": code}, Timeout=TIMEOUT, MemorySize=MEMORY_MB,
                Description="Distributed-Something automatic monitor of %s" % settings.APP_NAME,
                Tags={"APP_NAME": settings.APP_NAME})["FunctionArn"]
        except lam.exceptions.ResourceConflictException:
            arn = lam.update_function_code(FunctionName=name, ZipFile=code)["FunctionArn"]
            wait.until(lambda: _updated(lam, name), "function %s to update" % name, timeout=120)
            lam.update_function_configuration(FunctionName=name, Runtime=RUNTIME,
                                              Role=role_arn, Handler=HANDLER, Timeout=TIMEOUT,
                                              MemorySize=MEMORY_MB)
            return arn
        except botocore.exceptions.ClientError as e:
            # A new role takes a few seconds to reach Lambda: ask again.
            if error_code(e) == "InvalidParameterValueException" and "role" in str(e).lower():
                return None
            raise

    with explain("create Lambda function %s" % name, NEEDS):
        return wait.until(create, "IAM role %s to reach Lambda" % automonitor.role_name(settings.APP_NAME),
                          timeout=120)


def _updated(lam, name):
    config = lam.get_function_configuration(FunctionName=name)
    return config.get("LastUpdateStatus", "Successful") != "InProgress"


def schedule():
    """The rule's rate expression: EventBridge wants "1 minute", never "1 minutes"."""
    return "rate(%d minute%s)" % (RATE_MINUTES, "" if RATE_MINUTES == 1 else "s")


def every():
    return "every minute" if RATE_MINUTES == 1 else "every %d minutes" % RATE_MINUTES


def install(aws, settings):
    """Role, function, schedule, target and permission for this run. A tick that
    comes before start() has written the run's state finds nothing to do."""
    app = settings.APP_NAME
    with explain("look up the AWS account"):
        account = aws.client("sts").get_caller_identity()["Account"]
    role_arn = ensure_role(aws, settings, account)
    lam, events = aws.client("lambda"), aws.client("events")
    fn_arn = ensure_function(lam, settings, role_arn, package())
    rule = automonitor.rule_name(app)
    with explain("create the schedule %s" % rule, NEEDS):
        rule_arn = events.put_rule(Name=rule, ScheduleExpression=schedule(),
                                   State="ENABLED",
                                   Description="Ticks the automatic monitor of %s" % app)[
            "RuleArn"]
        events.put_targets(Rule=rule, Targets=[{"Id": "tick", "Arn": fn_arn, "Input": json.dumps(
            {"bucket": settings.AWS_BUCKET, "key": state.key_for(app)})}])
    with explain("let the schedule %s call function %s" % (rule, automonitor.function_name(app)), NEEDS):
        if rule not in _statement_ids(lam, automonitor.function_name(app)):  # startCluster run again
            lam.add_permission(FunctionName=automonitor.function_name(app), StatementId=rule,
                               Action="lambda:InvokeFunction",
                               Principal="events.amazonaws.com", SourceArn=rule_arn)


def _statement_ids(lam, name):
    try:
        policy_doc = lam.get_policy(FunctionName=name)["Policy"]
    except lam.exceptions.ResourceNotFoundException:
        return set()  # no permission yet
    return {s.get("Sid") for s in json.loads(policy_doc).get("Statement", [])}


def run_state(settings, info):
    """What the bucket's copy of the monitor file holds: the laptop's file plus
    the settings a tick needs, since no config.py travels to the function."""
    knobs = {k: settings[k] for k in KNOBS if k in settings}
    knobs["AWS_PROFILE"] = ""  # the function runs with its own role
    return dict(info, MONITOR_SETTINGS=knobs, MONITOR_TEARDOWN=None)


def refuse_while_a_run_ends(s3, settings):
    """A run of this app whose automatic monitor has not finished keeps its state at
    monitors/APP_NAME.json: a new run would take over its function and state."""
    key = state.key_for(settings.APP_NAME)
    with explain("look for s3://%s/%s" % (settings.AWS_BUCKET, key)):
        found = state.load(s3, settings.AWS_BUCKET, key)
    if found is not None:
        raise UserError("A run of %s is still ending: its automatic monitor's state is in "
                        "s3://%s/%s. Run `python run.py monitor` on its monitor file to end "
                        "it now, then run startCluster again." % (
                            settings.APP_NAME, settings.AWS_BUCKET, key))


def start(aws, settings, monitor_path):
    """startCluster with AUTO_MONITOR, right after the fleet is requested (install()
    came before): the monitor file to the bucket, where the ticks read it; the
    laptop's file learns where that is."""
    info = runfile.read(monitor_path)
    key = state.key_for(settings.APP_NAME)
    state.upload(aws.client("s3"), settings.AWS_BUCKET, key, run_state(settings, info))
    runfile.update(monitor_path, MONITOR_AUTO_KEY=key)
    print("The run monitors itself: schedule %s calls function %s (%s, package %.1f kB) "
          "%s, and it removes everything once the queue is empty."
          % (automonitor.rule_name(settings.APP_NAME), automonitor.function_name(settings.APP_NAME),
             RUNTIME, len(package()) / 1024.0, every()))

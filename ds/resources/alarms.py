"""CloudWatch: the alarms that watch the run's machines (one per machine, made by
the worker's instance monitor, APP_NAME_<instance id>)."""
import re

from ds.core.aws import explain, unless_gone


def names(cloudwatch, app_name):
    """Alarms this run created: APP_NAME_<instance id> (one per machine, set by the worker).

    The prefix alone would also match another run's alarms (run Plate1 would
    take Plate1_Analysis_i-...), so only an instance id may follow it.
    """
    own = re.compile(re.escape(app_name) + r"_i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
    pages = cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=app_name + "_")
    return [a["AlarmName"] for p in pages for a in p["MetricAlarms"]
            if own.match(a["AlarmName"])]


def delete(cloudwatch, names):
    """Delete alarms, 100 names per call (CloudWatch's limit)."""
    for i in range(0, len(names), 100):
        with explain("delete alarms %s..." % names[i]), unless_gone():
            cloudwatch.delete_alarms(AlarmNames=names[i:i + 100])
    return len(names)

"""The removal of the automatic monitor's function and schedule by the run's last
tick (their names: resources/automonitor.py)."""
from ds.core.aws import explain, unless_gone
from ds.resources.automonitor import function_name, rule_name


def remove(aws, app_name):
    """Schedule first, then the function: a stop midway leaves nothing that runs.
    Not the role: the function runs with it, and `prepare --remove` deletes it."""
    events, lam = aws.client("events"), aws.client("lambda")
    rule, fn = rule_name(app_name), function_name(app_name)
    with explain("remove the automatic monitor of %s" % app_name):
        if _removed(lambda: events.remove_targets(Rule=rule, Ids=["tick"])):
            _removed(lambda: events.delete_rule(Name=rule))
            print("Removed the schedule %s." % rule)
        _removed(lambda: lam.remove_permission(FunctionName=fn, StatementId=rule))
        if _removed(lambda: lam.delete_function(FunctionName=fn)):
            print("Removed the automatic monitor's function %s." % fn)


def _removed(call):
    """Make the call; False if what it removes was already gone."""
    with unless_gone():
        call()
        return True
    return False

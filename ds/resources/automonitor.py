"""The automatic monitor's parts as AWS knows them: one Lambda function, its role and
its schedule per app. The names are what the policies name (resources/policies.py),
what startCluster makes (monitor/install.py) and what the last tick removes
(monitor/auto/function.py)."""


def function_name(app_name):
    return app_name + "AutoMonitor"


def role_name(app_name):
    return app_name + "AutoMonitorRole"


def rule_name(app_name):
    return app_name + "AutoMonitorSchedule"

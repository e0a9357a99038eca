"""CloudWatch: the run's dashboard."""
import json

from ds.core.aws import explain, unless_gone


def dashboard_name(app_name):
    return app_name


def _metric_widget(title, metrics, x, y):
    return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6,
            "properties": {"title": title, "metrics": metrics, "period": 60, "stat": "Maximum",
                           "view": "timeSeries", "stacked": False}}


def body(settings, region):
    queue, dlq = settings.SQS_QUEUE_NAME, settings.dead_letter_queue_name
    ecs_dims = ["ClusterName", settings.ECS_CLUSTER, "ServiceName", settings.APP_NAME + "Service"]
    widgets = [
        _metric_widget("Jobs in the queue", [
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue,
             {"label": "visible"}],
            ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", queue,
             {"label": "in flight"}],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dlq,
             {"label": "dead-letter"}]], 0, 0),
        _metric_widget("Jobs finished per minute", [
            ["AWS/SQS", "NumberOfMessagesDeleted", "QueueName", queue, {"stat": "Sum"}]], 12, 0),
        _metric_widget("Worker memory and CPU (%)", [
            ["AWS/ECS", "MemoryUtilization"] + ecs_dims,
            ["AWS/ECS", "CPUUtilization"] + ecs_dims], 0, 6),
        {"type": "log", "x": 12, "y": 6, "width": 12, "height": 6, "properties": {
            "title": "Errors in the worker logs", "region": region,
            "query": "SOURCE '%s' | fields @timestamp, @logStream, @message "
                     "| filter @message like /(?i)error|failed|traceback/ "
                     "| sort @timestamp desc | limit 50" % settings.LOG_GROUP_NAME,
            "view": "table"}},
    ]
    for w in widgets[:3]:
        w["properties"]["region"] = region
    return json.dumps({"widgets": widgets})


def create(cloudwatch, settings):
    with explain("create dashboard %s" % dashboard_name(settings.APP_NAME)):
        cloudwatch.put_dashboard(DashboardName=dashboard_name(settings.APP_NAME),
                                 DashboardBody=body(settings, settings.AWS_REGION))


def exists(cloudwatch, app_name):
    name = dashboard_name(app_name)
    pages = cloudwatch.get_paginator("list_dashboards").paginate(DashboardNamePrefix=name)
    return any(d["DashboardName"] == name for p in pages for d in p["DashboardEntries"])


def delete(cloudwatch, app_name):
    name = dashboard_name(app_name)
    if exists(cloudwatch, app_name):
        with explain("delete dashboard %s" % name), unless_gone():
            cloudwatch.delete_dashboards(DashboardNames=[name])
        return True
    return False

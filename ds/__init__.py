"""The control plane of Distributed-Something: one module per AWS concern.

settings  config.py -> Settings            jobs     job file -> SQS messages
aws       boto3 clients, AWS errors        queue    SQS queues, submission, counts
cluster   ECS cluster, task def, service   fleet    spot fleet request and its events
logs      log groups and export            dashboard CloudWatch dashboard and alarms
monitor   watch a run and tear it down     local    the whole run on this machine
prepare   roles, bucket, network, fleet    check    read-only pre-flight of it all
network   default VPC, routes, groups      policies the IAM and bucket policies as data
automonitor one tick of a run that monitors itself (the Lambda handler)
autodeploy  its package, role, function and schedule
"""

"""The run's AWS resources, one module each: how each is made, found and deleted.

queue, deadletter, records, jobs (SQS and the job messages); cluster (ECS);
fleet, boot (EC2 spot fleet and what its machines run at boot); logs,
dashboard, alarms (CloudWatch); network, policies (what `prepare` makes).
"""

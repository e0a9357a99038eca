"""Per-instance setup, run once by run-worker.sh before the workers start.

1. Ask the instance metadata service (IMDSv2: PUT a token, then GET with it)
   for this EC2 instance's id. The endpoint comes from the standard
   AWS_EC2_METADATA_SERVICE_ENDPOINT (default http://169.254.169.254);
   AWS_EC2_METADATA_DISABLED=true, or no answer within 2 s, means "not on
   EC2": skip the rest with a note.
2. Tag the instance and its EBS volumes Name=APP_NAME-worker, APP_NAME=...,
   so the cost and the leftovers of a run can be found by tag.
3. Create the idle alarm APP_NAME_INSTANCEID: average CPU < 1% for 15
   one-minute periods terminates the instance, so a machine whose jobs
   ran out (or whose Docker hung) stops costing money even if the monitor
   is not running.

Prints the instance id (or nothing) as its last line. Always exits 0: a
failed tag or alarm must not keep the workers from starting. Python 2.7 and
3.8+ (curl may not exist in a slim tool image; Python does).
"""
from __future__ import print_function

import os
import sys

try:
    from urllib.request import Request, urlopen
except ImportError:  # Python 2.7
    from urllib2 import Request, urlopen  # novermin (the 2.7 branch)

TIMEOUT = 2
TOKEN_TTL = "21600"


def note(msg):
    print("instance-setup: %s" % msg)
    sys.stdout.flush()


def _request(url, method, headers):
    req = Request(url, headers=headers)
    req.get_method = lambda: method  # urllib2 has no method= argument
    resp = urlopen(req, timeout=TIMEOUT)  # novermin (urllib2 on 2.7 has it too)
    try:
        return resp.read().decode("utf-8").strip()
    finally:
        resp.close()


def instance_id(env):
    if env.get("AWS_EC2_METADATA_DISABLED", "").strip().lower() == "true":
        note("AWS_EC2_METADATA_DISABLED=true: not tagging, no idle alarm")
        return None
    base = (env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            or "http://169.254.169.254").rstrip("/")
    try:
        token = _request(base + "/latest/api/token", "PUT",
                         {"X-aws-ec2-metadata-token-ttl-seconds": TOKEN_TTL})
        iid = _request(base + "/latest/meta-data/instance-id", "GET",
                       {"X-aws-ec2-metadata-token": token})
    except Exception as e:  # any failure means "not on EC2" here
        note("no instance metadata at %s (%s): not tagging, no idle alarm"
             % (base, e))
        return None
    if not iid.startswith("i-"):
        note("metadata answered %r, not an instance id: skipping" % iid[:80])
        return None
    return iid


def tag_and_alarm(iid, env):
    import boto3
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import awscompat
    app = env.get("APP_NAME", "DS")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    session = boto3.session.Session(region_name=region)
    ec2 = awscompat.client(session, "ec2")
    tags = [{"Key": "Name", "Value": app + "-worker"},
            {"Key": "APP_NAME", "Value": app}]
    ok = True
    try:
        volumes = []
        pages = ec2.get_paginator("describe_volumes").paginate(
            Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])
        for page in pages:
            volumes.extend(v["VolumeId"] for v in page["Volumes"])
        ec2.create_tags(Resources=[iid] + volumes, Tags=tags)
        note("tagged %s and volume(s) %s" % (iid, ", ".join(volumes) or "-"))
    except Exception as e:
        ok = False
        note("could not tag %s: %s" % (iid, e))
    try:
        name = "%s_%s" % (app, iid)
        awscompat.client(session, "cloudwatch").put_metric_alarm(
            AlarmName=name,
            AlarmDescription="Terminate %s worker %s after 15 idle minutes"
                             % (app, iid),
            ActionsEnabled=True,
            AlarmActions=["arn:aws:automate:%s:ec2:terminate" % region],
            MetricName="CPUUtilization", Namespace="AWS/EC2",
            Statistic="Average", Dimensions=[{"Name": "InstanceId",
                                              "Value": iid}],
            Period=60, EvaluationPeriods=15, Threshold=1.0,
            ComparisonOperator="LessThanThreshold")
        note("created idle alarm %s" % name)
    except Exception as e:
        ok = False
        note("could not create the idle alarm: %s" % e)
    return ok


def main():
    iid = instance_id(os.environ)
    if iid:
        tag_and_alarm(iid, os.environ)
        print(iid)
    return 0


if __name__ == "__main__":
    sys.exit(main())

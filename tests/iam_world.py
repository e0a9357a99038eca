"""An account on the strict emulator (tests/iam_server.py), set up by its admin.

The admin's user, policy and key are made before IAM is enforced; from then on
every call is checked, the admin's too (its policy allows everything). Users and
role sessions for the parts of a run are made by the admin, as an administrator
and AWS's services (ECS, Lambda, EC2) would.
"""
import json
import urllib.request

import boto3

ACCOUNT = "123456789012"   # the emulator's account
ADMIN = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "*", "Resource": "*"}]}


class IamWorld:
    def __init__(self, url, env, decisions):
        self.url, self.base_env, self._decisions = url, env, decisions
        iam = self._session(env).client("iam", endpoint_url=url)
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(ADMIN))
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        self.admin_env = self.env_for(key)
        self._enforce()
        self._admin = self._session(self.admin_env)

    def _enforce(self):
        req = urllib.request.Request(self.url + "/moto-api/reset-auth", data=b"0",
                                     method="POST", headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(req, timeout=10).close()

    @staticmethod
    def _session(env):
        return boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=env.get("AWS_SESSION_TOKEN"), region_name=env["AWS_DEFAULT_REGION"])

    def session(self, key):
        """A boto3 session holding `key` (an access key or a role session)."""
        return self._session(self.env_for(key))

    def client(self, service):
        """A client of the admin's."""
        return self._admin.client(service, endpoint_url=self.url)

    def env_for(self, key):
        """The environment of a process holding these credentials (an access key or a
        role session) and nothing else."""
        env = {k: v for k, v in self.base_env.items() if k != "AWS_SESSION_TOKEN"}
        env.update(AWS_ACCESS_KEY_ID=key["AccessKeyId"],
                   AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
        if key.get("SessionToken"):
            env["AWS_SESSION_TOKEN"] = key["SessionToken"]
        return env

    def user(self, name, documents):
        """An IAM user holding exactly `documents` (one inline policy each); its key."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        for n, document in enumerate(documents):
            iam.put_user_policy(UserName=name, PolicyName="policy%d" % n,
                                PolicyDocument=json.dumps(document))
        return iam.create_access_key(UserName=name)["AccessKey"]

    def assume(self, role_name):
        """A session of the role, as the service that runs with it gets one."""
        arn = "arn:aws:iam::%s:role/%s" % (ACCOUNT, role_name)
        return self.client("sts").assume_role(RoleArn=arn, RoleSessionName="test")[
            "Credentials"]

    def decisions(self):
        """Every call checked so far: who, action, resource, allowed."""
        with open(self._decisions) as f:
            # a line the emulator is still writing has no end yet
            return [json.loads(line) for line in f if line.endswith("\n")]

"""Agents authenticate as their host's IAM identity, not the root key: an IAM user with
AmazonEC2ContainerServiceforEC2Role (ECS's instance role policy), given to `gantry agent` through
the standard AWS variables, registers, pulls from Gantry's registry and runs tasks; a user
without it is unknown to the agents' channels."""

import json
import os
import subprocess
import urllib.error
import urllib.request

from conftest import gantry_binary
from images import docker
from test_agent_tasks import containers_of, image, wait_until  # noqa: F401 (fixture)

INSTANCE_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"


def _user_key(iam, name, policy=None):
    iam.create_user(UserName=name)
    if policy:
        iam.attach_user_policy(UserName=name, PolicyArn=policy)
    k = iam.create_access_key(UserName=name)["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]


def _signed_post(gantry, path, body, key, secret):
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    data = json.dumps(body).encode()
    req = botocore.awsrequest.AWSRequest(method="POST", url=gantry.endpoint + path, data=data,
                                         headers={"Content-Type": "application/json"})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(key, secret), "ecs", "us-east-1").add_auth(req)
    prepared = req.prepare()
    r = urllib.request.Request(prepared.url, data=data, headers=dict(prepared.headers), method="POST")
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_an_agent_runs_tasks_as_an_iam_user_with_the_instance_policy(gantry, image, tmp_path):
    iam, ecs = gantry.client("iam"), gantry.client("ecs")
    key, secret = _user_key(iam, "host-1", INSTANCE_POLICY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GANTRY_ROOT_"))}
    env.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, AWS_SHARED_CREDENTIALS_FILE="/dev/null",
               GANTRY_LOG="info")
    data_dir = tmp_path / "agent"
    log = open(f"{data_dir}.log", "ab")
    proc = subprocess.Popen([gantry_binary(), "agent", "--endpoint", gantry.endpoint, "--cluster", "hosts",
                             "--data-dir", str(data_dir)], env=env, stdout=log, stderr=log)
    arn = None
    try:
        # The agent creates its cluster, registers and connects as the user.
        wait_until(lambda: "hosts" in json.dumps(ecs.list_clusters()) and
                   ecs.list_container_instances(cluster="hosts")["containerInstanceArns"], what="agent")
        (ci,) = ecs.describe_container_instances(
            cluster="hosts", containerInstances=ecs.list_container_instances(cluster="hosts")["containerInstanceArns"]
        )["containerInstances"]
        wait_until(lambda: ecs.describe_container_instances(cluster="hosts", containerInstances=[
            ci["containerInstanceArn"]])["containerInstances"][0]["agentConnected"], what="agent connected")
        # Pulls from Gantry's registry with the user's token, runs, reports.
        ecs.register_task_definition(family="hosted", containerDefinitions=[
            {"name": "app", "image": image, "memory": 32, "command": ["sleep", "300"]}])
        arn = ecs.run_task(cluster="hosts", taskDefinition="hosted")["tasks"][0]["taskArn"]
        ecs.get_waiter("tasks_running").wait(cluster="hosts", tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 90})
        assert containers_of(arn)
        # Last used: the key served the agent's calls.
        used = iam.get_access_key_last_used(AccessKeyId=key)["AccessKeyLastUsed"]
        assert used["ServiceName"] in ("ecs", "ecr", "logs")

        # A user without the instance policy: the agents' channels do not know its key.
        k2, s2 = _user_key(iam, "nobody")
        ask = {"cluster": "hosts", "containerInstance": ci["containerInstanceArn"], "task": arn}
        status, answer = _signed_post(gantry, "/agent/v1/task-credentials", ask, k2, s2)
        assert status in (400, 403) and answer["__type"] in ("UnrecognizedClientException",
                                                            "InvalidSignatureException"), answer
        # The instance's user is let in (and told the task has no role).
        status, answer = _signed_post(gantry, "/agent/v1/task-credentials", ask, key, secret)
        assert status == 200 and answer["failure"]["reason"] == "the task has no task role", answer
        ecs.stop_task(cluster="hosts", task=arn)
        ecs.get_waiter("tasks_stopped").wait(cluster="hosts", tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        if arn:
            for c in containers_of(arn):
                docker("rm", "-f", c, check=False)

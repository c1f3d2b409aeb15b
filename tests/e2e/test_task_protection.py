"""Task scale-in protection on real Docker: a task protected with UpdateTaskProtection survives a
scale-in (its unprotected siblings go) and a deployment to a new task definition until its
protection expires; a container protects itself through `$ECS_AGENT_URI/task-protection/v1/state`
(PUT with busybox nc, GET with busybox wget), the agent calling the control plane as the task's
role."""

import json
import time
import uuid

import botocore.exceptions
import pytest

from conftest import Gantry, require_docker
from images import build_busybox_image, docker
from test_agent_tasks import Agent, containers_of, wait_until

TRUST_ECS_TASKS = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]})

CLUSTER = "protect"

# Runs in the task: protect itself for a minute (PUT, by hand over nc), then read it back (GET).
SELF_PROTECT = r"""
u=${ECS_AGENT_URI#http://}; hp=${u%%/*}; p=/${u#*/}
body='{"ProtectionEnabled":true,"ExpiresInMinutes":1}'
printf 'PUT %s/task-protection/v1/state HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
  "$p" "$hp" ${#body} "$body" | nc ${hp%:*} ${hp##*:} | tail -n 1 | sed 's/^/PUT /'
echo
wget -qO- $ECS_AGENT_URI/task-protection/v1/state | sed 's/^/GET /'
echo
exec sleep 3600
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """One server, one agent, a local busybox image."""
    require_docker()
    tmp = tmp_path_factory.mktemp("protect")
    g = Gantry(tmp / "data").start()
    busybox = build_busybox_image(tmp, f"gantry-e2e/protect-{uuid.uuid4().hex[:8]}:v1")
    ecs = g.client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    agent = Agent(g, CLUSTER, tmp / "agent").start()
    try:
        wait_until(lambda: ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"], what="agent")
        yield {"gantry": g, "ecs": ecs, "busybox": busybox, "tmp": tmp}
    finally:
        for s in ecs.list_services(cluster=CLUSTER)["serviceArns"]:
            ecs.delete_service(cluster=CLUSTER, service=s, force=True)
        agent.stop()
        for c in docker("ps", "-aq", "--filter", f"label=com.amazonaws.ecs.cluster={CLUSTER}", check=False).stdout.split():
            docker("rm", "-f", c, check=False)
        g.stop()
        docker("rmi", busybox, check=False)


def sleeper(family, image, env="1", role=None, command="exec sleep 3600"):
    td = {"family": family, "containerDefinitions": [{
        "name": "main", "image": image, "memory": 16, "essential": True, "stopTimeout": 2,
        "command": ["/bin/sh", "-c", command], "environment": [{"name": "V", "value": env}]}]}
    if role:
        td["taskRoleArn"] = role
    return td


def running(ecs, service):
    arns = ecs.list_tasks(cluster=CLUSTER, serviceName=service, desiredStatus="RUNNING")["taskArns"]
    if not arns:
        return {}
    return {t["taskArn"]: t for t in ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]
            if t["lastStatus"] == "RUNNING"}


def test_protected_task_outlives_scale_in_and_deployment_until_expiry(setup):
    ecs, image = setup["ecs"], setup["busybox"]
    ecs.register_task_definition(**sleeper("worker", image, env="1"))
    ecs.create_service(cluster=CLUSTER, serviceName="worker", taskDefinition="worker:1", desiredCount=3)
    tasks = wait_until(lambda: len(running(ecs, "worker")) == 3 and running(ecs, "worker"),
                       timeout=90, what="3 running tasks")
    kept = sorted(tasks)[0]

    # Standalone and unknown tasks are failures, not errors.
    out = ecs.update_task_protection(cluster=CLUSTER, tasks=[kept, "0" * 32], protectionEnabled=True,
                                     expiresInMinutes=1)
    protected_at = time.time()
    assert [p["taskArn"] for p in out["protectedTasks"]] == [kept]
    assert out["protectedTasks"][0]["protectionEnabled"] is True
    expires = out["protectedTasks"][0]["expirationDate"].timestamp()
    assert protected_at + 50 < expires < protected_at + 70
    assert [f["reason"] for f in out["failures"]] == ["MISSING"]
    got = ecs.get_task_protection(cluster=CLUSTER, tasks=list(tasks))["protectedTasks"]
    assert {p["taskArn"]: p["protectionEnabled"] for p in got} == {a: a == kept for a in tasks}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.update_task_protection(cluster=CLUSTER, tasks=[kept], protectionEnabled=True, expiresInMinutes=2881)
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"

    # Scale-in: the two unprotected tasks go, the protected one stays.
    ecs.update_service(cluster=CLUSTER, service="worker", desiredCount=1)
    wait_until(lambda: list(running(ecs, "worker")) == [kept], timeout=60, what="scale-in to the protected task")

    # Deployment: the new revision's task starts; the protected old one is kept while protected.
    ecs.register_task_definition(**sleeper("worker", image, env="2"))
    ecs.update_service(cluster=CLUSTER, service="worker", taskDefinition="worker:2")

    def new_one_running():
        r = running(ecs, "worker")
        new = [a for a, t in r.items() if t["taskDefinitionArn"].endswith(":2")]
        return new if kept in r and new else None
    wait_until(new_one_running, timeout=60, what="the new revision running beside the protected task")
    assert time.time() < expires, "the check above must happen while the task is still protected"
    assert kept in running(ecs, "worker")

    # Expiry: protection lapses and the deployment replaces the old task.
    wait_until(lambda: kept not in running(ecs, "worker"), timeout=max(10, expires - time.time()) + 45,
               what="the old task stopped once its protection expired")
    assert time.time() >= expires - 1, "stopped before its protection expired"
    stopped = ecs.describe_tasks(cluster=CLUSTER, tasks=[kept])["tasks"][0]
    assert stopped["desiredStatus"] == "STOPPED"
    got = ecs.get_task_protection(cluster=CLUSTER, tasks=[kept])["protectedTasks"][0]
    assert got["protectionEnabled"] is False and "expirationDate" not in got
    ecs.get_waiter("services_stable").wait(cluster=CLUSTER, services=["worker"],
                                           WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    ecs.delete_service(cluster=CLUSTER, service="worker", force=True)


def test_container_protects_itself_through_the_agent_endpoint(setup):
    g, ecs, image = setup["gantry"], setup["ecs"], setup["busybox"]
    iam = g.client("iam")
    role = iam.create_role(RoleName="self-protect", AssumeRolePolicyDocument=TRUST_ECS_TASKS)["Role"]["Arn"]
    iam.put_role_policy(RoleName="self-protect", PolicyName="protection", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*",
                                                "Action": ["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"]}]}))
    ecs.register_task_definition(**sleeper("selfprot", image, role=role, command=SELF_PROTECT))
    ecs.create_service(cluster=CLUSTER, serviceName="selfprot", taskDefinition="selfprot", desiredCount=1)
    (arn,) = wait_until(lambda: list(running(ecs, "selfprot")), timeout=90, what="the task running")

    def answers():
        out = {}
        for c in containers_of(arn):
            for line in docker("logs", c, check=False).stdout.splitlines():
                if line.startswith(("PUT ", "GET ")):
                    out[line[:3]] = json.loads(line[4:])
        return out if len(out) == 2 else None
    try:
        out = wait_until(answers, timeout=60, what="the container's PUT and GET answers")
    except AssertionError:
        for c in containers_of(arn):
            print(docker("logs", c, check=False).stdout, docker("logs", c, check=False).stderr)
        raise
    assert out["PUT"]["protection"]["ProtectionEnabled"] is True, out
    assert out["PUT"]["protection"]["TaskArn"] == arn
    assert out["GET"]["protection"]["ProtectionEnabled"] is True, out
    assert "ExpirationDate" in out["GET"]["protection"]
    got = ecs.get_task_protection(cluster=CLUSTER, tasks=[arn])["protectedTasks"][0]
    assert got["protectionEnabled"] is True

    # Protected, so scaling to zero leaves it running (the scheduler waits for expiry).
    ecs.update_service(cluster=CLUSTER, service="selfprot", desiredCount=0)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert arn in running(ecs, "selfprot")
        time.sleep(0.5)
    ecs.delete_service(cluster=CLUSTER, service="selfprot", force=True)

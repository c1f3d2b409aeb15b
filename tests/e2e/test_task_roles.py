"""Task roles on the real Docker Engine: boto3 inside a task's container finds its role's session
credentials through `AWS_CONTAINER_CREDENTIALS_*` with no configuration, is the assumed role
(`assumed-role/<role>/<task id>`), may do what the role allows and nothing else; another task
on the same host presenting the first task's credentials id gets nothing, nor does the host; the
credentials appear in no Describe output, log or data-dir file."""

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import Gantry, require_docker
from images import build_busybox_image, build_python_boto3_image, docker
from test_agent_tasks import Agent, containers_of, image, wait_until  # noqa: F401 (fixture)

TRUST_ECS_TASKS = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]})

# Runs inside the task: what boto3 sees with the container's environment alone.
PROBE = r"""
import json, os, sys, time
import boto3, botocore.exceptions
endpoint = os.environ["GANTRY_ENDPOINT"]
out = {}
creds = boto3.Session().get_credentials()
frozen = creds.get_frozen_credentials()
out["method"] = creds.method
out["access_key"] = frozen.access_key
out["secret_key"] = frozen.secret_key
out["arn"] = boto3.client("sts", endpoint_url=endpoint).get_caller_identity()["Arn"]
ecs = boto3.client("ecs", endpoint_url=endpoint)
out["clusters"] = ecs.list_clusters()["clusterArns"]
try:
    ecs.create_cluster(clusterName="not-allowed")
    out["denied"] = None
except botocore.exceptions.ClientError as e:
    out["denied"] = [e.response["Error"]["Code"], e.response["Error"]["Message"]]
print("RESULT " + json.dumps(out), flush=True)
time.sleep(600)
"""


def _bridge_gateway() -> str:
    """The default bridge's gateway address (Docker leaves it out when it is the subnet's first)."""
    import ipaddress
    cfg = json.loads(docker("network", "inspect", "bridge", "-f", "{{json .IPAM.Config}}").stdout)[0]
    return cfg.get("Gateway") or str(next(ipaddress.ip_network(cfg["Subnet"]).hosts()))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """One server reachable from bridge containers (on the Docker bridge's gateway), one agent,
    the Python image and a busybox image."""
    require_docker()
    tmp = tmp_path_factory.mktemp("roles")
    g = Gantry(tmp / "data")
    g.start(listen=f"{_bridge_gateway()}:0", extra_args=[])
    suffix = uuid.uuid4().hex[:8]
    python = build_python_boto3_image(tmp, f"gantry-e2e/roles-python-{suffix}:v1")
    busybox = build_busybox_image(tmp, f"gantry-e2e/roles-busybox-{suffix}:v1")
    g.client("ecs").create_cluster(clusterName="roles")
    agent = Agent(g, "roles", tmp / "agent").start()
    try:
        ecs = g.client("ecs")
        wait_until(lambda: ecs.list_container_instances(cluster="roles")["containerInstanceArns"], what="agent")
        yield {"gantry": g, "agent": agent, "python": python, "busybox": busybox, "tmp": tmp}
    finally:
        agent.stop()
        for c in docker("ps", "-aq", "--filter", "label=com.amazonaws.ecs.cluster=roles", check=False).stdout.split():
            docker("rm", "-f", c, check=False)
        g.stop()
        docker("rmi", python, busybox, check=False)


def _result(arn):
    def found():
        for c in containers_of(arn):
            for line in docker("logs", c, check=False).stdout.splitlines():
                if line.startswith("RESULT "):
                    return json.loads(line[len("RESULT "):])
        return None
    return wait_until(found, timeout=90, what="the probe's result")


def _env(arn) -> dict:
    (c,) = containers_of(arn)
    env = json.loads(docker("inspect", "-f", "{{json .Config.Env}}", c).stdout)
    return dict(e.split("=", 1) for e in env)


def test_a_task_role_reaches_boto3_in_the_container_and_only_its_task(setup):
    g, python, busybox = setup["gantry"], setup["python"], setup["busybox"]
    iam, ecs = g.client("iam"), g.client("ecs")
    role = iam.create_role(RoleName="appRole", AssumeRolePolicyDocument=TRUST_ECS_TASKS)["Role"]["Arn"]
    iam.put_role_policy(RoleName="appRole", PolicyName="list", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecs:ListClusters", "Resource": "*"}]}))
    ecs.register_task_definition(family="probe", taskRoleArn=role, containerDefinitions=[{
        "name": "app", "image": python, "memory": 64, "command": ["-c", PROBE],
        "environment": [{"name": "GANTRY_ENDPOINT", "value": g.endpoint}]}])
    arn = ecs.run_task(cluster="roles", taskDefinition="probe")["tasks"][0]["taskArn"]
    task_id = arn.rsplit("/", 1)[1]
    r = _result(arn)

    # boto3 found the container provider by itself and is the assumed role, session = task id.
    assert r["method"] == "container-role", r
    assert r["access_key"].startswith("ASIA")
    assert r["arn"] == f"arn:aws:sts::000000000000:assumed-role/appRole/{task_id}"
    # Allowed: what the role's policy grants; denied: anything else, in AWS's words.
    assert "arn:aws:ecs:us-east-1:000000000000:cluster/roles" in r["clusters"]
    assert r["denied"][0] == "AccessDeniedException", r
    assert r["denied"][1].startswith(
        f"User: arn:aws:sts::000000000000:assumed-role/appRole/{task_id} is not authorized to perform: "
        "ecs:CreateCluster"), r["denied"]
    assert "not-allowed" not in json.dumps(ecs.list_clusters())

    # Where the credentials are served: the relative URI on port 80, or the full URI on the
    # same address when another agent of this host holds port 80.
    env = _env(arn)
    url = (f"http://169.254.170.2{env['AWS_CONTAINER_CREDENTIALS_RELATIVE_URI']}"
           if "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" in env else env["AWS_CONTAINER_CREDENTIALS_FULL_URI"])
    assert url.startswith("http://169.254.170.2") and "/v2/credentials/" in url
    cred_id = url.rsplit("/", 1)[1]

    # The host presenting the id: refused.
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=5)
    assert e.value.code == 400
    assert json.loads(e.value.read())["code"] == "InvalidIdInRequest"

    # A second task on the same host presenting the first task's id (v2 and v1 forms): nothing.
    v1 = url.replace(f"/v2/credentials/{cred_id}", f"/v1/credentials?id={cred_id}")
    ecs.register_task_definition(family="thief", containerDefinitions=[{
        "name": "thief", "image": busybox, "memory": 32,
        "command": ["/bin/sh", "-c", f"for u in '{url}' '{v1}'; do wget -S -O- \"$u\" 2>&1; echo END; done; "
                    "echo RESULT done; sleep 600"]}])
    thief = ecs.run_task(cluster="roles", taskDefinition="thief")["tasks"][0]["taskArn"]

    def output():
        for c in containers_of(thief):
            out = docker("logs", c, check=False)
            text = out.stdout + out.stderr
            if "RESULT done" in text:
                return text
        return None
    text = wait_until(output, timeout=60, what="the second task's attempt")
    assert text.count("END") == 2 and text.count("HTTP/1.1 400 Bad Request") >= 2, text
    assert "200 OK" not in text and "AccessKeyId" not in text, text
    assert r["access_key"] not in text and r["secret_key"] not in text

    # Nowhere else: Describe output, the containers' configuration, logs, data dirs.
    described = g.aws("ecs", "describe-tasks", "--cluster", "roles", "--tasks", arn, thief).stdout
    inspected = docker("inspect", *containers_of(arn)).stdout
    for text in (described, inspected):
        assert r["secret_key"] not in text and r["access_key"] not in text
    for log in (Path(g.log.name), Path(f"{setup['agent'].data_dir}.log")):
        data = log.read_bytes()
        assert r["secret_key"].encode() not in data and r["access_key"].encode() not in data
    for root in (g.data_dir, setup["agent"].data_dir):
        for p in Path(root).rglob("*"):
            if p.is_file():
                assert r["secret_key"].encode() not in p.read_bytes(), p

    ecs.stop_task(cluster="roles", task=arn)
    ecs.stop_task(cluster="roles", task=thief)
    ecs.get_waiter("tasks_stopped").wait(cluster="roles", tasks=[arn, thief],
                                         WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def test_a_role_ecs_tasks_may_not_assume_fails_the_task(setup):
    g, python = setup["gantry"], setup["python"]
    iam, ecs = g.client("iam"), g.client("ecs")
    iam.create_role(RoleName="ec2Only", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))
    role = "arn:aws:iam::000000000000:role/ec2Only"
    ecs.register_task_definition(family="untrusted", taskRoleArn=role, containerDefinitions=[{
        "name": "app", "image": python, "memory": 64, "command": ["-c", "print('never')"]}])
    arn = ecs.run_task(cluster="roles", taskDefinition="untrusted")["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_stopped").wait(cluster="roles", tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    t = ecs.describe_tasks(cluster="roles", tasks=[arn])["tasks"][0]
    assert t["stopCode"] == "TaskFailedToStart"
    assert t["stoppedReason"].startswith(
        f"ResourceInitializationError: ECS was unable to assume the role '{role}'"), t["stoppedReason"]
    assert t["containers"][0]["reason"] == t["stoppedReason"]
    assert not containers_of(arn)


def test_an_awsvpc_task_gets_its_role_through_its_own_address(setup, tmp_path, vpc_block):
    """The pause container's address (the task's own) is the one answered."""
    from conftest import remove_subnet_networks, require_network_powers
    from test_awsvpc import default_subnet, uninstall
    require_network_powers()
    g = Gantry(tmp_path / "data").start(listen=f"{_bridge_gateway()}:0",
                                        extra_args=["--default-vpc-cidr", vpc_block])
    agent = None
    try:
        iam, ecs = g.client("iam"), g.client("ecs")
        role = iam.create_role(RoleName="vpcRole", AssumeRolePolicyDocument=TRUST_ECS_TASKS)["Role"]["Arn"]
        iam.put_role_policy(RoleName="vpcRole", PolicyName="list", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecs:ListClusters",
                                                    "Resource": "*"}]}))
        ecs.create_cluster(clusterName="vpcroles")
        agent = Agent(g, "vpcroles", tmp_path / "agent").start()

        def offering():
            arns = ecs.list_container_instances(cluster="vpcroles")["containerInstanceArns"]
            return arns and any(a["name"] == "ecs.capability.task-eni" for a in ecs.describe_container_instances(
                cluster="vpcroles", containerInstances=arns)["containerInstances"][0]["attributes"])
        wait_until(offering, what="agent offering awsvpc")
        ecs.register_task_definition(family="vpcprobe", taskRoleArn=role, networkMode="awsvpc", containerDefinitions=[{
            "name": "app", "image": setup["python"], "memory": 64, "command": ["-c", PROBE],
            "environment": [{"name": "GANTRY_ENDPOINT", "value": g.endpoint}]}])
        arn = ecs.run_task(cluster="vpcroles", taskDefinition="vpcprobe", networkConfiguration={
            "awsvpcConfiguration": {"subnets": [default_subnet(g)["SubnetId"]]}})["tasks"][0]["taskArn"]
        r = _result(arn)
        task_id = arn.rsplit("/", 1)[1]
        assert r["method"] == "container-role", r
        assert r["arn"] == f"arn:aws:sts::000000000000:assumed-role/vpcRole/{task_id}"
        assert r["denied"][0] == "AccessDeniedException", r
        ecs.stop_task(cluster="vpcroles", task=arn)
        ecs.get_waiter("tasks_stopped").wait(cluster="vpcroles", tasks=[arn],
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    finally:
        if agent:
            agent.stop()
            uninstall(g, agent)
        g.stop()
        remove_subnet_networks(vpc_block)


def test_images_of_this_registry_are_pulled_as_the_execution_role(gantry, image, tmp_path):
    """The execution role's permissions decide the pull, cached image or not: a role with
    AmazonECSTaskExecutionRolePolicy pulls; one without ecr:BatchGetImage fails with
    CannotPullContainerError; one without ecr:GetAuthorizationToken with ECS's
    CannotPullECRContainerError."""
    g = gantry
    iam, ecs = g.client("iam"), g.client("ecs")

    def role(name, statements=None, managed=None):
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST_ECS_TASKS)["Role"]["Arn"]
        if managed:
            iam.attach_role_policy(RoleName=name, PolicyArn=f"arn:aws:iam::aws:policy/service-role/{managed}")
        if statements:
            iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": statements}))
        return arn

    puller = role("puller", managed="AmazonECSTaskExecutionRolePolicy")
    token_only = role("tokenOnly", [{"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}])
    nothing = role("nothing", [{"Effect": "Allow", "Action": "ecs:ListClusters", "Resource": "*"}])
    ecs.create_cluster(clusterName="pulls")
    agent = Agent(g, "pulls", tmp_path / "agent").start()
    arns = []

    def run(family, exec_role):
        ecs.register_task_definition(family=family, executionRoleArn=exec_role, containerDefinitions=[
            {"name": "app", "image": image, "memory": 32, "command": ["sleep", "300"]}])
        arn = ecs.run_task(cluster="pulls", taskDefinition=family)["tasks"][0]["taskArn"]
        arns.append(arn)
        return arn

    def stopped(arn):
        ecs.get_waiter("tasks_stopped").wait(cluster="pulls", tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 90})
        return ecs.describe_tasks(cluster="pulls", tasks=[arn])["tasks"][0]

    try:
        wait_until(lambda: ecs.list_container_instances(cluster="pulls")["containerInstanceArns"], what="agent")
        ok = run("pull-ok", puller)
        ecs.get_waiter("tasks_running").wait(cluster="pulls", tasks=[ok], WaiterConfig={"Delay": 1, "MaxAttempts": 90})

        # The image is now cached on the host: the role is still asked.
        t = stopped(run("pull-denied", token_only))
        task_id = t["taskArn"].rsplit("/", 1)[1]
        assert t["stopCode"] == "TaskFailedToStart"
        assert t["stoppedReason"].startswith(
            f"CannotPullContainerError: pull image manifest has been retried 1 time(s): failed to resolve ref {image}: "
            "denied: "), t["stoppedReason"]
        assert (f"arn:aws:sts::000000000000:assumed-role/tokenOnly/{task_id} is not authorized to perform: "
                "ecr:BatchGetImage") in t["stoppedReason"], t["stoppedReason"]
        assert t["containers"][0]["reason"] == t["stoppedReason"]

        t = stopped(run("no-token", nothing))
        task_id = t["taskArn"].rsplit("/", 1)[1]
        assert t["stoppedReason"].startswith(
            "CannotPullECRContainerError: AccessDeniedException: User: "
            f"arn:aws:sts::000000000000:assumed-role/nothing/{task_id} is not authorized to perform: "
            "ecr:GetAuthorizationToken"), t["stoppedReason"]
    finally:
        for a in arns:
            ecs.stop_task(cluster="pulls", task=a)
        agent.stop()
        for a in arns:
            for c in containers_of(a):
                docker("rm", "-f", c, check=False)


def test_a_host_without_task_roles_refuses_them_clearly(setup, tmp_path):
    """ECS_ENABLE_TASK_IAM_ROLE=false: the host does not offer the capability, so a task
    definition with a role is not placed there; a role given as a RunTask override stops the
    task before anything runs, saying why."""
    g, busybox = setup["gantry"], setup["busybox"]
    iam, ecs = g.client("iam"), g.client("ecs")
    role = iam.create_role(RoleName="unservedRole", AssumeRolePolicyDocument=TRUST_ECS_TASKS)["Role"]["Arn"]
    ecs.create_cluster(clusterName="noroles")
    agent = Agent(g, "noroles", tmp_path / "agent", extra=["--disable-task-iam-role"]).start()
    arn = None
    try:
        instances = wait_until(lambda: ecs.list_container_instances(cluster="noroles")["containerInstanceArns"],
                               what="agent")
        (ci,) = ecs.describe_container_instances(cluster="noroles", containerInstances=instances)["containerInstances"]
        names = {a["name"] for a in ci["attributes"]}
        assert "com.amazonaws.ecs.capability.task-iam-role" not in names
        ecs.register_task_definition(family="withrole", taskRoleArn=role, containerDefinitions=[
            {"name": "app", "image": busybox, "memory": 32, "command": ["sleep", "300"]}])
        out = ecs.run_task(cluster="noroles", taskDefinition="withrole")
        assert out["tasks"] == [] and out["failures"], out
        assert "ATTRIBUTE" in out["failures"][0]["reason"], out["failures"]

        ecs.register_task_definition(family="norole", containerDefinitions=[
            {"name": "app", "image": busybox, "memory": 32, "command": ["sleep", "300"]}])
        arn = ecs.run_task(cluster="noroles", taskDefinition="norole",
                           overrides={"taskRoleArn": role})["tasks"][0]["taskArn"]
        ecs.get_waiter("tasks_stopped").wait(cluster="noroles", tasks=[arn],
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        t = ecs.describe_tasks(cluster="noroles", tasks=[arn])["tasks"][0]
        assert t["stopCode"] == "TaskFailedToStart"
        assert t["stoppedReason"] == (
            "ResourceInitializationError: the task role cannot be served on this container instance: cannot serve "
            "the task credentials endpoint on 169.254.170.2: task roles are disabled on this agent "
            "(--disable-task-iam-role)"), t["stoppedReason"]
        assert not containers_of(arn)
    finally:
        agent.stop()
        if arn:
            for c in containers_of(arn):
                docker("rm", "-f", c, check=False)


def test_a_restarted_agent_serves_its_running_tasks_again(setup, tmp_path):
    """The id in the containers' environment is checkpointed (the credentials are not): after
    kill -9 and a restart, a process in the running container still gets the role."""
    g, python = setup["gantry"], setup["python"]
    iam, ecs = g.client("iam"), g.client("ecs")
    role = iam.create_role(RoleName="restartRole", AssumeRolePolicyDocument=TRUST_ECS_TASKS)["Role"]["Arn"]
    iam.put_role_policy(RoleName="restartRole", PolicyName="list", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecs:ListClusters", "Resource": "*"}]}))
    ecs.create_cluster(clusterName="restart")
    agent = Agent(g, "restart", tmp_path / "agent").start()
    arn = None
    try:
        wait_until(lambda: ecs.list_container_instances(cluster="restart")["containerInstanceArns"], what="agent")
        # Room for a second Python with boto3 beside the probe.
        ecs.register_task_definition(family="restart", taskRoleArn=role, containerDefinitions=[{
            "name": "app", "image": python, "memory": 256, "command": ["-c", PROBE],
            "environment": [{"name": "GANTRY_ENDPOINT", "value": g.endpoint}]}])
        arn = ecs.run_task(cluster="restart", taskDefinition="restart")["tasks"][0]["taskArn"]
        task_id = arn.rsplit("/", 1)[1]
        assert _result(arn)["arn"] == f"arn:aws:sts::000000000000:assumed-role/restartRole/{task_id}"
        agent.kill9()
        agent.start()
        (c,) = containers_of(arn)
        ask = ["exec", c, "/usr/bin/python3", "-c",
               f"import boto3; print(boto3.client('sts', endpoint_url='{g.endpoint}').get_caller_identity()['Arn'])"]

        tries = []

        def identity():
            p = docker(*ask, check=False, timeout=30)
            tries.append(p.stderr[-300:])
            return p.stdout.strip() if p.returncode == 0 else None
        assert wait_until(identity, timeout=60, what=f"credentials after the restart {tries[-1:]}") == (
            f"arn:aws:sts::000000000000:assumed-role/restartRole/{task_id}")
        ecs.stop_task(cluster="restart", task=arn)
        ecs.get_waiter("tasks_stopped").wait(cluster="restart", tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    finally:
        agent.stop()
        if arn:
            for c in containers_of(arn):
                docker("rm", "-f", c, check=False)

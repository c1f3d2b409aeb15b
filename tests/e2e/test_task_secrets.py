"""Secrets injected into tasks on the real Docker Engine: `secrets` from Secrets Manager (a JSON
key) and Parameter Store (a SecureString) reach the container's environment and nowhere else
(DescribeTasks, DescribeTaskDefinition, the metadata endpoint, docker labels, the server's and
agent's logs, awslogs, every file of both data dirs); `repositoryCredentials` authenticate pulls
from a second, password-protected registry (Debian's docker-registry with htpasswd on loopback);
a missing secret fails the task with ECS's ResourceInitializationError. Secrets are read as the
task's execution role, an IAM role trusting ecs-tasks.amazonaws.com: a role whose policies (and
the secret's resource policy) do not allow the read fails the task with AccessDeniedException."""

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import botocore.exceptions
import pytest

from conftest import Gantry, free_port, require_docker
from images import build_busybox_image, docker
from test_agent_tasks import Agent, containers_of, image, wait_until  # noqa: F401 (fixture)

EXEC_ROLE = "arn:aws:iam::000000000000:role/ecsTaskExecutionRole"
TRUST_ECS_TASKS = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def create_execution_role(g, name, statements):
    """An execution role as a user makes one: trusted by ECS tasks, with an inline policy, and
    AmazonECSTaskExecutionRolePolicy so that it may pull the tasks' images from Gantry's
    registry."""
    iam = g.client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST_ECS_TASKS)["Role"]["Arn"]
    iam.attach_role_policy(RoleName=name,
                           PolicyArn="arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy")
    if statements:
        iam.put_role_policy(RoleName=name, PolicyName="secrets", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": statements}))
    return arn


def _files_containing(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n!r}" for n in needles if n in data]
    return hits


@pytest.fixture
def gantry(tmp_path):
    """A server that lets task definitions bind-mount this test's directory (the output dir)."""
    g = Gantry(tmp_path / "data").start(extra_args=["--allowed-host-paths", str(tmp_path)])
    # The execution role every task here uses: it may read this account's secrets and parameters.
    assert create_execution_role(g, "ecsTaskExecutionRole", [{
        "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "ssm:GetParameters"],
        "Resource": ["arn:aws:secretsmanager:us-east-1:000000000000:secret:*",
                     "arn:aws:ssm:us-east-1:000000000000:parameter/*"]}]) == EXEC_ROLE
    yield g
    g.stop()


@pytest.fixture
def debug_logs(monkeypatch):
    """The server and agents started after it log at debug level."""
    monkeypatch.setenv("GANTRY_LOG", "debug")


def _cleanup(arns):
    for a in arns:
        for c in containers_of(a):
            docker("rm", "-f", c, check=False)


def _wait_stopped(ecs, cluster, arn):
    ecs.get_waiter("tasks_stopped").wait(cluster=cluster, tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 90})
    return ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]


def test_secrets_reach_the_environment_and_nowhere_else(debug_logs, gantry, image, tmp_path):
    g = gantry
    ecs, logs = g.client("ecs"), g.client("logs")
    db_password = f"dbpw-{uuid.uuid4().hex}"
    api_token = f"tok-{uuid.uuid4().hex}"
    secret_arn = g.aws_json("secretsmanager", "create-secret", "--name", "prod/db",
                            "--secret-string", json.dumps({"username": "app", "password": db_password}))["ARN"]
    g.aws("ssm", "put-parameter", "--name", "/prod/api/token", "--type", "SecureString", "--value", api_token)
    g.aws("ssm", "put-parameter", "--name", "/prod/log/prefix", "--type", "String", "--value", "fromssm")
    out = tmp_path / "out"
    out.mkdir()
    g.aws("ecs", "create-cluster", "--cluster-name", "sec")
    agent_dir = tmp_path / "agent"
    agent = Agent(g, "sec", agent_dir).start()
    arns = []
    try:
        wait_until(lambda: ecs.list_container_instances(cluster="sec")["containerInstanceArns"], what="agent")
        td = {
            "family": "withsecrets",
            "executionRoleArn": EXEC_ROLE,
            "volumes": [{"name": "out", "host": {"sourcePath": str(out)}}],
            "containerDefinitions": [{
                "name": "app", "image": image, "memory": 32,
                "command": ["/bin/sh", "-c",
                            "env > /out/env.txt; wget -qO /out/meta.json $ECS_CONTAINER_METADATA_URI_V4/task; "
                            "echo started; sleep 300"],
                "environment": [{"name": "PLAIN", "value": "visible"}],
                "secrets": [
                    {"name": "DB_PASSWORD", "valueFrom": f"{secret_arn}:password::"},
                    {"name": "API_TOKEN", "valueFrom": "/prod/api/token"},
                ],
                "mountPoints": [{"sourceVolume": "out", "containerPath": "/out"}],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {"awslogs-group": "/ecs/sec", "awslogs-region": "us-east-1",
                                "awslogs-create-group": "true"},
                    "secretOptions": [{"name": "awslogs-stream-prefix",
                                       "valueFrom": "arn:aws:ssm:us-east-1:000000000000:parameter/prod/log/prefix"}],
                },
            }],
        }
        (tmp_path / "td.json").write_text(json.dumps(td))
        reg = g.aws_json("ecs", "register-task-definition", "--cli-input-json", f"file://{tmp_path / 'td.json'}")
        required = {a["name"] for a in reg["taskDefinition"]["requiresAttributes"]}
        assert {"ecs.capability.secrets.asm.environment-variables",
                "ecs.capability.secrets.ssm.environment-variables",
                "ecs.capability.secrets.ssm.bootstrap.log-driver"} <= required
        arn = g.aws_json("ecs", "run-task", "--cluster", "sec", "--task-definition", "withsecrets")["tasks"][0]["taskArn"]
        arns.append(arn)
        g.aws("ecs", "wait", "tasks-running", "--cluster", "sec", "--tasks", arn)

        # Inside the container: the values, as environment variables.
        env_file, meta_file = out / "env.txt", out / "meta.json"
        wait_until(lambda: env_file.exists() and meta_file.exists() and meta_file.stat().st_size > 0,
                   what="the container's output")
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
        assert env["DB_PASSWORD"] == db_password
        assert env["API_TOKEN"] == api_token
        assert env["PLAIN"] == "visible"
        # secretOptions reached the log driver: the stream prefix came from Parameter Store.
        task_id = arn.rsplit("/", 1)[1]
        wait_until(lambda: logs.filter_log_events(logGroupName="/ecs/sec", logStreamNames=[f"fromssm/app/{task_id}"],
                                                  filterPattern="started")["events"], what="awslogs line")

        needles = [db_password, api_token]
        described = g.aws("ecs", "describe-tasks", "--cluster", "sec", "--tasks", arn).stdout
        tdesc = g.aws("ecs", "describe-task-definition", "--task-definition", "withsecrets").stdout
        assert f"{secret_arn}:password::" in tdesc and "/prod/api/token" in tdesc
        for text in (described, tdesc, meta_file.read_text()):
            assert not [n for n in needles if n in text]
        assert json.loads(meta_file.read_text())["TaskARN"] == arn
        for c in containers_of(arn):
            labels = docker("inspect", "-f", "{{json .Config.Labels}}", c).stdout
            assert not [n for n in needles if n in labels]

        ecs.stop_task(cluster="sec", task=arn)
        _wait_stopped(ecs, "sec", arn)
        events = logs.filter_log_events(logGroupName="/ecs/sec")["events"]
        assert events and not [e for e in events for n in needles if n in e["message"]]
    finally:
        agent.stop()
        _cleanup(arns)
        g.stop()
    secret_bytes = [n.encode() for n in needles]
    assert not _files_containing(tmp_path / "data", secret_bytes)
    assert not _files_containing(agent_dir, secret_bytes)
    for log in (Path(g.log.name), Path(f"{agent_dir}.log")):
        text = log.read_bytes()
        assert b"DEBUG" in text, f"{log} was not written at debug level"
        assert not [n for n in secret_bytes if n in text], f"{log} holds a secret value"


def _task_secrets(gantry, body: dict, sign=True):
    """Calls the agents' secret channel as an agent would; (HTTP status, JSON answer)."""
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    data = json.dumps(body).encode()
    req = botocore.awsrequest.AWSRequest(method="POST", url=gantry.endpoint + "/agent/v1/task-secrets", data=data,
                                         headers={"Content-Type": "application/json"})
    if sign:
        creds = botocore.credentials.Credentials(gantry.access_key, gantry.secret_key)
        botocore.auth.SigV4Auth(creds, "ecs", "us-east-1").add_auth(req)
    prepared = req.prepare()
    http_req = urllib.request.Request(prepared.url, data=data, headers=dict(prepared.headers), method="POST")
    try:
        with urllib.request.urlopen(http_req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_missing_secret_fails_the_task_with_resource_initialization_error(gantry, image, tmp_path):
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="missing")
    agent = Agent(gantry, "missing", tmp_path / "agent").start()
    arns = []
    try:
        wait_until(lambda: ecs.list_container_instances(cluster="missing")["containerInstanceArns"], what="agent")
        gone = "arn:aws:secretsmanager:us-east-1:000000000000:secret:nope-AbCdEf"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ecs.register_task_definition(family="norole", containerDefinitions=[
                {"name": "app", "image": image, "memory": 32, "secrets": [{"name": "X", "valueFrom": gone}]}])
        assert e.value.response["Error"]["Code"] == "ClientException"
        assert e.value.response["Error"]["Message"] == (
            "When you are specifying container secrets, you must also specify a value for 'executionRoleArn'.")
        ecs.register_task_definition(family="missing", executionRoleArn=EXEC_ROLE, containerDefinitions=[
            {"name": "app", "image": image, "memory": 32, "command": ["sleep", "300"],
             "secrets": [{"name": "X", "valueFrom": gone}]}])
        arn = ecs.run_task(cluster="missing", taskDefinition="missing")["tasks"][0]["taskArn"]
        arns.append(arn)
        t = _wait_stopped(ecs, "missing", arn)
        want = ("ResourceInitializationError: unable to pull secrets or registry auth: execution resource "
                "retrieval failed: unable to retrieve secret from asm: service call has been retried 1 time(s): "
                f"failed to fetch secret {gone} from secrets manager: ResourceNotFoundException: "
                "Secrets Manager can't find the specified secret. status code: 400, request id: ")
        assert t["stopCode"] == "TaskFailedToStart"
        assert t["stoppedReason"].startswith(want), t["stoppedReason"]
        assert t["containers"][0]["reason"] == t["stoppedReason"]
        assert "runtimeId" not in t["containers"][0] and not containers_of(arn)

        # The channel: signed requests only, for the task's own instance, while it is to run.
        instance = t["containerInstanceArn"]
        ask = {"cluster": "missing", "containerInstance": instance, "task": arn}
        status, answer = _task_secrets(gantry, ask, sign=False)
        assert status in (400, 403) and answer["__type"] == "MissingAuthenticationTokenException", answer
        status, answer = _task_secrets(gantry, ask)
        assert status == 400 and "is stopping" in answer["message"], answer
        other = instance.rsplit("/", 1)[0] + "/0123456789abcdef0123456789abcdef"
        status, answer = _task_secrets(gantry, {**ask, "containerInstance": other})
        assert status == 400 and "is not assigned to container instance" in answer["message"], answer

        # A missing SSM parameter, in ECS's words for Parameter Store.
        ecs.register_task_definition(family="missing-ssm", executionRoleArn=EXEC_ROLE, containerDefinitions=[
            {"name": "app", "image": image, "memory": 32, "secrets": [{"name": "Y", "valueFrom": "/not/there"}]}])
        arn = ecs.run_task(cluster="missing", taskDefinition="missing-ssm")["tasks"][0]["taskArn"]
        arns.append(arn)
        t = _wait_stopped(ecs, "missing", arn)
        assert t["stoppedReason"] == (
            "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval "
            "failed: unable to retrieve secrets from ssm: service call has been retried 1 time(s): "
            "invalid parameters: /not/there")
    finally:
        agent.stop()
        _cleanup(arns)


def test_an_execution_role_that_may_not_read_the_secret_fails_the_task(gantry, image, tmp_path):
    g = gantry
    ecs, sm = g.client("ecs"), g.client("secretsmanager")
    secret_arn = sm.create_secret(Name="team/key", SecretString="s3cret")["ARN"]
    g.client("ssm").put_parameter(Name="/team/flag", Value="on", Type="String")
    # May read parameters only; and a role ECS tasks may not assume at all.
    narrow = create_execution_role(g, "paramsOnly", [{
        "Effect": "Allow", "Action": "ssm:GetParameters",
        "Resource": "arn:aws:ssm:us-east-1:000000000000:parameter/team/*"}])
    g.client("iam").create_role(RoleName="notForEcs", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                 "Action": "sts:AssumeRole"}]}))
    untrusted = "arn:aws:iam::000000000000:role/notForEcs"
    ecs.create_cluster(clusterName="deny")
    agent = Agent(g, "deny", tmp_path / "agent").start()
    arns = []

    def run(family, role, value_from):
        ecs.register_task_definition(family=family, executionRoleArn=role, containerDefinitions=[
            {"name": "app", "image": image, "memory": 32, "command": ["sleep", "300"],
             "secrets": [{"name": "X", "valueFrom": value_from}]}])
        arn = ecs.run_task(cluster="deny", taskDefinition=family)["tasks"][0]["taskArn"]
        arns.append(arn)
        return arn

    try:
        wait_until(lambda: ecs.list_container_instances(cluster="deny")["containerInstanceArns"], what="agent")
        arn = run("denied", narrow, secret_arn)
        t = _wait_stopped(ecs, "deny", arn)
        task_id = arn.rsplit("/", 1)[1]
        want = ("ResourceInitializationError: unable to pull secrets or registry auth: execution resource "
                "retrieval failed: unable to retrieve secret from asm: service call has been retried 1 time(s): "
                f"failed to fetch secret {secret_arn} from secrets manager: AccessDeniedException: User: "
                f"arn:aws:sts::000000000000:assumed-role/paramsOnly/{task_id} is not authorized to perform: "
                f"secretsmanager:GetSecretValue on resource: {secret_arn}")
        assert t["stopCode"] == "TaskFailedToStart"
        assert t["stoppedReason"].startswith(want), t["stoppedReason"]
        assert "s3cret" not in json.dumps(t, default=str)
        assert not containers_of(arn)

        # The parameter the role may read: the task runs.
        ok = run("allowed-param", narrow, "/team/flag")
        ecs.get_waiter("tasks_running").wait(cluster="deny", tasks=[ok], WaiterConfig={"Delay": 1, "MaxAttempts": 60})

        # The secret's resource policy grants the role: now it may read it.
        sm.put_resource_policy(SecretId="team/key", ResourcePolicy=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": narrow},
                                                    "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}))
        granted = run("granted", narrow, secret_arn)
        ecs.get_waiter("tasks_running").wait(cluster="deny", tasks=[granted],
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 60})

        # A role that does not trust ECS tasks, and one that does not exist.
        for family, role in (("untrusted", untrusted), ("norole", "arn:aws:iam::000000000000:role/ghost")):
            t = _wait_stopped(ecs, "deny", run(family, role, "/team/flag"))
            assert t["stopCode"] == "TaskFailedToStart"
            assert f"ECS was unable to assume the role '{role}'" in t["stoppedReason"], t["stoppedReason"]
            assert "AccessDeniedException" in t["stoppedReason"]
    finally:
        for a in arns:
            ecs.stop_task(cluster="deny", task=a)
        agent.stop()
        _cleanup(arns)


@pytest.fixture
def private_registry(tmp_path):
    """Debian's docker-registry on loopback with htpasswd (bcrypt) authentication."""
    require_docker()
    binary = shutil.which("docker-registry")
    htpasswd = shutil.which("htpasswd")
    if not binary or not htpasswd:
        if os.environ.get("GANTRY_REQUIRE_DOCKER") == "1":
            pytest.fail("docker-registry and htpasswd are required (apt-get install docker-registry apache2-utils)")
        pytest.skip("docker-registry or htpasswd missing")
    user, password = "puller", f"pw-{uuid.uuid4().hex}"
    root = tmp_path / "registry2"
    root.mkdir()
    auth = root / "htpasswd"
    auth.write_text(subprocess.run([htpasswd, "-Bbn", user, password], check=True, capture_output=True,
                                   text=True).stdout)
    for _ in range(5):
        port = free_port()
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
            f"auth:\n  htpasswd:\n    realm: gantry-e2e\n    path: {auth}\n")
        log = open(root / "registry.log", "ab")
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        up = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    up = True
                    break
            except OSError:
                time.sleep(0.05)
        if up:
            break
        proc.kill()
        proc.wait()
    else:
        raise AssertionError(f"docker-registry did not start: {(root / 'registry.log').read_text()[-2000:]}")
    try:
        yield {"host": f"127.0.0.1:{port}", "user": user, "password": password}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_repository_credentials_authenticate_pulls_from_a_private_registry(gantry, private_registry, tmp_path):
    reg = private_registry
    ecs = gantry.client("ecs")
    local = build_busybox_image(tmp_path, f"gantry-e2e/private-{uuid.uuid4().hex[:8]}:src")
    images = [f"{reg['host']}/team/app-{uuid.uuid4().hex[:8]}:v1" for _ in range(2)]
    docker("login", "--username", reg["user"], "--password-stdin", reg["host"], input=reg["password"])
    try:
        for i in images:
            docker("tag", local, i)
            docker("push", i)
    finally:
        docker("logout", reg["host"], check=False)
    # The agent must pull them, with the credentials, not find them cached.
    docker("rmi", *images, local)
    # Without credentials the registry refuses.
    assert docker("pull", images[0], check=False).returncode != 0

    good = gantry.aws_json("secretsmanager", "create-secret", "--name", "registry/good", "--secret-string",
                           json.dumps({"username": reg["user"], "password": reg["password"]}))["ARN"]
    bad = gantry.aws_json("secretsmanager", "create-secret", "--name", "registry/bad", "--secret-string",
                          json.dumps({"username": reg["user"], "password": "wrong"}))["ARN"]
    ecs.create_cluster(clusterName="private")
    agent = Agent(gantry, "private", tmp_path / "agent").start()
    arns = []
    try:
        wait_until(lambda: ecs.list_container_instances(cluster="private")["containerInstanceArns"], what="agent")
        for family, img, secret in (("private-good", images[0], good), ("private-bad", images[1], bad)):
            ecs.register_task_definition(family=family, executionRoleArn=EXEC_ROLE, containerDefinitions=[
                {"name": "app", "image": img, "memory": 32, "command": ["sleep", "300"],
                 "repositoryCredentials": {"credentialsParameter": secret}}])
        arn = ecs.run_task(cluster="private", taskDefinition="private-good")["tasks"][0]["taskArn"]
        arns.append(arn)
        ecs.get_waiter("tasks_running").wait(cluster="private", tasks=[arn],
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 90})
        t = ecs.describe_tasks(cluster="private", tasks=[arn])["tasks"][0]
        assert t["containers"][0]["imageDigest"].startswith("sha256:")
        ecs.stop_task(cluster="private", task=arn)
        _wait_stopped(ecs, "private", arn)

        arn = ecs.run_task(cluster="private", taskDefinition="private-bad")["tasks"][0]["taskArn"]
        arns.append(arn)
        t = _wait_stopped(ecs, "private", arn)
        assert t["stopCode"] == "TaskFailedToStart"
        assert t["stoppedReason"].startswith("CannotPullContainerError:"), t["stoppedReason"]
        assert t["containers"][0]["reason"] == t["stoppedReason"]
    finally:
        agent.stop()
        _cleanup(arns)
        for i in images:
            docker("rmi", "-f", i, check=False)
    for log in (Path(gantry.log.name), Path(f"{tmp_path / 'agent'}.log")):
        assert reg["password"].encode() not in log.read_bytes()

"""Real containers on the real Docker Engine: `gantry agent` runs what RunTask asks for."""

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid

import pytest

from conftest import gantry_binary, require_docker
from images import build_busybox_image, docker
from test_ecr import login


class Agent:
    """A `gantry agent` process with its own data dir."""

    def __init__(self, gantry, cluster, data_dir, attributes=(), extra=()):
        self.gantry, self.cluster, self.data_dir = gantry, cluster, data_dir
        self.attributes = list(attributes)
        self.extra = list(extra)
        self.proc = None

    def start(self):
        env = dict(os.environ)
        env.update(GANTRY_ROOT_ACCESS_KEY_ID=self.gantry.access_key,
                   GANTRY_ROOT_SECRET_ACCESS_KEY=self.gantry.secret_key,
                   GANTRY_LOG=os.environ.get("GANTRY_LOG", "info"))
        args = [gantry_binary(), "agent", "--endpoint", self.gantry.endpoint, "--cluster", self.cluster,
                "--data-dir", str(self.data_dir)]
        for a in self.attributes:
            args += ["--attribute", a]
        args += self.extra
        self.log = open(f"{self.data_dir}.log", "ab")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=self.log)
        return self

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def wait_until(fn, timeout=60.0, interval=0.25, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not met in {timeout}s (last: {last!r})")


def containers_of(task_arn):
    out = docker("ps", "-aq", "--filter", f"label=com.amazonaws.ecs.task-arn={task_arn}").stdout.split()
    return out


@pytest.fixture
def image(gantry, tmp_path):
    """A busybox image with an index page, pushed to Gantry's registry."""
    require_docker()
    repo = f"web-{uuid.uuid4().hex[:8]}"
    uri = gantry.aws_json("ecr", "create-repository", "--repository-name", repo)["repository"]["repositoryUri"]
    local = build_busybox_image(tmp_path, f"gantry-e2e/{repo}:src", page="hello from a gantry task\n")
    login(gantry)
    docker("tag", local, f"{uri}:v1")
    docker("push", f"{uri}:v1")
    # The agent must pull it from Gantry, not find it cached.
    docker("rmi", f"{uri}:v1", local)
    yield f"{uri}:v1"
    docker("rmi", "-f", f"{uri}:v1", check=False)


def httpd_td(family, image, group="/ecs/e2e"):
    return {
        "family": family,
        "containerDefinitions": [{
            "name": "web", "image": image, "memory": 64, "essential": True,
            "command": ["/bin/sh", "-c", "echo serving; exec httpd -f -v -p 8080 -h /www"],
            "portMappings": [{"containerPort": 8080, "hostPort": 0}],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": group, "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "web", "awslogs-create-group": "true"}},
        }],
    }


def test_run_task_serves_traffic_logs_and_stops(gantry, image, tmp_path):
    ecs, logs = gantry.client("ecs"), gantry.client("logs")
    ecs.create_cluster(clusterName="e2e")
    agent = Agent(gantry, "e2e", tmp_path / "agent").start()
    try:
        wait_until(lambda: ecs.list_container_instances(cluster="e2e")["containerInstanceArns"], what="agent registered")
        ecs.register_task_definition(**httpd_td("httpd", image))
        run = gantry.aws_json("ecs", "run-task", "--cluster", "e2e", "--task-definition", "httpd", "--count", "2")
        assert run["failures"] == [] and len(run["tasks"]) == 2
        arns = [t["taskArn"] for t in run["tasks"]]
        gantry.aws("ecs", "wait", "tasks-running", "--cluster", "e2e", "--tasks", *arns)
        tasks = ecs.describe_tasks(cluster="e2e", tasks=arns)["tasks"]
        for t in tasks:
            assert t["lastStatus"] == "RUNNING"
            web = t["containers"][0]
            port = web["networkBindings"][0]["hostPort"]
            assert port > 0 and web["runtimeId"]
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10).read().decode()
            assert "hello from a gantry task" in body
            assert web.get("imageDigest", "").startswith("sha256:")

        def both_logged():
            streams = logs.describe_log_streams(logGroupName="/ecs/e2e").get("logStreams", [])
            return len(streams) >= 2 and streams
        streams = wait_until(lambda: _safe(both_logged), what="log streams")
        task_ids = {a.rsplit("/", 1)[1] for a in arns}
        assert {s["logStreamName"] for s in streams} == {f"web/web/{i}" for i in task_ids}
        events = wait_until(lambda: logs.filter_log_events(logGroupName="/ecs/e2e", filterPattern="serving")["events"]
                            if len(logs.filter_log_events(logGroupName="/ecs/e2e", filterPattern="serving")["events"]) >= 2 else None,
                            what="log lines")
        assert len(events) == 2

        for a in arns:
            gantry.aws("ecs", "stop-task", "--cluster", "e2e", "--task", a, "--reason", "done")
        gantry.aws("ecs", "wait", "tasks-stopped", "--cluster", "e2e", "--tasks", *arns)
        for t in ecs.describe_tasks(cluster="e2e", tasks=arns)["tasks"]:
            assert t["stopCode"] == "UserInitiated" and t["stoppedReason"] == "done"
        for a in arns:
            wait_until(lambda: not containers_of(a), what="containers removed")
    finally:
        agent.stop()
        for a in locals().get("arns", []):
            for c in containers_of(a):
                docker("rm", "-f", c, check=False)


def _safe(fn):
    try:
        return fn()
    except Exception:
        return None


def test_failures_pull_error_exit_code_and_capacity(gantry, image, tmp_path):
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="fail")
    agent = Agent(gantry, "fail", tmp_path / "agent").start()
    try:
        wait_until(lambda: ecs.list_container_instances(cluster="fail")["containerInstanceArns"], what="agent")
        ecs.register_task_definition(family="nopull", containerDefinitions=[
            {"name": "x", "image": f"{gantry.registry}/does-not-exist:v1", "memory": 32}])
        t = ecs.run_task(cluster="fail", taskDefinition="nopull")["tasks"][0]["taskArn"]
        ecs.get_waiter("tasks_stopped").wait(cluster="fail", tasks=[t], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        d = ecs.describe_tasks(cluster="fail", tasks=[t])["tasks"][0]
        assert d["stopCode"] == "TaskFailedToStart" and "CannotPullContainerError" in d["stoppedReason"]

        ecs.register_task_definition(family="exit3", containerDefinitions=[
            {"name": "x", "image": image, "memory": 32, "command": ["/bin/sh", "-c", "sleep 1; exit 3"]}])
        t = ecs.run_task(cluster="fail", taskDefinition="exit3")["tasks"][0]["taskArn"]
        ecs.get_waiter("tasks_stopped").wait(cluster="fail", tasks=[t], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        d = ecs.describe_tasks(cluster="fail", tasks=[t])["tasks"][0]
        assert d["stopCode"] == "EssentialContainerExited"
        assert d["containers"][0]["exitCode"] == 3

        inst = ecs.describe_container_instances(cluster="fail", containerInstances=ecs.list_container_instances(
            cluster="fail")["containerInstanceArns"])["containerInstances"][0]
        mem = next(r["integerValue"] for r in inst["registeredResources"] if r["name"] == "MEMORY")
        ecs.register_task_definition(family="huge", containerDefinitions=[
            {"name": "x", "image": image, "memory": mem + 1}])
        r = ecs.run_task(cluster="fail", taskDefinition="huge")
        assert r["tasks"] == [] and r["failures"][0]["reason"] == "RESOURCE:MEMORY"
    finally:
        agent.stop()


def test_metadata_endpoint_inside_the_container(gantry, image, tmp_path):
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="meta")
    agent = Agent(gantry, "meta", tmp_path / "agent").start()
    try:
        wait_until(lambda: ecs.list_container_instances(cluster="meta")["containerInstanceArns"], what="agent")
        ecs.register_task_definition(family="meta", containerDefinitions=[
            {"name": "x", "image": image, "memory": 32,
             "command": ["/bin/sh", "-c", "wget -qO- $ECS_CONTAINER_METADATA_URI_V4/task; echo; sleep 300"],
             "logConfiguration": {"logDriver": "awslogs", "options": {
                 "awslogs-group": "/ecs/meta", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "m",
                 "awslogs-create-group": "true"}}}])
        t = ecs.run_task(cluster="meta", taskDefinition="meta")["tasks"][0]["taskArn"]
        ecs.get_waiter("tasks_running").wait(cluster="meta", tasks=[t], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        logs = gantry.client("logs")

        def task_json():
            for e in logs.filter_log_events(logGroupName="/ecs/meta").get("events", []):
                if e["message"].startswith("{"):
                    return json.loads(e["message"])
            return None
        try:
            doc = wait_until(lambda: _safe(task_json), what="metadata output")
        except AssertionError:
            for c in containers_of(t):
                print("container logs:", docker("logs", c, check=False).stdout, docker("logs", c, check=False).stderr)
                print(docker("inspect", "-f", "{{json .Config.Env}}", c, check=False).stdout)
            print(open(f"{tmp_path / 'agent'}.log").read()[-3000:])
            raise
        assert doc["TaskARN"] == t
        ecs.stop_task(cluster="meta", task=t)
        ecs.get_waiter("tasks_stopped").wait(cluster="meta", tasks=[t], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    finally:
        agent.stop()


def test_agent_kill_9_and_restart_readopts_containers(gantry, image, tmp_path):
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="readopt")
    agent = Agent(gantry, "readopt", tmp_path / "agent").start()
    arns = []
    try:
        wait_until(lambda: ecs.list_container_instances(cluster="readopt")["containerInstanceArns"], what="agent")
        ecs.register_task_definition(**httpd_td("readopt", image, group="/ecs/readopt"))
        arns = [t["taskArn"] for t in ecs.run_task(cluster="readopt", taskDefinition="readopt", count=2)["tasks"]]
        ecs.get_waiter("tasks_running").wait(cluster="readopt", tasks=arns, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        before = {a: containers_of(a) for a in arns}
        assert all(len(c) == 1 for c in before.values())
        agent.kill9()
        time.sleep(1)
        agent = Agent(gantry, "readopt", tmp_path / "agent").start()
        time.sleep(8)
        after = {a: containers_of(a) for a in arns}
        assert after == before, "the same containers, none added or lost"
        for t in ecs.describe_tasks(cluster="readopt", tasks=arns)["tasks"]:
            assert t["lastStatus"] == "RUNNING"
        assert len(ecs.list_container_instances(cluster="readopt")["containerInstanceArns"]) == 1
    finally:
        for a in arns:
            ecs.stop_task(cluster="readopt", task=a)
        agent.stop()
        for a in arns:
            for c in containers_of(a):
                docker("rm", "-f", c, check=False)

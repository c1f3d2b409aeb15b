"""Services on real Docker: desired count, rolling deployments, circuit breaker, draining,
DAEMON, and replacement of tasks on lost hosts."""

import time
import uuid

import botocore.exceptions
import pytest

from conftest import Gantry, require_docker
from images import build_busybox_image, docker
from test_agent_tasks import Agent, containers_of, wait_until
from test_ecr import login


@pytest.fixture
def busybox(gantry, tmp_path):
    """A busybox image pushed to Gantry's registry (kept locally, so starts are quick)."""
    require_docker()
    repo = f"svc-{uuid.uuid4().hex[:8]}"
    uri = gantry.aws_json("ecr", "create-repository", "--repository-name", repo)["repository"]["repositoryUri"]
    local = build_busybox_image(tmp_path, f"gantry-e2e/{repo}:src")
    login(gantry)
    docker("tag", local, f"{uri}:v1")
    docker("push", f"{uri}:v1")
    yield f"{uri}:v1"
    docker("rmi", "-f", f"{uri}:v1", local, check=False)


def httpd(family, image, extra=None):
    c = {"name": "web", "image": image, "memory": 32, "essential": True,
         "command": ["/bin/sh", "-c", "exec httpd -f -p 8080 -h /www"],
         "portMappings": [{"containerPort": 8080, "hostPort": 0}], "stopTimeout": 2}
    c.update(extra or {})
    return {"family": family, "containerDefinitions": [c]}


def cleanup(ecs, cluster):
    for s in ecs.list_services(cluster=cluster)["serviceArns"]:
        ecs.delete_service(cluster=cluster, service=s, force=True)
    arns = ecs.list_tasks(cluster=cluster)["taskArns"]
    for a in arns:
        ecs.stop_task(cluster=cluster, task=a)


def stable(ecs, cluster, service, attempts=90):
    ecs.get_waiter("services_stable").wait(cluster=cluster, services=[service],
                                           WaiterConfig={"Delay": 1, "MaxAttempts": attempts})
    return ecs.describe_services(cluster=cluster, services=[service])["services"][0]


def completed(ecs, cluster, service, timeout=30):
    """The service once its one deployment's rolloutState is COMPLETED.

    runningCount is counted from the tasks when DescribeServices answers, while rolloutState is set
    by the service controller's pass that follows the last task's RUNNING, so on a loaded machine it
    can trail the services-stable waiter by that pass (as on ECS).
    """
    def done():
        s = ecs.describe_services(cluster=cluster, services=[service])["services"][0]
        return (len(s["deployments"]) == 1 and s["deployments"][0]["rolloutState"] == "COMPLETED" and s) or None
    return wait_until(done, timeout=timeout, interval=0.2, what=f"{service}'s rollout COMPLETED")


def test_service_rolls_and_breaker_rolls_back(gantry, busybox, tmp_path):
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="svc")
    agents = [Agent(gantry, "svc", tmp_path / f"a{i}", [f"zone=z{i}"]).start() for i in range(3)]
    try:
        wait_until(lambda: len(ecs.list_container_instances(cluster="svc")["containerInstanceArns"]) == 3,
                   what="3 agents")
        ecs.register_task_definition(**httpd("web", busybox))
        ecs.create_service(cluster="svc", serviceName="web", taskDefinition="web", desiredCount=6,
                           deploymentConfiguration={"minimumHealthyPercent": 50, "maximumPercent": 150,
                                                    "deploymentCircuitBreaker": {"enable": True, "rollback": True}},
                           placementStrategy=[{"type": "spread", "field": "attribute:zone"}])
        s = stable(ecs, "svc", "web")
        assert s["runningCount"] == 6 and len(s["deployments"]) == 1
        s = completed(ecs, "svc", "web")
        assert any("has reached a steady state" in e["message"] for e in s["events"])
        running = ecs.list_tasks(cluster="svc", serviceName="web")["taskArns"]
        zones = {}
        for t in ecs.describe_tasks(cluster="svc", tasks=running)["tasks"]:
            zones[t["containerInstanceArn"]] = zones.get(t["containerInstanceArn"], 0) + 1
        assert sorted(zones.values()) == [2, 2, 2]

        # Rolling update to a new revision, watching the bounds.
        ecs.register_task_definition(**httpd("web", busybox, {"environment": [{"name": "V", "value": "2"}]}))
        ecs.update_service(cluster="svc", service="web", taskDefinition="web:2")
        max_live, min_running = 0, 6
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            s = ecs.describe_services(cluster="svc", services=["web"])["services"][0]
            live = s["runningCount"] + s["pendingCount"]
            max_live = max(max_live, live)
            min_running = min(min_running, s["runningCount"])
            if len(s["deployments"]) == 1 and s["runningCount"] == 6 and s["deployments"][0]["taskDefinition"].endswith(":2"):
                break
            time.sleep(0.3)
        assert completed(ecs, "svc", "web")["deployments"][0]["taskDefinition"].endswith(":2")
        assert max_live <= 9, f"above maximumPercent: {max_live}"
        assert min_running >= 3, f"below minimumHealthyPercent: {min_running}"

        # A missing image trips the breaker and rolls back to revision 2.
        ecs.register_task_definition(**httpd("web", f"{gantry.registry}/nope-{uuid.uuid4().hex[:6]}:v1"))
        ecs.update_service(cluster="svc", service="web", taskDefinition="web:3")

        def rolled_back():
            s = ecs.describe_services(cluster="svc", services=["web"])["services"][0]
            msgs = " ".join(e["message"] for e in s["events"])
            return ("deployment failed" in msgs and len(s["deployments"]) == 1
                    and s["deployments"][0]["taskDefinition"].endswith(":2")
                    and s["runningCount"] == 6 and s) or None
        s = wait_until(rolled_back, timeout=180, interval=1, what="rollback")
        msgs = [e["message"] for e in s["events"]]
        assert any("circuit breaker" in m or "deployment failed" in m for m in msgs)

        history = ecs.list_service_deployments(cluster="svc", service="web")["serviceDeployments"]
        assert len(history) >= 3
        assert history[0]["createdAt"] >= history[-1]["createdAt"], "newest first"
        statuses = {h["status"] for h in history}
        assert "SUCCESSFUL" in statuses and "ROLLBACK_REQUESTED" in statuses, statuses
        d = ecs.describe_service_deployments(serviceDeploymentArns=[history[0]["serviceDeploymentArn"],
                                                                    history[0]["serviceDeploymentArn"] + "9"])
        assert d["serviceDeployments"][0]["serviceDeploymentArn"] == history[0]["serviceDeploymentArn"]
        assert d["failures"][0]["reason"] == "MISSING"
    finally:
        cleanup(ecs, "svc")
        for a in agents:
            a.stop()


def test_lost_host_tasks_are_replaced(tmp_path):
    require_docker()
    g = Gantry(tmp_path / "data").start(extra_args=["--heartbeat-grace", "2", "--lost-after", "4"])
    ecs = g.client("ecs")
    agents = []
    try:
        repo = f"lost-{uuid.uuid4().hex[:8]}"
        uri = g.aws_json("ecr", "create-repository", "--repository-name", repo)["repository"]["repositoryUri"]
        local = build_busybox_image(tmp_path, f"gantry-e2e/{repo}:src")
        login(g)
        docker("tag", local, f"{uri}:v1")
        docker("push", f"{uri}:v1")
        ecs.create_cluster(clusterName="lost")
        agents = [Agent(g, "lost", tmp_path / f"a{i}").start() for i in range(3)]
        wait_until(lambda: len(ecs.list_container_instances(cluster="lost")["containerInstanceArns"]) == 3, what="agents")
        ecs.register_task_definition(**httpd("lost", f"{uri}:v1"))
        ecs.create_service(cluster="lost", serviceName="web", taskDefinition="lost", desiredCount=6)
        stable(ecs, "lost", "web")
        tasks = ecs.describe_tasks(cluster="lost", tasks=ecs.list_tasks(cluster="lost")["taskArns"])["tasks"]
        victim = tasks[0]["containerInstanceArn"]
        doomed = [t["taskArn"] for t in tasks if t["containerInstanceArn"] == victim]
        # A lost host: the agent and its containers die together. The agent of the victim
        # instance is the one whose checkpoint names it.
        target = None
        for a in agents:
            for p in a.data_dir.rglob("*"):
                if p.is_file() and victim.rsplit("/", 1)[1] in p.read_text(errors="ignore"):
                    target = a
                    break
            if target:
                break
        assert target is not None, "agent of the victim instance"
        target.kill9()
        for t in doomed:
            for c in containers_of(t):
                docker("rm", "-f", c, check=False)
        wait_until(lambda: all(t["lastStatus"] == "STOPPED" for t in ecs.describe_tasks(cluster="lost", tasks=doomed)["tasks"]),
                   timeout=60, interval=0.5, what="lost tasks stopped")
        for t in ecs.describe_tasks(cluster="lost", tasks=doomed)["tasks"]:
            assert "Host lost" in t["stoppedReason"] and t["stopCode"] == "InfrastructureHealth"
        s = stable(ecs, "lost", "web", attempts=60)
        assert s["runningCount"] == 6
        live = ecs.describe_tasks(cluster="lost", tasks=ecs.list_tasks(cluster="lost")["taskArns"])["tasks"]
        assert all(t["containerInstanceArn"] != victim for t in live)
    finally:
        try:
            cleanup(ecs, "lost")
        except Exception:
            pass
        for a in agents:
            a.stop()
        g.stop()


def test_daemon_draining_delete_and_restart_of_the_server(tmp_path):
    require_docker()
    g = Gantry(tmp_path / "data").start()
    ecs = g.client("ecs")
    agents = []
    try:
        repo = f"dmn-{uuid.uuid4().hex[:8]}"
        uri = g.aws_json("ecr", "create-repository", "--repository-name", repo)["repository"]["repositoryUri"]
        local = build_busybox_image(tmp_path, f"gantry-e2e/{repo}:src")
        login(g)
        docker("tag", local, f"{uri}:v1")
        docker("push", f"{uri}:v1")
        ecs.create_cluster(clusterName="dmn")
        agents = [Agent(g, "dmn", tmp_path / f"a{i}").start() for i in range(2)]
        wait_until(lambda: len(ecs.list_container_instances(cluster="dmn")["containerInstanceArns"]) == 2, what="agents")
        instances = ecs.list_container_instances(cluster="dmn")["containerInstanceArns"]
        ecs.register_task_definition(**httpd("dmn", f"{uri}:v1"))
        ecs.create_service(cluster="dmn", serviceName="daemon", taskDefinition="dmn", schedulingStrategy="DAEMON")
        ecs.create_service(cluster="dmn", serviceName="web", taskDefinition="dmn", desiredCount=4,
                           deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200})
        stable(ecs, "dmn", "daemon")
        stable(ecs, "dmn", "web")
        d = ecs.describe_tasks(cluster="dmn", tasks=ecs.list_tasks(cluster="dmn", serviceName="daemon")["taskArns"])["tasks"]
        assert sorted(t["containerInstanceArn"] for t in d) == sorted(instances), "one DAEMON task per instance"

        # kill -9 of the server, then restart: nothing is replaced.
        before = sorted(ecs.list_tasks(cluster="dmn")["taskArns"])
        g.proc.send_signal(__import__("signal").SIGKILL)
        g.proc.wait()
        # Same address, so the agents reconnect.
        g = Gantry(tmp_path / "data", g.access_key, g.secret_key).start(listen=g.endpoint.rsplit("/", 1)[1])
        ecs = g.client("ecs")
        time.sleep(5)
        assert sorted(ecs.list_tasks(cluster="dmn")["taskArns"]) == before
        assert ecs.list_tasks(cluster="dmn", desiredStatus="STOPPED")["taskArns"] == []

        # Draining one instance moves the web tasks, keeps min healthy, stops its daemon task last.
        drained = instances[0]
        ecs.update_container_instances_state(cluster="dmn", containerInstances=[drained], status="DRAINING")

        def moved():
            web = ecs.describe_tasks(cluster="dmn", tasks=ecs.list_tasks(cluster="dmn", serviceName="web")["taskArns"])["tasks"]
            dm = ecs.describe_tasks(cluster="dmn", tasks=ecs.list_tasks(cluster="dmn", serviceName="daemon")["taskArns"] or ["x"])["tasks"]
            return (len(web) == 4 and all(t["containerInstanceArn"] != drained for t in web if t["lastStatus"] == "RUNNING")
                    and all(t["lastStatus"] == "RUNNING" for t in web)
                    and all(t["containerInstanceArn"] != drained for t in dm))
        wait_until(moved, timeout=90, interval=0.5, what="tasks moved off the draining instance")

        # DeleteService: refused while scaled above 0, then DRAINING → INACTIVE.
        with pytest.raises(botocore.exceptions.ClientError):
            ecs.delete_service(cluster="dmn", service="web")
        ecs.update_service(cluster="dmn", service="web", desiredCount=0)
        ecs.delete_service(cluster="dmn", service="web")
        ecs.delete_service(cluster="dmn", service="daemon", force=True)
        ecs.get_waiter("services_inactive").wait(cluster="dmn", services=["web", "daemon"],
                                                 WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        assert ecs.list_services(cluster="dmn")["serviceArns"] == []
    finally:
        try:
            cleanup(ecs, "dmn")
        except Exception:
            pass
        for a in agents:
            a.stop()
        g.stop()

"""Managed scaling of a host pool: a capacity provider with managed scaling and the built-in local
provisioner (`--pool-provisioner web=local`) grows its pool when services need capacity and shrinks
it after they scale in, never removing an instance that runs tasks; ECS's
CapacityProviderReservation metric in CloudWatch."""

import datetime
import uuid

import pytest

from conftest import Gantry, require_docker
from images import build_busybox_image
from test_agent_tasks import wait_until


def group_arn(pool):
    return ("arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:"
            f"{uuid.uuid4()}:autoScalingGroupName/{pool}")


# Test knobs: an assessment every second, a scale-in after 3 low ones (ECS: 60 s, 15).
FLAGS = ["--pool-provisioner", "web=local", "--managed-scaling-interval", "1",
         "--managed-scaling-scale-in-periods", "3"]


@pytest.fixture
def scaling_gantry(tmp_path):
    g = Gantry(tmp_path / "data").start(extra_args=FLAGS)
    yield g
    g.stop()


def pool_instances(ecs, cluster):
    arns = ecs.list_container_instances(cluster=cluster, status="ACTIVE")["containerInstanceArns"]
    arns += ecs.list_container_instances(cluster=cluster, status="DRAINING")["containerInstanceArns"]
    if not arns:
        return []
    cis = ecs.describe_container_instances(cluster=cluster, containerInstances=arns)["containerInstances"]
    return [c for c in cis if {"name": "gantry.pool", "value": "web"} in c["attributes"]]


def running(ecs, cluster, service):
    arns = ecs.list_tasks(cluster=cluster, serviceName=service, desiredStatus="RUNNING")["taskArns"]
    if not arns:
        return []
    return [t for t in ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if t["lastStatus"] == "RUNNING"]


def test_a_managed_pool_grows_for_services_and_shrinks_without_touching_tasks(scaling_gantry, tmp_path):
    require_docker()
    g = scaling_gantry
    ecs, cw = g.client("ecs"), g.client("cloudwatch")
    image = build_busybox_image(tmp_path, f"gantry-e2e/metrics2-ms-{uuid.uuid4().hex[:8]}:src")
    ecs.create_cluster(clusterName="ms")
    ecs.create_capacity_provider(name="web-pool", autoScalingGroupProvider={
        "autoScalingGroupArn": group_arn("web"),
        "managedScaling": {"status": "ENABLED", "targetCapacity": 100, "instanceWarmupPeriod": 60},
        "managedTerminationProtection": "ENABLED"})
    ecs.put_cluster_capacity_providers(
        cluster="ms", capacityProviders=["web-pool"],
        defaultCapacityProviderStrategy=[{"capacityProvider": "web-pool", "weight": 1}])
    sleeper = {"name": "s", "image": image, "memory": 16, "essential": True, "stopTimeout": 1,
               "command": ["sleep", "600"]}
    ecs.register_task_definition(family="probe", containerDefinitions=[sleeper])
    try:
        # An empty pool and one service task waiting: the reservation is 200 and one instance starts.
        assert pool_instances(ecs, "ms") == []
        ecs.create_service(cluster="ms", serviceName="probe", taskDefinition="probe", desiredCount=1)
        wait_until(lambda: len(pool_instances(ecs, "ms")) == 1, timeout=60, what="the pool's first instance")
        wait_until(lambda: len(running(ecs, "ms", "probe")) == 1, timeout=90, what="the probe task running")
        first = pool_instances(ecs, "ms")[0]
        cpu = next(r["integerValue"] for r in first["registeredResources"] if r["name"] == "CPU")

        # Three tasks of half an instance each: two fit beside the probe, the third needs a second
        # instance.
        half = dict(sleeper, cpu=cpu // 2)
        ecs.register_task_definition(family="half", containerDefinitions=[half])
        ecs.create_service(cluster="ms", serviceName="half", taskDefinition="half", desiredCount=3)
        wait_until(lambda: len(pool_instances(ecs, "ms")) == 2, timeout=90, what="the pool grown to two")
        wait_until(lambda: len(running(ecs, "ms", "half")) == 3, timeout=120, what="three half tasks running")
        assert len(pool_instances(ecs, "ms")) == 2
        before = {t["taskArn"] for t in running(ecs, "ms", "half") + running(ecs, "ms", "probe")}
        grown = {c["containerInstanceArn"] for c in pool_instances(ecs, "ms")}

        # Scale in to one half task: only an instance without tasks may go.
        ecs.update_service(cluster="ms", service="half", desiredCount=1)
        wait_until(lambda: len(running(ecs, "ms", "half")) == 1, timeout=60, what="half scaled in")
        kept = {t["taskArn"] for t in running(ecs, "ms", "half") + running(ecs, "ms", "probe")}
        hosts = {t["containerInstanceArn"] for t in running(ecs, "ms", "half") + running(ecs, "ms", "probe")}
        if len(hosts) == 1:
            # Both remaining tasks share one instance: the other one is empty and goes.
            wait_until(lambda: len(pool_instances(ecs, "ms")) == 1, timeout=60, what="the pool shrunk to one")
            assert {c["containerInstanceArn"] for c in pool_instances(ecs, "ms")} == hosts
        else:
            # Each instance still runs a task: neither may be removed; once the probe goes, its
            # instance is empty and goes.
            ecs.update_service(cluster="ms", service="probe", desiredCount=0)
            wait_until(lambda: running(ecs, "ms", "probe") == [], timeout=60, what="probe scaled in")
            hosts = {t["containerInstanceArn"] for t in running(ecs, "ms", "half")}
            kept = {t["taskArn"] for t in running(ecs, "ms", "half")}
            wait_until(lambda: len(pool_instances(ecs, "ms")) == 1, timeout=60, what="the pool shrunk to one")
            assert {c["containerInstanceArn"] for c in pool_instances(ecs, "ms")} == hosts
        # The tasks that remained were never stopped by the scale-in.
        assert kept <= before
        assert {t["taskArn"] for t in running(ecs, "ms", "half") + running(ecs, "ms", "probe")} == kept
        stopped = ecs.list_tasks(cluster="ms", desiredStatus="STOPPED")["taskArns"]
        assert not (set(stopped) & kept)
        # The removed instance was deregistered.
        removed = grown - hosts
        assert len(removed) == 1
        gone = ecs.describe_container_instances(cluster="ms", containerInstances=list(removed))["containerInstances"]
        assert [c["status"] for c in gone] == ["INACTIVE"]

        # ECS's metric, as CloudWatch serves it: 200 with an empty pool and a waiting task.
        now = datetime.datetime.now(datetime.timezone.utc)
        stats = cw.get_metric_statistics(
            Namespace="AWS/ECS/ManagedScaling", MetricName="CapacityProviderReservation",
            Dimensions=[{"Name": "CapacityProviderName", "Value": "web-pool"},
                        {"Name": "ClusterName", "Value": "ms"}],
            StartTime=now - datetime.timedelta(minutes=10), EndTime=now + datetime.timedelta(minutes=1),
            Period=60, Statistics=["Maximum", "Minimum"])["Datapoints"]
        assert stats, "no CapacityProviderReservation datapoints"
        assert max(d["Maximum"] for d in stats) >= 150
        assert all(d["Unit"] == "Percent" for d in stats)

        # A restart resumes the pool's local agents: the instance reconnects with its tasks.
        g.stop()
        g.start(extra_args=FLAGS)
        ecs, cw = g.client("ecs"), g.client("cloudwatch")
        wait_until(lambda: [c["agentConnected"] for c in pool_instances(ecs, "ms")] == [True], timeout=60,
                   what="the pool's instance reconnected after a restart")
        assert {c["containerInstanceArn"] for c in pool_instances(ecs, "ms")} == hosts
        assert {t["taskArn"] for t in running(ecs, "ms", "half") + running(ecs, "ms", "probe")} == kept
        # The resumed agent runs new tasks: one more half task fits on it, the pool stays at one.
        ecs.update_service(cluster="ms", service="half", desiredCount=2)
        wait_until(lambda: len(running(ecs, "ms", "half")) == 2, timeout=90, what="a new task on the resumed agent")
        assert {t["containerInstanceArn"] for t in running(ecs, "ms", "half")} == hosts
        assert len(pool_instances(ecs, "ms")) == 1
    finally:
        for s in ("half", "probe"):
            try:
                ecs.update_service(cluster="ms", service=s, desiredCount=0)
                ecs.delete_service(cluster="ms", service=s, force=True)
            except Exception:
                pass
        def all_stopped():
            return ecs.list_tasks(cluster="ms", desiredStatus="RUNNING")["taskArns"] == []
        wait_until(all_stopped, timeout=60, what="every task stopped")


def test_a_webhook_provisioner_is_posted_the_pool_and_desired_count(tmp_path):
    """`--pool-provisioner NAME=webhook:URL`: the server POSTs the pool's desired size as JSON."""
    import http.server
    import json
    import queue
    import threading

    posts = queue.Queue()

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.put((self.path, self.headers["Content-Type"], json.loads(body)))
            answer = b"asked the cloud for more\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{hook.server_address[1]}/scale"
    g = Gantry(tmp_path / "data").start(extra_args=["--pool-provisioner", f"web=webhook:{url}",
                                                    "--managed-scaling-interval", "1"])
    try:
        ecs = g.client("ecs")
        ecs.create_cluster(clusterName="wh")
        ecs.create_capacity_provider(name="web-pool", autoScalingGroupProvider={
            "autoScalingGroupArn": group_arn("web"),
            "managedScaling": {"status": "ENABLED", "targetCapacity": 100, "instanceWarmupPeriod": 300}})
        ecs.put_cluster_capacity_providers(
            cluster="wh", capacityProviders=["web-pool"],
            defaultCapacityProviderStrategy=[{"capacityProvider": "web-pool", "weight": 1}])
        ecs.register_task_definition(family="probe", containerDefinitions=[
            {"name": "s", "image": "busybox", "memory": 16, "essential": True}])
        ecs.create_service(cluster="wh", serviceName="probe", taskDefinition="probe", desiredCount=2)
        # An empty pool with tasks waiting: the reservation is 200 and the pool is asked to grow.
        path, ctype, body = posts.get(timeout=30)
        assert path == "/scale" and ctype == "application/json"
        assert body["pool"] == "web" and body["cluster"] == "wh" and body["capacityProvider"] == "web-pool"
        assert body["current"] == 0 and body["desired"] >= 1
        assert body["removeInstances"] == []
    finally:
        g.stop()
        hook.shutdown()

"""The task API and the agent protocol, driven by a scripted agent (no Docker): RunTask places
and reserves, the assignment stream delivers, state reports drive the lifecycle the waiters see."""

import json
import queue
import signal
import threading
import time
import urllib.request

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions
import pytest

from test_boto3_ecs import register_instance


class StreamReader:
    """A signed GET on /agent/v1/connect, read line by line in a thread."""

    def __init__(self, gantry, cluster, instance_arn):
        creds = botocore.credentials.Credentials(gantry.access_key, gantry.secret_key)
        from urllib.parse import urlencode
        url = f"{gantry.endpoint}/agent/v1/connect?" + urlencode({"cluster": cluster, "containerInstance": instance_arn})
        req = botocore.awsrequest.AWSRequest(method="GET", url=url)
        botocore.auth.SigV4Auth(creds, "ecs", "us-east-1").add_auth(req)
        p = req.prepare()
        self.resp = urllib.request.urlopen(urllib.request.Request(p.url, headers=dict(p.headers)), timeout=30)
        self.messages: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for line in self.resp:
                self.messages.put(json.loads(line))
        except Exception:
            pass
        self.messages.put(None)

    def next_payload(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            assert m is not None, "stream closed"
            if m["type"] == "PayloadMessage":
                return m["message"]
        raise AssertionError("no payload in time")

    def close(self):
        self.resp.close()


def wait_until(fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


TD = {
    "family": "proto",
    "containerDefinitions": [
        {"name": "web", "image": "busybox", "memory": 128, "cpu": 128,
         "portMappings": [{"containerPort": 80, "hostPort": 0}]},
        {"name": "side", "image": "busybox", "memory": 64, "essential": False},
    ],
}


@pytest.fixture
def quick(tmp_path):
    """A server that declares a dropped agent DISCONNECTED after 1 s instead of 15 s."""
    from conftest import Gantry

    g = Gantry(tmp_path / "quick").start(extra_args=["--heartbeat-grace", "1"])
    yield g
    g.stop()


def test_run_task_stream_and_lifecycle(quick):
    gantry = quick
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="proto")
    ci = register_instance(ecs, "proto")
    arn = ci["containerInstanceArn"]
    stream = StreamReader(gantry, "proto", arn)
    try:
        first = stream.next_payload()
        assert first["fullState"] is True and first["tasks"] == []
        wait_until(lambda: ecs.describe_container_instances(cluster="proto", containerInstances=[arn])
                   ["containerInstances"][0]["agentConnected"])

        ecs.register_task_definition(**TD)
        run = ecs.run_task(cluster="proto", taskDefinition="proto", count=2, startedBy="e2e")
        assert run["failures"] == []
        tasks = run["tasks"]
        assert len(tasks) == 2
        assert all(t["lastStatus"] == "PROVISIONING" and t["desiredStatus"] == "RUNNING" for t in tasks)
        assert all(t["containerInstanceArn"] == arn and t["group"] == "family:proto" for t in tasks)
        got = {stream.next_payload()["tasks"][0]["taskArn"] for _ in range(2)}
        assert got == {t["taskArn"] for t in tasks}

        inst = ecs.describe_container_instances(cluster="proto", containerInstances=[arn])["containerInstances"][0]
        rem = {r["name"]: r.get("integerValue") for r in inst["remainingResources"]}
        assert rem["MEMORY"] == 3768 - 2 * 192 and rem["CPU"] == 2048 - 2 * 128
        assert inst["pendingTasksCount"] == 2

        t0 = tasks[0]["taskArn"]
        ecs.submit_task_state_change(cluster="proto", task=t0, status="PENDING")
        ecs.submit_task_state_change(
            cluster="proto", task=t0, status="RUNNING",
            containers=[{"containerName": "web", "runtimeId": "abc123", "status": "RUNNING",
                         "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 49153,
                                              "protocol": "tcp"}]},
                        {"containerName": "side", "runtimeId": "def456", "status": "RUNNING"}])
        ecs.get_waiter("tasks_running").wait(cluster="proto", tasks=[t0], WaiterConfig={"Delay": 1, "MaxAttempts": 10})
        d = ecs.describe_tasks(cluster="proto", tasks=[t0, "0" * 32])
        assert d["failures"][0]["reason"] == "MISSING"
        t = d["tasks"][0]
        assert t["lastStatus"] == "RUNNING" and "startedAt" in t and "pullStartedAt" in t
        web = next(c for c in t["containers"] if c["name"] == "web")
        assert web["networkBindings"][0]["hostPort"] == 49153 and web["runtimeId"] == "abc123"
        assert ecs.list_tasks(cluster="proto")["taskArns"] == sorted(x["taskArn"] for x in tasks)
        assert ecs.list_tasks(cluster="proto", startedBy="e2e", family="proto")["taskArns"] != []
        assert ecs.list_tasks(cluster="proto", containerInstance=arn)["taskArns"] != []

        stopped = ecs.stop_task(cluster="proto", task=t0, reason="rolling back")["task"]
        assert stopped["desiredStatus"] == "STOPPED" and stopped["lastStatus"] == "STOPPING"
        assert stopped["stopCode"] == "UserInitiated" and stopped["stoppedReason"] == "rolling back"
        p = stream.next_payload()
        assert p["tasks"][0]["taskArn"] == t0 and p["tasks"][0]["desiredStatus"] == "STOPPED"
        ecs.submit_task_state_change(cluster="proto", task=t0, status="STOPPED",
                                     reason="Task stopped by the control plane",
                                     containers=[{"containerName": "web", "exitCode": 143, "status": "STOPPED"}])
        ecs.get_waiter("tasks_stopped").wait(cluster="proto", tasks=[t0], WaiterConfig={"Delay": 1, "MaxAttempts": 10})
        t = ecs.describe_tasks(cluster="proto", tasks=[t0])["tasks"][0]
        assert t["stopCode"] == "UserInitiated" and t["stoppedReason"] == "rolling back"
        assert next(c for c in t["containers"] if c["name"] == "web")["exitCode"] == 143
        assert ecs.list_tasks(cluster="proto", desiredStatus="STOPPED")["taskArns"] == [t0]

        # An essential container exit, reported by the agent.
        t1 = tasks[1]["taskArn"]
        ecs.submit_task_state_change(cluster="proto", task=t1, status="RUNNING")
        ecs.submit_task_state_change(cluster="proto", task=t1, status="STOPPED",
                                     reason="Essential container in task exited",
                                     containers=[{"containerName": "web", "exitCode": 3, "status": "STOPPED"}])
        t = ecs.describe_tasks(cluster="proto", tasks=[t1])["tasks"][0]
        assert t["stopCode"] == "EssentialContainerExited"
        assert next(c for c in t["containers"] if c["name"] == "web")["exitCode"] == 3
        # Late reports change nothing once STOPPED.
        ecs.submit_task_state_change(cluster="proto", task=t1, status="RUNNING")
        assert ecs.describe_tasks(cluster="proto", tasks=[t1])["tasks"][0]["lastStatus"] == "STOPPED"

        inst = ecs.describe_container_instances(cluster="proto", containerInstances=[arn])["containerInstances"][0]
        rem = {r["name"]: r.get("integerValue") for r in inst["remainingResources"]}
        assert rem["MEMORY"] == 3768 and rem["CPU"] == 2048, "resources are released when tasks stop"
        assert inst["runningTasksCount"] == 0 and inst["pendingTasksCount"] == 0
    finally:
        stream.close()
    wait_until(lambda: not ecs.describe_container_instances(cluster="proto", containerInstances=[arn])
               ["containerInstances"][0]["agentConnected"], timeout=15)


def test_failed_start_gets_task_failed_to_start(gantry):
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="fts")
    arn = register_instance(ecs, "fts")["containerInstanceArn"]
    stream = StreamReader(gantry, "fts", arn)
    try:
        stream.next_payload()
        ecs.register_task_definition(**dict(TD, family="fts"))
        t = ecs.run_task(cluster="fts", taskDefinition="fts")["tasks"][0]["taskArn"]
        ecs.submit_task_state_change(cluster="fts", task=t, status="STOPPED",
                                     reason="CannotPullContainerError: pull access denied for nope")
        d = ecs.describe_tasks(cluster="fts", tasks=[t])["tasks"][0]
        assert d["stopCode"] == "TaskFailedToStart"
        assert d["stoppedReason"].startswith("CannotPullContainerError")
    finally:
        stream.close()


def test_capacity_failures_and_no_double_booking(gantry):
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="cap")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.register_task_definition(**dict(TD, family="cap"))
        ecs.run_task(cluster="cap", taskDefinition="cap")
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    arn = register_instance(ecs, "cap")["containerInstanceArn"]
    stream = StreamReader(gantry, "cap", arn)
    try:
        stream.next_payload()
        big = {"family": "big", "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 1000}]}
        ecs.register_task_definition(**big)
        # 3768 MiB fit three tasks of 1000 MiB; 24 racing calls must never over-commit.
        import concurrent.futures

        def run(_):
            return gantry.client("ecs").run_task(cluster="cap", taskDefinition="big")

        with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
            results = list(pool.map(run, range(24)))
        placed = sum(len(r["tasks"]) for r in results)
        reasons = {f["reason"] for r in results for f in r["failures"]}
        assert placed == 3
        assert reasons == {"RESOURCE:MEMORY"}
        inst = ecs.describe_container_instances(cluster="cap", containerInstances=[arn])["containerInstances"][0]
        rem = {r["name"]: r.get("integerValue") for r in inst["remainingResources"]}
        assert rem["MEMORY"] == 768

        ports = {"family": "ports", "containerDefinitions": [
            {"name": "a", "image": "busybox", "memory": 10, "portMappings": [{"containerPort": 80, "hostPort": 8080}]}]}
        ecs.register_task_definition(**ports)
        r = ecs.run_task(cluster="cap", taskDefinition="ports", count=2)
        assert len(r["tasks"]) == 1 and r["failures"][0]["reason"] == "RESOURCE:PORTS"
        assert r["failures"][0]["arn"] == arn
    finally:
        stream.close()


def test_run_task_client_token_is_idempotent(gantry):
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="idem")
    arn = register_instance(ecs, "idem")["containerInstanceArn"]
    stream = StreamReader(gantry, "idem", arn)
    try:
        stream.next_payload()
        ecs.register_task_definition(**dict(TD, family="idem"))
        a = ecs.run_task(cluster="idem", taskDefinition="idem", clientToken="tok-1")["tasks"]
        b = ecs.run_task(cluster="idem", taskDefinition="idem", clientToken="tok-1")["tasks"]
        assert [t["taskArn"] for t in a] == [t["taskArn"] for t in b]
        assert len(ecs.list_tasks(cluster="idem")["taskArns"]) == 1
    finally:
        stream.close()


def test_disconnected_agent_gets_no_tasks(quick):
    gantry = quick
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="away")
    arn = register_instance(ecs, "away")["containerInstanceArn"]
    ecs.register_task_definition(**dict(TD, family="away"))
    # Registered but never connected: the agent is not there to run anything.
    stream = StreamReader(gantry, "away", arn)
    stream.next_payload()
    stream.close()
    wait_until(lambda: not ecs.describe_container_instances(cluster="away", containerInstances=[arn])
               ["containerInstances"][0]["agentConnected"], timeout=15)
    r = ecs.run_task(cluster="away", taskDefinition="away")
    assert r["tasks"] == [] and r["failures"][0]["reason"] == "AGENT"


def test_stopped_tasks_expire_after_the_retention(tmp_path):
    from conftest import Gantry

    g = Gantry(tmp_path / "data").start(extra_args=["--stopped-task-retention", "1"])
    try:
        ecs = g.client("ecs")
        ecs.create_cluster(clusterName="ret")
        arn = register_instance(ecs, "ret")["containerInstanceArn"]
        stream = StreamReader(g, "ret", arn)
        try:
            stream.next_payload()
            ecs.register_task_definition(**dict(TD, family="ret"))
            t = ecs.run_task(cluster="ret", taskDefinition="ret")["tasks"][0]["taskArn"]
            ecs.submit_task_state_change(cluster="ret", task=t, status="STOPPED", reason="Essential container in task exited")
            assert ecs.describe_tasks(cluster="ret", tasks=[t])["tasks"][0]["lastStatus"] == "STOPPED"
            wait_until(lambda: ecs.describe_tasks(cluster="ret", tasks=[t])["failures"], timeout=15)
        finally:
            stream.close()
    finally:
        g.stop()


def test_placement_constraints_strategies_and_cql_filter(gantry):
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="place")
    by_zone = {}
    for zone in ["z1", "z2", "z3"]:
        for stack in ["blue", "green"]:
            ci = register_instance(ecs, "place", attributes=[{"name": "zone", "value": zone},
                                                              {"name": "stack", "value": stack}])
            by_zone.setdefault(zone, []).append(ci["containerInstanceArn"])
    blue = ecs.list_container_instances(cluster="place", filter="attribute:stack == blue")["containerInstanceArns"]
    assert len(blue) == 3
    d = ecs.describe_container_instances(cluster="place", containerInstances=blue)["containerInstances"]
    assert all({"name": "stack", "value": "blue"} in c["attributes"] for c in d)
    z12 = ecs.list_container_instances(cluster="place", filter="attribute:zone in [z1, z2] and not attribute:stack == green")
    assert len(z12["containerInstanceArns"]) == 2
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.list_container_instances(cluster="place", filter="attribute:stack ==")
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "position" in e.value.response["Error"]["Message"]

    ecs.register_task_definition(**dict(TD, family="place"))
    r = ecs.run_task(cluster="place", taskDefinition="place", count=6,
                     placementStrategy=[{"type": "spread", "field": "attribute:zone"}])
    assert r["failures"] == [] and len(r["tasks"]) == 6
    zone_of = {arn: z for z, arns in by_zone.items() for arn in arns}
    counts = {}
    for t in r["tasks"]:
        counts[zone_of[t["containerInstanceArn"]]] = counts.get(zone_of[t["containerInstanceArn"]], 0) + 1
    assert counts == {"z1": 2, "z2": 2, "z3": 2}

    r = ecs.run_task(cluster="place", taskDefinition="place", count=3, group="only-blue",
                     placementConstraints=[{"type": "memberOf", "expression": "attribute:stack == blue"},
                                           {"type": "distinctInstance"}])
    assert len(r["tasks"]) == 3
    assert {t["containerInstanceArn"] for t in r["tasks"]} == set(blue)
    r = ecs.run_task(cluster="place", taskDefinition="place", count=1, group="only-blue",
                     placementConstraints=[{"type": "memberOf", "expression": "attribute:stack == blue"},
                                           {"type": "distinctInstance"}])
    assert r["tasks"] == [] and r["failures"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.run_task(cluster="place", taskDefinition="place",
                     placementConstraints=[{"type": "memberOf", "expression": "attribute:stack === x"}])
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"


def test_empty_role_arns_count_as_absent(gantry):
    """ecs-deploy and Ansible send `taskRoleArn: ""`: ECS registers no role, and the task places
    on an instance without the task-role capability."""
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="noroles")
    arn = register_instance(ecs, "noroles")["containerInstanceArn"]
    stream = StreamReader(gantry, "noroles", arn)
    try:
        stream.next_payload()
        td = ecs.register_task_definition(**dict(TD, family="noroles", taskRoleArn="", executionRoleArn=""))
        td = td["taskDefinition"]
        assert "taskRoleArn" not in td and "executionRoleArn" not in td
        names = [a["name"] for a in td.get("requiresAttributes", [])]
        assert "com.amazonaws.ecs.capability.task-iam-role" not in names
        run = ecs.run_task(cluster="noroles", taskDefinition="noroles")
        assert run["failures"] == [] and len(run["tasks"]) == 1
        assert "overrides" not in run["tasks"][0] or "taskRoleArn" not in run["tasks"][0]["overrides"]
        assert stream.next_payload()["tasks"][0]["taskArn"] == run["tasks"][0]["taskArn"]
    finally:
        stream.close()


def test_execute_command_is_refused(gantry):
    """ECS Exec is not served: turning it on is refused, never echoed as if honoured."""
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="exec")
    ecs.register_task_definition(**dict(TD, family="exec"))
    for call in (
        lambda: ecs.run_task(cluster="exec", taskDefinition="exec", enableExecuteCommand=True),
        lambda: ecs.create_service(cluster="exec", serviceName="s", taskDefinition="exec",
                                   desiredCount=0, enableExecuteCommand=True),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == "InvalidParameterException"
        assert "enableExecuteCommand" in e.value.response["Error"]["Message"]
    s = ecs.create_service(cluster="exec", serviceName="s", taskDefinition="exec", desiredCount=0,
                           enableExecuteCommand=False)["service"]
    assert s["enableExecuteCommand"] is False
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.update_service(cluster="exec", service="s", enableExecuteCommand=True)
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    assert ecs.describe_services(cluster="exec", services=["s"])["services"][0]["enableExecuteCommand"] is False


def test_instances_that_do_not_reconnect_after_a_restart_are_disconnected(tmp_path):
    """An agent connected before the control plane restarted that never comes back: liveness
    counts from the server's start, placement skips the instance and its tasks are lost."""
    from conftest import Gantry

    args = ["--heartbeat-grace", "1", "--lost-after", "2"]
    g = Gantry(tmp_path / "data").start(extra_args=args)
    try:
        ecs = g.client("ecs")
        ecs.create_cluster(clusterName="ghost")
        arn = register_instance(ecs, "ghost")["containerInstanceArn"]
        stream = StreamReader(g, "ghost", arn)
        stream.next_payload()
        wait_until(lambda: ecs.describe_container_instances(cluster="ghost", containerInstances=[arn])
                   ["containerInstances"][0]["agentConnected"])
        ecs.register_task_definition(**dict(TD, family="ghost"))
        task = ecs.run_task(cluster="ghost", taskDefinition="ghost")["tasks"][0]["taskArn"]
    finally:
        g.stop(sig=signal.SIGKILL)
    stream.close()
    g2 = Gantry(tmp_path / "data", g.access_key, g.secret_key).start(extra_args=args)
    try:
        ecs = g2.client("ecs")
        wait_until(lambda: not ecs.describe_container_instances(cluster="ghost", containerInstances=[arn])
                   ["containerInstances"][0]["agentConnected"], timeout=10)
        run = ecs.run_task(cluster="ghost", taskDefinition="ghost")
        assert run["tasks"] == [] and run["failures"][0]["reason"] == "AGENT", run
        t = wait_until(lambda: (lambda t: t if t["lastStatus"] == "STOPPED" else None)(
            ecs.describe_tasks(cluster="ghost", tasks=[task])["tasks"][0]), timeout=15)
        assert t["stopCode"] == "InfrastructureHealth" and "Host lost" in t["stoppedReason"]
    finally:
        g2.stop()


def test_tasks_on_a_force_deregistered_instance_stop(gantry):
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="dereg")
    arn = register_instance(ecs, "dereg")["containerInstanceArn"]
    stream = StreamReader(gantry, "dereg", arn)
    try:
        stream.next_payload()
        ecs.register_task_definition(**dict(TD, family="dereg"))
        task = ecs.run_task(cluster="dereg", taskDefinition="dereg")["tasks"][0]["taskArn"]
        assert ecs.describe_tasks(cluster="dereg", tasks=[task])["tasks"][0]["lastStatus"] == "PROVISIONING"
        ecs.deregister_container_instance(cluster="dereg", containerInstance=arn, force=True)
        t = wait_until(lambda: (lambda t: t if t["lastStatus"] == "STOPPED" else None)(
            ecs.describe_tasks(cluster="dereg", tasks=[task])["tasks"][0]), timeout=10)
        assert t["desiredStatus"] == "STOPPED" and "deregistered" in t["stoppedReason"]
    finally:
        stream.close()


def test_force_deleting_a_service_behind_a_load_balancer_drains_and_stops_its_tasks(gantry):
    ecs, elb = gantry.client("ecs"), gantry.client("elbv2")
    ecs.create_cluster(clusterName="lbdel")
    arn = register_instance(ecs, "lbdel")["containerInstanceArn"]
    stream = StreamReader(gantry, "lbdel", arn)
    try:
        stream.next_payload()
        tg = elb.create_target_group(Name="lbdel", Protocol="HTTP", Port=80, VpcId="vpc-1",
                                     TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
        elb.modify_target_group_attributes(TargetGroupArn=tg, Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "1"}])
        ecs.register_task_definition(**dict(TD, family="lbdel"))
        ecs.create_service(cluster="lbdel", serviceName="web", taskDefinition="lbdel", desiredCount=1,
                           loadBalancers=[{"targetGroupArn": tg, "containerName": "web", "containerPort": 80}])
        task = stream.next_payload()["tasks"][0]["taskArn"]
        ecs.submit_task_state_change(
            cluster="lbdel", task=task, status="RUNNING",
            containers=[{"containerName": "web", "runtimeId": "a1", "status": "RUNNING",
                         "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 49153,
                                              "protocol": "tcp"}]},
                        {"containerName": "side", "runtimeId": "b1", "status": "RUNNING"}])
        targets = lambda: elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        wait_until(lambda: [t["Target"]["Port"] for t in targets()] == [49153])

        assert ecs.delete_service(cluster="lbdel", service="web", force=True)["service"]["status"] == "DRAINING"
        # The target drains (DEACTIVATING, the service stays DRAINING), then the agent is told to
        # stop the task.
        wait_until(lambda: ecs.describe_tasks(cluster="lbdel", tasks=[task])["tasks"][0]["lastStatus"]
                   == "DEACTIVATING")
        assert ecs.describe_services(cluster="lbdel", services=["web"])["services"][0]["status"] == "DRAINING"
        p = stream.next_payload(timeout=15)
        assert p["tasks"][0]["taskArn"] == task and p["tasks"][0]["desiredStatus"] == "STOPPED"
        wait_until(lambda: targets() == [], timeout=10)
        ecs.submit_task_state_change(cluster="lbdel", task=task, status="STOPPED",
                                     containers=[{"containerName": "web", "exitCode": 143, "status": "STOPPED"}])
        wait_until(lambda: ecs.describe_services(cluster="lbdel", services=["web"])["services"][0]["status"]
                   == "INACTIVE")
        t = ecs.describe_tasks(cluster="lbdel", tasks=[task])["tasks"][0]
        assert t["lastStatus"] == "STOPPED" and t["stopCode"] == "ServiceSchedulerInitiated"
    finally:
        stream.close()

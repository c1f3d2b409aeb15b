"""`gantry simulate`: simulated container instances for measuring the control plane at scale."""

import os
import signal
import subprocess

from conftest import gantry_binary
from test_agent_tasks import wait_until


def test_simulated_instances_run_tasks_and_services(gantry, tmp_path):
    env = dict(os.environ, GANTRY_ROOT_ACCESS_KEY_ID=gantry.access_key,
               GANTRY_ROOT_SECRET_ACCESS_KEY=gantry.secret_key, GANTRY_LOG="warn")
    sim = subprocess.Popen([gantry_binary(), "simulate", "--endpoint", gantry.endpoint, "--cluster", "sim",
                            "--instances", "30", "--seed", "7"], env=env,
                           stdout=open(tmp_path / "sim.log", "wb"), stderr=subprocess.STDOUT)
    ecs = gantry.client("ecs")
    try:
        def registered():
            arns = [a for p in ecs.get_paginator("list_container_instances").paginate(cluster="sim")
                    for a in p["containerInstanceArns"]]
            return len(arns) == 30 and arns
        arns = wait_until(lambda: _safe(registered), timeout=60, what="30 simulated instances")
        insts = ecs.describe_container_instances(cluster="sim", containerInstances=arns[:10])["containerInstances"]
        zones = {a["value"] for i in insts for a in i["attributes"] if a["name"] == "ecs.availability-zone"}
        assert len(zones) >= 2, zones
        ecs.register_task_definition(family="sim", containerDefinitions=[{"name": "c", "image": "busybox", "memory": 128}])
        tasks = ecs.run_task(cluster="sim", taskDefinition="sim", count=10,
                             placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"},
                                                {"type": "binpack", "field": "memory"}])["tasks"]
        assert len(tasks) == 10
        ecs.get_waiter("tasks_running").wait(cluster="sim", tasks=[t["taskArn"] for t in tasks],
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        ecs.create_service(cluster="sim", serviceName="s", taskDefinition="sim", desiredCount=20)
        ecs.get_waiter("services_stable").wait(cluster="sim", services=["s"], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        for t in tasks:
            ecs.stop_task(cluster="sim", task=t["taskArn"])
        ecs.get_waiter("tasks_stopped").wait(cluster="sim", tasks=[t["taskArn"] for t in tasks],
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    finally:
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(timeout=20)
        except subprocess.TimeoutExpired:
            sim.kill()


def _safe(fn):
    try:
        return fn()
    except Exception:
        return None

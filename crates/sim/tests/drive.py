"""Drives a gantry server whose cluster is populated by simulated instances, with boto3 (a client
we did not write), using the AWS waiters as assertions. Run by tests/simulated_cluster.rs:

    python3 drive.py tasks|service

Environment: GANTRY_ENDPOINT, GANTRY_CLUSTER, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION. Exits non-zero (with the reason) when an expectation fails.
"""

import collections
import os
import sys
import time

import boto3
import botocore.config

ENDPOINT = os.environ["GANTRY_ENDPOINT"]
CLUSTER = os.environ["GANTRY_CLUSTER"]
FAST = {"Delay": 1, "MaxAttempts": 60}


def ecs():
    return boto3.client(
        "ecs",
        endpoint_url=ENDPOINT,
        config=botocore.config.Config(retries={"max_attempts": 2, "mode": "standard"}),
    )


def register(client, family):
    return client.register_task_definition(
        family=family,
        containerDefinitions=[{
            "name": "app",
            "image": "public.ecr.aws/docker/library/busybox:latest",
            "cpu": 128,
            "memory": 256,
            "essential": True,
            "command": ["httpd", "-f", "-p", "8080"],
        }],
    )["taskDefinition"]["taskDefinitionArn"]


def check(cond, message):
    if not cond:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def instances(client):
    arns = []
    for page in client.get_paginator("list_container_instances").paginate(cluster=CLUSTER):
        arns += page["containerInstanceArns"]
    described = []
    for i in range(0, len(arns), 100):
        described += client.describe_container_instances(
            cluster=CLUSTER, containerInstances=arns[i:i + 100])["containerInstances"]
    return described


def attribute(ci, name):
    return next((a.get("value") for a in ci["attributes"] if a["name"] == name), None)


def scenario_tasks():
    client = ecs()
    fleet = instances(client)
    check(all(ci["agentConnected"] for ci in fleet), "every simulated instance is connected")
    blue = {ci["containerInstanceArn"] for ci in fleet if attribute(ci, "stack") == "blue"}
    listed = set()
    for page in client.get_paginator("list_container_instances").paginate(
            cluster=CLUSTER, filter="attribute:stack == blue"):
        listed |= set(page["containerInstanceArns"])
    check(listed == blue, f"--filter 'attribute:stack == blue' gives the blue instances ({len(listed)} vs {len(blue)})")

    td = register(client, "sim-tasks")
    out = client.run_task(
        cluster=CLUSTER, taskDefinition=td, count=10,
        placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"}],
    )
    check(not out["failures"], f"RunTask places all 10: {out['failures']}")
    arns = [t["taskArn"] for t in out["tasks"]]
    check(len(arns) == 10, "RunTask returns 10 tasks")
    zones = collections.Counter(t["availabilityZone"] for t in out["tasks"])
    check(sorted(zones.values()) == [3, 3, 4], f"spread over 3 zones: {dict(zones)}")
    client.get_waiter("tasks_running").wait(cluster=CLUSTER, tasks=arns, WaiterConfig=FAST)
    tasks = client.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]
    check(all(t["lastStatus"] == "RUNNING" for t in tasks), "all 10 RUNNING")
    check(all(t["containers"][0]["lastStatus"] == "RUNNING" for t in tasks), "containers RUNNING")

    for arn in arns:
        client.stop_task(cluster=CLUSTER, task=arn, reason="sim test")
    client.get_waiter("tasks_stopped").wait(cluster=CLUSTER, tasks=arns, WaiterConfig=FAST)
    tasks = client.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]
    check(all(t["lastStatus"] == "STOPPED" for t in tasks), "all 10 STOPPED")
    check(all(t.get("stopCode") == "UserInitiated" and t.get("stoppedReason") == "sim test"
              for t in tasks), "stopped as the user asked")
    fleet = instances(client)
    check(all(ci["runningTasksCount"] == 0 and ci["pendingTasksCount"] == 0 for ci in fleet),
          "no instance counts a task any more")
    print("tasks: 10 RUNNING then STOPPED")


def scenario_service():
    client = ecs()
    td = register(client, "sim-service")
    client.create_service(cluster=CLUSTER, serviceName="web", taskDefinition=td, desiredCount=6,
                          launchType="EC2")
    client.get_waiter("services_stable").wait(cluster=CLUSTER, services=["web"], WaiterConfig=FAST)
    # The deployment is marked COMPLETED by the service runner's pass after the one that saw all
    # six RUNNING, so the stable waiter can answer just before it (bounded wait).
    deadline = time.monotonic() + 10
    while True:
        svc = client.describe_services(cluster=CLUSTER, services=["web"])["services"][0]
        if svc["deployments"][0]["rolloutState"] == "COMPLETED" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    check(len(svc["deployments"]) == 1, f"one deployment: {svc['deployments']}")
    check(svc["runningCount"] == 6 and svc["desiredCount"] == 6, f"6 running: {svc['runningCount']}")
    check(svc["deployments"][0]["rolloutState"] == "COMPLETED", "rollout COMPLETED")
    arns = client.list_tasks(cluster=CLUSTER, serviceName="web")["taskArns"]
    tasks = client.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]
    zones = collections.Counter(t["availabilityZone"] for t in tasks)
    check(sorted(zones.values()) == [2, 2, 2], f"the default strategy spreads the zones: {dict(zones)}")
    print("service: 6 RUNNING, one COMPLETED deployment")


if __name__ == "__main__":
    {"tasks": scenario_tasks, "service": scenario_service}[sys.argv[1]]()

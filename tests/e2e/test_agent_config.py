"""The agent configured as the ECS agent is (`ecs.config` keys, flags over the file), and
placement failures that name the requirement no instance meets."""

import json
import os
import subprocess
import time

import pytest

from conftest import Gantry, gantry_binary, require_docker
from test_agent_tasks import wait_until

CLUSTER = "from-file"


def agent_env(g):
    """Only the standard AWS variables: the agent reads the AWS credential chain."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GANTRY_", "ECS_"))}
    env.update(AWS_ACCESS_KEY_ID=g.access_key, AWS_SECRET_ACCESS_KEY=g.secret_key,
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    return env


def start_agent(g, tmp, name, lines, *flags):
    cfg = tmp / f"{name}.config"
    cfg.write_text("\n".join(lines) + "\n")
    log = open(tmp / f"{name}.log", "wb")
    p = subprocess.Popen([gantry_binary(), "agent", "--config", str(cfg), *flags], env=agent_env(g),
                         stdout=log, stderr=log)
    return p, tmp / f"{name}.log"


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    require_docker()
    tmp = tmp_path_factory.mktemp("agentcfg")
    g = Gantry(tmp / "data").start()
    lines = [
        "# written as for the ECS agent",
        f"ECS_BACKEND_HOST={g.endpoint}",
        f"ECS_CLUSTER={CLUSTER}",
        f"ECS_DATADIR={tmp / 'agent'}",
        'ECS_INSTANCE_ATTRIBUTES={"stack": "blue", "tier": "web"}',
        "ECS_RESERVED_MEMORY=300",
        "ECS_RESERVED_PORTS=[22, 7777]",
        "ECS_RESERVED_PORTS_UDP=[5353]",
        'ECS_CONTAINER_INSTANCE_TAGS={"team": "ops"}',
        'ECS_AVAILABLE_LOGGING_DRIVERS=["json-file", "awslogs"]',
        "ECS_CONTAINER_STOP_TIMEOUT=10s",
        "ECS_IMAGE_PULL_BEHAVIOR=prefer-cached",
        "ECS_LOGLEVEL=info",
        "ECS_ENABLE_TASK_IAM_ROLE=false",
        "ECS_NOT_A_GANTRY_KEY=1",
    ]
    agent, log = start_agent(g, tmp, "agent", lines)
    try:
        yield g, tmp, agent, log, lines
    finally:
        stop(agent)
        g.stop()


def describe_only_instance(ecs, cluster):
    def arns():
        try:
            return ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
        except ecs.exceptions.ClusterNotFoundException:
            return None  # the agent creates it
    arns = wait_until(arns, what=f"an instance in {cluster}")
    return ecs.describe_container_instances(cluster=cluster, containerInstances=arns, include=["TAGS"])[
        "containerInstances"][0]


def test_an_agent_with_only_an_ecs_config_joins_with_its_settings(setup):
    g, tmp, agent, log, _ = setup
    ecs = g.client("ecs")
    ci = describe_only_instance(ecs, CLUSTER)
    assert ci["agentConnected"] and ci["status"] == "ACTIVE"
    attrs = {a["name"]: a.get("value") for a in ci["attributes"]}
    assert attrs["stack"] == "blue" and attrs["tier"] == "web"
    assert "com.amazonaws.ecs.capability.logging-driver.awslogs" in attrs
    assert "com.amazonaws.ecs.capability.logging-driver.none" not in attrs
    res = {r["name"]: r for r in ci["registeredResources"]}
    assert "7777" in res["PORTS"]["stringSetValue"] and "2375" not in res["PORTS"]["stringSetValue"]
    assert res["PORTS_UDP"]["stringSetValue"] == ["5353"]
    host_mib = int(subprocess.run(["docker", "info", "--format", "{{.MemTotal}}"], capture_output=True,
                                  text=True, check=True).stdout) // (1024 * 1024)
    assert res["MEMORY"]["integerValue"] == host_mib - 300
    assert {"key": "team", "value": "ops"} in ci["tags"]
    text = log.read_text()
    assert text.count("unknown agent configuration key") == 1 and "ECS_NOT_A_GANTRY_KEY" in text


def test_flags_override_the_file_and_bad_values_are_refused(setup):
    g, tmp, _, _, lines = setup
    ecs = g.client("ecs")
    other, _ = start_agent(g, tmp, "other", lines, "--cluster", "from-flag", "--data-dir", str(tmp / "other"),
                           "--attribute", "stack=green")
    try:
        ci = describe_only_instance(ecs, "from-flag")
        attrs = {a["name"]: a.get("value") for a in ci["attributes"]}
        assert attrs["stack"] == "green" and attrs["tier"] == "web"
    finally:
        stop(other)
    for bad, says in (("ECS_ENABLE_TASK_IAM_ROLE=maybe", "true or false"),
                      ("ECS_IMAGE_PULL_BEHAVIOR=once", "not supported"),
                      ('ECS_AVAILABLE_LOGGING_DRIVERS=["splunk"]', "splunk")):
        p, log = start_agent(g, tmp, "bad", [f"ECS_BACKEND_HOST={g.endpoint}", f"ECS_DATADIR={tmp / 'bad'}", bad])
        assert p.wait(timeout=30) != 0
        assert says in log.read_text()


def test_placement_failures_name_the_missing_requirement(setup):
    g, _, _, _, _ = setup
    ecs = g.client("ecs")
    describe_only_instance(ecs, CLUSTER)
    ecs.register_task_definition(family="fluent", containerDefinitions=[{
        "name": "app", "image": "busybox", "memory": 16,
        "logConfiguration": {"logDriver": "fluentd"}}])
    out = ecs.run_task(cluster=CLUSTER, taskDefinition="fluent")
    assert out["tasks"] == []
    f = out["failures"][0]
    assert f["reason"] == "ATTRIBUTE"
    assert "com.amazonaws.ecs.capability.logging-driver.fluentd" in f["detail"]
    assert "Gantry does not support yet" in f["detail"]

    # A shared file system (ECS requires ecs.capability.efs, which Gantry's agent cannot offer yet).
    ecs.register_task_definition(family="shared", containerDefinitions=[{
        "name": "app", "image": "busybox", "memory": 16,
        "mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}]}],
        volumes=[{"name": "data", "efsVolumeConfiguration": {"fileSystemId": "fs-12345678"}}])
    f = ecs.run_task(cluster=CLUSTER, taskDefinition="shared")["failures"][0]
    assert f["reason"] == "ATTRIBUTE" and "ecs.capability.efs (a capability Gantry does not support yet" in f["detail"]

    # An attribute this instance was configured without (ECS_AVAILABLE_LOGGING_DRIVERS).
    ecs.register_task_definition(family="quiet", containerDefinitions=[{
        "name": "app", "image": "busybox", "memory": 16, "logConfiguration": {"logDriver": "none"}}])
    f = ecs.run_task(cluster=CLUSTER, taskDefinition="quiet")["failures"][0]
    assert f["reason"] == "ATTRIBUTE"
    assert f["detail"] == ("no container instance has the attribute required by the task: "
                           "com.amazonaws.ecs.capability.logging-driver.none")

    ecs.create_service(cluster=CLUSTER, serviceName="fluent", taskDefinition="fluent", desiredCount=1)
    try:
        def event():
            s = ecs.describe_services(cluster=CLUSTER, services=["fluent"])["services"][0]
            return next((e["message"] for e in s["events"] if "unable to place" in e["message"]), None)
        msg = wait_until(event, timeout=30, what="placement event")
        assert "com.amazonaws.ecs.capability.logging-driver.fluentd" in msg and "Gantry does not support" in msg
    finally:
        ecs.delete_service(cluster=CLUSTER, service="fluent", force=True)

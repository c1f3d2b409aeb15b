"""File-system volumes (the EFS role): `efsVolumeConfiguration` backed by a host directory that
each agent maps with `--file-system fs-ID=dir:PATH`. Two tasks on one agent and one on a second
see each other's files."""

import uuid

import pytest

from conftest import Gantry, require_docker
from images import build_busybox_image, docker
from test_agent_tasks import Agent, containers_of, wait_until
from test_user_commands import gantry as run_gantry

CLUSTER = "fs"


@pytest.fixture
def setup(tmp_path):
    require_docker()
    g = Gantry(tmp_path / "data").start()
    shared = tmp_path / "shared"
    agents = []
    local = build_busybox_image(tmp_path, f"gantry-console/fs-{uuid.uuid4().hex[:8]}:v1")
    try:
        ecs = g.client("ecs")
        ecs.create_cluster(clusterName=CLUSTER)
        for name in ("a", "b"):
            agents.append(Agent(g, CLUSTER, tmp_path / f"agent-{name}", [f"host={name}"],
                                extra=["--file-system", f"fs-0123abcd=dir:{shared}"]).start())
        wait_until(lambda: len(ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"]) == 2,
                   what="2 agents")
        assert run_gantry(g, "push", local, "--repository", "fs").returncode == 0
        yield g, shared
    finally:
        ecs = g.client("ecs")
        for t in ecs.list_tasks(cluster=CLUSTER)["taskArns"]:
            ecs.stop_task(cluster=CLUSTER, task=t)
        for a in agents:
            a.stop()
        g.stop()
        docker("rmi", "-f", local, f"{g.registry}/fs:v1", check=False)


def test_tasks_on_two_hosts_share_files(setup):
    g, shared = setup
    ecs = g.client("ecs")
    ci = ecs.describe_container_instances(
        cluster=CLUSTER, containerInstances=ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"])
    assert all(any(a["name"] == "ecs.capability.efs" for a in i["attributes"]) for i in ci["containerInstances"])
    ecs.register_task_definition(family="shared", containerDefinitions=[{
        "name": "app", "image": f"{g.registry}/fs:v1", "memory": 16, "stopTimeout": 1,
        "mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}],
        "command": ["/bin/sh", "-c",
                    "hostname > /data/$(hostname); while [ $(ls /data | wc -l) -lt 3 ]; do sleep 0.2; done; "
                    "echo seen $(ls /data | wc -l) files; sleep 3600"]}],
        volumes=[{"name": "data", "efsVolumeConfiguration": {
            "fileSystemId": "fs-0123abcd", "rootDirectory": "/app", "transitEncryption": "DISABLED"}}])
    td = ecs.describe_task_definition(taskDefinition="shared")["taskDefinition"]
    assert {"name": "ecs.capability.efs"} in td["requiresAttributes"]
    tasks = ecs.run_task(cluster=CLUSTER, taskDefinition="shared", count=2,
                         placementConstraints=[{"type": "memberOf", "expression": "attribute:host == a"}])["tasks"]
    tasks += ecs.run_task(cluster=CLUSTER, taskDefinition="shared", count=1,
                          placementConstraints=[{"type": "memberOf", "expression": "attribute:host == b"}])["tasks"]
    assert len(tasks) == 3
    assert len({t["containerInstanceArn"] for t in tasks}) == 2
    arns = [t["taskArn"] for t in tasks]
    ecs.get_waiter("tasks_running").wait(cluster=CLUSTER, tasks=arns, WaiterConfig={"Delay": 1, "MaxAttempts": 120})

    def all_saw_three():
        outs = []
        for a in arns:
            ids = containers_of(a)
            if not ids:
                return False
            outs.append(docker("logs", ids[0]).stdout)
        return all("seen 3 files" in o for o in outs) and outs
    wait_until(all_saw_three, timeout=60, interval=0.5, what="every task seeing the three files")
    # The files are under the mapped directory's rootDirectory, nowhere else.
    assert len(list((shared / "app").iterdir())) == 3

    with pytest.raises(ecs.exceptions.ClientException):
        ecs.register_task_definition(family="escape", containerDefinitions=[{
            "name": "app", "image": "x", "memory": 16}],
            volumes=[{"name": "d", "efsVolumeConfiguration": {"fileSystemId": "fs-0123abcd",
                                                               "rootDirectory": "/../../etc"}}])

"""Fargate: tasks and services with launch type FARGATE on the platform's capacity (the server's
own machine with `--fargate-local`), which no user cluster shows; ECS's validation errors."""

import json
import os
import signal
import subprocess
import urllib.request
import uuid

import botocore.exceptions
import pytest

from conftest import Gantry, gantry_binary, remove_subnet_networks, require_network_powers
from images import build_busybox_image, docker
from test_agent_tasks import wait_until

PLATFORM = "platform.fargate"


def fargate_td(family, image, cpu="256", memory="512", **extra):
    cmd = "mkdir -p /tmp/w && echo \"fargate $(hostname)\" > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w"
    td = {"family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
          "cpu": cpu, "memory": memory,
          "containerDefinitions": [{"name": "app", "image": image, "essential": True, "stopTimeout": 2,
                                    "command": ["/bin/sh", "-c", cmd], "portMappings": [{"containerPort": 80}]}]}
    td.update(extra)
    return td


CGROUP_ROOT = "/sys/fs/cgroup"


def task_cgroup(parent, controller="memory"):
    """The directory of a task's cgroup (Docker's `CgroupParent`: a path, or a systemd slice in
    `gantry.slice`) in the `controller` hierarchy (cgroup v1) or the unified one (v2)."""
    rel = f"gantry.slice/{parent}" if parent.endswith(".slice") else parent.lstrip("/")
    if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers"):
        return f"{CGROUP_ROOT}/{rel}"
    return f"{CGROUP_ROOT}/{controller}/{rel}"


def cgroup_limits(parent):
    """(CPU quota in CPUs, memory limit in bytes) of a task's cgroup."""
    if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers"):
        d = task_cgroup(parent)
        quota, period = open(f"{d}/cpu.max").read().split()
        return int(quota) / int(period), int(open(f"{d}/memory.max").read())
    cpu = task_cgroup(parent, "cpu")
    quota = int(open(f"{cpu}/cpu.cfs_quota_us").read()) / int(open(f"{cpu}/cpu.cfs_period_us").read())
    return quota, int(open(f"{task_cgroup(parent)}/memory.limit_in_bytes").read())


def task_containers(arn, name=None):
    """Docker ids of a task's containers (all of them, or the one named `name`)."""
    filters = ["--filter", f"label=com.amazonaws.ecs.task-arn={arn}"]
    if name:
        filters += ["--filter", f"label=com.amazonaws.ecs.container-name={name}"]
    return docker("ps", "-aq", *filters).stdout.split()


def code_and_message(fn):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        fn()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def test_fargate_validation_and_the_hidden_platform(gantry):
    ecs, ec2 = gantry.client("ecs"), gantry.client("ec2")
    ecs.create_cluster(clusterName="fv")
    # Task sizes from the Fargate table, awsvpc only, no privileged containers.
    code, msg = code_and_message(lambda: ecs.register_task_definition(**fargate_td("bad", "busybox", "256", "4096")))
    assert code == "ClientException"
    assert msg.startswith("No Fargate configuration exists for given values: 256 CPU, 4096 memory.")
    bridge = fargate_td("bridge", "busybox")
    bridge["networkMode"] = "bridge"
    assert code_and_message(lambda: ecs.register_task_definition(**bridge)) == (
        "ClientException", "Fargate only supports network mode 'awsvpc'.")
    priv = fargate_td("priv", "busybox")
    priv["containerDefinitions"][0]["privileged"] = True
    code, msg = code_and_message(lambda: ecs.register_task_definition(**priv))
    assert code == "ClientException" and "privileged" in msg
    code, msg = code_and_message(lambda: ecs.register_task_definition(
        **fargate_td("disk", "busybox", ephemeralStorage={"sizeInGiB": 10})))
    assert code == "ClientException" and "between 21 and 200" in msg

    td = ecs.register_task_definition(**fargate_td("ok", "busybox", ephemeralStorage={"sizeInGiB": 30}))["taskDefinition"]
    assert td["compatibilities"] == ["EC2", "FARGATE"] and td["requiresCompatibilities"] == ["FARGATE"]
    plain = ecs.register_task_definition(family="plain", containerDefinitions=[
        {"name": "a", "image": "busybox", "memory": 32}])["taskDefinition"]
    assert plain["compatibilities"] == ["EC2"]

    subnet = ec2.describe_subnets()["Subnets"]
    net = {"awsvpcConfiguration": {"subnets": [subnet[0]["SubnetId"]]}} if subnet else None
    # Missing network configuration, an EC2-only task definition, platform versions.
    code, msg = code_and_message(lambda: ecs.run_task(cluster="fv", taskDefinition="ok", launchType="FARGATE"))
    assert code == "InvalidParameterException" and "Network Configuration must be provided" in msg
    if net:
        code, msg = code_and_message(lambda: ecs.run_task(cluster="fv", taskDefinition="plain", launchType="FARGATE",
                                                          networkConfiguration=net))
        assert (code, msg) == ("InvalidParameterException", "Task definition does not support launch_type FARGATE.")
        code, _ = code_and_message(lambda: ecs.run_task(cluster="fv", taskDefinition="ok", launchType="FARGATE",
                                                        platformVersion="1.3.0", networkConfiguration=net))
        assert code == "UnsupportedFeatureException"
        code, msg = code_and_message(lambda: ecs.run_task(cluster="fv", taskDefinition="ok", launchType="FARGATE",
                                                          networkConfiguration=net, overrides={"cpu": "256", "memory": "4096"}))
        assert code == "ClientException" and "256 CPU, 4096 memory" in msg
        code, msg = code_and_message(lambda: ecs.run_task(
            cluster="fv", taskDefinition="ok", launchType="FARGATE", networkConfiguration=net,
            placementStrategy=[{"type": "spread", "field": "instanceId"}]))
        assert code == "InvalidParameterException" and "FARGATE" in msg
        # No platform capacity: ECS's capacity failure, no task.
        run = ecs.run_task(cluster="fv", taskDefinition="ok", launchType="FARGATE", networkConfiguration=net)
        assert run["tasks"] == []
        assert [f["reason"] for f in run["failures"]] == [
            "Capacity is unavailable at this time. Please try again later or in a different availability zone"]
    code, msg = code_and_message(lambda: ecs.run_task(cluster="fv", taskDefinition="plain", launchType="EC2",
                                                      platformVersion="LATEST"))
    assert (code, msg) == ("InvalidParameterException",
                           "The platform version must be null when specifying an EC2 launch type.")

    # The platform cluster is nobody's: not listed, not describable, not usable.
    assert not any(PLATFORM in a for a in ecs.list_clusters()["clusterArns"])
    d = ecs.describe_clusters(clusters=[PLATFORM])
    assert d["clusters"] == [] and d["failures"][0]["reason"] == "MISSING"
    code, _ = code_and_message(lambda: ecs.list_container_instances(cluster=PLATFORM))
    assert code == "ClusterNotFoundException"
    code, _ = code_and_message(lambda: ecs.create_cluster(clusterName=PLATFORM))
    assert code == "InvalidParameterException"


@pytest.fixture
def fargate(tmp_path, vpc_block):
    """A server running Fargate tasks on this machine, and a busybox image; cleans the host after."""
    require_network_powers()
    g = Gantry(tmp_path / "data").start(extra_args=["--default-vpc-cidr", vpc_block, "--fargate-local"])
    image = build_busybox_image(tmp_path, f"gantry-e2e/fargate-{uuid.uuid4().hex[:8]}:src")
    g.image = image
    yield g
    g.stop()
    p = subprocess.run([gantry_binary(), "agent", "--endpoint", g.endpoint, "--data-dir",
                        str(g.data_dir / "fargate-agent"), "--uninstall"],
                       env=g.env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    remove_subnet_networks(vpc_block)
    docker("rmi", "-f", image, check=False)


def fargate_subnet(gantry, zone="us-east-1a"):
    """The default subnet of the zone of the server's own platform host (the region's first)."""
    ec2 = gantry.client("ec2")

    def subnets():
        return ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]},
                                             {"Name": "availability-zone", "Values": [zone]}])["Subnets"]
    wait_until(lambda: subnets(), what="a default subnet in the platform's zone")
    return subnets()[0]


def test_fargate_task_with_the_aws_cli_on_a_cluster_without_instances(fargate):
    ecs = fargate.client("ecs")
    ecs.create_cluster(clusterName="fg")
    ecs.register_task_definition(**fargate_td("web", fargate.image))
    subnet = fargate_subnet(fargate)
    out = fargate.aws_json("ecs", "run-task", "--cluster", "fg", "--task-definition", "web",
                           "--launch-type", "FARGATE", "--network-configuration",
                           json.dumps({"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]],
                                                               "assignPublicIp": "DISABLED"}}))
    assert out["failures"] == [], out
    arn = out["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_running").wait(cluster="fg", tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    t = ecs.describe_tasks(cluster="fg", tasks=[arn])["tasks"][0]
    assert t["launchType"] == "FARGATE" and t["platformVersion"] == "1.4.0" and t["platformFamily"] == "Linux"
    assert "containerInstanceArn" not in t
    assert t["cpu"] == "256" and t["memory"] == "512" and t["ephemeralStorage"] == {"sizeInGiB": 20}
    a = t["attachments"][0]
    details = {d["name"]: d["value"] for d in a["details"]}
    assert a["type"] == "ElasticNetworkInterface" and a["status"] == "ATTACHED"
    assert details["subnetId"] == subnet["SubnetId"] and details["networkInterfaceId"].startswith("eni-")
    ip = details["privateIPv4Address"]
    assert t["availabilityZone"] == subnet["AvailabilityZone"]
    # A real container answers at the task's own address.
    body = urllib.request.urlopen(f"http://{ip}/index.html", timeout=5).read().decode()
    assert body.startswith("fargate ip-" + ip.replace(".", "-"))
    # The task metadata endpoint v4 answers inside the task's namespace, as on EC2.
    app = docker("ps", "-q", "--filter", f"label=com.amazonaws.ecs.task-arn={arn}",
                 "--filter", "label=com.amazonaws.ecs.container-name=app").stdout.split()[0]
    meta = docker("exec", app, "sh", "-c",
                  'u=${ECS_CONTAINER_METADATA_URI_V4#http://}; h=${u%%/*}; '
                  'printf "GET /${u#*/}/task HTTP/1.0\r\n\r\n" | nc -w 3 ${h%:*} ${h#*:}').stdout
    task_meta = json.loads(meta.replace("\r\n", "\n").split("\n\n", 1)[1])
    assert task_meta["LaunchType"] == "FARGATE" and task_meta["TaskARN"] == arn
    assert task_meta["Cluster"].endswith(":cluster/fg")
    assert task_meta["Containers"][0]["Networks"][0]["IPv4Addresses"] == [ip]
    # The cluster still has no container instance; the platform shows nowhere.
    assert ecs.list_container_instances(cluster="fg")["containerInstanceArns"] == []
    assert not any(PLATFORM in a for a in ecs.list_clusters()["clusterArns"])
    assert ecs.list_tasks(cluster="fg", launchType="FARGATE")["taskArns"] == [arn]

    # The server's own host serves every zone: a task in a subnet of another zone runs there too,
    # in its subnet's zone.
    other = fargate_subnet(fargate, zone="us-east-1b")
    out_b = ecs.run_task(cluster="fg", taskDefinition="web", launchType="FARGATE", networkConfiguration={
        "awsvpcConfiguration": {"subnets": [other["SubnetId"]]}})
    assert out_b["failures"] == [], out_b
    arn_b = out_b["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_running").wait(cluster="fg", tasks=[arn_b], WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    t_b = ecs.describe_tasks(cluster="fg", tasks=[arn_b])["tasks"][0]
    details_b = {d["name"]: d["value"] for d in t_b["attachments"][0]["details"]}
    assert t_b["availabilityZone"] == "us-east-1b" and details_b["subnetId"] == other["SubnetId"]
    body = urllib.request.urlopen(f"http://{details_b['privateIPv4Address']}/index.html", timeout=5).read().decode()
    assert body.startswith("fargate ip-")
    ecs.stop_task(cluster="fg", task=arn_b)

    # A Fargate service keeps its tasks running on the platform.
    ecs.create_service(cluster="fg", serviceName="svc", taskDefinition="web", desiredCount=2,
                       launchType="FARGATE", platformVersion="LATEST",
                       networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]]}})
    ecs.get_waiter("services_stable").wait(cluster="fg", services=["svc"], WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    svc = ecs.describe_services(cluster="fg", services=["svc"])["services"][0]
    assert svc["runningCount"] == 2 and svc["launchType"] == "FARGATE" and svc["platformVersion"] == "LATEST"
    svc_tasks = ecs.list_tasks(cluster="fg", serviceName="svc")["taskArns"]
    described = ecs.describe_tasks(cluster="fg", tasks=svc_tasks)["tasks"]
    assert all(x["launchType"] == "FARGATE" and "containerInstanceArn" not in x for x in described)

    ecs.update_service(cluster="fg", service="svc", desiredCount=0)
    ecs.delete_service(cluster="fg", service="svc")
    ecs.stop_task(cluster="fg", task=arn)
    ecs.get_waiter("tasks_stopped").wait(cluster="fg", tasks=[arn] + svc_tasks,
                                         WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    stopped = ecs.describe_tasks(cluster="fg", tasks=[arn])["tasks"][0]
    assert stopped["attachments"][0]["status"] == "DELETED"


def test_capacity_provider_strategies_are_checked_as_ecs_checks_them(gantry):
    ecs = gantry.client("ecs")
    names = [p["name"] for p in ecs.describe_capacity_providers()["capacityProviders"]]
    assert names == ["FARGATE", "FARGATE_SPOT"]
    d = ecs.describe_capacity_providers(capacityProviders=["FARGATE_SPOT", "nope"])
    assert [p["name"] for p in d["capacityProviders"]] == ["FARGATE_SPOT"]
    assert d["failures"][0]["reason"] == "MISSING"
    code, msg = code_and_message(lambda: ecs.create_cluster(clusterName="x", capacityProviders=["pool"]))
    assert code == "InvalidParameterException" and "'pool' does not exist" in msg

    ecs.create_cluster(clusterName="bare")
    ecs.create_cluster(clusterName="cp")
    c = ecs.put_cluster_capacity_providers(
        cluster="cp", capacityProviders=["FARGATE", "FARGATE_SPOT"],
        defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}])["cluster"]
    assert c["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    assert c["defaultCapacityProviderStrategy"] == [{"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 0}]
    ecs.register_task_definition(**fargate_td("ok", "busybox"))
    net = {"awsvpcConfiguration": {"subnets": ["subnet-00000000000000000"]}}

    def err(cluster, strategy, **kw):
        return code_and_message(lambda: ecs.run_task(cluster=cluster, taskDefinition="ok", networkConfiguration=net,
                                                     capacityProviderStrategy=strategy, **kw))
    both = err("cp", [{"capacityProvider": "FARGATE", "weight": 1}], launchType="FARGATE")
    assert both == ("InvalidParameterException",
                    "Specifying both a launch type and capacity provider strategy is not supported. "
                    "Remove one and try again.")
    code, msg = err("cp", [{"capacityProvider": "FARGATE", "weight": 1, "base": 1},
                           {"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 1}])
    assert code == "InvalidParameterException" and "more than one capacity provider with a base" in msg
    zero_weight = ("InvalidParameterException",
                   "There are no capacity providers with a weight value greater than zero defined in the capacity "
                   "provider strategy. At least one capacity provider must have a weight value greater than zero "
                   "specified. Specify a valid capacity provider strategy and try again.")
    assert err("cp", [{"capacityProvider": "FARGATE", "weight": 0}, {"capacityProvider": "FARGATE_SPOT"}]) == zero_weight
    code, msg = err("cp", [{"capacityProvider": f"p{i}", "weight": 1} for i in range(7)])
    assert (code, msg) == ("InvalidParameterException",
                           "The specified capacity provider strategy cannot contain more than 6 capacity providers.")
    # A cluster default whose weights are all 0 is accepted; the launch that would use it is not.
    ecs.create_cluster(clusterName="zero", capacityProviders=["FARGATE"],
                       defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE"}])
    code, msg = code_and_message(lambda: ecs.run_task(cluster="zero", taskDefinition="ok", networkConfiguration=net))
    assert (code, msg) == (
        "InvalidParameterException",
        "There are no capacity providers with a weight value greater than zero defined in the default capacity "
        "provider strategy. At least one capacity provider must have a weight value greater than zero specified. "
        "Update the cluster's default capacity provider strategy or specify a valid capacity provider strategy "
        "and try again.")
    code, msg = code_and_message(lambda: ecs.create_service(
        cluster="zero", serviceName="z", taskDefinition="ok", desiredCount=1, networkConfiguration=net))
    assert code == "InvalidParameterException" and "default capacity provider strategy" in msg
    code, msg = err("bare", [{"capacityProvider": "FARGATE", "weight": 1}])
    assert code == "InvalidParameterException" and "not associated with the cluster" in msg
    # A provider a service uses cannot be removed from the cluster.
    code, msg = code_and_message(lambda: ecs.put_cluster_capacity_providers(
        cluster="cp", capacityProviders=["FARGATE"],
        defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}]))
    assert code == "InvalidParameterException" and "not associated" in msg


def test_a_strategy_splits_a_service_and_the_cluster_default_applies_to_run_task(fargate):
    ecs = fargate.client("ecs")
    ecs.create_cluster(clusterName="cps", capacityProviders=["FARGATE", "FARGATE_SPOT"],
                       defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}])
    ecs.register_task_definition(**fargate_td("web", fargate.image))
    subnet = fargate_subnet(fargate)
    net = {"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]]}}
    # No launch type, no strategy: the cluster's default.
    run = ecs.run_task(cluster="cps", taskDefinition="web", networkConfiguration=net)
    assert run["failures"] == [], run
    t = run["tasks"][0]
    assert t["launchType"] == "FARGATE" and t["capacityProviderName"] == "FARGATE_SPOT"

    strategy = [{"capacityProvider": "FARGATE", "base": 2, "weight": 1},
                {"capacityProvider": "FARGATE_SPOT", "weight": 3}]
    svc = ecs.create_service(cluster="cps", serviceName="split", taskDefinition="web", desiredCount=6,
                             capacityProviderStrategy=strategy, networkConfiguration=net)["service"]
    assert svc["capacityProviderStrategy"] == [dict(s, base=s.get("base", 0)) for s in strategy]
    assert "launchType" not in svc
    ecs.get_waiter("services_stable").wait(cluster="cps", services=["split"], WaiterConfig={"Delay": 1, "MaxAttempts": 150})
    arns = ecs.list_tasks(cluster="cps", serviceName="split")["taskArns"]
    tasks = ecs.describe_tasks(cluster="cps", tasks=arns)["tasks"]
    by = {}
    for x in tasks:
        by[x["capacityProviderName"]] = by.get(x["capacityProviderName"], 0) + 1
    # Base 2 on FARGATE, the other 4 split 1:3.
    assert by == {"FARGATE": 3, "FARGATE_SPOT": 3}, by
    code, msg = code_and_message(lambda: ecs.put_cluster_capacity_providers(
        cluster="cps", capacityProviders=["FARGATE_SPOT"],
        defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}]))
    assert (code, msg) == ("ResourceInUseException", "The specified capacity provider is in use and cannot be removed.")

    ecs.update_service(cluster="cps", service="split", desiredCount=0)
    ecs.delete_service(cluster="cps", service="split")
    ecs.stop_task(cluster="cps", task=t["taskArn"])
    ecs.get_waiter("tasks_stopped").wait(cluster="cps", tasks=arns + [t["taskArn"]],
                                         WaiterConfig={"Delay": 1, "MaxAttempts": 120})


def group_arn(pool):
    return f"arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:{uuid.uuid4()}:autoScalingGroupName/{pool}"


def test_a_host_pool_provider_places_only_on_its_pool(gantry, tmp_path):
    from conftest import require_docker
    from test_agent_tasks import Agent
    require_docker()
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="pools")
    pooled = Agent(gantry, "pools", tmp_path / "pooled", extra=["--pool", "web"]).start()
    other = Agent(gantry, "pools", tmp_path / "other").start()
    image = build_busybox_image(tmp_path, f"gantry-e2e/pool-{uuid.uuid4().hex[:8]}:src")
    try:
        wait_until(lambda: len(ecs.list_container_instances(cluster="pools")["containerInstanceArns"]) == 2,
                   what="two agents registered")
        arns = ecs.list_container_instances(cluster="pools")["containerInstanceArns"]
        cis = ecs.describe_container_instances(cluster="pools", containerInstances=arns)["containerInstances"]
        in_pool = [c["containerInstanceArn"] for c in cis
                   if {"name": "gantry.pool", "value": "web"} in c["attributes"]]
        assert len(in_pool) == 1

        # ECS's checks of a new provider.
        code, msg = code_and_message(lambda: ecs.create_capacity_provider(
            name="fargate-web", autoScalingGroupProvider={"autoScalingGroupArn": group_arn("web")}))
        assert code == "InvalidParameterException" and "cannot start with" in msg
        code, _ = code_and_message(lambda: ecs.create_capacity_provider(
            name="bad", autoScalingGroupProvider={"autoScalingGroupArn": "web"}))
        assert code == "InvalidParameterException"
        code, msg = code_and_message(lambda: ecs.create_capacity_provider(
            name="guarded", autoScalingGroupProvider={"autoScalingGroupArn": group_arn("web"),
                                                      "managedTerminationProtection": "ENABLED"}))
        assert code == "InvalidParameterException" and "managed scaling" in msg

        cp = ecs.create_capacity_provider(
            name="web-pool", autoScalingGroupProvider={"autoScalingGroupArn": group_arn("web")},
            tags=[{"key": "team", "value": "web"}])["capacityProvider"]
        assert cp["status"] == "ACTIVE" and cp["updateStatus"] == "CREATE_COMPLETE"
        assert cp["autoScalingGroupProvider"]["managedScaling"]["status"] == "DISABLED"
        code, _ = code_and_message(lambda: ecs.create_capacity_provider(
            name="web-pool", autoScalingGroupProvider={"autoScalingGroupArn": group_arn("other")}))
        assert code == "ClientException"
        up = ecs.update_capacity_provider(name="web-pool", autoScalingGroupProvider={
            "managedScaling": {"status": "ENABLED", "targetCapacity": 80}})["capacityProvider"]
        assert up["autoScalingGroupProvider"]["managedScaling"]["targetCapacity"] == 80
        assert up["updateStatus"] == "UPDATE_COMPLETE"
        d = ecs.describe_capacity_providers(capacityProviders=["web-pool"], include=["TAGS"])["capacityProviders"][0]
        assert d["tags"] == [{"key": "team", "value": "web"}]
        assert [p["name"] for p in ecs.describe_capacity_providers()["capacityProviders"]] == \
            ["FARGATE", "FARGATE_SPOT", "web-pool"]

        ecs.put_cluster_capacity_providers(
            cluster="pools", capacityProviders=["web-pool", "FARGATE"],
            defaultCapacityProviderStrategy=[{"capacityProvider": "web-pool", "weight": 1}])
        ecs.register_task_definition(family="sleeper", containerDefinitions=[
            {"name": "s", "image": image, "memory": 16, "essential": True, "stopTimeout": 1,
             "command": ["sleep", "300"]}])
        code, msg = code_and_message(lambda: ecs.run_task(
            cluster="pools", taskDefinition="sleeper",
            capacityProviderStrategy=[{"capacityProvider": "web-pool", "weight": 1},
                                      {"capacityProvider": "FARGATE", "weight": 1}]))
        assert (code, msg) == ("InvalidParameterException",
                               "A capacity provider strategy cannot contain a mix of capacity providers using Auto "
                               "Scaling groups and Fargate providers. Specify one or the other and try again.")
        # No launch type, no strategy: the cluster's default, on the pool's instance only.
        run = ecs.run_task(cluster="pools", taskDefinition="sleeper", count=4)
        assert run["failures"] == [] and len(run["tasks"]) == 4
        for t in run["tasks"]:
            assert t["containerInstanceArn"] == in_pool[0]
            assert t["capacityProviderName"] == "web-pool" and t["launchType"] == "EC2"
        task_arns = [t["taskArn"] for t in run["tasks"]]
        ecs.get_waiter("tasks_running").wait(cluster="pools", tasks=task_arns,
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 90})
        # The pool's instance shows its provider; the other instance has none.
        cis = ecs.describe_container_instances(cluster="pools", containerInstances=arns)["containerInstances"]
        assert {c["containerInstanceArn"]: c.get("capacityProviderName") for c in cis} == {
            a: ("web-pool" if a in in_pool else None) for a in arns}
        # Tags through TagResource, UntagResource and ListTagsForResource.
        cp_arn = cp["capacityProviderArn"]
        ecs.tag_resource(resourceArn=cp_arn, tags=[{"key": "tier", "value": "1"}])
        ecs.untag_resource(resourceArn=cp_arn, tagKeys=["team"])
        assert ecs.list_tags_for_resource(resourceArn=cp_arn)["tags"] == [{"key": "tier", "value": "1"}]
        d = ecs.describe_capacity_providers(capacityProviders=["web-pool"], include=["TAGS"])["capacityProviders"][0]
        assert d["tags"] == [{"key": "tier", "value": "1"}]
        code, _ = code_and_message(lambda: ecs.list_tags_for_resource(resourceArn=cp_arn.replace("web-pool", "nope")))
        assert code == "ResourceNotFoundException"
        # Deleting a provider a cluster still has: ECS keeps it ACTIVE and says why.
        failed = ecs.delete_capacity_provider(capacityProvider="web-pool")["capacityProvider"]
        assert failed["status"] == "ACTIVE" and failed["updateStatus"] == "DELETE_FAILED"
        assert failed["updateStatusReason"] == (
            "The capacity provider cannot be deleted because it is associated with cluster: pools. "
            "Remove the capacity provider from the cluster and try again.")
        code, msg = code_and_message(lambda: ecs.put_cluster_capacity_providers(
            cluster="pools", capacityProviders=[], defaultCapacityProviderStrategy=[]))
        assert code == "ResourceInUseException"
        for a in task_arns:
            ecs.stop_task(cluster="pools", task=a)
        ecs.get_waiter("tasks_stopped").wait(cluster="pools", tasks=task_arns,
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 90})
        ecs.put_cluster_capacity_providers(cluster="pools", capacityProviders=[], defaultCapacityProviderStrategy=[])
        gone = ecs.delete_capacity_provider(capacityProvider="web-pool")["capacityProvider"]
        assert gone["status"] == "INACTIVE" and gone["updateStatus"] == "DELETE_COMPLETE"
    finally:
        pooled.stop()
        other.stop()
        docker("rmi", "-f", image, check=False)


def test_the_task_size_is_enforced_and_an_oom_kill_is_reported(fargate):
    ecs = fargate.client("ecs")
    ecs.create_cluster(clusterName="sized")
    subnet = fargate_subnet(fargate)
    net = {"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]]}}
    ecs.register_task_definition(**fargate_td("small", fargate.image))
    run = ecs.run_task(cluster="sized", taskDefinition="small", launchType="FARGATE", networkConfiguration=net)
    arn = run["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_running").wait(cluster="sized", tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 90})
    cid = docker("ps", "-q", "--filter", f"label=com.amazonaws.ecs.task-arn={arn}",
                 "--filter", "label=com.amazonaws.ecs.container-name=app").stdout.split()[0]
    host = json.loads(docker("inspect", cid).stdout)[0]["HostConfig"]
    # 256 CPU units are a quarter of a CPU; 512 MiB is the hard limit.
    assert host["NanoCpus"] == 250_000_000 and host["Memory"] == 512 * 1024 * 1024
    assert "no-new-privileges" in host["SecurityOpt"] and host["PidsLimit"] > 0
    assert not host["Privileged"] and not host["CapAdd"]
    # All its containers, the pause container too, run in the task's cgroup, which holds the
    # same limits for all of them together.
    parent = host["CgroupParent"]
    assert parent, host
    for c in task_containers(arn):
        assert json.loads(docker("inspect", c).stdout)[0]["HostConfig"]["CgroupParent"] == parent
    assert len(task_containers(arn)) == 2
    assert cgroup_limits(parent) == (0.25, 512 * 1024 * 1024)
    ecs.stop_task(cluster="sized", task=arn)

    # A container that allocates 1 GiB in a 512 MiB task is killed, and the task says why.
    hog = fargate_td("hog", fargate.image)
    hog["containerDefinitions"][0]["command"] = ["/bin/sh", "-c", "head -c 1073741824 /dev/zero | tail"]
    ecs.register_task_definition(**hog)
    run = ecs.run_task(cluster="sized", taskDefinition="hog", launchType="FARGATE", networkConfiguration=net)
    hog_arn = run["tasks"][0]["taskArn"]
    for task in (arn, hog_arn):
        seen = {}

        def stopped():
            seen["task"] = ecs.describe_tasks(cluster="sized", tasks=[task])["tasks"][0]
            return seen["task"]["lastStatus"] == "STOPPED"
        try:
            wait_until(stopped, timeout=180, what=f"{task} STOPPED")
        except AssertionError as e:
            raise AssertionError(f"{e}; last seen: {seen.get('task')}") from None
    # The stopped task's cgroup goes with its containers.
    wait_until(lambda: not os.path.exists(task_cgroup(parent)), timeout=60, what="the task's cgroup removed")
    t = ecs.describe_tasks(cluster="sized", tasks=[hog_arn])["tasks"][0]
    assert t["stoppedReason"] == "OutOfMemoryError: Container killed due to memory usage", t["stoppedReason"]
    assert t["stopCode"] == "EssentialContainerExited"
    assert t["containers"][0]["reason"] == "OutOfMemoryError: Container killed due to memory usage"
    assert t["containers"][0]["exitCode"] == 137

    # Ephemeral storage beyond the default 20 GiB is a size limit the storage driver must apply;
    # where it cannot, the task does not run, and says why.
    disk = fargate_td("disk", fargate.image, ephemeralStorage={"sizeInGiB": 30})
    disk["containerDefinitions"][0]["command"] = ["sleep", "300"]
    ecs.register_task_definition(**disk)
    run = ecs.run_task(cluster="sized", taskDefinition="disk", launchType="FARGATE", networkConfiguration=net)
    disk_arn = run["tasks"][0]["taskArn"]
    assert run["tasks"][0]["ephemeralStorage"] == {"sizeInGiB": 30}

    def settled():
        t = ecs.describe_tasks(cluster="sized", tasks=[disk_arn])["tasks"][0]
        return t["lastStatus"] in ("RUNNING", "STOPPED") and t
    t = wait_until(settled, timeout=120, what="the 30 GiB task running or stopped")
    probe = docker("create", "--storage-opt", "size=1G", fargate.image, "true", check=False)
    if probe.returncode == 0:
        docker("rm", "-f", probe.stdout.strip(), check=False)
        assert t["lastStatus"] == "RUNNING", t.get("stoppedReason")
        cid = docker("ps", "-q", "--filter", f"label=com.amazonaws.ecs.task-arn={disk_arn}",
                     "--filter", "label=com.amazonaws.ecs.container-name=app").stdout.split()[0]
        assert json.loads(docker("inspect", cid).stdout)[0]["HostConfig"]["StorageOpt"] == {"size": "30G"}
        ecs.stop_task(cluster="sized", task=disk_arn)
    else:
        assert t["lastStatus"] == "STOPPED"
        assert t["stoppedReason"].startswith(
            "CannotCreateContainerError: ephemeralStorage of 30 GiB cannot be enforced on this host"), t["stoppedReason"]


def test_the_containers_of_a_task_share_its_size(fargate, vpc_block):
    ecs = fargate.client("ecs")
    ecs.create_cluster(clusterName="shared")
    net = {"awsvpcConfiguration": {"subnets": [fargate_subnet(fargate)["SubnetId"]]}}
    # Each container holds 400 MiB (dd's buffer, full of zeros, blocked writing to a pipe no one
    # reads): either fits in the 512 MiB task alone, the two do not fit together.
    hold = "mkdir -p /tmp && mkfifo /tmp/f && (sleep 600 < /tmp/f &) && exec dd if=/dev/zero of=/tmp/f bs=400M count=1"
    pair = fargate_td("pair", fargate.image)
    pair["containerDefinitions"] = [
        {"name": name, "image": fargate.image, "essential": True, "stopTimeout": 2,
         "command": ["/bin/sh", "-c", hold]} for name in ("a", "b")]
    ecs.register_task_definition(**pair)
    arn = ecs.run_task(cluster="shared", taskDefinition="pair", launchType="FARGATE",
                       networkConfiguration=net)["tasks"][0]["taskArn"]
    seen = {}

    def stopped():
        seen["task"] = ecs.describe_tasks(cluster="shared", tasks=[arn])["tasks"][0]
        return seen["task"]["lastStatus"] == "STOPPED"
    try:
        wait_until(stopped, timeout=180, what="the 800 MiB task STOPPED")
    except AssertionError as e:
        raise AssertionError(f"{e}; last seen: {seen.get('task')}") from None
    t = seen["task"]
    assert t["stoppedReason"] == "OutOfMemoryError: Container killed due to memory usage", t
    killed = [c for c in t["containers"] if c.get("reason") == "OutOfMemoryError: Container killed due to memory usage"]
    assert killed and killed[0]["exitCode"] == 137, t["containers"]

    # A task whose agent is killed (-9) keeps its cgroup while it runs, and the restarted agent
    # removes it with the task.
    sleeper = fargate_td("sleeper", fargate.image)
    sleeper["containerDefinitions"][0]["command"] = ["sleep", "600"]
    ecs.register_task_definition(**sleeper)
    arn = ecs.run_task(cluster="shared", taskDefinition="sleeper", launchType="FARGATE",
                       networkConfiguration=net)["tasks"][0]["taskArn"]
    seen = {}

    def running():
        seen["task"] = ecs.describe_tasks(cluster="shared", tasks=[arn])["tasks"][0]
        assert seen["task"]["lastStatus"] != "STOPPED", f"the sleeper stopped: {seen['task']}"
        return seen["task"]["lastStatus"] == "RUNNING"
    try:
        wait_until(running, timeout=90, what="the sleeper RUNNING")
    except AssertionError as e:
        raise AssertionError(f"{e}; last seen: {seen.get('task')}") from None
    parent = json.loads(docker("inspect", task_containers(arn, "app")[0]).stdout)[0]["HostConfig"]["CgroupParent"]
    fargate.stop(sig=signal.SIGKILL)
    fargate.start(extra_args=["--default-vpc-cidr", vpc_block, "--fargate-local"])
    assert cgroup_limits(parent) == (0.25, 512 * 1024 * 1024)
    ecs = fargate.client("ecs")
    ecs.stop_task(cluster="shared", task=arn)
    wait_until(lambda: not task_containers(arn), timeout=120, what="the task's containers removed")
    wait_until(lambda: not os.path.exists(task_cgroup(parent)), timeout=60, what="the task's cgroup removed")


def test_a_spot_interruption_is_healed_by_the_service(fargate):
    ecs = fargate.client("ecs")
    ecs.create_cluster(clusterName="spot", capacityProviders=["FARGATE", "FARGATE_SPOT"])
    subnet = fargate_subnet(fargate)
    td = fargate_td("stubborn", fargate.image)
    # Ignores SIGTERM: only the SIGKILL at the end of the warning stops it.
    td["containerDefinitions"][0]["command"] = ["/bin/sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
    del td["containerDefinitions"][0]["portMappings"]
    ecs.register_task_definition(**td)
    ecs.create_service(cluster="spot", serviceName="s", taskDefinition="stubborn", desiredCount=3,
                       capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
                       networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]]}})
    ecs.get_waiter("services_stable").wait(cluster="spot", services=["s"], WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    before = set(ecs.list_tasks(cluster="spot", serviceName="s")["taskArns"])

    p = subprocess.run([gantry_binary(), "fargate", "interrupt", "--endpoint", fargate.endpoint, "--cluster", "spot",
                        "--count", "2", "--warning-seconds", "3"],
                       env=dict(os.environ, GANTRY_ROOT_ACCESS_KEY_ID=fargate.access_key,
                                GANTRY_ROOT_SECRET_ACCESS_KEY=fargate.secret_key),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    interrupted = json.loads(p.stdout)["interruptedTasks"]
    assert len(interrupted) == 2 and set(interrupted) <= before
    ecs.get_waiter("tasks_stopped").wait(cluster="spot", tasks=interrupted, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    for t in ecs.describe_tasks(cluster="spot", tasks=interrupted)["tasks"]:
        assert t["stopCode"] == "SpotInterruption" and t["stoppedReason"] == "Your Spot Task was interrupted."
        # SIGTERM was ignored; SIGKILL came at the end of the 3-second warning.
        assert (t["stoppedAt"] - t["stoppingAt"]).total_seconds() >= 3
        assert t["containers"][0]["exitCode"] == 137

    # The service heals itself on its strategy's provider.
    def healed():
        arns = ecs.list_tasks(cluster="spot", serviceName="s")["taskArns"]
        if len(arns) != 3:
            return False
        tasks = ecs.describe_tasks(cluster="spot", tasks=arns)["tasks"]
        return all(t["lastStatus"] == "RUNNING" and t["capacityProviderName"] == "FARGATE_SPOT" for t in tasks) and arns
    arns = wait_until(healed, timeout=90, what="the service back at 3 running tasks")
    assert len(set(arns) - before) == 2

    ecs.update_service(cluster="spot", service="s", desiredCount=0)
    ecs.delete_service(cluster="spot", service="s")
    ecs.get_waiter("tasks_stopped").wait(cluster="spot", tasks=arns, WaiterConfig={"Delay": 1, "MaxAttempts": 120})


def test_a_thousand_fargate_tasks_on_a_simulated_platform_pool(gantry, tmp_path):
    """`gantry simulate --fargate-pool`: 200 simulated platform hosts in 3 zones run 1,000 Fargate
    tasks of a cluster without instances, spread over the zones, with no failure."""
    import signal
    import time
    from concurrent.futures import ThreadPoolExecutor
    env = dict(os.environ, GANTRY_ROOT_ACCESS_KEY_ID=gantry.access_key,
               GANTRY_ROOT_SECRET_ACCESS_KEY=gantry.secret_key, GANTRY_LOG="info")
    log = tmp_path / "sim.log"
    sim = subprocess.Popen([gantry_binary(), "simulate", "--endpoint", gantry.endpoint, "--fargate-pool", "sim",
                            "--instances", "200", "--seed", "3"], env=env,
                           stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    ecs, ec2 = gantry.client("ecs"), gantry.client("ec2")
    try:
        wait_until(lambda: "all simulated instances registered and connected" in log.read_text(errors="replace"),
                   timeout=120, what="200 simulated platform hosts")
        ecs.create_cluster(clusterName="sim-fargate")
        ecs.register_task_definition(**fargate_td("sim", "busybox"))
        subnets = [s["SubnetId"] for s in ec2.describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]]
        assert len(subnets) == 3
        net = {"awsvpcConfiguration": {"subnets": subnets}}

        def run(_):
            r = ecs.run_task(cluster="sim-fargate", taskDefinition="sim", count=10, launchType="FARGATE",
                             networkConfiguration=net)
            return r["tasks"], r["failures"]
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(run, range(100)))
        failures = [f for _, f in results for f in f]
        assert failures == []
        arns = [t["taskArn"] for ts, _ in results for t in ts]
        assert len(arns) == 1000 and ecs.list_container_instances(cluster="sim-fargate")["containerInstanceArns"] == []

        def all_running():
            n = 0
            for i in range(0, 1000, 100):
                n += sum(t["lastStatus"] == "RUNNING" for t in ecs.describe_tasks(
                    cluster="sim-fargate", tasks=arns[i:i + 100])["tasks"])
            return n == 1000
        wait_until(all_running, timeout=180, interval=1, what="1,000 Fargate tasks RUNNING")
        print(f"1000 Fargate tasks placed and RUNNING in {time.monotonic() - started:.1f}s")
        zones = {}
        for i in range(0, 1000, 100):
            for t in ecs.describe_tasks(cluster="sim-fargate", tasks=arns[i:i + 100])["tasks"]:
                assert t["launchType"] == "FARGATE" and "containerInstanceArn" not in t
                zones[t["availabilityZone"]] = zones.get(t["availabilityZone"], 0) + 1
        assert len(zones) == 3 and max(zones.values()) - min(zones.values()) <= 10, zones
    finally:
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(timeout=20)
        except subprocess.TimeoutExpired:
            sim.kill()


def test_a_fargate_service_behind_an_ip_target_group(fargate, tmp_path):
    import signal
    from test_load_balancing import free_port, start_lb
    ecs, elb, ec2 = fargate.client("ecs"), fargate.client("elbv2"), fargate.client("ec2")
    lb_proc = start_lb(fargate, tmp_path / "lb.log")
    try:
        ecs.create_cluster(clusterName="fglb")
        subnet = fargate_subnet(fargate)
        other = [s for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
                 if s["SubnetId"] != subnet["SubnetId"]][0]
        lb = elb.create_load_balancer(Name="fglb", Subnets=[subnet["SubnetId"], other["SubnetId"]])["LoadBalancers"][0]
        tg = elb.create_target_group(Name="fglb", Protocol="HTTP", Port=80, VpcId=subnet["VpcId"], TargetType="ip",
                                     HealthCheckPath="/index.html", HealthCheckIntervalSeconds=5,
                                     HealthCheckTimeoutSeconds=2, HealthyThresholdCount=2)["TargetGroups"][0]
        elb.modify_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"], Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "3"}])
        port = free_port()
        elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])
        ecs.register_task_definition(**fargate_td("fgweb", fargate.image))
        ecs.create_service(cluster="fglb", serviceName="web", taskDefinition="fgweb", desiredCount=2,
                           launchType="FARGATE",
                           networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]]}},
                           loadBalancers=[{"targetGroupArn": tg["TargetGroupArn"], "containerName": "app",
                                           "containerPort": 80}])

        def healthy():
            th = elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])["TargetHealthDescriptions"]
            ok = [t for t in th if t["TargetHealth"]["State"] == "healthy"]
            return len(ok) == 2 and ok
        targets = wait_until(healthy, timeout=120, interval=0.5, what="2 healthy ip targets")
        tasks = ecs.describe_tasks(cluster="fglb", tasks=ecs.list_tasks(cluster="fglb")["taskArns"])["tasks"]
        ips = {d["value"] for t in tasks for d in t["attachments"][0]["details"] if d["name"] == "privateIPv4Address"}
        assert {t["Target"]["Id"] for t in targets} == ips
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5).read().decode()
        assert body.startswith("fargate ip-")
        # Force-deleted while serving: its tasks leave the target group, stop, and the service
        # becomes INACTIVE.
        task_arns = [t["taskArn"] for t in tasks]
        ecs.delete_service(cluster="fglb", service="web", force=True)
        ecs.get_waiter("tasks_stopped").wait(cluster="fglb", tasks=task_arns,
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        ecs.get_waiter("services_inactive").wait(cluster="fglb", services=["web"],
                                                 WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        wait_until(lambda: elb.describe_target_health(
            TargetGroupArn=tg["TargetGroupArn"])["TargetHealthDescriptions"] == [],
            timeout=30, what="the target group emptied")

        # Again, with the listener and the target group deleted right after the service (as
        # `terraform destroy` does) while its tasks are still draining (a 60-second delay).
        elb.modify_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"], Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "60"}])
        ecs.create_service(cluster="fglb", serviceName="web2", taskDefinition="fgweb", desiredCount=2,
                           launchType="FARGATE",
                           networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]]}},
                           loadBalancers=[{"targetGroupArn": tg["TargetGroupArn"], "containerName": "app",
                                           "containerPort": 80}])
        wait_until(healthy, timeout=120, interval=0.5, what="2 healthy ip targets of web2")
        task_arns = ecs.list_tasks(cluster="fglb", serviceName="web2")["taskArns"]
        ecs.delete_service(cluster="fglb", service="web2", force=True)
        wait_until(lambda: all(t["lastStatus"] == "DEACTIVATING" for t in ecs.describe_tasks(
            cluster="fglb", tasks=task_arns)["tasks"]), timeout=30, what="web2's tasks DEACTIVATING")
        for listener in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]:
            elb.delete_listener(ListenerArn=listener["ListenerArn"])
        elb.delete_target_group(TargetGroupArn=tg["TargetGroupArn"])
        # Nothing is left to drain from: the tasks stop well before the delay is over.
        ecs.get_waiter("tasks_stopped").wait(cluster="fglb", tasks=task_arns,
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 40})
        ecs.get_waiter("services_inactive").wait(cluster="fglb", services=["web2"],
                                                 WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    finally:
        lb_proc.send_signal(signal.SIGTERM)
        try:
            lb_proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lb_proc.kill()

"""AWS/ECS metrics from real task usage: the agent samples its containers through Docker's stats
API and the control plane publishes CPUUtilization and MemoryUtilization into CloudWatch."""

import os
import time
from datetime import datetime, timezone

from conftest import gantry_binary  # noqa: F401  (the binary the Agent helper runs)
from test_agent_tasks import Agent, containers_of, image, wait_until  # noqa: F401
from images import docker


def test_service_cpu_and_memory_reach_cloudwatch(gantry, image, tmp_path):
    ecs, cw = gantry.client("ecs"), gantry.client("cloudwatch")
    ecs.create_cluster(clusterName="metrics", settings=[{"name": "containerInsights", "value": "enabled"}])
    os.environ["GANTRY_USAGE_INTERVAL"] = "1"
    try:
        agent = Agent(gantry, "metrics", tmp_path / "agent").start()
    finally:
        del os.environ["GANTRY_USAGE_INTERVAL"]
    arns = []
    try:
        wait_until(lambda: ecs.list_container_instances(cluster="metrics")["containerInstanceArns"],
                   what="agent registered")
        ecs.register_task_definition(family="burn", containerDefinitions=[{
            "name": "burn", "image": image, "cpu": 256, "memory": 64, "essential": True,
            # One busy loop: about a core, far above the 256 CPU units reserved.
            "command": ["/bin/sh", "-c", "while :; do :; done"],
        }])
        ecs.create_service(cluster="metrics", serviceName="burner", taskDefinition="burn", desiredCount=1)
        arns = wait_until(lambda: ecs.list_tasks(cluster="metrics", serviceName="burner")["taskArns"],
                          what="service task")
        gantry.aws("ecs", "wait", "tasks-running", "--cluster", "metrics", "--tasks", *arns)

        dims = [{"Name": "ClusterName", "Value": "metrics"}, {"Name": "ServiceName", "Value": "burner"}]

        def cpu():
            out = cw.get_metric_statistics(
                Namespace="AWS/ECS", MetricName="CPUUtilization", Dimensions=dims,
                StartTime=datetime.fromtimestamp(time.time() - 600, timezone.utc),
                EndTime=datetime.fromtimestamp(time.time() + 60, timezone.utc),
                Period=60, Statistics=["Maximum", "SampleCount"])["Datapoints"]
            return out if out and max(p["Maximum"] for p in out) > 50 else None

        points = wait_until(cpu, timeout=60, interval=1, what="CPUUtilization above 50%")
        assert all(p["Unit"] == "Percent" for p in points)

        names = {(m["MetricName"], tuple(sorted(d["Name"] for d in m["Dimensions"])))
                 for m in cw.list_metrics(Namespace="AWS/ECS")["Metrics"]}
        assert names == {("CPUUtilization", ("ClusterName",)), ("MemoryUtilization", ("ClusterName",)),
                         ("CPUUtilization", ("ClusterName", "ServiceName")),
                         ("MemoryUtilization", ("ClusterName", "ServiceName"))}
        # The same series through get-metric-data with the AWS CLI.
        end = int(time.time()) + 60
        md = gantry.aws_json("cloudwatch", "get-metric-data", "--start-time", str(end - 900), "--end-time", str(end),
                             "--metric-data-queries",
                             '[{"Id":"mem","MetricStat":{"Metric":{"Namespace":"AWS/ECS","MetricName":"MemoryUtilization",'
                             '"Dimensions":[{"Name":"ClusterName","Value":"metrics"},{"Name":"ServiceName","Value":"burner"}]},'
                             '"Period":60,"Stat":"Average"}}]')
        values = md["MetricDataResults"][0]["Values"]
        assert values and all(0 < v < 100 for v in values), values

        # Container Insights is enabled on this cluster.
        insights = {(m["MetricName"], tuple(sorted(d["Name"] for d in m["Dimensions"])))
                    for m in cw.list_metrics(Namespace="ECS/ContainerInsights")["Metrics"]}
        for name in ["CpuUtilized", "CpuReserved", "MemoryUtilized", "MemoryReserved"]:
            for dims_ in [("ClusterName",), ("ClusterName", "ServiceName"), ("ClusterName", "TaskDefinitionFamily")]:
                assert (name, dims_) in insights, (name, dims_)
        reserved = cw.get_metric_statistics(
            Namespace="ECS/ContainerInsights", MetricName="CpuReserved",
            Dimensions=[{"Name": "ClusterName", "Value": "metrics"}, {"Name": "ServiceName", "Value": "burner"}],
            StartTime=datetime.fromtimestamp(time.time() - 600, timezone.utc),
            EndTime=datetime.fromtimestamp(time.time() + 60, timezone.utc),
            Period=60, Statistics=["Maximum"])["Datapoints"]
        assert reserved and all(p["Maximum"] == 256.0 for p in reserved)
    finally:
        try:
            ecs.update_service(cluster="metrics", service="burner", desiredCount=0)
            ecs.delete_service(cluster="metrics", service="burner", force=True)
        except Exception:
            pass
        agent.stop()
        for a in arns:
            for c in containers_of(a):
                docker("rm", "-f", c, check=False)


def test_target_tracking_scales_a_busy_service_out_and_back_in(tmp_path):
    """Tasks that burn CPU for a while: target tracking on 50 % CPU scales the service out, and
    back in once the load stops (alarm periods shortened to 1 and 2 minutes)."""
    import uuid
    from conftest import Gantry, require_docker
    from images import build_busybox_image
    from test_ecr import login
    require_docker()
    g = Gantry(tmp_path / "tt").start(extra_args=[
        "--alarm-evaluation-interval", "2", "--target-tracking-periods", "1,2"])
    ecs, aas = g.client("ecs"), g.client("application-autoscaling")
    repo = f"spike-{uuid.uuid4().hex[:8]}"
    uri = g.aws_json("ecr", "create-repository", "--repository-name", repo)["repository"]["repositoryUri"]
    local = build_busybox_image(tmp_path, f"gantry-e2e/{repo}:src")
    login(g)
    docker("tag", local, f"{uri}:v1")
    docker("push", f"{uri}:v1")
    docker("rmi", f"{uri}:v1", local)
    image = f"{uri}:v1"
    os.environ["GANTRY_USAGE_INTERVAL"] = "2"
    try:
        agent = Agent(g, "tt", tmp_path / "tt-agent").start()
    finally:
        del os.environ["GANTRY_USAGE_INTERVAL"]
    try:
        ecs.create_cluster(clusterName="tt")
        wait_until(lambda: ecs.list_container_instances(cluster="tt")["containerInstanceArns"], what="agent")
        ecs.register_task_definition(family="spike", containerDefinitions=[{
            "name": "spike", "image": image, "cpu": 256, "memory": 32, "essential": True,
            # Busy for 75 seconds after it starts, then idle.
            "command": ["/bin/sh", "-c", "end=$(( $(date +%s) + 75 )); while [ $(date +%s) -lt $end ]; do :; done; "
                                         "exec sleep 100000"],
        }])
        ecs.create_service(cluster="tt", serviceName="spiky", taskDefinition="spike", desiredCount=1)
        rid = "service/tt/spiky"
        aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=rid,
                                     ScalableDimension="ecs:service:DesiredCount", MinCapacity=1, MaxCapacity=2)
        aas.put_scaling_policy(
            PolicyName="cpu50", ServiceNamespace="ecs", ResourceId=rid, ScalableDimension="ecs:service:DesiredCount",
            PolicyType="TargetTrackingScaling", TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 50.0, "ScaleOutCooldown": 0, "ScaleInCooldown": 0,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}})

        def count():
            return ecs.describe_services(cluster="tt", services=["spiky"])["services"][0]["desiredCount"]

        wait_until(lambda: count() == 2, timeout=240, interval=2, what="scale-out to 2")
        wait_until(lambda: count() == 1, timeout=420, interval=2, what="scale-in back to 1")
        acts = aas.describe_scaling_activities(ServiceNamespace="ecs", ResourceId=rid)["ScalingActivities"]
        descs = [a["Description"] for a in acts]
        assert descs[:2] == ["Setting desired count to 1.", "Setting desired count to 2."], descs
        assert "-AlarmLow-" in acts[0]["Cause"] and "triggered policy cpu50" in acts[0]["Cause"]
        assert "-AlarmHigh-" in acts[1]["Cause"]
    finally:
        try:
            ecs.update_service(cluster="tt", service="spiky", desiredCount=0)
            ecs.delete_service(cluster="tt", service="spiky", force=True)
        except Exception:
            pass
        agent.stop()
        for t in docker("ps", "-aq", "--filter", "label=com.amazonaws.ecs.task-arn").stdout.split():
            labels = docker("inspect", "-f", "{{index .Config.Labels \"com.amazonaws.ecs.task-arn\"}}", t).stdout
            if ":task/tt/" in labels:
                docker("rm", "-f", t, check=False)
        g.stop()

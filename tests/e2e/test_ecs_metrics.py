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
    ecs.create_cluster(clusterName="metrics")
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

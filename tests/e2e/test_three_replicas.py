"""Three `gantry server` replicas on a 3-member etcd cluster and one S3-compatible bucket, with one
agent on real Docker and `gantry lb` given all three endpoints: the AWS CLI talks to any replica, an image pushed to replica 1 is pulled from
replica 3, kill -9 of the leader replica during a rolling deployment hands the controllers to
another replica and the deployment completes without a task started twice or an acknowledged write
lost (the agent, given two replicas' endpoints, moves to the surviving one; the load balancer keeps
serving the service through it all), and kill -9 of one
etcd member changes nothing visible."""

import base64
import datetime
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import types
import urllib.request
import uuid

import pytest

from conftest import (EtcdCluster, Gantry, S3Server, default_subnets, gantry_binary, require_docker, require_etcd,
                      require_s3s)
from images import build_busybox_image, docker
from test_agent_tasks import Agent, containers_of, wait_until
from test_load_balancing import free_port
from test_services import httpd

PREFIX = "three"


def leader_endpoint(etcd: EtcdCluster, alive: list[int]) -> str | None:
    """The replica holding the controllers' leader key, read through etcd's JSON gateway."""
    key = base64.b64encode(f"/{PREFIX}/kv/leader/controllers".encode()).decode()
    for i in alive:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{etcd.client_ports[i]}/v3/kv/range",
                                         data=json.dumps({"key": key}).encode(), method="POST")
            with urllib.request.urlopen(req, timeout=2) as r:
                kvs = json.loads(r.read()).get("kvs") or []
            if not kvs:
                return None
            return "http://" + base64.b64decode(kvs[0]["value"]).decode().split("@", 1)[1]
        except OSError:
            continue
    return None


def test_three_replicas_survive_the_leader_and_an_etcd_member(tmp_path):
    require_docker()
    require_etcd()
    require_s3s()
    etcd = EtcdCluster(tmp_path, 3).start()
    s3 = S3Server(tmp_path)
    args = ["--store", etcd.url(PREFIX), "--blob-store", s3.url("registry"),
            "--heartbeat-grace", "30", "--lost-after", "120"]
    replicas = [Gantry(tmp_path / "r1").start(args, extra_env=s3.env())]
    for name in ("r2", "r3"):
        g = Gantry(tmp_path / name, replicas[0].access_key, replicas[0].secret_key)
        g.data_dir.mkdir()
        for f in ("master-key", "registry-token-secret"):
            shutil.copy2(replicas[0].data_dir / f, g.data_dir / f)
        replicas.append(g.start(args, extra_env=s3.env()))
    r1, r2, r3 = replicas
    agent = lb_proc = None
    stop_load = threading.Event()
    repo = f"three-{uuid.uuid4().hex[:8]}"
    local = pushed = pulled = None
    try:
        leader = wait_until(lambda: leader_endpoint(etcd, [0, 1, 2]), what="a leader")
        assert leader in {g.endpoint for g in replicas}
        followers = [g for g in replicas if g.endpoint != leader]
        victim = next(g for g in replicas if g.endpoint == leader)

        # The AWS CLI against any replica; push to replica 1, pull from replica 3.
        r2.aws("ecr", "create-repository", "--repository-name", repo)
        local = build_busybox_image(tmp_path, f"gantry-e2e-etcd/{repo}:src")
        pushed, pulled = f"{r1.registry}/{repo}:v1", f"{r3.registry}/{repo}:v1"
        for g in (r1, r3):
            docker("login", "--username", "AWS", "--password-stdin", g.registry,
                   input=g.aws("ecr", "get-login-password").stdout.strip())
        docker("tag", local, pushed)
        docker("push", pushed)
        docker("pull", pulled)

        # One agent given two replicas, the leader first: when the leader dies it must move to
        # the other. The service's image is named after that other replica's registry.
        home = followers[-1]
        image = f"{home.registry}/{repo}:v1"
        ecs = home.client("ecs")
        r3.aws("ecs", "create-cluster", "--cluster-name", "three")
        endpoints = types.SimpleNamespace(endpoint=f"{victim.endpoint},{home.endpoint}",
                                          access_key=home.access_key, secret_key=home.secret_key)
        agent = Agent(endpoints, "three", tmp_path / "agent").start()
        wait_until(lambda: len(ecs.list_container_instances(cluster="three")["containerInstanceArns"]) == 1,
                   what="agent registered")
        # `gantry lb` given all three replicas, the leader first: it must move to another one
        # when the leader dies, and keep serving meanwhile.
        env = dict(os.environ, GANTRY_ROOT_ACCESS_KEY_ID=home.access_key,
                   GANTRY_ROOT_SECRET_ACCESS_KEY=home.secret_key, GANTRY_LOG="info")
        lb_endpoints = ",".join([victim.endpoint] + [g.endpoint for g in followers])
        lb_proc = subprocess.Popen([gantry_binary(), "lb", "--endpoint", lb_endpoints], env=env,
                                   stdout=open(tmp_path / "lb.log", "ab"), stderr=subprocess.STDOUT)
        elb = home.client("elbv2")
        lb = elb.create_load_balancer(Name="three", Subnets=default_subnets(home), Type="application")[
            "LoadBalancers"][0]
        tg = elb.create_target_group(Name="three", Protocol="HTTP", Port=8080, VpcId="vpc-1", TargetType="instance",
                                     HealthCheckPath="/index.html", HealthCheckIntervalSeconds=5,
                                     HealthCheckTimeoutSeconds=2, HealthyThresholdCount=2,
                                     UnhealthyThresholdCount=2)["TargetGroups"][0]
        elb.modify_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"], Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "3"}])
        lb_port = free_port()
        elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=lb_port,
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])
        ecs.register_task_definition(**httpd("web", image))
        r1.client("ecs").create_service(
            cluster="three", serviceName="web", taskDefinition="web:1", desiredCount=2,
            loadBalancers=[{"targetGroupArn": tg["TargetGroupArn"], "containerName": "web", "containerPort": 8080}],
            deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200})
        ecs.get_waiter("services_stable").wait(cluster="three", services=["web"],
                                               WaiterConfig={"Delay": 1, "MaxAttempts": 90})
        url = f"http://127.0.0.1:{lb_port}/index.html"

        def served():
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_until(served, timeout=60, interval=0.5, what="the load balancer serving the service")
        results = {"ok": 0, "bad": []}

        def load():
            while not stop_load.is_set():
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        r.read()
                        results["ok"] += 1
                except Exception as e:  # noqa: BLE001 - every failure counts
                    results["bad"].append(repr(e))
                time.sleep(0.01)
        loader = threading.Thread(target=load, daemon=True)
        loader.start()

        # Acknowledged writes through every replica.
        acked = []
        for i, g in enumerate(replicas):
            out = g.client("ecs").register_task_definition(**httpd("acked", image, {"environment": [
                {"name": "N", "value": str(i)}]}))
            acked.append(out["taskDefinition"]["taskDefinitionArn"])

        # A rolling deployment, and kill -9 of the leader while it runs.
        r2.client("ecs").register_task_definition(**httpd("web", image, {"environment": [{"name": "V", "value": "2"}]}))
        ecs.update_service(cluster="three", service="web", taskDefinition="web:2")
        time.sleep(0.5)
        victim.stop(sig=9)
        survivors = [g for g in replicas if g is not victim]
        new_leader = wait_until(lambda: (l := leader_endpoint(etcd, [0, 1, 2])) and l != victim.endpoint and l,
                                timeout=30, what="a new leader")
        assert new_leader in {g.endpoint for g in survivors}

        def done():
            s = ecs.describe_services(cluster="three", services=["web"])["services"][0]
            return (len(s["deployments"]) == 1 and s["deployments"][0]["taskDefinition"].endswith(":2")
                    and s["deployments"][0]["rolloutState"] == "COMPLETED" and s["runningCount"] == 2 and s)
        wait_until(done, timeout=120, interval=0.5, what="deployment completed after the leader died")
        # The load balancer kept serving through the leader's death and the deployment.
        time.sleep(2)
        stop_load.set()
        loader.join(timeout=10)
        assert results["ok"] > 50, results["ok"]
        assert results["bad"] == [], f"{len(results['bad'])} failed requests, e.g. {results['bad'][:5]}"

        # No task started twice: every task has at most one container, running tasks = desired.
        running = ecs.list_tasks(cluster="three", serviceName="web", desiredStatus="RUNNING")["taskArns"]
        assert len(running) == 2
        for arn in running + ecs.list_tasks(cluster="three", serviceName="web", desiredStatus="STOPPED")["taskArns"]:
            assert len(containers_of(arn)) <= 1, arn
        described = ecs.describe_tasks(cluster="three", tasks=running)["tasks"]
        assert all(t["taskDefinitionArn"].endswith(":2") for t in described)

        # Every acknowledged write is there, read through each survivor.
        for g in survivors:
            arns = g.client("ecs").list_task_definitions(familyPrefix="acked")["taskDefinitionArns"]
            assert sorted(arns) == sorted(acked)

        # kill -9 of one etcd member: nothing visible changes.
        etcd.kill(2)
        for g in survivors:
            assert g.client("ecs").describe_clusters(clusters=["three"])["clusters"][0]["status"] == "ACTIVE"
        out = survivors[0].client("ecs").register_task_definition(**httpd("after", image))
        assert survivors[1].client("ecs").describe_task_definition(
            taskDefinition=out["taskDefinition"]["taskDefinitionArn"])["taskDefinition"]["revision"] == 1
    finally:
        try:
            ecs_any = next(g for g in replicas if g.proc and g.proc.poll() is None).client("ecs")
            for s in ecs_any.list_services(cluster="three")["serviceArns"]:
                ecs_any.delete_service(cluster="three", service=s, force=True)
            for t in ecs_any.list_tasks(cluster="three")["taskArns"]:
                ecs_any.stop_task(cluster="three", task=t)
        except Exception:
            pass
        stop_load.set()
        if agent:
            agent.stop()
        if lb_proc:
            lb_proc.send_signal(signal.SIGTERM)
            try:
                lb_proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                lb_proc.kill()
                lb_proc.wait()
        for g in replicas:
            g.stop()
        s3.stop()
        etcd.stop()
        docker("rmi", "-f", *(x for x in (pushed, pulled, local) if x), check=False)


def test_metrics_put_on_one_replica_are_read_on_another(tmp_path):
    """CloudWatch's in-memory metric index follows what other replicas store."""
    require_etcd()
    etcd = EtcdCluster(tmp_path, 1).start()
    args = ["--store", etcd.url("metrics")]
    r1 = Gantry(tmp_path / "r1").start(args)
    r2 = Gantry(tmp_path / "r2", r1.access_key, r1.secret_key)
    r2.data_dir.mkdir()
    for f in ("master-key", "registry-token-secret"):
        shutil.copy2(r1.data_dir / f, r2.data_dir / f)
    r2.start(args)
    r3 = None
    try:
        before = datetime.datetime.now(datetime.timezone.utc)
        # Stored before replica 3 starts (read by its start-up scan) and after (followed).
        r1.aws("cloudwatch", "put-metric-data", "--namespace", "App", "--metric-name", "Load",
               "--dimensions", "Host=a", "--value", "10")
        r3 = Gantry(tmp_path / "r3", r1.access_key, r1.secret_key)
        r3.data_dir.mkdir()
        for f in ("master-key", "registry-token-secret"):
            shutil.copy2(r1.data_dir / f, r3.data_dir / f)
        r3.start(args)
        r2.client("cloudwatch").put_metric_data(Namespace="App", MetricData=[
            {"MetricName": "Load", "Dimensions": [{"Name": "Host", "Value": "a"}], "Value": 30}])

        def stats(g):
            out = g.client("cloudwatch").get_metric_statistics(
                Namespace="App", MetricName="Load", Dimensions=[{"Name": "Host", "Value": "a"}],
                StartTime=before - datetime.timedelta(minutes=5),
                EndTime=before + datetime.timedelta(minutes=5), Period=600,
                Statistics=["SampleCount", "Sum"])["Datapoints"]
            return out and (out[0]["SampleCount"], out[0]["Sum"])
        for g in (r1, r2, r3):
            assert wait_until(lambda: stats(g) == (2.0, 40.0) and stats(g), timeout=15,
                              what=f"both points seen through {g.endpoint}") == (2.0, 40.0)
            listed = g.client("cloudwatch").list_metrics(Namespace="App")["Metrics"]
            assert [m["MetricName"] for m in listed] == ["Load"]
    finally:
        if r3:
            r3.stop()
        r1.stop()
        r2.stop()
        etcd.stop()

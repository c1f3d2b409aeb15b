"""A service behind `gantry lb`: targets registered from the service, traffic through the
listener, zero failed requests during a rolling deployment."""

import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

from conftest import default_subnets, free_port, gantry_binary, require_docker
from images import build_busybox_image, docker
from test_agent_tasks import Agent, wait_until
from test_ecr import login
from test_services import cleanup, stable


def start_lb(gantry, log_path):
    env = dict(os.environ, GANTRY_ROOT_ACCESS_KEY_ID=gantry.access_key,
               GANTRY_ROOT_SECRET_ACCESS_KEY=gantry.secret_key, GANTRY_LOG="info")
    return subprocess.Popen([gantry_binary(), "lb", "--endpoint", gantry.endpoint], env=env,
                            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)


def page_td(family, image, version):
    cmd = (f"mkdir -p /tmp/w && echo \"v{version} $(hostname)\" > /tmp/w/index.html && "
           "exec httpd -f -p 8080 -h /tmp/w")
    return {"family": family, "containerDefinitions": [{
        "name": "web", "image": image, "memory": 32, "essential": True, "stopTimeout": 2,
        "command": ["/bin/sh", "-c", cmd], "portMappings": [{"containerPort": 8080, "hostPort": 0}]}]}


def test_service_behind_a_load_balancer_rolls_without_errors(gantry, tmp_path):
    require_docker()
    ecs, elb = gantry.client("ecs"), gantry.client("elbv2")
    repo = f"lbweb-{uuid.uuid4().hex[:8]}"
    uri = gantry.aws_json("ecr", "create-repository", "--repository-name", repo)["repository"]["repositoryUri"]
    local = build_busybox_image(tmp_path, f"gantry-e2e/{repo}:src")
    login(gantry)
    docker("tag", local, f"{uri}:v1")
    docker("push", f"{uri}:v1")
    lb_proc = start_lb(gantry, tmp_path / "lb.log")
    ecs.create_cluster(clusterName="lbc")
    agent = Agent(gantry, "lbc", tmp_path / "agent").start()
    stop_load = threading.Event()
    try:
        wait_until(lambda: ecs.list_container_instances(cluster="lbc")["containerInstanceArns"], what="agent")
        lb = gantry.aws_json("elbv2", "create-load-balancer", "--name", "web", "--type", "application",
                             "--subnets", *default_subnets(gantry))["LoadBalancers"][0]
        tg = elb.create_target_group(Name="web", Protocol="HTTP", Port=8080, VpcId="vpc-1", TargetType="instance",
                                     HealthCheckPath="/index.html", HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2,
                                     HealthyThresholdCount=2, UnhealthyThresholdCount=2)["TargetGroups"][0]
        elb.modify_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"], Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "3"}])
        port = free_port()
        elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])
        ecs.register_task_definition(**page_td("lbweb", f"{uri}:v1", 1))
        ecs.create_service(cluster="lbc", serviceName="web", taskDefinition="lbweb", desiredCount=3,
                           loadBalancers=[{"targetGroupArn": tg["TargetGroupArn"], "containerName": "web",
                                           "containerPort": 8080}],
                           deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200})
        stable(ecs, "lbc", "web", attempts=120)

        def healthy_targets():
            th = elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])["TargetHealthDescriptions"]
            ok = [t for t in th if t["TargetHealth"]["State"] == "healthy"]
            return len(ok) == 3 and ok
        wait_until(healthy_targets, timeout=90, interval=0.5, what="3 healthy targets")

        url = f"http://127.0.0.1:{port}/index.html"
        seen = set()
        for _ in range(60):
            body = urllib.request.urlopen(url, timeout=5).read().decode()
            seen.add(body.split()[1])
        assert len(seen) == 3, f"requests reach all 3 tasks: {seen}"

        results = {"ok": 0, "bad": [], "v2": 0}

        def load():
            while not stop_load.is_set():
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        b = r.read().decode()
                        results["ok"] += 1
                        if b.startswith("v2"):
                            results["v2"] += 1
                except urllib.error.HTTPError as e:
                    results["bad"].append(f"HTTP {e.code}")
                except Exception as e:  # connection errors count as failures
                    results["bad"].append(repr(e))
                time.sleep(0.005)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        ecs.register_task_definition(**page_td("lbweb", f"{uri}:v1", 2))
        ecs.update_service(cluster="lbc", service="web", taskDefinition="lbweb:2")

        def rolled():
            s = ecs.describe_services(cluster="lbc", services=["web"])["services"][0]
            return (len(s["deployments"]) == 1 and s["deployments"][0]["taskDefinition"].endswith(":2")
                    and s["runningCount"] == 3)
        wait_until(rolled, timeout=180, interval=0.5, what="rolling deployment")
        time.sleep(2)
        stop_load.set()
        loader.join(timeout=10)
        assert results["ok"] > 100 and results["v2"] > 0
        assert results["bad"] == [], f"{len(results['bad'])} failed requests, e.g. {results['bad'][:5]}"
        s = ecs.describe_services(cluster="lbc", services=["web"])["services"][0]
        assert any("registered" in e["message"] and "target-group" in e["message"] for e in s["events"])
    finally:
        stop_load.set()
        try:
            cleanup(ecs, "lbc")
        except Exception:
            pass
        agent.stop()
        lb_proc.send_signal(signal.SIGTERM)
        try:
            lb_proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lb_proc.kill()
        docker("rmi", "-f", f"{uri}:v1", local, check=False)


def test_path_rule_second_service_and_unhealthy_replacement(gantry, tmp_path):
    require_docker()
    ecs, elb = gantry.client("ecs"), gantry.client("elbv2")
    repo = f"lbapi-{uuid.uuid4().hex[:8]}"
    uri = gantry.aws_json("ecr", "create-repository", "--repository-name", repo)["repository"]["repositoryUri"]
    local = build_busybox_image(tmp_path, f"gantry-e2e/{repo}:src")
    login(gantry)
    docker("tag", local, f"{uri}:v1")
    docker("push", f"{uri}:v1")
    lb_proc = start_lb(gantry, tmp_path / "lb.log")
    ecs.create_cluster(clusterName="lbr")
    agent = Agent(gantry, "lbr", tmp_path / "agent").start()
    try:
        wait_until(lambda: ecs.list_container_instances(cluster="lbr")["containerInstanceArns"], what="agent")
        lb = elb.create_load_balancer(Name="edge", Subnets=default_subnets(gantry), Type="application")["LoadBalancers"][0]

        def group(name):
            tg = elb.create_target_group(Name=name, Protocol="HTTP", Port=8080, VpcId="vpc-1", TargetType="instance",
                                         HealthCheckPath="/health.html", HealthCheckIntervalSeconds=5,
                                         HealthCheckTimeoutSeconds=2, HealthyThresholdCount=2,
                                         UnhealthyThresholdCount=2)["TargetGroups"][0]
            elb.modify_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"], Attributes=[
                {"Key": "deregistration_delay.timeout_seconds", "Value": "1"}])
            return tg["TargetGroupArn"]
        web_tg, api_tg = group("web"), group("api")
        port = free_port()
        listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                                       DefaultActions=[{"Type": "forward", "TargetGroupArn": web_tg}])["Listeners"][0]
        elb.create_rule(ListenerArn=listener["ListenerArn"], Priority=10,
                        Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
                        Actions=[{"Type": "forward", "TargetGroupArn": api_tg}])

        def td(family, text):
            cmd = (f"mkdir -p /tmp/w/api && echo {text} > /tmp/w/index.html && echo {text} > /tmp/w/api/index.html && "
                   "echo ok > /tmp/w/health.html && exec httpd -f -p 8080 -h /tmp/w")
            return {"family": family, "containerDefinitions": [{
                "name": "web", "image": f"{uri}:v1", "memory": 32, "stopTimeout": 2,
                "command": ["/bin/sh", "-c", cmd], "portMappings": [{"containerPort": 8080, "hostPort": 0}]}]}
        ecs.register_task_definition(**td("front", "front-page"))
        ecs.register_task_definition(**td("api", "api-page"))
        for name, tg, count in [("front", web_tg, 1), ("api", api_tg, 2)]:
            ecs.create_service(cluster="lbr", serviceName=name, taskDefinition=name, desiredCount=count,
                               healthCheckGracePeriodSeconds=0,
                               loadBalancers=[{"targetGroupArn": tg, "containerName": "web", "containerPort": 8080}])
        stable(ecs, "lbr", "front", attempts=120)
        stable(ecs, "lbr", "api", attempts=120)

        def all_healthy(tg, n):
            th = elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
            return len([t for t in th if t["TargetHealth"]["State"] == "healthy"]) == n
        wait_until(lambda: all_healthy(web_tg, 1) and all_healthy(api_tg, 2), timeout=60, what="healthy targets")
        base = f"http://127.0.0.1:{port}"
        assert "front-page" in urllib.request.urlopen(f"{base}/index.html", timeout=5).read().decode()
        assert "api-page" in urllib.request.urlopen(f"{base}/api/index.html", timeout=5).read().decode()

        # One api task stops answering its health check: unhealthy, out of traffic, replaced.
        api_tasks = ecs.describe_tasks(cluster="lbr", tasks=ecs.list_tasks(cluster="lbr", serviceName="api")["taskArns"])["tasks"]
        sick = api_tasks[0]
        docker("exec", sick["containers"][0]["runtimeId"], "rm", "/tmp/w/health.html")

        def replaced():
            t = ecs.describe_tasks(cluster="lbr", tasks=[sick["taskArn"]])["tasks"][0]
            return t["lastStatus"] == "STOPPED" and t
        stopped = wait_until(replaced, timeout=120, interval=1, what="unhealthy task replaced")
        assert "ELB health checks" in stopped["stoppedReason"], stopped["stoppedReason"]
        s = stable(ecs, "lbr", "api", attempts=120)
        assert s["runningCount"] == 2
        for _ in range(20):
            assert "api-page" in urllib.request.urlopen(f"{base}/api/index.html", timeout=5).read().decode()
    finally:
        try:
            cleanup(ecs, "lbr")
        except Exception:
            pass
        agent.stop()
        lb_proc.send_signal(signal.SIGTERM)
        try:
            lb_proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lb_proc.kill()
        docker("rmi", "-f", f"{uri}:v1", local, check=False)

"""ECS-native deployment strategies on the real Docker Engine with traffic through `gantry lb`:
BLUE_GREEN with a test listener and a PAUSE hook, a failing green revision rolled back, LINEAR and
CANARY shares sampled through the load balancer, an alarm rolling back a ROLLING deployment,
StopServiceDeployment, and ECS's errors for bad input.

One server, agent and load balancer for the module; one minute of bake time lasts
`MINUTE_MS` here (`--deployment-minute-ms`), so a one-minute step takes seconds."""

import http.client
import signal
import subprocess
import threading
import time
import uuid

import botocore.exceptions
import pytest

from conftest import Gantry, default_subnets, require_docker
from images import build_busybox_image, docker
from test_agent_tasks import Agent, wait_until
from test_ecr import login
from test_load_balancing import free_port, start_lb
from test_services import stable

MINUTE_MS = 5000
CLUSTER = "deploy"
ROLE = "arn:aws:iam::000000000000:role/ecsInfrastructureRole"


class Env:
    pass


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_docker()
    tmp = tmp_path_factory.mktemp("deploy")
    g = Gantry(tmp / "data").start(extra_args=["--deployment-minute-ms", str(MINUTE_MS)])
    e = Env()
    e.gantry, e.tmp = g, tmp
    e.ecs, e.elb = g.client("ecs"), g.client("elbv2")
    repo = f"deploy-{uuid.uuid4().hex[:8]}"
    uri = g.aws_json("ecr", "create-repository", "--repository-name", repo)["repository"]["repositoryUri"]
    local = build_busybox_image(tmp, f"gantry-e2e/{repo}:deploy")
    login(g)
    docker("tag", local, f"{uri}:v1")
    docker("push", f"{uri}:v1")
    e.image = f"{uri}:v1"
    e.lb_proc = start_lb(g, tmp / "lb.log")
    e.ecs.create_cluster(clusterName=CLUSTER)
    e.agent = Agent(g, CLUSTER, tmp / "agent").start()
    try:
        wait_until(lambda: e.ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"], what="agent")
        e.lb = e.elb.create_load_balancer(Name="deploy", Subnets=default_subnets(g),
                                          Type="application")["LoadBalancers"][0]
        yield e
    finally:
        for s in e.ecs.list_services(cluster=CLUSTER)["serviceArns"]:
            e.ecs.delete_service(cluster=CLUSTER, service=s, force=True)
        for a in e.ecs.list_tasks(cluster=CLUSTER)["taskArns"]:
            e.ecs.stop_task(cluster=CLUSTER, task=a)
        wait_until(lambda: not e.ecs.list_tasks(cluster=CLUSTER)["taskArns"], timeout=60, what="tasks stopped")
        e.agent.stop()
        e.lb_proc.send_signal(signal.SIGTERM)
        try:
            e.lb_proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            e.lb_proc.kill()
        g.stop()
        docker("rmi", "-f", e.image, local, check=False)


def page_td(family, image, version, healthy=True):
    health = "echo ok > /tmp/w/health.html && " if healthy else ""
    cmd = (f"mkdir -p /tmp/w && echo \"v{version} $(hostname)\" > /tmp/w/index.html && {health}"
           "exec httpd -f -p 8080 -h /tmp/w")
    return {"family": family, "containerDefinitions": [{
        "name": "web", "image": image, "memory": 32, "essential": True, "stopTimeout": 2,
        "command": ["/bin/sh", "-c", cmd], "portMappings": [{"containerPort": 8080, "hostPort": 0}]}]}


def target_group(e, name):
    tg = e.elb.create_target_group(Name=name, Protocol="HTTP", Port=8080, VpcId="vpc-1", TargetType="instance",
                                   HealthCheckPath="/health.html", HealthCheckIntervalSeconds=5,
                                   HealthCheckTimeoutSeconds=2, HealthyThresholdCount=2,
                                   UnhealthyThresholdCount=2)["TargetGroups"][0]["TargetGroupArn"]
    e.elb.modify_target_group_attributes(TargetGroupArn=tg, Attributes=[
        {"Key": "deregistration_delay.timeout_seconds", "Value": "1"}])
    return tg


def listener(e, blue, green):
    """A listener forwarding to `blue` (100) and `green` (0); returns (port, default rule ARN)."""
    port = free_port()
    arn = e.elb.create_listener(LoadBalancerArn=e.lb["LoadBalancerArn"], Protocol="HTTP", Port=port, DefaultActions=[
        {"Type": "forward", "ForwardConfig": {"TargetGroups": [
            {"TargetGroupArn": blue, "Weight": 100}, {"TargetGroupArn": green, "Weight": 0}]}}])["Listeners"][0]["ListenerArn"]
    rule = [r for r in e.elb.describe_rules(ListenerArn=arn)["Rules"] if r["IsDefault"]][0]["RuleArn"]
    return port, rule


def rule_weights(e, rule):
    r = e.elb.describe_rules(RuleArns=[rule])["Rules"][0]
    fwd = [a for a in r["Actions"] if a["Type"] == "forward"][0]
    return {g["TargetGroupArn"]: g.get("Weight") for g in fwd["ForwardConfig"]["TargetGroups"]}


class Load:
    """Clients sending requests through the load balancer on keep-alive connections; every
    answer is recorded as (time, version) and every failure kept."""

    def __init__(self, port, threads=4):
        self.port, self.samples, self.bad = port, [], []
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while not self.stop_ev.is_set():
            try:
                conn.request("GET", "/index.html")
                r = conn.getresponse()
                body = r.read().decode()
                with self.lock:
                    if r.status == 200:
                        self.samples.append((time.monotonic(), body.split()[0]))
                    else:
                        self.bad.append(f"HTTP {r.status} at {time.monotonic():.2f}")
            except Exception as ex:  # connection errors count as failures
                with self.lock:
                    self.bad.append(f"{ex!r} at {time.monotonic():.2f}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=10)

    def versions_since(self, t0):
        with self.lock:
            return {v for t, v in self.samples if t >= t0}


def sample(port, n=20):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    out = []
    for _ in range(n):
        conn.request("GET", "/index.html")
        r = conn.getresponse()
        out.append(r.read().decode().split()[0])
    conn.close()
    return set(out)


def deployments_of(e, service):
    """Every service deployment of `service`, described."""
    arns = [d["serviceDeploymentArn"] for d in e.ecs.list_service_deployments(
        cluster=CLUSTER, service=service)["serviceDeployments"]]
    ds = e.ecs.describe_service_deployments(serviceDeploymentArns=arns)["serviceDeployments"]
    return ds


def newest_deployment(e, service):
    arn = e.ecs.list_service_deployments(cluster=CLUSTER, service=service)["serviceDeployments"][0]["serviceDeploymentArn"]
    return e.ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"][0]


def shift_service(e, name, strategy_config, desired=2):
    """A service behind two target groups with production and test listeners, stable on v1."""
    blue, green = target_group(e, f"{name}-a"), target_group(e, f"{name}-b")
    prod_port, prod_rule = listener(e, blue, green)
    test_port, test_rule = listener(e, blue, green)
    e.ecs.register_task_definition(**page_td(name, e.image, 1))
    e.ecs.create_service(
        cluster=CLUSTER, serviceName=name, taskDefinition=name, desiredCount=desired, healthCheckGracePeriodSeconds=0,
        loadBalancers=[{"targetGroupArn": blue, "containerName": "web", "containerPort": 8080,
                        "advancedConfiguration": {"alternateTargetGroupArn": green, "productionListenerRule": prod_rule,
                                                  "testListenerRule": test_rule, "roleArn": ROLE}}],
        deploymentConfiguration=strategy_config)
    stable(e.ecs, CLUSTER, name, attempts=120)
    wait_until(lambda: sample(prod_port) == {"v1"}, timeout=60, interval=0.5, what="v1 serves production")
    return blue, green, prod_port, prod_rule, test_port, test_rule


def test_blue_green_with_test_listener_pause_hook_bake_and_failed_green_rollback(env):
    e = env
    cfg = {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1,
           "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
                               "timeoutConfiguration": {"timeoutInMinutes": 60, "action": "ROLLBACK"}}]}
    blue, green, prod_port, prod_rule, test_port, test_rule = shift_service(e, "bg", cfg)
    assert rule_weights(e, prod_rule) == {blue: 100, green: 0}
    e.ecs.register_task_definition(**page_td("bg", e.image, 2))
    with Load(prod_port) as load:
        e.ecs.update_service(cluster=CLUSTER, service="bg", taskDefinition="bg:2")

        def paused():
            d = newest_deployment(e, "bg")
            hooks = [h for h in d.get("lifecycleHookDetails", []) if h["status"] == "AWAITING_ACTION"]
            return hooks and (d, hooks[0])
        d, hook = wait_until(paused, timeout=120, interval=0.5, what="deployment paused by its hook")
        assert d["lifecycleStage"] == "POST_TEST_TRAFFIC_SHIFT" and d["status"] == "IN_PROGRESS"
        # The test listener serves green, production still blue, as the rules' weights say.
        wait_until(lambda: sample(test_port) == {"v2"}, timeout=5, interval=0.2, what="test listener on green")
        assert sample(prod_port, 40) == {"v1"}
        assert rule_weights(e, test_rule) == {blue: 0, green: 100}
        assert rule_weights(e, prod_rule) == {blue: 100, green: 0}
        # A second deployment while this one runs is refused.
        e.ecs.register_task_definition(**page_td("bg", e.image, 3))
        with pytest.raises(botocore.exceptions.ClientError) as err:
            e.ecs.update_service(cluster=CLUSTER, service="bg", taskDefinition="bg:3")
        assert err.value.response["Error"]["Code"] == "InvalidParameterException"
        assert "deployment in progress" in err.value.response["Error"]["Message"]
        with pytest.raises(botocore.exceptions.ClientError) as err:
            e.ecs.continue_service_deployment(serviceDeploymentArn=d["serviceDeploymentArn"], hookId="nope")
        assert err.value.response["Error"]["Code"] == "InvalidParameterException"

        blue_tasks = e.ecs.list_tasks(cluster=CLUSTER, serviceName="bg")["taskArns"]
        e.ecs.continue_service_deployment(serviceDeploymentArn=d["serviceDeploymentArn"],
                                          hookId=hook["hookId"], action="CONTINUE")
        wait_until(lambda: "v2" in load.versions_since(0), timeout=10, interval=0.1, what="production on green")
        switched = time.monotonic()
        wait_until(lambda: rule_weights(e, prod_rule) == {blue: 0, green: 100}, timeout=5, what="production weights")
        stages = set()

        def done():
            d = newest_deployment(e, "bg")
            stages.add(d.get("lifecycleStage"))
            return d["status"] == "SUCCESSFUL" and d
        d = wait_until(done, timeout=120, interval=0.3, what="blue/green deployment successful")
        assert "BAKE_TIME" in stages or "CLEAN_UP" in stages, stages
        s = stable(e.ecs, CLUSTER, "bg", attempts=60)
        assert [x["taskDefinition"].split("/")[-1] for x in s["deployments"]] == ["bg:2"]
        time.sleep(1)
    assert load.bad == [], f"{len(load.bad)} failed requests, e.g. {load.bad[:3]} {load.bad[-3:]} (switch at {switched:.2f}, now {time.monotonic():.2f})"
    after = [v for t, v in load.samples if t > switched + 1]
    assert after and set(after) == {"v2"}
    # Blue kept running through the bake time (one minute = MINUTE_MS), then stopped.
    old = e.ecs.describe_tasks(cluster=CLUSTER, tasks=blue_tasks)["tasks"]
    old = [t for t in old if t["taskDefinitionArn"].endswith("bg:1")]
    assert old and all(t["desiredStatus"] == "STOPPED" for t in old)
    wall_switch = time.time() - (time.monotonic() - switched)
    for t in old:
        assert t["stoppingAt"].timestamp() >= wall_switch + MINUTE_MS / 1000 - 1.5, (t["stoppingAt"], wall_switch)

    # A green revision that fails its health checks rolls back; production never leaves blue.
    e.ecs.register_task_definition(**page_td("bg", e.image, 4, healthy=False))
    with Load(prod_port) as load:
        e.ecs.update_service(cluster=CLUSTER, service="bg", taskDefinition="bg:4")

        def rolled_back():
            d = newest_deployment(e, "bg")
            return d["status"] in ("ROLLBACK_IN_PROGRESS", "ROLLBACK_SUCCESSFUL") and d
        try:
            d = wait_until(rolled_back, timeout=180, interval=0.5, what="failed green rolled back")
        except AssertionError:
            s = e.ecs.describe_services(cluster=CLUSTER, services=["bg"])["services"][0]
            raise AssertionError(f"{newest_deployment(e, 'bg')} {[ev['message'] for ev in s['events'][:15]]} {s['deployments']}")
        assert d["rollback"]["reason"] and d["rollback"]["serviceRevisionArn"]
        s = stable(e.ecs, CLUSTER, "bg", attempts=90)
        assert s["deployments"][0]["taskDefinition"].endswith("bg:2")
        time.sleep(1)
    assert load.bad == [], f"{len(load.bad)} failed requests, e.g. {load.bad[:5]}"
    assert {v for _, v in load.samples} == {"v2"}
    assert rule_weights(e, prod_rule) == {blue: 0, green: 100}
    wait_until(lambda: newest_deployment(e, "bg")["status"] == "ROLLBACK_SUCCESSFUL", timeout=60,
               what="rollback successful")


def shares(load, weights_log, new_tg):
    """Per production share of the new revision (percent): the fraction of answers from v2 among
    those sampled from 1 s after the weights changed to the next change."""
    out = {}
    for i, (t, w) in enumerate(weights_log):
        end = weights_log[i + 1][0] if i + 1 < len(weights_log) else float("inf")
        vs = [v for ts, v in load.samples if t + 1.0 <= ts < end]
        if vs and 0 < w[new_tg] < 100:
            out[w[new_tg]] = (100.0 * sum(v == "v2" for v in vs) / len(vs), len(vs))
    return out


def watch_weights(e, rule, stop):
    log = []

    def run():
        while not stop.is_set():
            w = rule_weights(e, rule)
            if not log or log[-1][1] != w:
                log.append((time.monotonic(), w))
            time.sleep(0.1)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return log, t


@pytest.mark.parametrize("name,cfg,expected", [
    ("lin", {"strategy": "LINEAR", "bakeTimeInMinutes": 0,
             "linearConfiguration": {"stepPercent": 25.0, "stepBakeTimeInMinutes": 1}}, [25, 50, 75]),
    ("can", {"strategy": "CANARY", "bakeTimeInMinutes": 0,
             "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 1}}, [10]),
])
def test_linear_and_canary_shares_through_the_load_balancer(env, name, cfg, expected):
    e = env
    blue, green, prod_port, prod_rule, _, _ = shift_service(e, name, cfg)
    e.ecs.register_task_definition(**page_td(name, e.image, 2))
    stop = threading.Event()
    with Load(prod_port, threads=6) as load:
        log, watcher = watch_weights(e, prod_rule, stop)
        e.ecs.update_service(cluster=CLUSTER, service=name, taskDefinition=f"{name}:2")
        wait_until(lambda: newest_deployment(e, name)["status"] == "SUCCESSFUL", timeout=180, interval=0.5,
                   what=f"{name} deployment successful")
        stop.set()
        watcher.join(timeout=5)
    assert load.bad == [], f"{len(load.bad)} failed requests, e.g. {load.bad[:5]}"
    got = shares(load, log, green)
    assert sorted(got) == expected, (got, log)
    for pct, (share, n) in got.items():
        assert n > 300, (pct, n)
        assert abs(share - pct) <= 5, f"{pct}% step served {share:.1f}% from the new revision ({n} samples)"
    assert rule_weights(e, prod_rule) == {blue: 0, green: 100}


def test_alarm_rolls_back_a_rolling_deployment(env):
    e = env
    cw = e.gantry.client("cloudwatch")
    alarm = f"deploy-alarm-{uuid.uuid4().hex[:6]}"
    cw.put_metric_alarm(AlarmName=alarm, Namespace="Gantry/Test", MetricName="Errors", Statistic="Sum", Period=60,
                        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold")
    e.ecs.register_task_definition(**page_td("roll", e.image, 1))
    e.ecs.create_service(cluster=CLUSTER, serviceName="roll", taskDefinition="roll", desiredCount=2,
                         deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200,
                                                  "alarms": {"alarmNames": [alarm], "enable": True, "rollback": True}})
    stable(e.ecs, CLUSTER, "roll", attempts=120)
    # v2's health check never passes in time, so its deployment stays in progress.
    td = page_td("roll", e.image, 2)
    td["containerDefinitions"][0]["healthCheck"] = {"command": ["CMD-SHELL", "exit 1"], "interval": 30,
                                                    "retries": 10, "startPeriod": 300}
    e.ecs.register_task_definition(**td)
    e.ecs.update_service(cluster=CLUSTER, service="roll", taskDefinition="roll:2")
    wait_until(lambda: len(e.ecs.list_tasks(cluster=CLUSTER, serviceName="roll")["taskArns"]) > 2, timeout=30,
               what="v2 tasks started")
    e.gantry.aws("cloudwatch", "set-alarm-state", "--alarm-name", alarm, "--state-value", "ALARM",
                 "--state-reason", "test")
    s = wait_until(lambda: (lambda s: s["deployments"][0]["taskDefinition"].endswith("roll:1")
                            and s["deployments"][0]["rolloutState"] == "COMPLETED" and len(s["deployments"]) == 1 and s)(
        e.ecs.describe_services(cluster=CLUSTER, services=["roll"])["services"][0]),
        timeout=90, interval=0.5, what="rolled back to roll:1")
    assert any(alarm in ev["message"] for ev in s["events"])
    ds = [d for d in deployments_of(e, "roll") if d.get("rollback")]
    assert ds and alarm in ds[0]["rollback"]["reason"]
    assert ds[0]["alarms"]["triggeredAlarmNames"] == [alarm]
    # Nothing left to stop: StopServiceDeployment on a finished deployment conflicts.
    with pytest.raises(botocore.exceptions.ClientError) as err:
        e.ecs.stop_service_deployment(serviceDeploymentArn=ds[0]["serviceDeploymentArn"], stopType="ROLLBACK")
    assert err.value.response["Error"]["Code"] == "ConflictException"


def test_stop_service_deployment_rolls_back_a_rolling_deployment(env):
    e = env
    e.ecs.register_task_definition(**page_td("stopme", e.image, 1))
    e.ecs.create_service(cluster=CLUSTER, serviceName="stopme", taskDefinition="stopme", desiredCount=1)
    stable(e.ecs, CLUSTER, "stopme", attempts=120)
    td = page_td("stopme", e.image, 2)
    td["containerDefinitions"][0]["healthCheck"] = {"command": ["CMD-SHELL", "exit 1"], "interval": 30,
                                                    "retries": 10, "startPeriod": 300}
    e.ecs.register_task_definition(**td)
    e.ecs.update_service(cluster=CLUSTER, service="stopme", taskDefinition="stopme:2")
    d = newest_deployment(e, "stopme")
    assert d["status"] == "IN_PROGRESS"
    e.gantry.aws("ecs", "stop-service-deployment", "--service-deployment-arn", d["serviceDeploymentArn"],
                 "--stop-type", "ROLLBACK")
    s = wait_until(lambda: (lambda s: s["deployments"][0]["taskDefinition"].endswith("stopme:1")
                            and len(s["deployments"]) == 1 and s)(
        e.ecs.describe_services(cluster=CLUSTER, services=["stopme"])["services"][0]),
        timeout=60, interval=0.5, what="rolled back to stopme:1")
    d = e.ecs.describe_service_deployments(serviceDeploymentArns=[d["serviceDeploymentArn"]])["serviceDeployments"][0]
    assert d["status"] == "ROLLBACK_SUCCESSFUL" and "stop request" in d["rollback"]["reason"]
    with pytest.raises(botocore.exceptions.ClientError) as err:
        e.ecs.stop_service_deployment(serviceDeploymentArn=d["serviceDeploymentArn"].replace(
            d["serviceDeploymentArn"].rsplit("/", 1)[1], "1234567890123456789"))
    assert err.value.response["Error"]["Code"] == "ServiceDeploymentNotFoundException"


def test_bad_strategy_input_answers_ecs_errors(env):
    e = env
    e.ecs.register_task_definition(**page_td("bad", e.image, 1))
    blue, green = target_group(e, "bad-a"), target_group(e, "bad-b")
    _, rule = listener(e, blue, green)
    other_lb = e.elb.create_load_balancer(Name="other", Subnets=default_subnets(e.gantry),
                                          Type="application")["LoadBalancers"][0]
    other_tg = target_group(e, "other-tg")
    other_listener = e.elb.create_listener(
        LoadBalancerArn=other_lb["LoadBalancerArn"], Protocol="HTTP", Port=free_port(),
        DefaultActions=[{"Type": "forward", "TargetGroupArn": other_tg}])["Listeners"][0]["ListenerArn"]
    other_rule = [r for r in e.elb.describe_rules(ListenerArn=other_listener)["Rules"] if r["IsDefault"]][0]["RuleArn"]

    def lbs(prod=rule, **adv):
        a = {"alternateTargetGroupArn": green, "productionListenerRule": prod, "roleArn": ROLE, **adv}
        return [{"targetGroupArn": blue, "containerName": "web", "containerPort": 8080, "advancedConfiguration": a}]

    def refused(message_part, **kw):
        with pytest.raises(botocore.exceptions.ClientError) as err:
            e.ecs.create_service(cluster=CLUSTER, serviceName="bad", taskDefinition="bad", desiredCount=1, **kw)
        assert err.value.response["Error"]["Code"] == "InvalidParameterException", err.value.response
        assert message_part in err.value.response["Error"]["Message"], err.value.response["Error"]["Message"]

    refused("requires a load balancer with advancedConfiguration",
            deploymentConfiguration={"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0})
    refused("belongs to load balancer", loadBalancers=lbs(prod=other_rule),
            deploymentConfiguration={"strategy": "BLUE_GREEN"})
    refused("was not found", loadBalancers=lbs(prod=rule.rsplit("/", 1)[0] + "/0123456789abcdef"),
            deploymentConfiguration={"strategy": "BLUE_GREEN"})
    refused("stepPercent", loadBalancers=lbs(),
            deploymentConfiguration={"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 2.0}})
    refused("canaryPercent", loadBalancers=lbs(),
            deploymentConfiguration={"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 100.5}})
    refused("only valid when the deployment strategy is LINEAR", loadBalancers=lbs(),
            deploymentConfiguration={"strategy": "CANARY", "linearConfiguration": {"stepPercent": 10.0}})
    refused("bakeTimeInMinutes", loadBalancers=lbs(),
            deploymentConfiguration={"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1441})
    refused("AWS_LAMBDA", loadBalancers=lbs(), deploymentConfiguration={
        "strategy": "BLUE_GREEN", "lifecycleHooks": [{
            "hookTargetArn": "arn:aws:lambda:us-east-1:000000000000:function:check", "roleArn": ROLE,
            "lifecycleStages": ["POST_SCALE_UP"]}]})
    refused("roleArn", loadBalancers=[{"targetGroupArn": blue, "containerName": "web", "containerPort": 8080,
                                       "advancedConfiguration": {"alternateTargetGroupArn": green,
                                                                 "productionListenerRule": rule}}],
            deploymentConfiguration={"strategy": "BLUE_GREEN"})
    refused("must be different", loadBalancers=[{"targetGroupArn": blue, "containerName": "web", "containerPort": 8080,
                                                 "advancedConfiguration": {"alternateTargetGroupArn": blue,
                                                                           "productionListenerRule": rule,
                                                                           "roleArn": ROLE}}],
            deploymentConfiguration={"strategy": "BLUE_GREEN"})
    # The AWS CLI sees the same error.
    p = e.gantry.aws("ecs", "create-service", "--cluster", CLUSTER, "--service-name", "bad", "--task-definition", "bad",
                     "--desired-count", "1", "--deployment-configuration", "strategy=CANARY", check=False)
    assert p.returncode != 0 and "InvalidParameterException" in p.stderr


def test_external_service_moves_between_task_sets_under_load(env):
    e = env
    one, two = target_group(e, "ext-1"), target_group(e, "ext-2")
    port = free_port()
    listener_arn = e.elb.create_listener(
        LoadBalancerArn=e.lb["LoadBalancerArn"], Protocol="HTTP", Port=port, DefaultActions=[
            {"Type": "forward", "ForwardConfig": {"TargetGroups": [
                {"TargetGroupArn": one, "Weight": 100}, {"TargetGroupArn": two, "Weight": 0}]}}])["Listeners"][0]["ListenerArn"]
    e.ecs.register_task_definition(**page_td("ext", e.image, 1))
    e.ecs.register_task_definition(**page_td("ext", e.image, 2))
    svc = e.ecs.create_service(cluster=CLUSTER, serviceName="ext", desiredCount=2,
                               deploymentController={"type": "EXTERNAL"})["service"]
    assert svc["deploymentController"]["type"] == "EXTERNAL" and svc["taskSets"] == []

    def lb(tg):
        return [{"targetGroupArn": tg, "containerName": "web", "containerPort": 8080}]

    def steady(ts_arn):
        ts = e.ecs.describe_task_sets(cluster=CLUSTER, service="ext", taskSets=[ts_arn])["taskSets"][0]
        return ts["stabilityStatus"] == "STEADY_STATE" and ts["runningCount"] == ts["computedDesiredCount"] and ts

    def healthy(tg, n):
        th = e.elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        return len([t for t in th if t["TargetHealth"]["State"] == "healthy"]) == n

    a = e.ecs.create_task_set(cluster=CLUSTER, service="ext", taskDefinition="ext:1", externalId="blue",
                              loadBalancers=lb(one), scale={"value": 100, "unit": "PERCENT"})["taskSet"]
    assert a["status"] == "ACTIVE" and a["computedDesiredCount"] == 2 and a["externalId"] == "blue"
    e.ecs.update_service_primary_task_set(cluster=CLUSTER, service="ext", primaryTaskSet=a["taskSetArn"])
    wait_until(lambda: steady(a["taskSetArn"]), timeout=90, interval=0.5, what="task set A steady")
    wait_until(lambda: healthy(one, 2), timeout=60, interval=0.5, what="A healthy in its group")
    wait_until(lambda: sample(port) == {"v1"}, timeout=30, interval=0.5, what="v1 served")
    with Load(port) as load:
        b = e.ecs.create_task_set(cluster=CLUSTER, service="ext", taskDefinition="ext:2", externalId="green",
                                  loadBalancers=lb(two), scale={"value": 50, "unit": "PERCENT"})["taskSet"]
        assert b["computedDesiredCount"] == 1
        b = e.ecs.update_task_set(cluster=CLUSTER, service="ext", taskSet=b["id"],
                                  scale={"value": 100, "unit": "PERCENT"})["taskSet"]
        assert b["computedDesiredCount"] == 2 and b["scale"] == {"value": 100.0, "unit": "PERCENT"}
        wait_until(lambda: steady(b["taskSetArn"]), timeout=90, interval=0.5, what="task set B steady")
        wait_until(lambda: healthy(two, 2), timeout=60, interval=0.5, what="B healthy in its group")
        s = e.ecs.describe_services(cluster=CLUSTER, services=["ext"])["services"][0]
        assert s["runningCount"] == 4 and s["desiredCount"] == 2 and len(s["taskSets"]) == 2
        e.elb.modify_listener(ListenerArn=listener_arn, DefaultActions=[
            {"Type": "forward", "ForwardConfig": {"TargetGroups": [
                {"TargetGroupArn": one, "Weight": 0}, {"TargetGroupArn": two, "Weight": 100}]}}])
        wait_until(lambda: sample(port) == {"v2"}, timeout=10, interval=0.2, what="v2 served")
        e.ecs.update_service_primary_task_set(cluster=CLUSTER, service="ext", primaryTaskSet=b["taskSetArn"])
        with pytest.raises(botocore.exceptions.ClientError) as err:
            e.ecs.delete_task_set(cluster=CLUSTER, service="ext", taskSet=b["taskSetArn"])
        assert err.value.response["Error"]["Code"] == "InvalidParameterException"
        gone = e.ecs.delete_task_set(cluster=CLUSTER, service="ext", taskSet=a["taskSetArn"])["taskSet"]
        assert gone["status"] == "DRAINING" and gone["computedDesiredCount"] == 0
        wait_until(lambda: len(e.ecs.describe_task_sets(cluster=CLUSTER, service="ext")["taskSets"]) == 1,
                   timeout=60, interval=0.5, what="task set A removed")
        time.sleep(1)
    assert load.bad == [], f"{len(load.bad)} failed requests, e.g. {load.bad[:3]}"
    assert {v for _, v in load.samples} <= {"v1", "v2"} and len(load.samples) > 100
    s = e.ecs.describe_services(cluster=CLUSTER, services=["ext"])["services"][0]
    assert s["taskSets"][0]["status"] == "PRIMARY" and s["taskDefinition"].endswith("ext:2")
    assert s["runningCount"] == 2

    # Bad input, as ECS answers it.
    def refused(code, fn, **kw):
        with pytest.raises(botocore.exceptions.ClientError) as err:
            fn(cluster=CLUSTER, **kw)
        assert err.value.response["Error"]["Code"] == code, err.value.response
        return err.value.response["Error"]["Message"]
    assert "between 0 and 100" in refused("InvalidParameterException", e.ecs.update_task_set, service="ext",
                                          taskSet=b["id"], scale={"value": 150, "unit": "PERCENT"})
    refused("TaskSetNotFoundException", e.ecs.update_task_set, service="ext", taskSet="ecs-svc/1234567890123456789",
            scale={"value": 10, "unit": "PERCENT"})
    e.ecs.create_service(cluster=CLUSTER, serviceName="plain", taskDefinition="ext:1", desiredCount=0)
    assert "external deployment controllers" in refused("InvalidParameterException", e.ecs.create_task_set,
                                                        service="plain", taskDefinition="ext:1")
    refused("InvalidParameterException", e.ecs.update_service, service="ext", taskDefinition="ext:1")

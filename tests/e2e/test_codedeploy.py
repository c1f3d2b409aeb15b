"""CodeDeploy for the ECS compute platform through the AWS CLI and boto3: applications, the
predefined ECS deployment configurations and custom ones, CodeDeploy's errors, IAM on the new
actions, the operations Gantry does not serve answering a clear error; and, on the real Docker
Engine with traffic through `gantry lb`, blue/green deployments of a CODE_DEPLOY service with an
AppSpec: a canary shift that completes (the `deployment_successful` waiter), a stop with rollback,
and the errors for bad input.

The Docker tests run their own server, agent and load balancer; one minute of the deployment
configurations lasts `MINUTE_MS` there (`--deployment-minute-ms`)."""

import json
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
from test_deployments import Load, page_td, rule_weights, sample, shares, target_group, watch_weights
from test_ecr import login
from test_load_balancing import free_port, start_lb

MINUTE_MS = 2000
CLUSTER = "cd"
ROLE = "arn:aws:iam::000000000000:role/CodeDeployECSRole"


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    g = Gantry(tmp_path_factory.mktemp("codedeploy") / "data").start()
    yield g
    g.stop()


def error_of(p):
    assert p.returncode != 0, p.stdout
    return p.stderr


def test_applications(g):
    app_id = g.aws_json("deploy", "create-application", "--application-name", "web",
                        "--compute-platform", "ECS")["applicationId"]
    assert len(app_id) == 36
    info = g.aws_json("deploy", "get-application", "--application-name", "web")["application"]
    assert (info["applicationId"], info["applicationName"], info["computePlatform"], info["linkedToGitHub"]) == (
        app_id, "web", "ECS", False)
    assert abs(info["createTime"] - time.time()) < 60
    assert "ApplicationAlreadyExistsException" in error_of(g.aws(
        "deploy", "create-application", "--application-name", "web", "--compute-platform", "ECS", check=False))
    g.aws("deploy", "create-application", "--application-name", "api", "--compute-platform", "ECS")
    assert g.aws_json("deploy", "list-applications")["applications"] == ["api", "web"]
    batch = g.aws_json("deploy", "batch-get-applications", "--application-names", "api", "web")
    assert [a["applicationName"] for a in batch["applicationsInfo"]] == ["api", "web"]

    g.aws("deploy", "delete-application", "--application-name", "api")
    assert "ApplicationDoesNotExistException" in error_of(g.aws(
        "deploy", "get-application", "--application-name", "api", check=False))
    # Deleting again succeeds, as in CodeDeploy.
    g.aws("deploy", "delete-application", "--application-name", "api")
    assert g.aws_json("deploy", "list-applications")["applications"] == ["web"]


def test_only_the_ecs_compute_platform(g):
    for extra in (["--compute-platform", "Server"], ["--compute-platform", "Lambda"], []):
        err = error_of(g.aws("deploy", "create-application", "--application-name", "ec2app", *extra, check=False))
        assert "InvalidComputePlatformException" in err and "ECS" in err
    assert "ec2app" not in g.aws_json("deploy", "list-applications")["applications"]


def test_predefined_and_custom_deployment_configs(g):
    names = g.aws_json("deploy", "list-deployment-configs")["deploymentConfigsList"]
    for n in ("CodeDeployDefault.ECSAllAtOnce", "CodeDeployDefault.ECSLinear10PercentEvery1Minutes",
              "CodeDeployDefault.ECSLinear10PercentEvery3Minutes", "CodeDeployDefault.ECSCanary10Percent5Minutes",
              "CodeDeployDefault.ECSCanary10Percent15Minutes"):
        assert n in names
    info = g.aws_json("deploy", "get-deployment-config", "--deployment-config-name",
                      "CodeDeployDefault.ECSCanary10Percent5Minutes")["deploymentConfigInfo"]
    assert info["computePlatform"] == "ECS"
    assert info["trafficRoutingConfig"] == {
        "type": "TimeBasedCanary", "timeBasedCanary": {"canaryPercentage": 10, "canaryInterval": 5}}

    cid = g.aws_json("deploy", "create-deployment-config", "--deployment-config-name", "Linear25Every1",
                     "--compute-platform", "ECS", "--traffic-routing-config",
                     json.dumps({"type": "TimeBasedLinear",
                                 "timeBasedLinear": {"linearPercentage": 25, "linearInterval": 1}}))[
        "deploymentConfigId"]
    info = g.aws_json("deploy", "get-deployment-config", "--deployment-config-name", "Linear25Every1")[
        "deploymentConfigInfo"]
    assert (info["deploymentConfigId"], info["deploymentConfigName"], info["computePlatform"]) == (
        cid, "Linear25Every1", "ECS")
    assert info["trafficRoutingConfig"]["timeBasedLinear"] == {"linearPercentage": 25, "linearInterval": 1}
    assert "Linear25Every1" in g.aws_json("deploy", "list-deployment-configs")["deploymentConfigsList"]
    assert "DeploymentConfigAlreadyExistsException" in error_of(g.aws(
        "deploy", "create-deployment-config", "--deployment-config-name", "Linear25Every1",
        "--compute-platform", "ECS", "--traffic-routing-config", '{"type":"AllAtOnce"}', check=False))

    g.aws("deploy", "delete-deployment-config", "--deployment-config-name", "Linear25Every1")
    assert "DeploymentConfigDoesNotExistException" in error_of(g.aws(
        "deploy", "get-deployment-config", "--deployment-config-name", "Linear25Every1", check=False))
    assert "InvalidOperationException" in error_of(g.aws(
        "deploy", "delete-deployment-config", "--deployment-config-name", "CodeDeployDefault.ECSAllAtOnce",
        check=False))


@pytest.mark.parametrize("routing,code", [
    ({"type": "TimeBasedCanary"}, "InvalidTrafficRoutingConfigurationException"),
    ({"type": "TimeBasedCanary", "timeBasedCanary": {"canaryPercentage": 100, "canaryInterval": 5}},
     "InvalidTrafficRoutingConfigurationException"),
    ({"type": "TimeBasedLinear", "timeBasedLinear": {"linearPercentage": 10, "linearInterval": 0}},
     "InvalidTrafficRoutingConfigurationException"),
])
def test_bad_deployment_configs(g, routing, code):
    err = error_of(g.aws("deploy", "create-deployment-config", "--deployment-config-name", "bad",
                         "--compute-platform", "ECS", "--traffic-routing-config", json.dumps(routing), check=False))
    assert code in err


def test_bad_deployment_config_members(g):
    err = error_of(g.aws("deploy", "create-deployment-config", "--deployment-config-name", "hosts",
                         "--compute-platform", "ECS", "--minimum-healthy-hosts", "type=HOST_COUNT,value=1",
                         check=False))
    assert "InvalidMinimumHealthyHostValueException" in err
    err = error_of(g.aws("deploy", "create-deployment-config", "--deployment-config-name", "x" * 101,
                         "--compute-platform", "ECS", "--traffic-routing-config", '{"type":"AllAtOnce"}',
                         check=False))
    assert "ValidationException" in err


def test_unserved_operations_answer_a_clear_error(g):
    err = error_of(g.aws("deploy", "list-application-revisions", "--application-name", "web", check=False))
    assert "UnsupportedOperationException" in err and "ListApplicationRevisions is not supported" in err


def test_iam_governs_codedeploy_actions(g):
    # Its own application, removed at the end: the module's other tests list the applications.
    root = g.client("codedeploy")
    root.create_application(applicationName="governed", computePlatform="ECS")
    try:
        iam = g.client("iam")
        iam.create_user(UserName="deployer")
        iam.put_user_policy(UserName="deployer", PolicyName="read", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "codedeploy:GetApplication",
                "Resource": "arn:aws:codedeploy:us-east-1:*:application:governed"}]}))
        key = iam.create_access_key(UserName="deployer")["AccessKey"]
        cd = g.client("codedeploy", aws_access_key_id=key["AccessKeyId"],
                      aws_secret_access_key=key["SecretAccessKey"])
        deadline = time.monotonic() + 10
        while True:
            try:
                got = cd.get_application(applicationName="governed")["application"]
                assert got["applicationName"] == "governed"
                break
            except cd.exceptions.ClientError as e:
                if time.monotonic() > deadline or e.response["Error"]["Code"] not in (
                        "InvalidClientTokenId", "UnrecognizedClientException"):
                    raise
                time.sleep(0.1)
        with pytest.raises(cd.exceptions.ClientError) as e:
            cd.create_application(applicationName="other", computePlatform="ECS")
        assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    finally:
        root.delete_application(applicationName="governed")


# --- Blue/green deployments of a CODE_DEPLOY service, on Docker ---------------------------------


class Env:
    pass


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_docker()
    tmp = tmp_path_factory.mktemp("cd-docker")
    g = Gantry(tmp / "data").start(extra_args=["--deployment-minute-ms", str(MINUTE_MS)])
    e = Env()
    e.gantry, e.tmp = g, tmp
    e.ecs, e.elb, e.cd = g.client("ecs"), g.client("elbv2"), g.client("codedeploy")
    repo = f"cd-{uuid.uuid4().hex[:8]}"
    uri = g.aws_json("ecr", "create-repository", "--repository-name", repo)["repository"]["repositoryUri"]
    local = build_busybox_image(tmp, f"gantry-e2e/{repo}:cd")
    login(g)
    docker("tag", local, f"{uri}:v1")
    docker("push", f"{uri}:v1")
    e.image = f"{uri}:v1"
    e.lb_proc = start_lb(g, tmp / "lb.log")
    e.ecs.create_cluster(clusterName=CLUSTER)
    e.agent = Agent(g, CLUSTER, tmp / "agent").start()
    try:
        wait_until(lambda: e.ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"], what="agent")
        e.lb = e.elb.create_load_balancer(Name="cd", Subnets=default_subnets(g),
                                          Type="application")["LoadBalancers"][0]
        e.blue, e.green = target_group(e, "cd-blue"), target_group(e, "cd-green")
        e.prod_port, e.prod_listener = listener(e, e.blue, e.green)
        e.test_port, e.test_listener = listener(e, e.blue, e.green)
        e.prod_rule = default_rule(e, e.prod_listener)
        e.test_rule = default_rule(e, e.test_listener)
        for v in (1, 2, 3):
            e.ecs.register_task_definition(**page_td("cdweb", e.image, v))
        e.ecs.create_service(
            cluster=CLUSTER, serviceName="web", taskDefinition="cdweb:1", desiredCount=2,
            healthCheckGracePeriodSeconds=0, deploymentController={"type": "CODE_DEPLOY"},
            loadBalancers=[{"targetGroupArn": e.blue, "containerName": "web", "containerPort": 8080}])
        wait_until(lambda: steady_primary(e), timeout=120, interval=0.5, what="initial task set steady")
        wait_until(lambda: sample(e.prod_port) == {"v1"}, timeout=60, interval=0.5, what="v1 serves production")
        e.cd.create_application(applicationName="shop", computePlatform="ECS")
        e.cd.create_deployment_group(
            applicationName="shop", deploymentGroupName="web", serviceRoleArn=ROLE,
            deploymentConfigName="CodeDeployDefault.ECSCanary10Percent5Minutes",
            deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            blueGreenDeploymentConfiguration={
                "terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE", "terminationWaitTimeInMinutes": 1},
                "deploymentReadyOption": {"actionOnTimeout": "CONTINUE_DEPLOYMENT"}},
            autoRollbackConfiguration={"enabled": True, "events": ["DEPLOYMENT_FAILURE"]},
            ecsServices=[{"serviceName": "web", "clusterName": CLUSTER}],
            loadBalancerInfo=lb_info(e))
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


def listener(e, blue, green):
    """A listener forwarding to `blue` (100) and `green` (0); returns (port, listener ARN)."""
    port = free_port()
    arn = e.elb.create_listener(LoadBalancerArn=e.lb["LoadBalancerArn"], Protocol="HTTP", Port=port, DefaultActions=[
        {"Type": "forward", "ForwardConfig": {"TargetGroups": [
            {"TargetGroupArn": blue, "Weight": 100}, {"TargetGroupArn": green, "Weight": 0}]}}])["Listeners"][0]["ListenerArn"]
    return port, arn


def default_rule(e, listener_arn):
    return [r for r in e.elb.describe_rules(ListenerArn=listener_arn)["Rules"] if r["IsDefault"]][0]["RuleArn"]


def lb_info(e, names=("cd-blue", "cd-green"), prod=None):
    return {"targetGroupPairInfoList": [{
        "targetGroups": [{"name": n} for n in names],
        "prodTrafficRoute": {"listenerArns": [prod or e.prod_listener]},
        "testTrafficRoute": {"listenerArns": [e.test_listener]}}]}


def task_sets(e):
    return e.ecs.describe_services(cluster=CLUSTER, services=["web"])["services"][0]["taskSets"]


def steady_primary(e):
    sets = task_sets(e)
    return (len(sets) == 1 and sets[0]["status"] == "PRIMARY" and sets[0]["stabilityStatus"] == "STEADY_STATE"
            and sets[0]["runningCount"] == 2 and sets[0])


def appspec(version, fmt="yaml"):
    arn = f"arn:aws:ecs:us-east-1:000000000000:task-definition/cdweb:{version}"
    if fmt == "json":
        return json.dumps({"version": 0.0, "Resources": [{"TargetService": {
            "Type": "AWS::ECS::Service", "Properties": {
                "TaskDefinition": arn, "LoadBalancerInfo": {"ContainerName": "web", "ContainerPort": 8080}}}}]})
    return (f"version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n"
            f"        TaskDefinition: \"{arn}\"\n        LoadBalancerInfo:\n          ContainerName: \"web\"\n"
            f"          ContainerPort: 8080\n")


def revision(content):
    return json.dumps({"revisionType": "AppSpecContent", "appSpecContent": {"content": content}})


def cd_error(fn, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as err:
        fn(**kw)
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


def test_canary_deployment_shifts_traffic_and_completes(env):
    e = env
    blue_set = steady_primary(e)
    stop = threading.Event()
    with Load(e.prod_port, threads=6) as load:
        log, watcher = watch_weights(e, e.prod_rule, stop)
        out = e.gantry.aws_json("deploy", "create-deployment", "--application-name", "shop",
                                "--deployment-group-name", "web", "--revision", revision(appspec(2)),
                                "--description", "v2 canary")
        dep = out["deploymentId"]
        # One deployment at a time per group.
        p = e.gantry.aws("deploy", "create-deployment", "--application-name", "shop", "--deployment-group-name",
                         "web", "--revision", revision(appspec(3)), check=False)
        assert p.returncode != 0 and "DeploymentLimitExceededException" in p.stderr and dep in p.stderr
        # The test listener serves green before production moves.
        wait_until(lambda: rule_weights(e, e.test_rule) == {e.blue: 0, e.green: 100}, timeout=120, interval=0.3,
                   what="test listener on the replacement")
        # The proxy follows the listener's new weights within moments of the API answering them.
        wait_until(lambda: sample(e.test_port) == {"v2"}, timeout=30, interval=0.2,
                   what="the test listener serving only v2")
        target = wait_until(lambda: (lambda t: t["ecsTarget"]["status"] == "InProgress" and len(
            t["ecsTarget"]["taskSetsInfo"]) == 2 and t)(e.cd.get_deployment_target(
                deploymentId=dep, targetId=f"{CLUSTER}:web")["deploymentTarget"]), timeout=30, what="target")
        assert {t["taskSetLabel"] for t in target["ecsTarget"]["taskSetsInfo"]} == {"Blue", "Green"}
        assert e.cd.list_deployment_targets(deploymentId=dep)["targetIds"] == [f"{CLUSTER}:web"]
        e.cd.get_waiter("deployment_successful").wait(deploymentId=dep, WaiterConfig={"Delay": 1, "MaxAttempts": 180})
        stop.set()
        watcher.join(timeout=5)
        wait_until(lambda: len(task_sets(e)) == 1, timeout=60, interval=0.5, what="original task set removed")
        time.sleep(1)
    assert load.bad == [], f"{len(load.bad)} failed requests, e.g. {load.bad[:5]}"
    got = shares(load, log, e.green)
    assert sorted(got) == [10], (got, log)
    share, n = got[10]
    assert n > 300 and abs(share - 10) <= 5, f"the 10% canary served {share:.1f}% from v2 ({n} samples)"
    assert rule_weights(e, e.prod_rule) == {e.blue: 0, e.green: 100}
    wait_until(lambda: sample(e.prod_port) == {"v2"}, timeout=30, interval=0.2,
               what="production serving only v2")
    info = e.cd.get_deployment(deploymentId=dep)["deploymentInfo"]
    assert (info["status"], info["deploymentConfigName"], info["description"], info["computePlatform"]) == (
        "Succeeded", "CodeDeployDefault.ECSCanary10Percent5Minutes", "v2 canary", "ECS")
    assert info["deploymentOverview"]["Succeeded"] == 1 and info["completeTime"] >= info["startTime"]
    assert info["revision"]["appSpecContent"]["content"] == appspec(2)
    [ts] = task_sets(e)
    assert ts["status"] == "PRIMARY" and ts["externalId"] == dep and ts["id"] != blue_set["id"]
    assert ts["taskDefinition"].endswith("cdweb:2") and ts["loadBalancers"][0]["targetGroupArn"] == e.green
    s = e.ecs.describe_services(cluster=CLUSTER, services=["web"])["services"][0]
    assert s["taskDefinition"].endswith("cdweb:2") and s["deploymentController"]["type"] == "CODE_DEPLOY"
    grp = e.cd.get_deployment_group(applicationName="shop", deploymentGroupName="web")["deploymentGroupInfo"]
    assert grp["lastSuccessfulDeployment"]["deploymentId"] == dep
    assert dep in e.cd.list_deployments(applicationName="shop", deploymentGroupName="web",
                                        includeOnlyStatuses=["Succeeded"])["deployments"]
    code, _ = cd_error(e.cd.stop_deployment, deploymentId=dep)
    assert code == "DeploymentAlreadyCompletedException"


def test_stop_deployment_with_rollback_returns_production_to_blue(env):
    e = env
    wait_until(lambda: steady_primary(e), timeout=60, interval=0.5, what="steady before the second deployment")
    serving = steady_primary(e)
    serving_tg = serving["loadBalancers"][0]["targetGroupArn"]
    other_tg = e.blue if serving_tg == e.green else e.green
    with Load(e.prod_port) as load:
        dep = e.gantry.aws_json("deploy", "create-deployment", "--application-name", "shop",
                                "--deployment-group-name", "web",
                                "--revision", revision(appspec(3, fmt="json")))["deploymentId"]
        wait_until(lambda: rule_weights(e, e.prod_rule).get(other_tg) == 10, timeout=120, interval=0.2,
                   what="canary step on production")
        wait_until(lambda: "v3" in {v for _, v in load.samples[-200:]}, timeout=10, interval=0.2, what="v3 served")
        out = e.gantry.aws_json("deploy", "stop-deployment", "--deployment-id", dep, "--auto-rollback-enabled")
        assert out["status"] in ("Pending", "Succeeded")
        with pytest.raises(botocore.exceptions.WaiterError) as err:
            e.cd.get_waiter("deployment_successful").wait(deploymentId=dep, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        assert "Stopped" in str(err.value)
        stopped_at = time.monotonic()
        wait_until(lambda: len(task_sets(e)) == 1, timeout=60, interval=0.5, what="replacement task set removed")
        time.sleep(1)
    assert load.bad == [], f"{len(load.bad)} failed requests, e.g. {load.bad[:5]}"
    assert {v for t, v in load.samples if t > stopped_at + 1} == {"v2"}
    assert rule_weights(e, e.prod_rule) == {serving_tg: 100, other_tg: 0}
    assert rule_weights(e, e.test_rule) == {serving_tg: 100, other_tg: 0}
    [ts] = task_sets(e)
    assert ts["id"] == serving["id"] and ts["status"] == "PRIMARY"
    info = e.cd.get_deployment(deploymentId=dep)["deploymentInfo"]
    assert info["status"] == "Stopped" and info["errorInformation"]["code"] == "MANUAL_STOP"
    rb = info["rollbackInfo"]["rollbackDeploymentId"]
    rollback = e.cd.get_deployment(deploymentId=rb)["deploymentInfo"]
    assert rollback["status"] == "Succeeded" and rollback["creator"] == "codeDeployRollback"
    assert rollback["rollbackInfo"]["rollbackTriggeringDeploymentId"] == dep
    # The group is free again.
    grp = e.cd.get_deployment_group(applicationName="shop", deploymentGroupName="web")["deploymentGroupInfo"]
    assert grp["lastAttemptedDeployment"]["deploymentId"] == dep
    assert grp["lastAttemptedDeployment"]["status"] == "Stopped"


def test_codedeploy_errors_for_bad_input(env):
    e = env
    cd = e.cd
    group = dict(serviceRoleArn=ROLE,
                 deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
                 blueGreenDeploymentConfiguration={"terminateBlueInstancesOnDeploymentSuccess": {
                     "action": "TERMINATE", "terminationWaitTimeInMinutes": 0}},
                 ecsServices=[{"serviceName": "web", "clusterName": CLUSTER}], loadBalancerInfo=lb_info(e))

    def refused(code, fn, part=None, **kw):
        got, msg = cd_error(fn, **kw)
        assert got == code, (got, msg)
        if part:
            assert part in msg, msg
        return msg

    refused("ApplicationDoesNotExistException", cd.create_deployment_group, applicationName="nope",
            deploymentGroupName="g", **group)
    refused("DeploymentGroupAlreadyExistsException", cd.create_deployment_group, applicationName="shop",
            deploymentGroupName="web", **group)
    # The service already belongs to the group "web".
    refused("ECSServiceMappingLimitExceededException", cd.create_deployment_group, applicationName="shop",
            deploymentGroupName="again", **group)
    e.ecs.create_service(cluster=CLUSTER, serviceName="plain", taskDefinition="cdweb:1", desiredCount=0)
    refused("InvalidECSServiceException", cd.create_deployment_group, "CODE_DEPLOY deployment controller",
            applicationName="shop", deploymentGroupName="g2",
            **{**group, "ecsServices": [{"serviceName": "plain", "clusterName": CLUSTER}]})
    refused("InvalidECSServiceException", cd.create_deployment_group, "missing",
            applicationName="shop", deploymentGroupName="g2",
            **{**group, "ecsServices": [{"serviceName": "missing", "clusterName": CLUSTER}]})
    refused("InvalidTargetGroupPairException", cd.create_deployment_group, "must be different",
            applicationName="shop", deploymentGroupName="g2",
            **{**group, "loadBalancerInfo": lb_info(e, names=("cd-blue", "cd-blue"))})
    refused("InvalidTargetGroupPairException", cd.create_deployment_group, "does not exist",
            applicationName="shop", deploymentGroupName="g2",
            **{**group, "loadBalancerInfo": lb_info(e, names=("cd-blue", "nope"))})
    refused("InvalidDeploymentStyleException", cd.create_deployment_group, applicationName="shop",
            deploymentGroupName="g2", **{**group, "deploymentStyle": {"deploymentType": "IN_PLACE",
                                                                       "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"}})
    refused("InvalidRoleException", cd.create_deployment_group, "not-a-role", applicationName="shop",
            deploymentGroupName="g2", **{**group, "serviceRoleArn": "not-a-role"})
    refused("DeploymentConfigDoesNotExistException", cd.create_deployment_group, applicationName="shop",
            deploymentGroupName="g2", deploymentConfigName="Nope", **group)
    refused("InvalidAutoRollbackConfigException", cd.create_deployment_group, applicationName="shop",
            deploymentGroupName="g2", autoRollbackConfiguration={"enabled": True, "events": ["WHENEVER"]}, **group)
    refused("DeploymentGroupDoesNotExistException", cd.get_deployment_group, applicationName="shop",
            deploymentGroupName="g2")
    assert cd.list_deployment_groups(applicationName="shop")["deploymentGroups"] == ["web"]
    [info] = cd.batch_get_deployment_groups(applicationName="shop", deploymentGroupNames=["web"])["deploymentGroupsInfo"]
    assert info["ecsServices"] == [{"serviceName": "web", "clusterName": CLUSTER}]
    assert info["loadBalancerInfo"] == lb_info(e)
    assert info["blueGreenDeploymentConfiguration"]["terminateBlueInstancesOnDeploymentSuccess"] == {
        "action": "TERMINATE", "terminationWaitTimeInMinutes": 1}

    # Deployments.
    rev = {"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec(2)}}
    refused("DeploymentGroupDoesNotExistException", cd.create_deployment, applicationName="shop",
            deploymentGroupName="g2", revision=rev)
    refused("RevisionRequiredException", cd.create_deployment, applicationName="shop", deploymentGroupName="web")
    for bad, part in [("version: 0.0\nResources: [", "not valid YAML"),
                      ("version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n"
                       "      Properties:\n        LoadBalancerInfo: {ContainerName: web, ContainerPort: 8080}",
                       "TaskDefinition"),
                      (appspec(2) + "Hooks:\n  - BeforeInstall: \"checkIt\"\n", "Lambda")]:
        refused("InvalidRevisionException", cd.create_deployment, part, applicationName="shop",
                deploymentGroupName="web", revision={"revisionType": "AppSpecContent",
                                                     "appSpecContent": {"content": bad}})
    refused("InvalidRevisionException", cd.create_deployment, "sha256", applicationName="shop",
            deploymentGroupName="web", revision={"revisionType": "AppSpecContent",
                                                 "appSpecContent": {"content": appspec(2), "sha256": "00" * 32}})
    refused("InvalidRevisionException", cd.create_deployment, "S3", applicationName="shop",
            deploymentGroupName="web", revision={"revisionType": "S3", "s3Location": {"bucket": "b", "key": "k"}})
    refused("InvalidDeploymentIdException", cd.get_deployment, deploymentId="12345")
    refused("DeploymentDoesNotExistException", cd.get_deployment, deploymentId="d-AAAAAAAAA")
    refused("DeploymentDoesNotExistException", cd.stop_deployment, deploymentId="d-AAAAAAAAA")
    refused("InvalidDeploymentStatusException", cd.list_deployments, includeOnlyStatuses=["Sideways"])

    # ECS refuses what CodeDeploy does on a CODE_DEPLOY service.
    with pytest.raises(botocore.exceptions.ClientError) as err:
        e.ecs.update_service(cluster=CLUSTER, service="web", taskDefinition="cdweb:3")
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "CODE_DEPLOY" in err.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as err:
        e.ecs.create_task_set(cluster=CLUSTER, service="web", taskDefinition="cdweb:3")
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    with pytest.raises(botocore.exceptions.ClientError) as err:
        e.ecs.create_service(cluster=CLUSTER, serviceName="nolb", taskDefinition="cdweb:1", desiredCount=1,
                             deploymentController={"type": "CODE_DEPLOY"})
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "requires a load balancer" in err.value.response["Error"]["Message"]

"""CodeDeploy for the ECS compute platform through the AWS CLI: applications, the predefined
ECS deployment configurations and custom ones, CodeDeploy's errors, IAM on the new actions, and
the operations Gantry does not serve answering a clear error."""

import json
import time

import pytest

from conftest import Gantry


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
    err = error_of(g.aws("deploy", "list-deployment-groups", "--application-name", "web", check=False))
    assert "UnsupportedOperationException" in err and "ListDeploymentGroups is not supported" in err


def test_iam_governs_codedeploy_actions(g):
    iam = g.client("iam")
    iam.create_user(UserName="deployer")
    iam.put_user_policy(UserName="deployer", PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "codedeploy:GetApplication",
            "Resource": "arn:aws:codedeploy:us-east-1:*:application:web"}]}))
    key = iam.create_access_key(UserName="deployer")["AccessKey"]
    cd = g.client("codedeploy", aws_access_key_id=key["AccessKeyId"],
                  aws_secret_access_key=key["SecretAccessKey"])
    deadline = time.monotonic() + 10
    while True:
        try:
            assert cd.get_application(applicationName="web")["application"]["applicationName"] == "web"
            break
        except cd.exceptions.ClientError as e:
            if time.monotonic() > deadline or e.response["Error"]["Code"] not in (
                    "InvalidClientTokenId", "UnrecognizedClientException"):
                raise
            time.sleep(0.1)
    with pytest.raises(cd.exceptions.ClientError) as e:
        cd.create_application(applicationName="other", computePlatform="ECS")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"

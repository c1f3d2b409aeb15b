"""ECS account settings through boto3: the account default and a user's own value, effective
settings and pagination, the values this endpoint refuses (with the reason), principalArn
rules, containerInsights taken by new clusters; and the agent-only operations
DiscoverPollEndpoint and UpdateContainerAgent."""

import json

import botocore.exceptions
import pytest

from conftest import Gantry

ALL_NAMES = [
    "serviceLongArnFormat", "taskLongArnFormat", "containerInstanceLongArnFormat", "awsvpcTrunking",
    "containerInsights", "fargateFIPSMode", "tagResourceAuthorization", "fargateTaskRetirementWaitPeriod",
    "guardDutyActivate", "defaultLogDriverMode", "fargateEventWindows",
]


@pytest.fixture(scope="module")
def gantry(tmp_path_factory):
    g = Gantry(tmp_path_factory.mktemp("settings") / "data").start()
    yield g
    g.stop()


def error(call, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(**kw)
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def user_client(gantry, name):
    iam = gantry.client("iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="ecs", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecs:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    arn = iam.get_user(UserName=name)["User"]["Arn"]
    return gantry.client("ecs", aws_access_key_id=key["AccessKeyId"],
                         aws_secret_access_key=key["SecretAccessKey"]), arn


def test_default_and_user_override_resolve_as_effective_settings(gantry):
    ecs = gantry.client("ecs")
    root = "arn:aws:iam::" + gantry.client("sts").get_caller_identity()["Account"] + ":root"
    # Nothing set: the effective settings are the platform's, as the root's.
    eff = ecs.list_account_settings(effectiveSettings=True, maxResults=10)
    assert len(eff["settings"]) == 10 and "nextToken" in eff
    rest = ecs.list_account_settings(effectiveSettings=True, nextToken=eff["nextToken"])
    assert "nextToken" not in rest
    settings = {s["name"]: s for s in eff["settings"] + rest["settings"]}
    assert list(settings) == ALL_NAMES
    assert settings["taskLongArnFormat"]["value"] == "enabled"
    assert settings["containerInsights"]["value"] == "disabled"
    assert settings["fargateTaskRetirementWaitPeriod"]["value"] == "7"
    assert settings["guardDutyActivate"]["type"] == "aws_managed"
    assert all(s["principalArn"] == root for s in settings.values())
    assert ecs.list_account_settings()["settings"] == []

    out = ecs.put_account_setting_default(name="awsvpcTrunking", value="enabled")["setting"]
    assert out == {"name": "awsvpcTrunking", "value": "enabled", "principalArn": root, "type": "user"}

    alice, alice_arn = user_client(gantry, "alice")
    # Alice inherits the account default, then overrides it for herself only.
    got = alice.list_account_settings(name="awsvpcTrunking", effectiveSettings=True)["settings"]
    assert got == [{"name": "awsvpcTrunking", "value": "enabled", "principalArn": root, "type": "user"}]
    out = alice.put_account_setting(name="awsvpcTrunking", value="disabled")["setting"]
    assert out["principalArn"] == alice_arn and out["value"] == "disabled"
    got = alice.list_account_settings(name="awsvpcTrunking", effectiveSettings=True)["settings"]
    assert got[0]["value"] == "disabled" and got[0]["principalArn"] == alice_arn
    assert ecs.list_account_settings(name="awsvpcTrunking", effectiveSettings=True)["settings"][0]["value"] == "enabled"
    # The root reads Alice's own settings by principalArn; filters by value.
    mine = ecs.list_account_settings(principalArn=alice_arn)["settings"]
    assert [(s["name"], s["value"]) for s in mine] == [("awsvpcTrunking", "disabled")]
    assert ecs.list_account_settings(principalArn=alice_arn, name="awsvpcTrunking", value="enabled")["settings"] == []

    # Alice may not touch another principal's settings.
    code, msg = error(alice.put_account_setting, name="awsvpcTrunking", value="enabled", principalArn=root)
    assert code == "InvalidParameterException" and "principalArn" in msg
    # Deleting her value brings the default back.
    deleted = alice.delete_account_setting(name="awsvpcTrunking")["setting"]
    assert deleted["value"] == "disabled" and deleted["principalArn"] == alice_arn
    got = alice.list_account_settings(name="awsvpcTrunking", effectiveSettings=True)["settings"]
    assert got[0]["value"] == "enabled" and got[0]["principalArn"] == root
    ecs.delete_account_setting(name="awsvpcTrunking", principalArn=root)
    assert ecs.list_account_settings(name="awsvpcTrunking", effectiveSettings=True)["settings"][0]["value"] == "disabled"


def test_values_not_acted_on_are_refused_with_the_reason(gantry):
    ecs = gantry.client("ecs")
    code, msg = error(ecs.put_account_setting, name="taskLongArnFormat", value="disabled")
    assert code == "InvalidParameterException" and "long ARN format" in msg
    code, msg = error(ecs.put_account_setting, name="containerInsights", value="on")
    assert code == "InvalidParameterException"
    assert msg == "Invalid value 'on' for setting containerInsights. Valid values: enabled, disabled, enhanced."
    code, msg = error(ecs.put_account_setting, name="nope", value="enabled")
    assert code == "InvalidParameterException" and "Invalid setting name 'nope'" in msg
    code, _ = error(ecs.put_account_setting_default, name="guardDutyActivate", value="on")
    assert code == "InvalidParameterException"
    code, msg = error(ecs.put_account_setting_default, name="fargateFIPSMode", value="enabled")
    assert code == "InvalidParameterException" and "FIPS" in msg
    code, msg = error(ecs.put_account_setting_default, name="tagResourceAuthorization", value="on")
    assert code == "InvalidParameterException" and "ecs:TagResource" in msg
    code, _ = error(ecs.put_account_setting, name="awsvpcTrunking", value="enabled",
                    principalArn="arn:aws:iam::999999999999:root")
    assert code == "InvalidParameterException"
    code, _ = error(ecs.list_account_settings, maxResults=11)
    assert code == "InvalidParameterException"
    # Accepted and kept.
    ecs.put_account_setting_default(name="fargateTaskRetirementWaitPeriod", value="14")
    got = ecs.list_account_settings(name="fargateTaskRetirementWaitPeriod", effectiveSettings=True)["settings"]
    assert got[0]["value"] == "14"


def test_new_clusters_take_the_container_insights_setting(gantry):
    ecs = gantry.client("ecs")
    ecs.put_account_setting(name="containerInsights", value="enhanced")
    try:
        c = ecs.create_cluster(clusterName="insightful")["cluster"]
        assert c["settings"] == [{"name": "containerInsights", "value": "enhanced"}]
        c = ecs.create_cluster(clusterName="plain", settings=[{"name": "containerInsights", "value": "disabled"}])
        assert c["cluster"]["settings"] == [{"name": "containerInsights", "value": "disabled"}]
    finally:
        ecs.delete_account_setting(name="containerInsights")
    c = ecs.create_cluster(clusterName="after")["cluster"]
    assert c["settings"] == [{"name": "containerInsights", "value": "disabled"}]


def test_agent_only_operations_answer_plainly(gantry):
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="agents")
    out = ecs.discover_poll_endpoint(cluster="agents")
    assert out["endpoint"] == gantry.endpoint and out["telemetryEndpoint"] == gantry.endpoint
    assert "serviceConnectEndpoint" not in out
    code, _ = error(ecs.discover_poll_endpoint, cluster="agents", containerInstance="0" * 32)
    assert code == "InvalidParameterException"
    code, _ = error(ecs.update_container_agent, cluster="nope", containerInstance="0" * 32)
    assert code == "ClusterNotFoundException"
    code, _ = error(ecs.update_container_agent, cluster="agents", containerInstance="0" * 32)
    assert code == "InvalidParameterException"
    ci = ecs.register_container_instance(cluster="agents", totalResources=[
        {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}])["containerInstance"]
    code, msg = error(ecs.update_container_agent, cluster="agents", containerInstance=ci["containerInstanceArn"])
    assert code == "NoUpdateAvailableException" and "gantry binary" in msg, msg

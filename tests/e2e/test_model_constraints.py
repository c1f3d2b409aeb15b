"""The models' length, count, range and pattern constraints, enforced on the wire for every
service with AWS's wording, as boto3 sees them."""

import botocore.config

from conftest import error_of

# botocore checks `min` itself unless told not to; the server must check it too.
NO_CLIENT_CHECKS = botocore.config.Config(parameter_validation=False, retries={"max_attempts": 1})


def test_logs_limits(gantry):
    logs = gantry.client("logs", config=NO_CLIENT_CHECKS)
    assert error_of(logs.describe_log_groups, limit=51) == (
        400, "InvalidParameterException",
        "1 validation error detected: Value '51' at 'limit' failed to satisfy constraint: "
        "Member must have value less than or equal to 50")
    assert error_of(logs.create_log_group, logGroupName="a" * 513) == (
        400, "InvalidParameterException",
        f"1 validation error detected: Value '{'a' * 513}' at 'logGroupName' failed to satisfy "
        "constraint: Member must have length less than or equal to 512")
    status, code, message = error_of(logs.get_log_events, logGroupName="g", logStreamName="s", limit=0)
    assert (status, code) == (400, "InvalidParameterException")
    assert message.endswith("at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1")
    # Two violations of one value, and of two members, in one message.
    status, code, message = error_of(logs.describe_log_groups, logGroupNamePrefix="!" * 600, limit=0)
    assert message.startswith("3 validation errors detected: "), message
    assert "Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+" in message
    # Within the limits, the service answers.
    assert logs.describe_log_groups(limit=50)["logGroups"] == []
    # Resource policies: the model's limits are checked before the service's own (5,120 characters).
    assert error_of(logs.describe_resource_policies, limit=51) == (
        400, "InvalidParameterException",
        "1 validation error detected: Value '51' at 'limit' failed to satisfy constraint: "
        "Member must have value less than or equal to 50")
    status, code, message = error_of(logs.put_resource_policy, policyName="p", policyDocument="x" * 51201)
    assert (status, code) == (400, "InvalidParameterException")
    assert message.endswith("at 'policyDocument' failed to satisfy constraint: "
                            "Member must have length less than or equal to 51200"), message[-200:]
    status, code, message = error_of(logs.delete_resource_policy, policyName="p", expectedRevisionId="")
    assert message == ("1 validation error detected: Value '' at 'expectedRevisionId' failed to satisfy "
                       "constraint: Member must have length greater than or equal to 1")
    assert logs.describe_resource_policies(limit=50)["resourcePolicies"] == []


def test_ecr_limits(gantry):
    ecr = gantry.client("ecr")
    assert error_of(ecr.create_repository, repositoryName="Upper/Case") == (
        400, "InvalidParameterException",
        "1 validation error detected: Value 'Upper/Case' at 'repositoryName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: "
        "[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(\\/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*")
    ecr.create_repository(repositoryName="limits")
    status, code, message = error_of(ecr.describe_images, repositoryName="limits", maxResults=1001)
    assert (status, code) == (400, "InvalidParameterException")
    assert message == ("1 validation error detected: Value '1001' at 'maxResults' failed to satisfy "
                       "constraint: Member must have value less than or equal to 1000")
    ids = [{"imageTag": f"t{i}"} for i in range(101)]
    status, code, message = error_of(ecr.batch_get_image, repositoryName="limits", imageIds=ids)
    assert code == "InvalidParameterException"
    assert "at 'imageIds' failed to satisfy constraint: Member must have length less than or equal to 100" in message


def test_ecs_limits(gantry):
    ecs = gantry.client("ecs")
    tags = [{"key": f"k{i}", "value": "v"} for i in range(51)]
    status, code, message = error_of(ecs.create_cluster, clusterName="c", tags=tags)
    assert (status, code) == (400, "InvalidParameterException")
    assert message.startswith("1 validation error detected: Value '[")
    assert message.endswith("at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50")
    status, code, message = error_of(ecs.create_cluster, clusterName="c", tags=[{"key": "k" * 129, "value": "v"}])
    assert message == (f"1 validation error detected: Value '{'k' * 129}' at 'tags.1.member.key' failed to "
                       "satisfy constraint: Member must have length less than or equal to 128")
    assert ecs.list_clusters()["clusterArns"] == [], "nothing was created"


def test_elbv2_limits(gantry):
    elb = gantry.client("elbv2")
    status, code, message = error_of(elb.create_target_group, Name="tg", Protocol="HTTP", Port=80,
                                     VpcId="vpc-1", HealthCheckIntervalSeconds=301)
    assert (status, code) == (400, "ValidationError")
    assert message == ("1 validation error detected: Value '301' at 'healthCheckIntervalSeconds' failed "
                       "to satisfy constraint: Member must have value less than or equal to 300")
    elb_raw = gantry.client("elbv2", config=NO_CLIENT_CHECKS)
    status, code, message = error_of(elb_raw.create_target_group, Name="tg", Protocol="HTTP", Port=0, VpcId="vpc-1")
    assert message.endswith("at 'port' failed to satisfy constraint: Member must have value greater than or equal to 1")
    assert elb.describe_target_groups()["TargetGroups"] == []

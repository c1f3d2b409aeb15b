"""CloudWatch Logs resource policies through the real binary: PutResourcePolicy,
DescribeResourcePolicies and DeleteResourcePolicy with boto3 and the AWS CLI, their limits and
AWS's error codes and messages. Each test works in a region of its own on one shared server."""

import json
import time

import botocore.config
import pytest
from botocore.exceptions import ClientError

from conftest import Gantry, error_of

NO_CLIENT_CHECKS = botocore.config.Config(parameter_validation=False, retries={"max_attempts": 1})

ROUTE53 = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{
        "Sid": "Route53LogsToCloudWatchLogs",
        "Effect": "Allow",
        "Principal": {"Service": ["route53.amazonaws.com"]},
        "Action": "logs:PutLogEvents",
        "Resource": "log_arn",
    }],
})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    g = Gantry(tmp_path_factory.mktemp("resourcepolicies") / "data").start()
    yield g
    g.stop()


def test_put_describe_update_and_delete(server):
    logs = server.client("logs", region_name="us-east-2")
    before = int(time.time() * 1000)
    out = logs.put_resource_policy(policyName="route53", policyDocument=ROUTE53)["resourcePolicy"]
    assert out["policyName"] == "route53"
    assert out["policyDocument"] == ROUTE53, "the document comes back as written"
    assert out["policyScope"] == "ACCOUNT"
    assert "resourceArn" not in out and "revisionId" not in out
    created = out["lastUpdatedTime"]
    assert before <= created <= int(time.time() * 1000)

    listed = logs.describe_resource_policies()
    assert listed["resourcePolicies"] == [out]
    assert "nextToken" not in listed

    time.sleep(0.002)  # lastUpdatedTime is in milliseconds
    doc = json.dumps({"Statement": [{"Action": "logs:*", "Effect": "Allow",
                                     "Principal": {"Service": "delivery.logs.amazonaws.com"}, "Resource": "*"}]})
    updated = logs.put_resource_policy(policyName="route53", policyDocument=doc)["resourcePolicy"]
    assert updated["policyDocument"] == doc
    assert updated["lastUpdatedTime"] > created
    assert logs.describe_resource_policies(policyScope="ACCOUNT")["resourcePolicies"] == [updated]

    # The AWS CLI sees the same policy.
    cli = server.aws_json("logs", "describe-resource-policies", "--region", "us-east-2")
    assert [p["policyName"] for p in cli["resourcePolicies"]] == ["route53"]

    logs.delete_resource_policy(policyName="route53")
    assert logs.describe_resource_policies()["resourcePolicies"] == []
    assert error_of(logs.delete_resource_policy, policyName="route53") == (
        400, "ResourceNotFoundException", "Policy with name [route53] does not exist.")
    # Policies belong to their region.
    logs.put_resource_policy(policyName="east", policyDocument=ROUTE53)
    other = server.client("logs", region_name="ap-south-1")
    assert other.describe_resource_policies()["resourcePolicies"] == []


def test_pages_follow_limit_and_next_token(server):
    logs = server.client("logs", region_name="eu-central-1")
    names = [f"policy-{i}" for i in range(7)]
    for name in reversed(names):
        logs.put_resource_policy(policyName=name, policyDocument=ROUTE53)
    seen, token, pages = [], None, 0
    while True:
        kw = {"limit": 3}
        if token:
            kw["nextToken"] = token
        out = logs.describe_resource_policies(**kw)
        assert len(out["resourcePolicies"]) <= 3
        seen += [p["policyName"] for p in out["resourcePolicies"]]
        pages += 1
        token = out.get("nextToken")
        if not token:
            break
    assert (seen, pages) == (names, 3)
    # The paginator boto3 ships walks the same pages.
    paged = logs.get_paginator("describe_resource_policies").paginate(PaginationConfig={"PageSize": 2})
    assert [p["policyName"] for page in paged for p in page["resourcePolicies"]] == names
    assert error_of(logs.describe_resource_policies, nextToken="garbage") == (
        400, "InvalidParameterException", "The specified nextToken is invalid.")


def test_ten_policies_per_region(server):
    logs = server.client("logs", region_name="eu-west-1")
    for i in range(10):
        logs.put_resource_policy(policyName=f"p{i}", policyDocument=ROUTE53)
    assert error_of(logs.put_resource_policy, policyName="eleventh", policyDocument=ROUTE53) == (
        400, "LimitExceededException", "Resource limit exceeded.")
    # Updating one of the ten is still allowed; deleting one makes room.
    doc = json.dumps({"Statement": {"Effect": "Allow", "Principal": {"Service": "logs.amazonaws.com"},
                                    "Action": "logs:*", "Resource": "*"}})
    assert logs.put_resource_policy(policyName="p1", policyDocument=doc)["resourcePolicy"]["policyDocument"] == doc
    logs.delete_resource_policy(policyName="p0")
    logs.put_resource_policy(policyName="eleventh", policyDocument=ROUTE53)
    names = [p["policyName"] for p in logs.describe_resource_policies()["resourcePolicies"]]
    assert len(names) == 10 and "p0" not in names and "eleventh" in names
    # Another region has its own ten.
    server.client("logs", region_name="eu-west-2").put_resource_policy(policyName="p", policyDocument=ROUTE53)


def test_documents_and_members_are_validated(server):
    logs = server.client("logs", region_name="sa-east-1", config=NO_CLIENT_CHECKS)
    assert error_of(logs.put_resource_policy, policyDocument=ROUTE53) == (
        400, "InvalidParameterException",
        "1 validation error detected: Value null at 'policyName' failed to satisfy constraint: "
        "Member must not be null")
    assert error_of(logs.put_resource_policy, policyName="p") == (
        400, "InvalidParameterException",
        "1 validation error detected: Value null at 'policyDocument' failed to satisfy constraint: "
        "Member must not be null")
    assert error_of(logs.delete_resource_policy) == (
        400, "InvalidParameterException",
        "1 validation error detected: Value null at 'policyName' failed to satisfy constraint: "
        "Member must not be null")
    status, code, message = error_of(logs.put_resource_policy, policyName="p", policyDocument="{not json")
    assert (status, code) == (400, "InvalidParameterException")
    assert message.startswith("The policyDocument is not valid JSON"), message
    not_a_policy = (400, "InvalidParameterException", "Could not convert to persistable policy.")
    for doc in [
        {"Version": "2012-10-17"},
        {"Statement": [{"Effect": "Maybe", "Action": "logs:PutLogEvents", "Resource": "*"}]},
        {"Statement": [{"Effect": "Allow", "Resource": "*"}]},
        # A service named as an AWS principal (the mistake AWS answers this way).
        {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "delivery.logs.amazonaws.com"},
                        "Action": "logs:PutLogEvents", "Resource": "*"}]},
    ]:
        assert error_of(logs.put_resource_policy, policyName="p", policyDocument=json.dumps(doc)) == not_a_policy, doc
    # CloudWatch Logs' own size limit, below the model's 51,200.
    sid = "a" * (5121 - len(json.dumps({"Statement": {"Effect": "Allow", "Action": "logs:*", "Sid": ""}})))
    big = json.dumps({"Statement": {"Effect": "Allow", "Action": "logs:*", "Sid": sid}})
    assert len(big) == 5121
    status, code, message = error_of(logs.put_resource_policy, policyName="p", policyDocument=big)
    assert (status, code) == (400, "InvalidParameterException")
    assert "at 'policyDocument' failed to satisfy constraint: Member must have length less than or equal to 5120" \
        in message, message
    fits = json.dumps({"Statement": {"Effect": "Allow", "Action": "logs:*", "Sid": sid[1:]}})
    assert logs.put_resource_policy(policyName="p", policyDocument=fits)["resourcePolicy"]["policyDocument"] == fits
    assert error_of(logs.describe_resource_policies, limit=0) == (
        400, "InvalidParameterException",
        "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1")
    assert error_of(logs.describe_resource_policies, policyScope="GLOBAL") == (
        400, "InvalidParameterException",
        "1 validation error detected: Value 'GLOBAL' at 'policyScope' failed to satisfy constraint: "
        "Member must satisfy enum value set: [ACCOUNT, RESOURCE]")
    # Nothing above was stored but the one that fit.
    assert [p["policyName"] for p in logs.describe_resource_policies()["resourcePolicies"]] == ["p"]


def test_a_log_group_has_one_resource_scoped_policy_guarded_by_its_revision(server):
    logs = server.client("logs", region_name="ca-central-1")
    logs.create_log_group(logGroupName="scoped")
    arn = logs.describe_log_groups()["logGroups"][0]["logGroupArn"]
    out = logs.put_resource_policy(policyName="deliveries", policyDocument=ROUTE53, resourceArn=arn)
    first = out["resourcePolicy"]
    assert (first["policyName"], first["policyScope"], first["resourceArn"]) == ("deliveries", "RESOURCE", arn)
    assert first["policyDocument"] == ROUTE53
    assert out["revisionId"] == first["revisionId"] and first["revisionId"]
    # Resource-scoped policies are not account policies, and do not count toward the ten.
    assert logs.describe_resource_policies()["resourcePolicies"] == []
    assert logs.describe_resource_policies(policyScope="RESOURCE", resourceArn=arn)["resourcePolicies"] == [first]
    assert logs.describe_resource_policies(resourceArn=f"{arn}:*")["resourcePolicies"] == [first]
    assert logs.describe_resource_policies(policyScope="RESOURCE")["resourcePolicies"] == [first]

    # Changing it takes the current revision; a stale or missing one is refused.
    status, code, message = error_of(logs.put_resource_policy, policyName="deliveries", policyDocument=ROUTE53,
                                     resourceArn=arn)
    assert (status, code) == (400, "InvalidParameterException") and first["revisionId"] in message, message
    status, code, message = error_of(logs.put_resource_policy, policyName="deliveries", policyDocument=ROUTE53,
                                     resourceArn=arn, expectedRevisionId="stale")
    assert (status, code) == (400, "OperationAbortedException") and "'stale'" in message, message
    doc = json.dumps({"Statement": {"Effect": "Allow", "Principal": {"Service": "delivery.logs.amazonaws.com"},
                                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": arn}})
    second = logs.put_resource_policy(policyName="deliveries", policyDocument=doc, resourceArn=arn,
                                      expectedRevisionId=first["revisionId"])["resourcePolicy"]
    assert second["policyDocument"] == doc and second["revisionId"] != first["revisionId"]

    # Deleting takes the name and the current revision.
    assert error_of(logs.delete_resource_policy, policyName="deliveries", resourceArn=arn) == (
        400, "InvalidParameterException",
        "1 validation error detected: Value null at 'expectedRevisionId' failed to satisfy constraint: "
        "Member must not be null")
    assert error_of(logs.delete_resource_policy, policyName="other", resourceArn=arn,
                    expectedRevisionId=second["revisionId"]) == (
        400, "ResourceNotFoundException", "Policy with name [other] does not exist.")
    assert error_of(logs.delete_resource_policy, policyName="deliveries", resourceArn=arn,
                    expectedRevisionId=first["revisionId"])[1] == "OperationAbortedException"
    logs.delete_resource_policy(policyName="deliveries", resourceArn=arn, expectedRevisionId=second["revisionId"])
    assert logs.describe_resource_policies(resourceArn=arn)["resourcePolicies"] == []

    # A first policy takes no expectedRevisionId; deleting the group deletes its policy.
    assert error_of(logs.put_resource_policy, policyName="p", policyDocument=ROUTE53, resourceArn=arn,
                    expectedRevisionId="1")[1] == "OperationAbortedException"
    logs.put_resource_policy(policyName="p", policyDocument=ROUTE53, resourceArn=arn)
    logs.delete_log_group(logGroupName="scoped")
    logs.create_log_group(logGroupName="scoped")
    assert logs.describe_resource_policies(resourceArn=arn)["resourcePolicies"] == []


def test_resource_scoped_errors(server):
    logs = server.client("logs", region_name="ap-northeast-1")
    missing = "arn:aws:logs:ap-northeast-1:000000000000:log-group:nope"
    group_not_found = (400, "ResourceNotFoundException", "The specified log group does not exist.")
    assert error_of(logs.put_resource_policy, policyName="p", policyDocument=ROUTE53,
                    resourceArn=missing) == group_not_found
    assert error_of(logs.describe_resource_policies, resourceArn=missing) == group_not_found
    assert error_of(logs.delete_resource_policy, policyName="p", resourceArn=missing,
                    expectedRevisionId="1") == group_not_found
    for arn in ["arn:aws:logs:eu-west-1:000000000000:log-group:elsewhere",
                "arn:aws:logs:ap-northeast-1:000000000000:destination:d",
                "not-an-arn"]:
        status, code, message = error_of(logs.put_resource_policy, policyName="p", policyDocument=ROUTE53,
                                         resourceArn=arn)
        assert (status, code) == (400, "InvalidParameterException") and f"'{arn}'" in message, message
    # Account policies have no revision.
    for call, kw in [(logs.put_resource_policy, dict(policyName="p", policyDocument=ROUTE53)),
                     (logs.delete_resource_policy, dict(policyName="p"))]:
        status, code, message = error_of(call, expectedRevisionId="1", **kw)
        assert (status, code) == (400, "InvalidParameterException") and "'1'" in message, message
    logs.create_log_group(logGroupName="g")
    status, code, message = error_of(logs.describe_resource_policies, policyScope="ACCOUNT",
                                     resourceArn=missing.replace("nope", "g"))
    assert (status, code) == (400, "InvalidParameterException"), message
    assert logs.describe_resource_policies()["resourcePolicies"] == []


def test_authorized_through_iam(server):
    iam = server.client("iam")
    iam.create_user(UserName="policy-reader")
    iam.put_user_policy(UserName="policy-reader", PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "logs:DescribeResourcePolicies", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="policy-reader")["AccessKey"]
    logs = server.client("logs", region_name="us-west-1", aws_access_key_id=key["AccessKeyId"],
                         aws_secret_access_key=key["SecretAccessKey"])
    deadline = time.monotonic() + 10
    while True:
        try:
            assert logs.describe_resource_policies()["resourcePolicies"] == []
            break
        except ClientError as e:
            if time.monotonic() > deadline or e.response["Error"]["Code"] not in (
                    "InvalidClientTokenId", "UnrecognizedClientException"):
                raise
            time.sleep(0.1)
    for call, kw in [(logs.put_resource_policy, dict(policyName="p", policyDocument=ROUTE53)),
                     (logs.delete_resource_policy, dict(policyName="p"))]:
        status, code, message = error_of(call, **kw)
        assert (status, code) == (400, "AccessDeniedException"), (call.__name__, code, message)
        action = "logs:PutResourcePolicy" if call == logs.put_resource_policy else "logs:DeleteResourcePolicy"
        assert action in message, message

"""ECR registry-wide operations through the real binary: registry policy, DescribeRegistry,
scanning configuration, StartImageScan's answer, and ECR's "does not exist" messages."""

import json

import botocore.exceptions
import pytest

from conftest import Gantry
from test_ecr_lifecycle import KEEP_3_PROD, push_image

ACCOUNT = "000000000000"

POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Sid": "ReplicationAccess", "Effect": "Allow",
    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
    "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
    "Resource": f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/*"}]})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    g = Gantry(tmp_path_factory.mktemp("registry") / "data").start()
    yield g
    g.stop()


def error(call):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def test_registry_policy_lifecycle(server):
    ecr = server.client("ecr")
    assert error(lambda: ecr.get_registry_policy()) == (
        "RegistryPolicyNotFoundException", f"Registry policy does not exist in the registry with id '{ACCOUNT}'")
    put = ecr.put_registry_policy(policyText=POLICY)
    assert put == {**put, "registryId": ACCOUNT, "policyText": POLICY}
    assert ecr.get_registry_policy()["policyText"] == POLICY
    cli = server.aws_json("ecr", "get-registry-policy")
    assert cli["registryId"] == ACCOUNT and json.loads(cli["policyText"]) == json.loads(POLICY)
    assert ecr.delete_registry_policy()["policyText"] == POLICY
    assert error(lambda: ecr.delete_registry_policy())[0] == "RegistryPolicyNotFoundException"
    code, msg = error(lambda: ecr.put_registry_policy(policyText='{"Statement": "nope"}'))
    assert code == "InvalidParameterException" and "Invalid registry policy provided" in msg


def test_describe_registry_and_scanning_configuration(server):
    ecr = server.client("ecr")
    reg = ecr.describe_registry()
    assert reg["registryId"] == ACCOUNT and reg["replicationConfiguration"] == {"rules": []}
    got = ecr.get_registry_scanning_configuration()
    assert got["scanningConfiguration"] == {"scanType": "BASIC", "rules": []}
    rules = [{"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": "scan/*", "filterType": "WILDCARD"}]}]
    ecr.put_registry_scanning_configuration(scanType="BASIC", rules=rules)
    assert ecr.get_registry_scanning_configuration()["scanningConfiguration"] == {"scanType": "BASIC", "rules": rules}
    ecr.create_repository(repositoryName="scan/app")
    ecr.create_repository(repositoryName="plain", imageScanningConfiguration={"scanOnPush": True})
    out = ecr.batch_get_repository_scanning_configuration(repositoryNames=["scan/app", "plain", "ghost"])
    by_name = {c["repositoryName"]: c for c in out["scanningConfigurations"]}
    assert by_name["scan/app"]["scanFrequency"] == "SCAN_ON_PUSH"
    assert by_name["scan/app"]["appliedScanFilters"] == rules[0]["repositoryFilters"]
    assert by_name["plain"]["scanFrequency"] == "SCAN_ON_PUSH" and by_name["plain"]["scanOnPush"] is True
    assert out["failures"] == [{"repositoryName": "ghost", "failureCode": "REPOSITORY_NOT_FOUND",
                                "failureReason": "REPOSITORY_NOT_FOUND"}]
    code, _ = error(lambda: ecr.put_registry_scanning_configuration(
        scanType="BASIC", rules=[{"scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": rules[0]["repositoryFilters"]}]))
    assert code == "InvalidParameterException"


def test_start_image_scan_says_there_is_no_scanner(server):
    ecr = server.client("ecr")
    ecr.create_repository(repositoryName="scan/target")
    push_image(ecr, "scan/target", "v1", 1)
    code, msg = error(lambda: ecr.start_image_scan(repositoryName="scan/target", imageId={"imageTag": "v1"}))
    assert code == "ValidationException" and "no vulnerability scanner" in msg
    missing = ("ImageNotFoundException",
               "The image with imageId {imageDigest:'null', imageTag:'v2'} does not exist within the repository "
               f"with name 'scan/target' in the registry with id '{ACCOUNT}'")
    assert error(lambda: ecr.start_image_scan(repositoryName="scan/target", imageId={"imageTag": "v2"})) == missing
    assert error(lambda: ecr.describe_images(repositoryName="scan/target", imageIds=[{"imageTag": "v2"}])) == missing


def test_missing_repositories_are_worded_as_ecr_words_them(server):
    ecr = server.client("ecr")
    expected = f"The repository with name 'ghost' does not exist in the registry with id '{ACCOUNT}'"
    for call in (lambda: ecr.describe_images(repositoryName="ghost"),
                 lambda: ecr.describe_repositories(repositoryNames=["ghost"]),
                 lambda: ecr.batch_get_image(repositoryName="ghost", imageIds=[{"imageTag": "v1"}]),
                 lambda: ecr.put_lifecycle_policy(repositoryName="ghost", lifecyclePolicyText=KEEP_3_PROD),
                 lambda: ecr.list_images(repositoryName="ghost"),
                 lambda: ecr.delete_repository(repositoryName="ghost"),
                 lambda: ecr.get_repository_policy(repositoryName="ghost"),
                 lambda: ecr.start_image_scan(repositoryName="ghost", imageId={"imageTag": "v1"})):
        assert error(call) == ("RepositoryNotFoundException", expected)
    ecr.create_repository(repositoryName="nopolicy")
    assert error(lambda: ecr.get_repository_policy(repositoryName="nopolicy")) == (
        "RepositoryPolicyNotFoundException",
        f"Repository policy does not exist for the repository with name 'nopolicy' in the registry with id '{ACCOUNT}'")

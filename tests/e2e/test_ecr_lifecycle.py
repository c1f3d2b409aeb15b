"""ECR lifecycle policies through the real binary: validation, preview, execution after a push,
and pulls of expired tags over the registry protocol."""

import base64
import hashlib
import json
import urllib.error
import urllib.request

import botocore.exceptions
import pytest

from conftest import Gantry

ACCOUNT = "000000000000"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    g = Gantry(tmp_path_factory.mktemp("lifecycle") / "data").start()
    yield g
    g.stop()


def upload_blob(ecr, repo, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    layers = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[digest])["layers"]
    if layers and layers[0].get("layerAvailability") == "AVAILABLE":
        return digest
    upload = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.upload_layer_part(repositoryName=repo, uploadId=upload, partFirstByte=0, partLastByte=len(data) - 1,
                          layerPartBlob=data)
    ecr.complete_layer_upload(repositoryName=repo, uploadId=upload, layerDigests=[digest])
    return digest


def push_image(ecr, repo, tag, n):
    """Pushes a small image (its own config, a shared layer) through the ECR layer API."""
    layer = b"shared layer bytes"
    layer_digest = upload_blob(ecr, repo, layer)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"n": str(n)}},
                         "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
    config_digest = upload_blob(ecr, repo, config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                    "digest": layer_digest}],
    })
    return ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag=tag)["image"]["imageId"]["imageDigest"]


def pull_manifest(server, repo, tag):
    """GET /v2/<repo>/manifests/<tag> with the registry password, as a pull starts."""
    token = server.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    req = urllib.request.Request(
        f"{server.endpoint}/v2/{repo}/manifests/{tag}",
        headers={"Authorization": "Basic " + token,
                 "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


KEEP_3_PROD = json.dumps({"rules": [{
    "rulePriority": 1, "description": "keep the 3 newest prod images",
    "selection": {"tagStatus": "tagged", "tagPrefixList": ["prod"], "countType": "imageCountMoreThan",
                  "countNumber": 3},
    "action": {"type": "expire"}}]})


def test_keep_three_newest_prod_images_preview_then_execution(server):
    ecr = server.client("ecr")
    repo = "lifecycle/app"
    ecr.create_repository(repositoryName=repo)
    digests = [push_image(ecr, repo, f"prod-{i}", i) for i in range(10)]
    assert len(set(digests)) == 10

    put = ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=KEEP_3_PROD)
    assert put["registryId"] == ACCOUNT and put["lifecyclePolicyText"] == KEEP_3_PROD

    started = ecr.start_lifecycle_policy_preview(repositoryName=repo)
    assert started["lifecyclePolicyText"] == KEEP_3_PROD
    ecr.get_waiter("lifecycle_policy_preview_complete").wait(repositoryName=repo,
                                                             WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    preview = ecr.get_lifecycle_policy_preview(repositoryName=repo)
    assert preview["status"] == "COMPLETE"
    assert preview["summary"]["expiringImageTotalCount"] == 7
    assert sorted(r["imageTags"][0] for r in preview["previewResults"]) == [f"prod-{i}" for i in range(7)]
    assert all(r["action"]["type"] == "EXPIRE" and r["appliedRulePriority"] == 1 for r in preview["previewResults"])
    page = ecr.get_lifecycle_policy_preview(repositoryName=repo, maxResults=5)
    assert len(page["previewResults"]) == 5 and "nextToken" in page
    rest = ecr.get_lifecycle_policy_preview(repositoryName=repo, maxResults=5, nextToken=page["nextToken"])
    assert len(rest["previewResults"]) == 2
    # A preview changes nothing.
    assert len(ecr.list_images(repositoryName=repo)["imageIds"]) == 10
    assert pull_manifest(server, repo, "prod-0")[0] == 200

    # Execution after a push: an image the rule does not select triggers the evaluation.
    push_image(ecr, repo, "dev-1", 100)
    left = {i["imageTag"] for i in ecr.list_images(repositoryName=repo)["imageIds"]}
    assert left == {"prod-7", "prod-8", "prod-9", "dev-1"}
    for i in range(7):
        status, body = pull_manifest(server, repo, f"prod-{i}")
        assert status == 404 and body["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    for i in (7, 8, 9):
        assert pull_manifest(server, repo, f"prod-{i}")[0] == 200
    got = ecr.get_lifecycle_policy(repositoryName=repo)
    assert got["lifecyclePolicyText"] == KEEP_3_PROD and "lastEvaluatedAt" in got
    described = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "prod-0"}])
    assert described["failures"][0]["failureCode"] == "ImageNotFound"

    deleted = ecr.delete_lifecycle_policy(repositoryName=repo)
    assert deleted["lifecyclePolicyText"] == KEEP_3_PROD
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecr.get_lifecycle_policy(repositoryName=repo)
    assert e.value.response["Error"]["Code"] == "LifecyclePolicyNotFoundException"
    assert e.value.response["Error"]["Message"] == (
        f"Lifecycle policy does not exist for the repository with name '{repo}' in the registry with id '{ACCOUNT}'")


def test_lifecycle_policy_errors_answer_as_ecr(server):
    ecr = server.client("ecr")
    repo = "lifecycle/errors"
    ecr.create_repository(repositoryName=repo)

    def code_and_message(call):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]

    bad = json.dumps({"rules": [{"rulePriority": 1, "selection": {
        "tagStatus": "tagged", "countType": "imageCountMoreThan", "countNumber": 1}}]})
    code, msg = code_and_message(lambda: ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=bad))
    assert code == "InvalidParameterException"
    assert msg == ("Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
                   "'Lifecycle policy validation failure: object has missing required properties ([\"action\"])'")
    any_first = json.dumps({"rules": [
        {"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "expire"}},
        {"rulePriority": 2, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                          "countUnit": "days", "countNumber": 1}, "action": {"type": "expire"}}]})
    code, msg = code_and_message(lambda: ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=any_first))
    assert code == "InvalidParameterException" and "tagStatus any must have the highest rulePriority" in msg
    code, _ = code_and_message(lambda: ecr.get_lifecycle_policy(repositoryName=repo))
    assert code == "LifecyclePolicyNotFoundException"
    code, _ = code_and_message(lambda: ecr.delete_lifecycle_policy(repositoryName=repo))
    assert code == "LifecyclePolicyNotFoundException"
    code, _ = code_and_message(lambda: ecr.start_lifecycle_policy_preview(repositoryName=repo))
    assert code == "LifecyclePolicyNotFoundException"
    code, _ = code_and_message(lambda: ecr.get_lifecycle_policy_preview(repositoryName=repo))
    assert code == "LifecyclePolicyPreviewNotFoundException"
    code, _ = code_and_message(lambda: ecr.put_lifecycle_policy(repositoryName="lifecycle/none",
                                                                lifecyclePolicyText=KEEP_3_PROD))
    assert code == "RepositoryNotFoundException"
    # The AWS CLI sends the same text from a file.
    out = server.aws_json("ecr", "put-lifecycle-policy", "--repository-name", repo,
                          "--lifecycle-policy-text", KEEP_3_PROD)
    assert out["repositoryName"] == repo
    preview = server.aws_json("ecr", "start-lifecycle-policy-preview", "--repository-name", repo)
    assert preview["status"] == "COMPLETE"
    got = server.aws_json("ecr", "get-lifecycle-policy-preview", "--repository-name", repo)
    assert got["previewResults"] == [] and got["summary"]["expiringImageTotalCount"] == 0

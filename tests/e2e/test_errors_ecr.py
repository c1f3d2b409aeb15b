"""ECR's documented error cases, operation by operation, as boto3 sees them: the exception code,
HTTP status and AWS's wording, and that a missing repository is reported before anything else of
the request."""

import json

import pytest
from botocore.exceptions import ClientError

from test_ecr_lifecycle import push_image

ACCOUNT = "000000000000"
DIGEST = "sha256:" + "0" * 64
UPLOAD = "00000000-0000-0000-0000-000000000000"
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Sid": "read", "Effect": "Allow", "Principal": "*", "Action": "ecr:ListImages"}]})
LIFECYCLE = json.dumps({"rules": [{"rulePriority": 1, "action": {"type": "expire"},
                                   "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                                 "countNumber": 1}}]})


def error_of(call, *args, **kw):
    with pytest.raises(ClientError) as e:
        call(*args, **kw)
    err = e.value.response["Error"]
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"], err["Code"], err["Message"]


def repo_not_found(name):
    return (400, "RepositoryNotFoundException",
            f"The repository with name '{name}' does not exist in the registry with id '{ACCOUNT}'")


def test_a_missing_repository_is_reported_first_by_every_operation_on_a_repository(gantry):
    ecr = gantry.client("ecr")
    arn = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/nope"
    calls = [
        (ecr.describe_repositories, dict(repositoryNames=["nope"])),
        (ecr.delete_repository, dict(repositoryName="nope")),
        (ecr.describe_images, dict(repositoryName="nope", imageIds=[{"imageTag": "t"}])),
        (ecr.list_images, dict(repositoryName="nope")),
        (ecr.batch_get_image, dict(repositoryName="nope", imageIds=[{"imageTag": "t"}])),
        (ecr.batch_delete_image, dict(repositoryName="nope", imageIds=[{"imageTag": "t"}])),
        (ecr.put_image, dict(repositoryName="nope", imageManifest="{}", imageTag="t")),
        (ecr.get_repository_policy, dict(repositoryName="nope")),
        (ecr.set_repository_policy, dict(repositoryName="nope", policyText=POLICY)),
        (ecr.delete_repository_policy, dict(repositoryName="nope")),
        (ecr.get_lifecycle_policy, dict(repositoryName="nope")),
        (ecr.put_lifecycle_policy, dict(repositoryName="nope", lifecyclePolicyText=LIFECYCLE)),
        (ecr.delete_lifecycle_policy, dict(repositoryName="nope")),
        (ecr.start_lifecycle_policy_preview, dict(repositoryName="nope", lifecyclePolicyText=LIFECYCLE)),
        (ecr.get_lifecycle_policy_preview, dict(repositoryName="nope")),
        (ecr.put_image_tag_mutability, dict(repositoryName="nope", imageTagMutability="IMMUTABLE")),
        (ecr.put_image_scanning_configuration,
         dict(repositoryName="nope", imageScanningConfiguration={"scanOnPush": True})),
        (ecr.initiate_layer_upload, dict(repositoryName="nope")),
        (ecr.upload_layer_part, dict(repositoryName="nope", uploadId=UPLOAD, partFirstByte=0, partLastByte=0,
                                     layerPartBlob=b"x")),
        (ecr.complete_layer_upload, dict(repositoryName="nope", uploadId=UPLOAD, layerDigests=[DIGEST])),
        (ecr.batch_check_layer_availability, dict(repositoryName="nope", layerDigests=[DIGEST])),
        (ecr.get_download_url_for_layer, dict(repositoryName="nope", layerDigest=DIGEST)),
        (ecr.start_image_scan, dict(repositoryName="nope", imageId={"imageTag": "t"})),
        (ecr.list_tags_for_resource, dict(resourceArn=arn)),
        (ecr.tag_resource, dict(resourceArn=arn, tags=[{"Key": "k", "Value": "v"}])),
        (ecr.untag_resource, dict(resourceArn=arn, tagKeys=["k"])),
    ]
    for call, kw in calls:
        assert error_of(call, **kw) == repo_not_found("nope"), call.__name__


def test_repositories(gantry):
    ecr = gantry.client("ecr")
    ecr.create_repository(repositoryName="app")
    assert error_of(ecr.create_repository, repositoryName="app") == (
        400, "RepositoryAlreadyExistsException",
        f"The repository with name 'app' already exists in the registry with id '{ACCOUNT}'")
    push_image(ecr, "app", "v1", 1)
    assert error_of(ecr.delete_repository, repositoryName="app") == (
        400, "RepositoryNotEmptyException",
        f"The repository with name 'app' in registry with id '{ACCOUNT}' cannot be deleted because it still "
        "contains images")
    assert ecr.delete_repository(repositoryName="app", force=True)["repository"]["repositoryName"] == "app"
    assert error_of(ecr.describe_repositories, repositoryNames=["app"]) == repo_not_found("app")


def test_policies(gantry):
    ecr = gantry.client("ecr")
    ecr.create_repository(repositoryName="app")
    assert error_of(ecr.get_repository_policy, repositoryName="app") == (
        400, "RepositoryPolicyNotFoundException",
        f"Repository policy does not exist for the repository with name 'app' in the registry with id '{ACCOUNT}'")
    assert error_of(ecr.delete_repository_policy, repositoryName="app")[:2] == (
        400, "RepositoryPolicyNotFoundException")
    assert error_of(ecr.get_lifecycle_policy, repositoryName="app") == (
        400, "LifecyclePolicyNotFoundException",
        f"Lifecycle policy does not exist for the repository with name 'app' in the registry with id '{ACCOUNT}'")
    assert error_of(ecr.delete_lifecycle_policy, repositoryName="app")[:2] == (
        400, "LifecyclePolicyNotFoundException")
    assert error_of(ecr.get_lifecycle_policy_preview, repositoryName="app")[:2] == (
        400, "LifecyclePolicyPreviewNotFoundException")
    assert error_of(ecr.set_repository_policy, repositoryName="app", policyText="not json")[:2] == (
        400, "InvalidParameterException")
    assert error_of(ecr.put_lifecycle_policy, repositoryName="app", lifecyclePolicyText="x" * 120)[:2] == (
        400, "InvalidParameterException")


def test_images_and_layers(gantry):
    ecr = gantry.client("ecr")
    ecr.create_repository(repositoryName="app")
    status, code, message = error_of(ecr.describe_images, repositoryName="app", imageIds=[{"imageTag": "nope"}])
    assert (status, code) == (400, "ImageNotFoundException")
    assert message == ("The image with imageId {imageDigest:'null', imageTag:'nope'} does not exist within the "
                       f"repository with name 'app' in the registry with id '{ACCOUNT}'")
    assert error_of(ecr.start_image_scan, repositoryName="app", imageId={"imageTag": "nope"})[:2] == (
        400, "ImageNotFoundException")
    # The batch operations report images they cannot find as failures.
    for call in (ecr.batch_get_image, ecr.batch_delete_image):
        failures = call(repositoryName="app", imageIds=[{"imageTag": "nope"}])["failures"]
        assert failures == [{"imageId": {"imageTag": "nope"}, "failureCode": "ImageNotFound",
                             "failureReason": "Requested image not found"}], call.__name__
    layers = ecr.batch_check_layer_availability(repositoryName="app", layerDigests=[DIGEST])
    assert [(f["layerDigest"], f["failureCode"]) for f in layers["failures"]] == [(DIGEST, "MissingLayerDigest")]
    assert error_of(ecr.get_download_url_for_layer, repositoryName="app", layerDigest=DIGEST)[:2] == (
        400, "LayersNotFoundException")
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": DIGEST},
        "layers": []})
    assert error_of(ecr.put_image, repositoryName="app", imageManifest=manifest, imageTag="t")[:2] == (
        400, "LayersNotFoundException")
    assert error_of(ecr.put_image, repositoryName="app", imageManifest="not json", imageTag="t")[:2] == (
        400, "InvalidParameterException")
    # The same image and tag again, and a tag of an immutable repository moved.
    push_image(ecr, "app", "v1", 1)
    assert error_of(push_image, ecr, "app", "v1", 1)[:2] == (400, "ImageAlreadyExistsException")
    ecr.put_image_tag_mutability(repositoryName="app", imageTagMutability="IMMUTABLE")
    assert error_of(push_image, ecr, "app", "v1", 2) == (
        400, "ImageTagAlreadyExistsException",
        "The image tag 'v1' already exists in the 'app' repository and cannot be overwritten because the "
        "repository is immutable.")


def test_layer_uploads(gantry):
    ecr = gantry.client("ecr")
    ecr.create_repository(repositoryName="app")
    assert error_of(ecr.upload_layer_part, repositoryName="app", uploadId=UPLOAD, partFirstByte=0, partLastByte=0,
                    layerPartBlob=b"x")[:2] == (400, "UploadNotFoundException")
    assert error_of(ecr.complete_layer_upload, repositoryName="app", uploadId=UPLOAD,
                    layerDigests=[DIGEST])[:2] == (400, "UploadNotFoundException")
    upload = ecr.initiate_layer_upload(repositoryName="app")["uploadId"]
    assert error_of(ecr.complete_layer_upload, repositoryName="app", uploadId=upload,
                    layerDigests=[DIGEST])[:2] == (400, "EmptyUploadException")
    # A part must start where the upload is.
    assert error_of(ecr.upload_layer_part, repositoryName="app", uploadId=upload, partFirstByte=5, partLastByte=5,
                    layerPartBlob=b"x")[:2] == (400, "InvalidLayerPartException")
    ecr.upload_layer_part(repositoryName="app", uploadId=upload, partFirstByte=0, partLastByte=0, layerPartBlob=b"x")
    # The bytes do not hash to the digest given.
    assert error_of(ecr.complete_layer_upload, repositoryName="app", uploadId=upload,
                    layerDigests=[DIGEST])[:2] == (400, "InvalidLayerException")

"""ECR regions and replication through the real binary: an image pushed in us-east-1 with skopeo is
not in us-west-2 until a replication configuration put in us-east-1 selects its repository; then it
is copied there (the repository created from us-west-2's creation template), pulled with
us-west-2's credentials, and its replication status is COMPLETE; repositories are listed per region;
the configuration's validation; everything survives a restart."""

import base64
import json
import os
import shutil
import subprocess
import time
import uuid

import botocore.exceptions
import pytest

from conftest import Gantry, require_docker
from images import build_busybox_image, docker

ACCOUNT = "000000000000"


def error(call):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def require_skopeo():
    require_docker()
    if shutil.which("skopeo") is None:
        if os.environ.get("GANTRY_REQUIRE_DOCKER") == "1":
            pytest.fail("skopeo is required in CI")
        pytest.skip("SKIPPED: skopeo not available")


def skopeo(*args):
    return subprocess.run(["skopeo", *args], check=True, capture_output=True, text=True, timeout=300)


def registry_creds(ecr):
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    return base64.b64decode(token).decode()


def docker_as(config_dir, *args, input=None):
    """docker with its own client configuration (the login of one region's password)."""
    env = dict(os.environ, DOCKER_CONFIG=str(config_dir))
    return subprocess.run(["docker", *args], capture_output=True, text=True, input=input, env=env, timeout=300)


def wait_replicated(ecr, repo, image_id, timeout=60.0):
    """The image's replication statuses once none is IN_PROGRESS (polled until `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = ecr.describe_image_replication_status(
            repositoryName=repo, imageId=image_id)["replicationStatuses"]
        if all(s["status"] != "IN_PROGRESS" for s in statuses) or time.monotonic() > deadline:
            return statuses
        time.sleep(0.2)


def repository_names(ecr):
    return sorted(r["repositoryName"] for r in ecr.describe_repositories()["repositories"])


def test_image_pushed_in_us_east_1_is_pulled_from_us_west_2(tmp_path):
    require_skopeo()
    g = Gantry(tmp_path / "data").start()
    suffix = uuid.uuid4().hex[:8]
    repo, other = f"prod/app-{suffix}", f"dev/app-{suffix}"
    local = build_busybox_image(tmp_path, f"gantry-e2e/repl-{suffix}:src", page="replicated\n")
    try:
        east = g.client("ecr", region_name="us-east-1")
        west = g.client("ecr", region_name="us-west-2")
        east_creds, west_creds = registry_creds(east), registry_creds(west)

        # Without replication, an image pushed in us-east-1 is only there.
        east.create_repository(repositoryName=other)
        skopeo("copy", "--dest-tls-verify=false", "--dest-creds", east_creds,
               f"docker-daemon:{local}", f"docker://{g.registry}/{other}:v1")
        assert repository_names(east) == [other]
        assert repository_names(west) == []
        missing = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", "--creds", west_creds,
             f"docker://{g.registry}/{other}:v1"], capture_output=True, text=True, timeout=120)
        assert missing.returncode != 0
        assert "NAME_UNKNOWN" in missing.stderr or "name unknown" in missing.stderr.lower(), missing.stderr
        subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", east_creds,
                        f"docker://{g.registry}/{other}:v1"], check=True, capture_output=True, timeout=120)

        config = {"rules": [{"destinations": [{"region": "us-west-2", "registryId": ACCOUNT}],
                             "repositoryFilters": [{"filter": "prod/", "filterType": "PREFIX_MATCH"}]}]}
        put = east.put_replication_configuration(replicationConfiguration=config)
        assert put["replicationConfiguration"] == config
        assert east.describe_registry()["replicationConfiguration"] == config
        assert west.describe_registry()["replicationConfiguration"] == {"rules": []}
        # The destination's creation template for replicated repositories: immutable tags.
        west.create_repository_creation_template(
            prefix="prod", appliedFor=["REPLICATION"], imageTagMutability="IMMUTABLE")
        east.create_repository(repositoryName=repo)

        skopeo("copy", "--dest-tls-verify=false", "--dest-creds", east_creds,
               f"docker-daemon:{local}", f"docker://{g.registry}/{repo}:v1")
        digest = east.describe_images(repositoryName=repo)["imageDetails"][0]["imageDigest"]
        expected = [{"region": "us-west-2", "registryId": ACCOUNT, "status": "COMPLETE"}]
        assert wait_replicated(east, repo, {"imageTag": "v1"}) == expected

        # us-west-2 has the repository, from its template, and the image.
        assert repository_names(east) == sorted([repo, other])
        assert repository_names(west) == [repo]
        described = west.describe_repositories(repositoryNames=[repo])["repositories"][0]
        assert described["repositoryArn"] == f"arn:aws:ecr:us-west-2:{ACCOUNT}:repository/{repo}"
        assert described["imageTagMutability"] == "IMMUTABLE"
        west_images = west.describe_images(repositoryName=repo)["imageDetails"]
        assert [(i["imageDigest"], i["imageTags"]) for i in west_images] == [(digest, ["v1"])]
        cli = g.aws_json("ecr", "describe-repositories", "--region", "us-west-2")
        assert [r["repositoryName"] for r in cli["repositories"]] == [repo]
        # ... and it pulls with us-west-2's registry credentials (get-login-password there).
        west_password = g.aws("ecr", "get-login-password", "--region", "us-west-2").stdout.strip()
        inspect = json.loads(skopeo("inspect", "--tls-verify=false", "--creds", f"AWS:{west_password}",
                                    f"docker://{described['repositoryUri']}:v1").stdout)
        assert inspect["Digest"] == digest
        # docker logged in with us-west-2's password pulls us-west-2's image, and not us-east-1's.
        docker_config = tmp_path / "docker-west"
        docker_config.mkdir()
        login = docker_as(docker_config, "login", "--username", "AWS", "--password-stdin", g.registry,
                          input=west_password)
        assert login.returncode == 0, login.stderr
        pulled = f"{described['repositoryUri']}:v1"
        try:
            pull = docker_as(docker_config, "pull", pulled)
            assert pull.returncode == 0, pull.stderr
            assert digest in docker_as(docker_config, "image", "inspect", "--format",
                                       "{{json .RepoDigests}}", pulled).stdout
            refused = docker_as(docker_config, "pull", f"{g.registry}/{other}:v1")
            assert refused.returncode != 0
        finally:
            docker("rmi", "-f", pulled, check=False)
        out_dir = tmp_path / "pulled"
        skopeo("copy", "--src-tls-verify=false", "--src-creds", west_creds,
               f"docker://{described['repositoryUri']}:v1", f"oci:{out_dir}:v1")
        index = json.loads((out_dir / "index.json").read_text())
        assert len(index["manifests"]) == 1

        status = east.describe_image_replication_status(repositoryName=repo, imageId={"imageTag": "v1"})
        assert status["repositoryName"] == repo
        assert status["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
        assert status["replicationStatuses"] == expected
        cli = g.aws_json("ecr", "describe-image-replication-status", "--repository-name", repo,
                         "--image-id", f"imageDigest={digest}")
        assert cli["replicationStatuses"] == expected
        # The repository no rule selects was not replicated.
        assert east.describe_image_replication_status(
            repositoryName=other, imageId={"imageTag": "v1"})["replicationStatuses"] == []

        assert error(lambda: east.describe_image_replication_status(
            repositoryName=repo, imageId={"imageTag": "v9"})) == (
            "ImageNotFoundException",
            f"The image with imageId {{imageDigest:'null', imageTag:'v9'}} does not exist within the repository "
            f"with name '{repo}' in the registry with id '{ACCOUNT}'")
        assert error(lambda: east.describe_image_replication_status(
            repositoryName="prod/ghost", imageId={"imageTag": "v1"})) == (
            "RepositoryNotFoundException",
            f"The repository with name 'prod/ghost' does not exist in the registry with id '{ACCOUNT}'")

        # A restart keeps the configuration, the status and both regions' repositories.
        g.stop()
        g = Gantry(tmp_path / "data", g.access_key, g.secret_key).start()
        east = g.client("ecr", region_name="us-east-1")
        west = g.client("ecr", region_name="us-west-2")
        assert east.describe_registry()["replicationConfiguration"] == config
        status = east.describe_image_replication_status(repositoryName=repo, imageId={"imageDigest": digest})
        assert status["replicationStatuses"] == expected
        assert repository_names(west) == [repo]
        # A token minted before the restart still pulls from its region.
        skopeo("inspect", "--tls-verify=false", "--creds", west_creds,
               f"docker://{g.registry}/{repo}:v1")
    finally:
        docker("rmi", "-f", local, check=False)
        g.stop()


def test_replication_configuration_validation(gantry):
    east = gantry.client("ecr", region_name="us-east-1")

    def dest(region, registry=ACCOUNT):
        return {"region": region, "registryId": registry}

    code, msg = error(lambda: east.put_replication_configuration(
        replicationConfiguration={"rules": [{"destinations": [dest("us-east-1")]}]}))
    assert (code, msg) == ("InvalidParameterException",
                           "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: "
                           "'Replication destination cannot be the same as the source registry'")
    code, msg = error(lambda: east.put_replication_configuration(
        replicationConfiguration={"rules": [{"destinations": [dest("us-west-2", "123456789012")]}]}))
    assert code == "InvalidParameterException" and "cross-account replication is not supported" in msg
    code, msg = error(lambda: east.put_replication_configuration(
        replicationConfiguration={"rules": [{"destinations": [dest("us-west-2")]}] * 11}))
    assert code == "InvalidParameterException"
    assert msg.endswith("at 'replicationConfiguration.rules' failed to satisfy constraint: "
                        "Member must have length less than or equal to 10")
    many = [dest(f"xx-region-{i}") for i in range(26)]
    code, msg = error(lambda: east.put_replication_configuration(
        replicationConfiguration={"rules": [{"destinations": many[:13]}, {"destinations": many[13:]}]}))
    assert code == "InvalidParameterException" and "at most 25 unique destinations" in msg
    assert error(lambda: east.put_replication_configuration(
        replicationConfiguration={"rules": [{"destinations": [dest("us-west-2")],
                                             "repositoryFilters": [{"filter": "prod", "filterType": "WILDCARD"}]}]})) == (
        "InvalidParameterException",
        "1 validation error detected: Value 'WILDCARD' at 'replicationConfiguration.rules.member.repositoryFilters."
        "member.filterType' failed to satisfy constraint: Member must satisfy enum value set: [PREFIX_MATCH]")
    # Nothing refused was stored.
    assert east.describe_registry()["replicationConfiguration"] == {"rules": []}

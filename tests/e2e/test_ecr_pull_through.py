"""ECR pull through cache through the real binary: a rule names an upstream registry (Debian's
docker-registry on loopback with htpasswd authentication) and a Secrets Manager secret with its
credentials; the first pull of an image through Gantry's registry (skopeo, docker) fetches it
from the upstream into a repository created from the repository creation template, and later
pulls are served by Gantry even once the upstream is gone. A cached tag follows the upstream's
tag once the refresh interval has passed (24 hours, as ECR; shortened here). The API's errors
are AWS's."""

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import botocore.exceptions
import pytest

from conftest import Gantry
from images import build_busybox_image, docker

LIFECYCLE = json.dumps({"rules": [{"rulePriority": 1, "description": "keep 5",
                                   "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                                 "countNumber": 5},
                                   "action": {"type": "expire"}}]})


def require_skopeo():
    if shutil.which("skopeo") is None:
        if os.environ.get("GANTRY_REQUIRE_DOCKER") == "1":
            pytest.fail("skopeo is required in CI")
        pytest.skip("SKIPPED: skopeo not available")


def skopeo(*args, timeout=300):
    p = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=timeout)
    return p


def error_code(call, *args, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(*args, **kw)
    return e.value.response["Error"]["Code"]


def upstream_secret(gantry, reg, name=None):
    name = name or f"ecr-pullthroughcache/upstream-{uuid.uuid4().hex[:8]}"
    return gantry.client("secretsmanager").create_secret(
        Name=name, SecretString=json.dumps({"username": reg["user"], "password": reg["password"]}))["ARN"]


def test_first_pull_fetches_from_the_upstream_and_later_pulls_need_it_no_more(gantry, private_registry, tmp_path):
    require_skopeo()
    reg = private_registry
    ecr = gantry.client("ecr")
    name = f"team/app-{uuid.uuid4().hex[:8]}"
    local = build_busybox_image(tmp_path, f"gantry-e2e/ptc-{uuid.uuid4().hex[:8]}:src", page="upstream\n")
    up_creds = f"{reg['user']}:{reg['password']}"
    try:
        p = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", up_creds,
                   f"docker-daemon:{local}", f"docker://{reg['host']}/{name}:v1")
        assert p.returncode == 0, p.stderr
    finally:
        docker("rmi", local, check=False)
    upstream = json.loads(skopeo("inspect", "--tls-verify=false", "--creds", up_creds,
                                 f"docker://{reg['host']}/{name}:v1").stdout)

    ecr.create_repository_creation_template(
        prefix="hub", appliedFor=["PULL_THROUGH_CACHE"], imageTagMutability="IMMUTABLE",
        resourceTags=[{"Key": "cache", "Value": "upstream"}], lifecyclePolicy=LIFECYCLE,
        description="what the cache creates")
    arn = upstream_secret(gantry, reg)
    rule = ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="hub", upstreamRegistryUrl=f"http://{reg['host']}",
                                              credentialArn=arn)
    assert (rule["ecrRepositoryPrefix"], rule["credentialArn"]) == ("hub", arn)
    assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="hub")["isValid"] is True
    assert [r["ecrRepositoryPrefix"] for r in ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]] == ["hub"]

    password = gantry.aws("ecr", "get-login-password").stdout.strip()
    creds = f"AWS:{password}"
    cached = f"docker://{gantry.registry}/hub/{name}:v1"
    # Nothing is cached before the first pull.
    assert error_code(ecr.describe_repositories, repositoryNames=[f"hub/{name}"]) == "RepositoryNotFoundException"
    p = skopeo("inspect", "--tls-verify=false", "--creds", creds, cached)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["Digest"] == upstream["Digest"]
    out = tmp_path / "oci-first"
    p = skopeo("copy", "--src-tls-verify=false", "--src-creds", creds, cached, f"oci:{out}:v1")
    assert p.returncode == 0, p.stderr

    # The repository was created from the template.
    repo = ecr.describe_repositories(repositoryNames=[f"hub/{name}"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    assert tags == [{"Key": "cache", "Value": "upstream"}]
    assert json.loads(ecr.get_lifecycle_policy(repositoryName=f"hub/{name}")["lifecyclePolicyText"]) == json.loads(LIFECYCLE)
    images = ecr.describe_images(repositoryName=f"hub/{name}")["imageDetails"]
    assert [(i["imageDigest"], i["imageTags"]) for i in images] == [(upstream["Digest"], ["v1"])]

    # The upstream goes away: what was cached is still served, by docker too.
    reg["stop"]()
    out2 = tmp_path / "oci-second"
    p = skopeo("copy", "--src-tls-verify=false", "--src-creds", creds, cached, f"oci:{out2}:v1")
    assert p.returncode == 0, p.stderr
    assert json.loads((out2 / "index.json").read_text()) == json.loads((out / "index.json").read_text())
    pulled = f"{gantry.registry}/hub/{name}:v1"
    docker("login", "--username", "AWS", "--password-stdin", gantry.registry, input=password)
    try:
        docker("pull", pulled)
        assert docker("run", "--rm", pulled, "cat", "/www/index.html").stdout == "upstream\n"
    finally:
        docker("rmi", "-f", pulled, check=False)
        docker("logout", gantry.registry, check=False)
    # What was never cached cannot be fetched now.
    p = skopeo("inspect", "--tls-verify=false", "--creds", creds, f"docker://{gantry.registry}/hub/{name}:v2")
    assert p.returncode != 0
    validated = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="hub")
    assert validated["isValid"] is False and validated["failure"]

    assert reg["password"].encode() not in Path(gantry.log.name).read_bytes()


def test_a_cached_tag_follows_the_upstream_after_the_refresh_interval(private_registry, tmp_path):
    require_skopeo()
    reg = private_registry
    refresh = 2
    gantry = Gantry(tmp_path / "data").start(extra_args=["--pull-through-refresh-interval", str(refresh)])
    try:
        ecr = gantry.client("ecr")
        name = f"team/moving-{uuid.uuid4().hex[:8]}"
        up_creds = f"{reg['user']}:{reg['password']}"

        def push_upstream(page):
            local = build_busybox_image(tmp_path, f"gantry-e2e/ptc-{uuid.uuid4().hex[:8]}:src", page=page)
            try:
                p = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", up_creds,
                           f"docker-daemon:{local}", f"docker://{reg['host']}/{name}:v1")
                assert p.returncode == 0, p.stderr
            finally:
                docker("rmi", local, check=False)
            p = skopeo("inspect", "--tls-verify=false", "--creds", up_creds, f"docker://{reg['host']}/{name}:v1")
            assert p.returncode == 0, p.stderr
            return json.loads(p.stdout)["Digest"]

        d1 = push_upstream("one\n")
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="hub", upstreamRegistryUrl=f"http://{reg['host']}",
                                           credentialArn=upstream_secret(gantry, reg))
        password = gantry.aws("ecr", "get-login-password").stdout.strip()
        creds = f"AWS:{password}"
        cached = f"docker://{gantry.registry}/hub/{name}:v1"

        def digest_through_gantry():
            p = skopeo("inspect", "--tls-verify=false", "--creds", creds, cached)
            assert p.returncode == 0, p.stderr
            return json.loads(p.stdout)["Digest"]

        assert digest_through_gantry() == d1
        # The upstream's tag moves to a changed image.
        d2 = push_upstream("two\n")
        assert d2 != d1
        # Once the interval has passed since the tag was cached, a pull by tag fetches it.
        deadline = time.monotonic() + 60
        seen = digest_through_gantry()
        while seen != d2 and time.monotonic() < deadline:
            time.sleep(0.5)
            seen = digest_through_gantry()
        assert seen == d2
        # The tag moved; the old image stays, untagged, as in ECR.
        images = ecr.describe_images(repositoryName=f"hub/{name}")["imageDetails"]
        assert sorted((i["imageDigest"], i.get("imageTags", [])) for i in images) == sorted([(d1, []), (d2, ["v1"])])
        pulled = f"{gantry.registry}/hub/{name}:v1"
        docker("login", "--username", "AWS", "--password-stdin", gantry.registry, input=password)
        try:
            docker("pull", pulled)
            assert docker("run", "--rm", pulled, "cat", "/www/index.html").stdout == "two\n"
        finally:
            docker("rmi", "-f", pulled, check=False)
            docker("logout", gantry.registry, check=False)

        # The upstream goes away: once the tag is due for a check again, the check fails and the
        # cached image is served, by skopeo and docker alike.
        reg["stop"]()
        time.sleep(refresh + 0.5)
        assert digest_through_gantry() == d2
        out = tmp_path / "oci-after-upstream"
        p = skopeo("copy", "--src-tls-verify=false", "--src-creds", creds, cached, f"oci:{out}:v1")
        assert p.returncode == 0, p.stderr
        log = Path(gantry.log.name).read_bytes()
        assert b"could not be checked for a newer image" in log
        assert reg["password"].encode() not in log
    finally:
        gantry.stop()


def test_pull_through_cache_rules_and_templates_answer_aws_errors(gantry, private_registry):
    reg = private_registry
    ecr = gantry.client("ecr")
    sm = gantry.client("secretsmanager")
    missing = "arn:aws:secretsmanager:us-east-1:000000000000:secret:ecr-pullthroughcache/none-AbCdEf"
    url = f"http://{reg['host']}"
    assert error_code(ecr.create_pull_through_cache_rule, ecrRepositoryPrefix="a1", upstreamRegistryUrl=url,
                      credentialArn=missing) == "SecretNotFoundException"
    not_json = sm.create_secret(Name="ecr-pullthroughcache/not-json", SecretString="plain")["ARN"]
    assert error_code(ecr.create_pull_through_cache_rule, ecrRepositoryPrefix="a1", upstreamRegistryUrl=url,
                      credentialArn=not_json) == "UnableToAccessSecretException"
    # The credential secret's name must start with ecr-pullthroughcache/, as AWS requires.
    other = sm.create_secret(Name="registry/creds", SecretString="{}")["ARN"]
    assert error_code(ecr.create_pull_through_cache_rule, ecrRepositoryPrefix="a1", upstreamRegistryUrl=url,
                      credentialArn=other) == "InvalidParameterException"
    assert error_code(ecr.create_pull_through_cache_rule, ecrRepositoryPrefix="a1",
                      upstreamRegistryUrl="http://registry.example.com") == "UnsupportedUpstreamRegistryException"
    assert error_code(ecr.create_pull_through_cache_rule, ecrRepositoryPrefix="a1", upstreamRegistryUrl="host/path",
                      ) == "InvalidParameterException"
    assert error_code(ecr.create_pull_through_cache_rule, ecrRepositoryPrefix="a1", upstreamRegistryUrl=url,
                      upstreamRegistry="ecr") == "UnsupportedUpstreamRegistryException"
    assert error_code(ecr.create_pull_through_cache_rule, ecrRepositoryPrefix="a1", upstreamRegistryUrl=url,
                      upstreamRegistry="nexus") == "InvalidParameterException"
    assert error_code(ecr.create_pull_through_cache_rule, ecrRepositoryPrefix="a1",
                      upstreamRegistryUrl="registry-1.docker.io") == "InvalidParameterException"

    arn = upstream_secret(gantry, reg)
    created = ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="a1/", upstreamRegistryUrl=url,
                                                 upstreamRegistry="quay")
    assert (created["ecrRepositoryPrefix"], created["upstreamRegistry"]) == ("a1", "quay")
    assert error_code(ecr.create_pull_through_cache_rule, ecrRepositoryPrefix="a1",
                      upstreamRegistryUrl=url) == "PullThroughCacheRuleAlreadyExistsException"
    # Anonymous pulls are refused by this upstream; with the secret the rule validates.
    assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="a1")["isValid"] is False
    updated = ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="a1", credentialArn=arn)
    assert updated["credentialArn"] == arn
    assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="a1")["isValid"] is True
    assert error_code(ecr.update_pull_through_cache_rule, ecrRepositoryPrefix="a1",
                      credentialArn=missing) == "SecretNotFoundException"
    assert error_code(ecr.describe_pull_through_cache_rules,
                      ecrRepositoryPrefixes=["zz"]) == "PullThroughCacheRuleNotFoundException"
    # A first pull needs ecr:BatchImportUpstreamImage, which the read-only policy does not grant.
    require_skopeo()
    iam = gantry.client("iam")
    iam.create_user(UserName="reader")
    iam.attach_user_policy(UserName="reader",
                           PolicyArn="arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    p = skopeo("inspect", "--tls-verify=false", "--creds", f"{key['AccessKeyId']}:{key['SecretAccessKey']}",
               f"docker://{gantry.registry}/a1/team/app:v1")
    assert p.returncode != 0 and "ecr:BatchImportUpstreamImage" in p.stderr, p.stderr
    assert error_code(ecr.describe_repositories, repositoryNames=["a1/team/app"]) == "RepositoryNotFoundException"
    deleted = ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="a1")
    assert deleted["upstreamRegistryUrl"] == url
    assert error_code(ecr.delete_pull_through_cache_rule,
                      ecrRepositoryPrefix="a1") == "PullThroughCacheRuleNotFoundException"
    assert ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"] == []

    t = ecr.create_repository_creation_template(prefix="ROOT", appliedFor=["PULL_THROUGH_CACHE", "REPLICATION"],
                                                encryptionConfiguration={"encryptionType": "AES256"})
    assert t["repositoryCreationTemplate"]["appliedFor"] == ["PULL_THROUGH_CACHE", "REPLICATION"]
    assert error_code(ecr.create_repository_creation_template, prefix="ROOT",
                      appliedFor=["REPLICATION"]) == "TemplateAlreadyExistsException"
    assert error_code(ecr.create_repository_creation_template, prefix="push",
                      appliedFor=["CREATE_ON_PUSH"]) == "InvalidParameterException"
    assert error_code(ecr.create_repository_creation_template, prefix="role", appliedFor=["REPLICATION"],
                      customRoleArn="arn:aws:iam::000000000000:role/r") == "InvalidParameterException"
    assert error_code(ecr.create_repository_creation_template, prefix="bad", appliedFor=["REPLICATION"],
                      lifecyclePolicy="{}") == "InvalidParameterException"
    up = ecr.update_repository_creation_template(prefix="ROOT", imageTagMutability="IMMUTABLE")
    assert up["repositoryCreationTemplate"]["imageTagMutability"] == "IMMUTABLE"
    listed = ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]
    assert [x["prefix"] for x in listed] == ["ROOT"]
    ecr.delete_repository_creation_template(prefix="ROOT")
    assert error_code(ecr.delete_repository_creation_template, prefix="ROOT") == "TemplateNotFoundException"
    assert error_code(ecr.update_repository_creation_template, prefix="ROOT",
                      imageTagMutability="MUTABLE") == "TemplateNotFoundException"

"""IAM, STS and authorization through the real binary, driven by the AWS CLI, boto3 and docker:
users and their keys, managed and inline policies, denials worded as AWS words them, role
sessions, registry access by policy, and the root key's zero-configuration path."""

import datetime
import json
import os
import subprocess
import uuid
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import pytest

from conftest import REGION, require_docker
from images import build_busybox_image

ACCOUNT = "000000000000"


def make_user(gantry, name, managed=(), inline=None):
    """A user with an access key; returns (access key id, secret)."""
    iam = gantry.client("iam")
    iam.create_user(UserName=name)
    for arn in managed:
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
    if inline:
        iam.put_user_policy(UserName=name, PolicyName="inline", PolicyDocument=json.dumps(inline))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def as_user(gantry, service, key):
    return gantry.client(service, aws_access_key_id=key[0], aws_secret_access_key=key[1])


def aws_as(gantry, key, *args, token=None):
    env = gantry.env()
    env.update(AWS_ACCESS_KEY_ID=key[0], AWS_SECRET_ACCESS_KEY=key[1])
    if token:
        env["AWS_SESSION_TOKEN"] = token
    import sys
    return subprocess.run([sys.executable, "-m", "awscli", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def allow(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_a_read_only_registry_user_is_denied_run_task_with_aws_wording(gantry):
    key = make_user(gantry, "dev", ["arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"])
    who = aws_as(gantry, key, "sts", "get-caller-identity", "--output", "json")
    assert who.returncode == 0, who.stderr
    ident = json.loads(who.stdout)
    assert ident["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/dev"
    assert ident["UserId"].startswith("AIDA")

    ok = aws_as(gantry, key, "ecr", "describe-repositories")
    assert ok.returncode == 0, ok.stderr

    denied = aws_as(gantry, key, "ecs", "run-task", "--task-definition", "web:1")
    assert denied.returncode != 0
    assert (
        "An error occurred (AccessDeniedException) when calling the RunTask operation: "
        f"User: arn:aws:iam::{ACCOUNT}:user/dev is not authorized to perform: ecs:RunTask on "
        f"resource: arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/web:1 because no "
        "identity-based policy allows the ecs:RunTask action"
    ) in denied.stderr

    # Query services answer AccessDenied, EC2 UnauthorizedOperation.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        as_user(gantry, "iam", key).list_users()
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(botocore.exceptions.ClientError) as e:
        as_user(gantry, "ec2", key).describe_vpcs()
    assert e.value.response["Error"]["Code"] == "UnauthorizedOperation"

    # The root key stays all-powerful.
    gantry.aws_json("ecs", "list-clusters")


def test_run_task_conditioned_on_one_cluster_and_explicit_deny_wins(gantry):
    ecs_root = gantry.client("ecs")
    for c in ("dev", "prod"):
        ecs_root.create_cluster(clusterName=c)
    dev_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/dev"
    key = make_user(gantry, "runner", inline=allow(
        {"Effect": "Allow", "Action": "ecs:RunTask", "Resource": "*",
         "Condition": {"ArnEquals": {"ecs:cluster": dev_arn}}},
        {"Effect": "Allow", "Action": ["ecs:DescribeClusters", "ecs:ListClusters"], "Resource": "*"},
    ))
    ecs = as_user(gantry, "ecs", key)
    # Allowed on dev: the call reaches ECS (no such task definition there).
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.run_task(cluster="dev", taskDefinition="nothing:1")
    assert e.value.response["Error"]["Code"] != "AccessDeniedException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.run_task(cluster="prod", taskDefinition="nothing:1")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "because no identity-based policy allows the ecs:RunTask action" in e.value.response["Error"]["Message"]

    assert [c["clusterName"] for c in ecs.describe_clusters(clusters=["prod"])["clusters"]] == ["prod"]
    gantry.client("iam").put_user_policy(UserName="runner", PolicyName="no-prod", PolicyDocument=json.dumps(allow(
        {"Effect": "Deny", "Action": "ecs:*", "Resource": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/prod"})))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.describe_clusters(clusters=["prod"])
    assert e.value.response["Error"]["Message"] == (
        f"User: arn:aws:iam::{ACCOUNT}:user/runner is not authorized to perform: ecs:DescribeClusters "
        f"on resource: arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/prod with an explicit deny in an "
        "identity-based policy")
    assert ecs.describe_clusters(clusters=["dev"])["clusters"][0]["clusterName"] == "dev"


def test_assume_role_gives_a_session_seen_by_get_caller_identity(gantry):
    iam = gantry.client("iam")
    key = make_user(gantry, "ci", inline=allow(
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}))
    trust = allow({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/ci"},
                   "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": "x-1"}}})
    role = iam.create_role(RoleName="deployer", AssumeRolePolicyDocument=json.dumps(trust),
                           MaxSessionDuration=7200)["Role"]
    assert role["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/deployer"
    assert iam.get_role(RoleName="deployer")["Role"]["AssumeRolePolicyDocument"] == trust
    iam.attach_role_policy(RoleName="deployer", PolicyArn="arn:aws:iam::aws:policy/AmazonECS_FullAccess")

    sts = as_user(gantry, "sts", key)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1", ExternalId="wrong")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    assert f"is not authorized to perform: sts:AssumeRole on resource: {role['Arn']}" in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1", ExternalId="x-1", DurationSeconds=9000)
    assert e.value.response["Error"]["Code"] == "ValidationError"

    out = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1", ExternalId="x-1", DurationSeconds=900)
    creds = out["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    assert out["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/s1"
    assert out["AssumedRoleUser"]["AssumedRoleId"] == f"{role['RoleId']}:s1"
    left = (creds["Expiration"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert 800 < left <= 900

    who = aws_as(gantry, (creds["AccessKeyId"], creds["SecretAccessKey"]), "sts", "get-caller-identity",
                 "--output", "json", token=creds["SessionToken"])
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/s1"

    session = boto3.client("ecs", endpoint_url=gantry.endpoint, region_name=REGION,
                           aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                           aws_session_token=creds["SessionToken"],
                           config=botocore.config.Config(retries={"max_attempts": 1}))
    session.list_clusters()
    # A token altered by one character is refused; so is the session once its role is gone.
    bad = creds["SessionToken"][:-2] + ("A" if creds["SessionToken"][-2] != "A" else "B") + creds["SessionToken"][-1]
    altered = boto3.client("ecs", endpoint_url=gantry.endpoint, region_name=REGION,
                           aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                           aws_session_token=bad, config=botocore.config.Config(retries={"max_attempts": 1}))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        altered.list_clusters()
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
    iam.detach_role_policy(RoleName="deployer", PolicyArn="arn:aws:iam::aws:policy/AmazonECS_FullAccess")
    iam.delete_role(RoleName="deployer")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        session.list_clusters()
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"

    # The root cannot assume roles, as on AWS.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        gantry.client("sts").assume_role(RoleArn=role["Arn"], RoleSessionName="rt")
    assert e.value.response["Error"]["Message"] == "Roles may not be assumed by root accounts."

    tok = as_user(gantry, "sts", key).get_session_token(DurationSeconds=900)["Credentials"]
    st = boto3.client("sts", endpoint_url=gantry.endpoint, region_name=REGION,
                      aws_access_key_id=tok["AccessKeyId"], aws_secret_access_key=tok["SecretAccessKey"],
                      aws_session_token=tok["SessionToken"])
    assert st.get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/ci"
    # GetAccessKeyInfo needs sts:GetAccessKeyInfo, which the user lacks and the root has.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        st.get_access_key_info(AccessKeyId=key[0])
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    assert gantry.client("sts").get_access_key_info(AccessKeyId=key[0])["Account"] == ACCOUNT


def test_policies_versions_pagination_details_and_simulation(gantry):
    iam = gantry.client("iam")
    doc = allow({"Effect": "Allow", "Action": "ecs:Describe*", "Resource": "*"})
    pol = iam.create_policy(PolicyName="describe", PolicyDocument=json.dumps(doc))["Policy"]
    assert pol["Arn"] == f"arn:aws:iam::{ACCOUNT}:policy/describe"
    for i in range(4):
        iam.create_policy_version(PolicyArn=pol["Arn"], PolicyDocument=json.dumps(doc), SetAsDefault=(i == 3))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        iam.create_policy_version(PolicyArn=pol["Arn"], PolicyDocument=json.dumps(doc))
    assert e.value.response["Error"]["Code"] == "LimitExceeded"
    assert iam.get_policy(PolicyArn=pol["Arn"])["Policy"]["DefaultVersionId"] == "v5"
    assert [v["VersionId"] for v in iam.list_policy_versions(PolicyArn=pol["Arn"])["Versions"]] == ["v5", "v4", "v3", "v2", "v1"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        iam.delete_policy_version(PolicyArn=pol["Arn"], VersionId="v5")
    assert e.value.response["Error"]["Code"] == "DeleteConflict"

    # Malformed and oversized documents, and nothing half-written.
    for bad in ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:*"}]}', "not json",
                '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*","Condition":{"StringEqualz":{"a:b":"c"}}}]}'):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            iam.create_policy(PolicyName="bad", PolicyDocument=bad)
        assert e.value.response["Error"]["Code"] == "MalformedPolicyDocument"
    huge = allow(*[{"Sid": f"S{i}", "Effect": "Allow", "Action": "ecs:DescribeClusters",
                    "Resource": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/c{i:04d}"} for i in range(80)])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        iam.create_policy(PolicyName="bad", PolicyDocument=json.dumps(huge))
    assert e.value.response["Error"]["Code"] == "LimitExceeded"
    iam.create_user(UserName="u0")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        iam.put_user_policy(UserName="u0", PolicyName="big", PolicyDocument=json.dumps(allow(*huge["Statement"][:30])))
    assert e.value.response["Error"]["Code"] == "LimitExceeded"
    assert iam.list_user_policies(UserName="u0")["PolicyNames"] == []
    assert all(p["PolicyName"] != "bad" for p in iam.list_policies(Scope="Local")["Policies"])

    for i in range(1, 6):
        iam.create_user(UserName=f"u{i}", Path="/team/")
    pages = list(iam.get_paginator("list_users").paginate(PaginationConfig={"PageSize": 2}))
    assert len(pages) == 3
    assert [u["UserName"] for p in pages for u in p["Users"]] == [f"u{i}" for i in range(6)]
    assert [u["UserName"] for u in iam.list_users(PathPrefix="/team/")["Users"]] == [f"u{i}" for i in range(1, 6)]

    iam.create_group(GroupName="readers")
    iam.add_user_to_group(GroupName="readers", UserName="u1")
    iam.attach_group_policy(GroupName="readers", PolicyArn=pol["Arn"])
    assert iam.get_policy(PolicyArn=pol["Arn"])["Policy"]["AttachmentCount"] == 1
    with pytest.raises(botocore.exceptions.ClientError) as e:
        iam.delete_policy(PolicyArn=pol["Arn"])
    assert e.value.response["Error"]["Code"] == "DeleteConflict"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        iam.delete_group(GroupName="readers")
    assert e.value.response["Error"]["Code"] == "DeleteConflict"

    details = iam.get_account_authorization_details(Filter=["User", "Group", "LocalManagedPolicy"])
    u1 = next(u for u in details["UserDetailList"] if u["UserName"] == "u1")
    assert u1["GroupList"] == ["readers"]
    assert details["GroupDetailList"][0]["AttachedManagedPolicies"][0]["PolicyArn"] == pol["Arn"]
    assert len(details["Policies"][0]["PolicyVersionList"]) == 5

    sim = iam.simulate_principal_policy(PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:user/team/u1",
                                        ActionNames=["ecs:DescribeClusters", "ecs:RunTask"])
    assert {r["EvalActionName"]: r["EvalDecision"] for r in sim["EvaluationResults"]} == {
        "ecs:DescribeClusters": "allowed", "ecs:RunTask": "implicitDeny"}

    ip = iam.create_instance_profile(InstanceProfileName="hosts")["InstanceProfile"]
    assert ip["Arn"] == f"arn:aws:iam::{ACCOUNT}:instance-profile/hosts"
    iam.create_role(RoleName="host", AssumeRolePolicyDocument=json.dumps(allow(
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"})))
    iam.add_role_to_instance_profile(InstanceProfileName="hosts", RoleName="host")
    assert iam.get_instance_profile(InstanceProfileName="hosts")["InstanceProfile"]["Roles"][0]["RoleName"] == "host"
    slr = iam.create_service_linked_role(AWSServiceName="ecs.amazonaws.com")["Role"]
    assert slr["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS"


def test_access_key_secrets_are_shown_once_and_never_stored_in_the_clear(gantry):
    iam = gantry.client("iam")
    iam.create_user(UserName="k")
    secret = iam.create_access_key(UserName="k")["AccessKey"]["SecretAccessKey"]
    listed = iam.list_access_keys(UserName="k")["AccessKeyMetadata"]
    assert len(listed) == 1 and "SecretAccessKey" not in listed[0]
    iam.create_access_key(UserName="k")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        iam.create_access_key(UserName="k")
    assert e.value.response["Error"]["Code"] == "LimitExceeded"
    gantry.stop()
    for f in Path(gantry.data_dir).rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
    # After a restart the key still signs (its secret opens with the master key).
    gantry.start()
    iam = gantry.client("iam")
    key_id = listed[0]["AccessKeyId"]
    assert as_user(gantry, "sts", (key_id, secret)).get_caller_identity()["Arn"].endswith(":user/k")
    assert iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]["ServiceName"] == "sts"
    iam.update_access_key(UserName="k", AccessKeyId=key_id, Status="Inactive")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        as_user(gantry, "sts", (key_id, secret)).get_caller_identity()
    assert e.value.response["Error"]["Code"] == "InvalidClientTokenId"


def docker_as(config_dir, *args, input=None):
    env = dict(os.environ, DOCKER_CONFIG=str(config_dir))
    return subprocess.run(["docker", *args], capture_output=True, text=True, input=input, env=env, timeout=300)


def test_registry_access_follows_policies_repository_policies_and_key_deletion(gantry, tmp_path):
    require_docker()
    repo = f"iam-{uuid.uuid4().hex[:8]}"
    uri = gantry.aws_json("ecr", "create-repository", "--repository-name", repo)["repository"]["repositoryUri"]
    local = build_busybox_image(tmp_path, f"gantry-e2e/{repo}:src")
    root_cfg = tmp_path / "root-docker"
    root_cfg.mkdir()
    pw = gantry.aws("ecr", "get-login-password").stdout.strip()
    assert docker_as(root_cfg, "login", "-u", "AWS", "--password-stdin", gantry.registry, input=pw).returncode == 0
    docker_as(root_cfg, "tag", local, f"{uri}:v1")
    try:
        assert docker_as(root_cfg, "push", f"{uri}:v1").returncode == 0

        reader = make_user(gantry, "reader", ["arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"])
        cfg = tmp_path / "reader-docker"
        cfg.mkdir()
        pw = aws_as(gantry, reader, "ecr", "get-login-password").stdout.strip()
        assert docker_as(cfg, "login", "-u", "AWS", "--password-stdin", gantry.registry, input=pw).returncode == 0
        docker_as(cfg, "rmi", f"{uri}:v1")
        pull = docker_as(cfg, "pull", f"{uri}:v1")
        assert pull.returncode == 0, pull.stderr
        docker_as(cfg, "tag", local, f"{uri}:v2")
        push = docker_as(cfg, "push", f"{uri}:v2")
        assert push.returncode != 0
        assert "denied: User: arn:aws:iam::000000000000:user/reader is not authorized to perform: ecr:" in push.stderr

        # A principal allowed only GetAuthorizationToken pulls through the repository policy.
        other = make_user(gantry, "other", inline=allow(
            {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}))
        ocfg = tmp_path / "other-docker"
        ocfg.mkdir()
        pw = aws_as(gantry, other, "ecr", "get-login-password").stdout.strip()
        assert docker_as(ocfg, "login", "-u", "AWS", "--password-stdin", gantry.registry, input=pw).returncode == 0
        docker_as(ocfg, "rmi", f"{uri}:v1")
        assert docker_as(ocfg, "pull", f"{uri}:v1").returncode != 0
        gantry.client("ecr").set_repository_policy(repositoryName=repo, policyText=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/other"},
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]}]}))
        docker_as(ocfg, "rmi", f"{uri}:v1")
        pull = docker_as(ocfg, "pull", f"{uri}:v1")
        assert pull.returncode == 0, pull.stderr

        # The reader's token stops working once the key that minted it is deleted.
        gantry.client("iam").delete_access_key(UserName="reader", AccessKeyId=reader[0])
        docker_as(cfg, "rmi", f"{uri}:v1")
        assert docker_as(cfg, "pull", f"{uri}:v1").returncode != 0
    finally:
        for t in ("v1", "v2"):
            subprocess.run(["docker", "rmi", "-f", f"{uri}:{t}"], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", local], capture_output=True)


def test_naming_a_role_in_a_task_definition_requires_pass_role(gantry):
    iam = gantry.client("iam")
    trust = allow({"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"})
    app = iam.create_role(RoleName="app", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    admin = iam.create_role(RoleName="admin", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    key = make_user(gantry, "deployer", inline=allow(
        {"Effect": "Allow", "Action": "ecs:RegisterTaskDefinition", "Resource": "*"},
        {"Effect": "Allow", "Action": "iam:PassRole", "Resource": app,
         "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}}))
    ecs = as_user(gantry, "ecs", key)
    containers = [{"name": "c", "image": "busybox", "memory": 64}]
    out = ecs.register_task_definition(family="web", taskRoleArn=app, containerDefinitions=containers)
    assert out["taskDefinition"]["taskRoleArn"] == app
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.register_task_definition(family="web", taskRoleArn=admin, containerDefinitions=containers)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert e.value.response["Error"]["Message"] == (
        f"User: arn:aws:iam::{ACCOUNT}:user/deployer is not authorized to perform: iam:PassRole on "
        f"resource: {admin} because no identity-based policy allows the iam:PassRole action")


def test_the_root_key_is_registry_basic_credentials_only_when_asked(tmp_path):
    import base64
    import urllib.error
    import urllib.request

    from conftest import Gantry

    def v2_status(g, user, password):
        req = urllib.request.Request(f"{g.endpoint}/v2/")
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    g = Gantry(tmp_path / "a").start()
    try:
        assert v2_status(g, g.access_key, g.secret_key) == 401
        token = g.aws("ecr", "get-login-password").stdout.strip()
        assert v2_status(g, "AWS", token) == 200
    finally:
        g.stop()
    g = Gantry(tmp_path / "b").start(extra_args=["--registry-root-basic-auth"])
    try:
        assert v2_status(g, g.access_key, g.secret_key) == 200
    finally:
        g.stop()


def test_a_permissions_boundary_caps_what_policies_grant(gantry):
    iam = gantry.client("iam")
    key = make_user(gantry, "bounded", ["arn:aws:iam::aws:policy/AdministratorAccess"])
    ecs = as_user(gantry, "ecs", key)
    ecs.list_clusters()
    boundary = iam.create_policy(PolicyName="describe-only", PolicyDocument=json.dumps(
        allow({"Effect": "Allow", "Action": "ecs:Describe*", "Resource": "*"})))["Policy"]["Arn"]
    iam.put_user_permissions_boundary(UserName="bounded", PermissionsBoundary=boundary)
    assert iam.get_user(UserName="bounded")["User"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == boundary
    ecs.describe_clusters(clusters=["default"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.list_clusters()
    assert e.value.response["Error"]["Message"] == (
        f"User: arn:aws:iam::{ACCOUNT}:user/bounded is not authorized to perform: ecs:ListClusters "
        "because no permissions boundary allows the ecs:ListClusters action")
    iam.delete_user_permissions_boundary(UserName="bounded")
    ecs.list_clusters()
    iam.tag_policy(PolicyArn=boundary, Tags=[{"Key": "k", "Value": "v"}])
    assert iam.list_policy_tags(PolicyArn=boundary)["Tags"] == [{"Key": "k", "Value": "v"}]


def test_a_long_term_key_with_a_session_token_is_refused(gantry):
    sts = boto3.client("sts", endpoint_url=gantry.endpoint, region_name=REGION,
                       aws_access_key_id=gantry.access_key, aws_secret_access_key=gantry.secret_key,
                       aws_session_token="FQoGnotatoken")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sts.get_caller_identity()
    assert e.value.response["Error"]["Code"] == "InvalidClientTokenId"


def test_secret_policies_and_secret_arns_take_part(gantry):
    sm_root = gantry.client("secretsmanager")
    shared = sm_root.create_secret(Name="team/shared", SecretString="s1")["ARN"]
    sm_root.create_secret(Name="team/private", SecretString="s2")
    mine = sm_root.create_secret(Name="app/db", SecretString="s3")["ARN"]
    key = make_user(gantry, "app", inline=allow(
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
         "Resource": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:app/*"}))
    sm = as_user(gantry, "secretsmanager", key)
    # The identity policy names the secret by ARN pattern; a request by name matches it.
    assert sm.get_secret_value(SecretId="app/db")["SecretString"] == "s3"
    assert sm.get_secret_value(SecretId=mine)["SecretString"] == "s3"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.get_secret_value(SecretId="team/shared")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert e.value.response["Error"]["Message"].endswith(
        f"on resource: {shared} because no identity-based policy allows the secretsmanager:GetSecretValue action")
    sm_root.put_resource_policy(SecretId="team/shared", ResourcePolicy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/app"},
            "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}))
    assert sm.get_secret_value(SecretId="team/shared")["SecretString"] == "s1"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.get_secret_value(SecretId="team/private")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"


def test_kms_key_policies_decide_who_may_use_a_key(gantry):
    """A key policy naming a user lets it in without any IAM policy; a key policy that does not
    delegate to the account keeps out a user whose IAM policies allow kms:*; the default policy
    delegates to IAM. Denials carry AWS's code and wording."""
    kms = gantry.client("kms")
    admin = make_user(gantry, "kms-admin", inline=allow(
        {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}))
    reader = make_user(gantry, "kms-reader")
    reader_arn = f"arn:aws:iam::{ACCOUNT}:user/kms-reader"
    policy = allow({"Effect": "Allow", "Principal": {"AWS": reader_arn},
                    "Action": ["kms:Encrypt", "kms:Decrypt", "kms:PutKeyPolicy"], "Resource": "*"})
    key = kms.create_key(Policy=json.dumps(policy))["KeyMetadata"]["Arn"]

    reader_kms = as_user(gantry, "kms", reader)
    blob = reader_kms.encrypt(KeyId=key, Plaintext=b"s3cret")["CiphertextBlob"]
    assert reader_kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"s3cret"

    # IAM allows the admin kms:*, but the key policy neither names it nor delegates to IAM.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        as_user(gantry, "kms", admin).decrypt(CiphertextBlob=blob)
    err = e.value.response["Error"]
    assert err["Code"] == "AccessDeniedException"
    assert err["Message"] == (
        f"User: arn:aws:iam::{ACCOUNT}:user/kms-admin is not authorized to perform: kms:Decrypt "
        f"on resource: {key} because no resource-based policy allows the kms:Decrypt action")

    # The AWS CLI sees the same refusal.
    out = aws_as(gantry, admin, "kms", "describe-key", "--key-id", key)
    assert out.returncode != 0
    assert "AccessDeniedException" in out.stderr
    assert "because no resource-based policy allows the kms:DescribeKey action" in out.stderr

    # A key with the default policy delegates to IAM: the admin is in, the reader is not.
    default_key = kms.create_key()["KeyMetadata"]["Arn"]
    as_user(gantry, "kms", admin).encrypt(KeyId=default_key, Plaintext=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        reader_kms.encrypt(KeyId=default_key, Plaintext=b"x")
    assert e.value.response["Error"]["Message"].endswith(
        "because no identity-based policy allows the kms:Encrypt action")

    # The lockout safety check: the reader may not write a policy that shuts itself out.
    admin_arn = f"arn:aws:iam::{ACCOUNT}:user/kms-admin"
    lockout = allow({"Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "kms:*",
                     "Resource": "*"})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        reader_kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(lockout))
    assert e.value.response["Error"]["Code"] == "MalformedPolicyDocumentException"
    reader_kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(lockout),
                              BypassPolicyLockoutSafetyCheck=True)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        reader_kms.decrypt(CiphertextBlob=blob)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert as_user(gantry, "kms", admin).decrypt(CiphertextBlob=blob)["Plaintext"] == b"s3cret"


def test_secrets_and_parameters_need_the_caller_allowed_on_a_customer_key(gantry):
    """Secrets Manager and Parameter Store use a customer managed key for the caller: the key
    policy must let the caller use it (kms:ViaService naming the service); the AWS managed
    default keys need nothing beyond the services' own permissions."""
    kms = gantry.client("kms")
    user = make_user(gantry, "vault-user", inline=allow(
        {"Effect": "Allow", "Action": ["secretsmanager:*", "ssm:*"], "Resource": "*"}))
    user_arn = f"arn:aws:iam::{ACCOUNT}:user/vault-user"
    root = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "kms:*", "Resource": "*"}
    key = kms.create_key(Policy=json.dumps(allow(root)))["KeyMetadata"]["Arn"]
    sm, ssm = as_user(gantry, "secretsmanager", user), as_user(gantry, "ssm", user)

    # The key policy delegates to IAM, which grants no kms action: nothing is written.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.create_secret(Name="vault-db", SecretString="pw", KmsKeyId=key)
    err = e.value.response["Error"]
    assert err["Code"] == "AccessDeniedException"
    assert err["Message"].startswith("Access to KMS is not allowed")
    assert f"kms:GenerateDataKey on resource: {key}" in err["Message"]
    assert not [s for s in gantry.client("secretsmanager").list_secrets()["SecretList"]
                if s["Name"] == "vault-db"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ssm.put_parameter(Name="/vault/token", Value="tok", Type="SecureString", KeyId=key)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert f"kms:Encrypt on resource: {key}" in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        gantry.client("ssm").get_parameter(Name="/vault/token")
    assert e.value.response["Error"]["Code"] == "ParameterNotFound"

    # Values written by the root with that key cannot be read by the user either.
    gantry.client("secretsmanager").create_secret(Name="vault-db", SecretString="pw",
                                                  KmsKeyId=key)
    gantry.client("ssm").put_parameter(Name="/vault/token", Value="tok", Type="SecureString",
                                       KeyId=key)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.get_secret_value(SecretId="vault-db")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert f"kms:Decrypt on resource: {key}" in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ssm.get_parameter(Name="/vault/token", WithDecryption=True)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert ssm.get_parameter(Name="/vault/token")["Parameter"]["Value"] != "tok"

    # The key policy lets the user in through the two services only.
    through = {"Effect": "Allow", "Principal": {"AWS": user_arn},
               "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
               "Condition": {"StringEquals": {"kms:ViaService": [
                   "secretsmanager.us-east-1.amazonaws.com", "ssm.us-east-1.amazonaws.com"]}}}
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(allow(root, through)))
    assert sm.get_secret_value(SecretId="vault-db")["SecretString"] == "pw"
    sm.put_secret_value(SecretId="vault-db", SecretString="pw2")
    assert sm.get_secret_value(SecretId="vault-db")["SecretString"] == "pw2"
    sm.create_secret(Name="vault-db2", SecretString="pw3", KmsKeyId=key)
    ssm.put_parameter(Name="/vault/token2", Value="tok2", Type="SecureString", KeyId=key)
    got = ssm.get_parameters(Names=["/vault/token", "/vault/token2"], WithDecryption=True)
    assert sorted(p["Value"] for p in got["Parameters"]) == ["tok", "tok2"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        as_user(gantry, "kms", user).encrypt(KeyId=key, Plaintext=b"x")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"

    # The AWS managed default keys: the services' own permissions suffice.
    sm.create_secret(Name="vault-default", SecretString="d")
    assert sm.get_secret_value(SecretId="vault-default")["SecretString"] == "d"
    ssm.put_parameter(Name="/vault/default", Value="d", Type="SecureString")
    assert ssm.get_parameter(Name="/vault/default",
                             WithDecryption=True)["Parameter"]["Value"] == "d"

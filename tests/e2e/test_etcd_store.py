"""`gantry server --store etcd://...`: two replicas on one real etcd share their state; an etcd
that cannot be reached is a clear start-up error, then a retryable 503 while it is gone mid-run,
and full service once it is back."""

import shutil
import subprocess
import time

import botocore.exceptions
import pytest

from conftest import EtcdCluster, Gantry, free_port, gantry_binary, require_etcd


def shared_secrets(first: Gantry, other: Gantry):
    """Replicas of one installation share the data dir's secrets (master key, registry token
    secret): copied from the first replica, as docs/operations.md says."""
    other.data_dir.mkdir(parents=True, exist_ok=True)
    for name in ("master-key", "registry-token-secret"):
        shutil.copy2(first.data_dir / name, other.data_dir / name)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    require_etcd()
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), 1).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def replicas(etcd, tmp_path_factory):
    base = tmp_path_factory.mktemp("replicas")
    a = Gantry(base / "a").start(["--store", etcd.url("two-replicas")])
    b = Gantry(base / "b", a.access_key, a.secret_key)
    shared_secrets(a, b)
    b.start(["--store", etcd.url("two-replicas")])
    yield a, b
    a.stop()
    b.stop()


def test_any_replica_answers_for_state_written_through_another(replicas):
    a, b = replicas
    a.aws("ecs", "create-cluster", "--cluster-name", "shared")
    clusters = b.aws_json("ecs", "describe-clusters", "--clusters", "shared")["clusters"]
    assert [c["clusterName"] for c in clusters] == ["shared"]
    assert clusters[0]["status"] == "ACTIVE"

    b.aws("ecs", "register-task-definition", "--family", "web", "--container-definitions",
          '[{"name":"web","image":"busybox","memory":64}]')
    a.aws("ecs", "register-task-definition", "--family", "web", "--container-definitions",
          '[{"name":"web","image":"busybox","memory":128}]')
    arns = b.aws_json("ecs", "list-task-definitions", "--family-prefix", "web")["taskDefinitionArns"]
    assert [arn.rsplit(":", 1)[1] for arn in arns] == ["1", "2"]
    td = a.aws_json("ecs", "describe-task-definition", "--task-definition", "web:2")["taskDefinition"]
    assert td["containerDefinitions"][0]["memory"] == 128

    # Repositories too: ECR's state is in the same store.
    a.aws("ecr", "create-repository", "--repository-name", "shared/app")
    repos = b.aws_json("ecr", "describe-repositories")["repositories"]
    assert "shared/app" in [r["repositoryName"] for r in repos]


def test_unreachable_etcd_at_start_up_is_a_clear_error(tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        p = subprocess.run(
            [gantry_binary(), "server", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
             "--store", f"etcd://127.0.0.1:{port}"],
            stdout=out, stderr=out, timeout=60,
        )
    text = log.read_text()
    assert p.returncode != 0
    assert f"etcd at 127.0.0.1:{port}" in text, text
    assert "unavailable" in text, text


def test_etcd_outage_gives_retryable_503_and_service_returns(tmp_path):
    require_etcd()
    etcd = EtcdCluster(tmp_path, 1).start()
    g = Gantry(tmp_path / "data").start(["--store", etcd.url("outage")])
    try:
        ecs = g.client("ecs")
        ecs.create_cluster(clusterName="before")
        etcd.kill(0)
        with pytest.raises(botocore.exceptions.ClientError) as err:
            ecs.create_cluster(clusterName="during")
        resp = err.value.response
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert resp["Error"]["Code"] == "ServerException"
        assert "state store" in resp["Error"]["Message"]
        with pytest.raises(botocore.exceptions.ClientError) as err:
            ecs.describe_clusters(clusters=["before"])
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503

        etcd.spawn(0)
        etcd.wait_healthy()
        deadline = time.monotonic() + 30
        while True:
            try:
                ecs.create_cluster(clusterName="after")
                break
            except botocore.exceptions.ClientError as e:
                if e.response["ResponseMetadata"]["HTTPStatusCode"] != 503 or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        names = {c["clusterName"] for c in ecs.describe_clusters(clusters=["before", "during", "after"])["clusters"]
                 if c["status"] == "ACTIVE"}
        assert names == {"before", "after"}
    finally:
        g.stop()
        etcd.stop()


def test_iam_credentials_made_on_one_replica_work_on_another(replicas):
    a, b = replicas
    iam = a.client("iam")
    iam.create_user(UserName="deployer")
    key = iam.create_access_key(UserName="deployer")["AccessKey"]
    sts = b.client("sts", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    deadline = time.monotonic() + 10
    while True:
        try:
            who = sts.get_caller_identity()
            break
        except botocore.exceptions.ClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert who["Arn"].endswith(":user/deployer")
    # Deleted on the other replica: refused on the first.
    b.client("iam").delete_access_key(UserName="deployer", AccessKeyId=key["AccessKeyId"])
    sts_a = a.client("sts", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    deadline = time.monotonic() + 10
    while True:
        try:
            sts_a.get_caller_identity()
        except botocore.exceptions.ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403)
            break
        assert time.monotonic() < deadline, "a deleted key kept working on the other replica"
        time.sleep(0.05)

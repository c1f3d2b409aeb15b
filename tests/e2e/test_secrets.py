"""Secrets Manager, SSM Parameter Store and KMS driven by the AWS CLI and boto3 against the real
binary: the lifecycles, AWS's errors on bad input with nothing half-written, durability of
acknowledged versions across kill -9, and no plaintext in the data dir or the server log."""

import base64
import concurrent.futures
import json
import os
import signal
import stat
import threading
import time
import uuid
from pathlib import Path

import botocore.exceptions
import pytest

from conftest import Gantry


def error_code(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


def test_secret_lifecycle_with_the_aws_cli(gantry, tmp_path):
    created = gantry.aws_json("secretsmanager", "create-secret", "--name", "prod/db/password",
                              "--secret-string", "first-password")
    arn = created["ARN"]
    assert arn.startswith("arn:aws:secretsmanager:us-east-1:000000000000:secret:prod/db/password-")
    assert len(arn.rsplit("-", 1)[1]) == 6
    doc = json.dumps({"username": "admin", "password": "json-password"})
    gantry.aws_json("secretsmanager", "create-secret", "--name", "prod/db/json", "--secret-string", doc)

    got = gantry.aws_json("secretsmanager", "get-secret-value", "--secret-id", "prod/db/password")
    assert got["SecretString"] == "first-password"
    assert got["VersionStages"] == ["AWSCURRENT"]
    first_version = got["VersionId"]
    as_json = gantry.aws_json("secretsmanager", "get-secret-value", "--secret-id", "prod/db/json")
    assert json.loads(as_json["SecretString"]) == {"username": "admin", "password": "json-password"}
    # The partial ARN (without the random suffix) and the full ARN name the same secret.
    partial = arn[: -len("-XXXXXX")]
    for secret_id in (arn, partial):
        assert gantry.aws_json("secretsmanager", "get-secret-value",
                               "--secret-id", secret_id)["ARN"] == arn

    put = gantry.aws_json("secretsmanager", "put-secret-value", "--secret-id", arn,
                          "--secret-string", "second-password")
    assert put["VersionStages"] == ["AWSCURRENT"]
    previous = gantry.aws_json("secretsmanager", "get-secret-value", "--secret-id", "prod/db/password",
                               "--version-stage", "AWSPREVIOUS")
    assert (previous["VersionId"], previous["SecretString"]) == (first_version, "first-password")
    described = gantry.aws_json("secretsmanager", "describe-secret", "--secret-id", "prod/db/password")
    assert described["VersionIdsToStages"] == {first_version: ["AWSPREVIOUS"],
                                               put["VersionId"]: ["AWSCURRENT"]}
    assert "KmsKeyId" not in described  # the AWS-managed aws/secretsmanager key

    deleted = gantry.aws_json("secretsmanager", "delete-secret", "--secret-id", "prod/db/password",
                              "--recovery-window-in-days", "7")
    assert deleted["DeletionDate"] - time.time() == pytest.approx(7 * 86400, abs=120)
    p = gantry.aws("secretsmanager", "get-secret-value", "--secret-id", "prod/db/password", check=False)
    assert p.returncode != 0
    assert "InvalidRequestException" in p.stderr and "marked for deletion" in p.stderr
    listed = gantry.aws_json("secretsmanager", "list-secrets")
    assert [s["Name"] for s in listed["SecretList"]] == ["prod/db/json"]
    assert "DeletedDate" in gantry.aws_json("secretsmanager", "describe-secret", "--secret-id", arn)

    gantry.aws_json("secretsmanager", "restore-secret", "--secret-id", arn)
    assert gantry.aws_json("secretsmanager", "get-secret-value",
                           "--secret-id", arn)["SecretString"] == "second-password"

    gantry.aws_json("secretsmanager", "delete-secret", "--secret-id", arn, "--force-delete-without-recovery")
    p = gantry.aws("secretsmanager", "describe-secret", "--secret-id", arn, check=False)
    assert "ResourceNotFoundException" in p.stderr
    # The name is free again, with a new suffix.
    again = gantry.aws_json("secretsmanager", "create-secret", "--name", "prod/db/password",
                            "--secret-string", "third")
    assert again["ARN"] != arn

    p = gantry.aws("secretsmanager", "rotate-secret", "--secret-id", "prod/db/json", check=False)
    assert "InvalidRequestException" in p.stderr and "not supported" in p.stderr


def test_secure_string_with_and_without_decryption(gantry):
    put = gantry.aws_json("ssm", "put-parameter", "--name", "/app/db/password", "--type", "SecureString",
                          "--value", "ssm-secret-value")
    assert put == {"Version": 1, "Tier": "Standard"}
    plain = gantry.aws_json("ssm", "get-parameter", "--name", "/app/db/password", "--with-decryption")
    assert plain["Parameter"]["Value"] == "ssm-secret-value"
    assert plain["Parameter"]["ARN"] == "arn:aws:ssm:us-east-1:000000000000:parameter/app/db/password"
    sealed = gantry.aws_json("ssm", "get-parameter", "--name", "/app/db/password")
    assert sealed["Parameter"]["Type"] == "SecureString"
    assert sealed["Parameter"]["Value"] != "ssm-secret-value"
    base64.b64decode(sealed["Parameter"]["Value"], validate=True)
    described = gantry.aws_json("ssm", "describe-parameters")
    assert described["Parameters"][0]["KeyId"] == "alias/aws/ssm"
    # The AWS-managed key was created on this first use, as AWS does.
    key = gantry.aws_json("kms", "describe-key", "--key-id", "alias/aws/ssm")["KeyMetadata"]
    assert key["KeyManager"] == "AWS"

    ssm = gantry.client("ssm")
    ssm.put_parameter(Name="/app/db/password", Value="rotated", Overwrite=True)
    ssm.label_parameter_version(Name="/app/db/password", ParameterVersion=1, Labels=["previous"])
    assert ssm.get_parameter(Name="/app/db/password:previous",
                             WithDecryption=True)["Parameter"]["Value"] == "ssm-secret-value"
    ssm.put_parameter(Name="/app/url", Value="https://example.test", Type="String")
    ssm.put_parameter(Name="/app/sub/x", Value="a,b", Type="StringList")
    pages = ssm.get_paginator("get_parameters_by_path").paginate(
        Path="/app", Recursive=True, WithDecryption=True, PaginationConfig={"PageSize": 1})
    got = {p["Name"]: p["Value"] for page in pages for p in page["Parameters"]}
    assert got == {"/app/db/password": "rotated", "/app/url": "https://example.test", "/app/sub/x": "a,b"}
    history = ssm.get_parameter_history(Name="/app/db/password", WithDecryption=True)["Parameters"]
    assert [(h["Version"], h["Value"], h["Labels"]) for h in history] == [
        (1, "ssm-secret-value", ["previous"]), (2, "rotated", [])]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ssm.send_command(DocumentName="AWS-RunShellScript", InstanceIds=["i-0123456789abcdef0"])
    assert error_code(e) == "UnsupportedOperationException"


def test_kms_encrypt_decrypt_round_trip_with_the_aws_cli(gantry, tmp_path):
    key = gantry.aws_json("kms", "create-key", "--description", "app key")["KeyMetadata"]
    assert (key["KeyState"], key["KeySpec"], key["KeyManager"]) == ("Enabled", "SYMMETRIC_DEFAULT", "CUSTOMER")
    gantry.aws("kms", "create-alias", "--alias-name", "alias/app", "--target-key-id", key["KeyId"])
    plaintext = tmp_path / "plain.txt"
    plaintext.write_bytes(b"kms round trip \x00\xff")
    enc = gantry.aws_json("kms", "encrypt", "--key-id", "alias/app", "--plaintext", f"fileb://{plaintext}",
                          "--encryption-context", "purpose=test")
    assert enc["KeyId"] == key["Arn"]
    blob = tmp_path / "blob.bin"
    blob.write_bytes(base64.b64decode(enc["CiphertextBlob"]))
    dec = gantry.aws_json("kms", "decrypt", "--ciphertext-blob", f"fileb://{blob}",
                          "--encryption-context", "purpose=test")
    assert base64.b64decode(dec["Plaintext"]) == b"kms round trip \x00\xff"
    p = gantry.aws("kms", "decrypt", "--ciphertext-blob", f"fileb://{blob}", check=False)
    assert "InvalidCiphertextException" in p.stderr
    policy = json.loads(gantry.aws_json("kms", "get-key-policy", "--key-id", key["KeyId"],
                                        "--policy-name", "default")["Policy"])
    assert policy["Statement"][0]["Sid"] == "Enable IAM User Permissions"

    kms = gantry.client("kms")
    data_key = kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")
    assert len(data_key["Plaintext"]) == 32
    assert kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"] == data_key["Plaintext"]
    scheduled = kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    assert scheduled["KeyState"] == "PendingDeletion"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])
    assert error_code(e) == "KMSInvalidStateException"
    kms.cancel_key_deletion(KeyId=key["KeyId"])
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"


def test_ecr_kms_encryption_records_the_key(gantry):
    ecr, kms = gantry.client("ecr"), gantry.client("kms")
    repo = ecr.create_repository(repositoryName="enc-default",
                                 encryptionConfiguration={"encryptionType": "KMS"})["repository"]
    managed = kms.describe_key(KeyId="alias/aws/ecr")["KeyMetadata"]
    assert repo["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": managed["Arn"]}
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/images", TargetKeyId=key["KeyId"])
    repo = ecr.create_repository(repositoryName="enc-own",
                                 encryptionConfiguration={"encryptionType": "KMS", "kmsKey": "alias/images"})
    assert repo["repository"]["encryptionConfiguration"]["kmsKey"] == key["Arn"]
    described = ecr.describe_repositories(repositoryNames=["enc-own"])["repositories"][0]
    assert described["encryptionConfiguration"]["kmsKey"] == key["Arn"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecr.create_repository(repositoryName="enc-missing",
                              encryptionConfiguration={"encryptionType": "KMS", "kmsKey": "alias/none"})
    assert error_code(e) == "KmsException"
    assert "alias/none" in e.value.response["Error"]["Message"]
    names = [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
    assert "enc-missing" not in names


def test_bad_input_gets_aws_errors_and_writes_nothing(gantry):
    sm, ssm, kms = gantry.client("secretsmanager"), gantry.client("ssm"), gantry.client("kms")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.create_secret(Name="bad name!", SecretString="x")
    assert error_code(e) == "ValidationException"
    assert "Invalid name" in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.create_secret(Name="too-big", SecretString="x" * (64 * 1024 + 1))
    assert error_code(e) == "ValidationException"
    assert sm.list_secrets(IncludePlannedDeletion=True)["SecretList"] == []

    sm.create_secret(Name="app", SecretString="v1")
    v2 = sm.put_secret_value(SecretId="app", SecretString="v2", VersionStages=["AWSPENDING"])["VersionId"]
    before = sm.list_secret_version_ids(SecretId="app", IncludeDeprecated=True)["Versions"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.put_secret_value(SecretId="app", SecretString="y" * (65536 + 1))
    assert error_code(e) == "ValidationException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.update_secret_version_stage(SecretId="app", VersionStage="AWSCURRENT", MoveToVersionId=v2)
    assert error_code(e) == "InvalidParameterException"
    assert "RemoveFromVersionId" in e.value.response["Error"]["Message"]

    key = kms.create_key()["KeyMetadata"]
    sm.create_secret(Name="with-key", SecretString="k1", KmsKeyId=key["KeyId"])
    ssm.put_parameter(Name="/with-key", Value="p1", Type="SecureString", KeyId=key["KeyId"])
    kms.disable_key(KeyId=key["KeyId"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.put_secret_value(SecretId="with-key", SecretString="k2")
    assert error_code(e) == "EncryptionFailure"
    assert f"{key['Arn']} is disabled." in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.get_secret_value(SecretId="with-key")
    assert error_code(e) == "DecryptionFailure"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ssm.put_parameter(Name="/with-key", Value="p2", Overwrite=True)
    assert error_code(e) == "InvalidKeyId"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    assert error_code(e) == "DisabledException"
    kms.enable_key(KeyId=key["KeyId"])
    # Nothing was half-written: the same versions, the old values.
    assert sm.list_secret_version_ids(SecretId="app", IncludeDeprecated=True)["Versions"] == before
    assert len(sm.list_secret_version_ids(SecretId="with-key")["Versions"]) == 1
    assert sm.get_secret_value(SecretId="with-key")["SecretString"] == "k1"
    param = ssm.get_parameter(Name="/with-key", WithDecryption=True)["Parameter"]
    assert (param["Version"], param["Value"]) == (1, "p1")


def test_kill_9_during_put_secret_value_burst_loses_no_acknowledged_version(tmp_path):
    g = Gantry(tmp_path / "data").start()
    secrets = [f"burst/{i}" for i in range(8)]
    setup = g.client("secretsmanager")
    for name in secrets:
        setup.create_secret(Name=name, SecretString="initial")
    acked: list[tuple[str, str, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int):
        sm = g.client("secretsmanager")
        i = 0
        while not stop.is_set():
            i += 1
            name = secrets[n % len(secrets)]
            token = str(uuid.uuid4())
            value = f"value-{n}-{i}-{token[:8]}"
            try:
                sm.put_secret_value(SecretId=name, SecretString=value, ClientRequestToken=token)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                return
            with lock:
                acked.append((name, token, value))

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(writer, n) for n in range(16)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= 300:
                    break
            time.sleep(0.01)
        g.proc.send_signal(signal.SIGKILL)
        g.proc.wait()
        stop.set()
        for f in futures:
            f.result(timeout=30)
    assert len(acked) >= 100, f"burst too small to prove anything: {len(acked)}"

    g2 = Gantry(tmp_path / "data", g.access_key, g.secret_key).start()
    try:
        sm = g2.client("secretsmanager")
        lost = []
        for name, token, value in acked:
            try:
                got = sm.get_secret_value(SecretId=name, VersionId=token)
            except botocore.exceptions.ClientError as e:
                lost.append((name, token, error_code(e)))
                continue
            if got["SecretString"] != value:
                lost.append((name, token, "wrong value"))
        assert not lost, f"{len(lost)} acknowledged versions lost, e.g. {lost[:3]}"
        for name in secrets:
            versions = sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)["Versions"]
            current = [v for v in versions if "AWSCURRENT" in v["VersionStages"]]
            assert len(current) == 1, f"{name}: {len(current)} current versions"
            # Every listed version opens: nothing half-written.
            for v in versions:
                sm.get_secret_value(SecretId=name, VersionId=v["VersionId"])
    finally:
        g2.stop()


def _files_containing(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n!r}" for n in needles if n in data]
    return hits


def test_plaintext_never_reaches_the_data_dir_or_the_server_log(tmp_path, monkeypatch):
    monkeypatch.setenv("GANTRY_LOG", "debug")
    g = Gantry(tmp_path / "data").start()
    canaries = [f"CANARY{i}-{uuid.uuid4().hex}" for i in range(6)]
    try:
        sm, ssm, kms = g.client("secretsmanager"), g.client("ssm"), g.client("kms")
        sm.create_secret(Name="canary/string", SecretString=canaries[0])
        sm.create_secret(Name="canary/json", SecretString=json.dumps({"password": canaries[1]}))
        sm.create_secret(Name="canary/binary", SecretBinary=canaries[2].encode())
        sm.put_secret_value(SecretId="canary/string", SecretString=canaries[3])
        ssm.put_parameter(Name="/canary/param", Value=canaries[4], Type="SecureString")
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=canaries[5].encode())["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == canaries[5].encode()
        # Reads and errors that carry the values.
        assert sm.get_secret_value(SecretId="canary/string")["SecretString"] == canaries[3]
        assert ssm.get_parameter(Name="/canary/param", WithDecryption=True)["Parameter"]["Value"] == canaries[4]
        with pytest.raises(botocore.exceptions.ClientError):
            sm.put_secret_value(SecretId="canary/string", SecretString=canaries[0] * 3000)
        with pytest.raises(botocore.exceptions.ClientError):
            ssm.put_parameter(Name="/canary/bad", Value=canaries[4], Type="String", AllowedPattern="^[0-9]+$")
        token = str(uuid.uuid4())
        sm.put_secret_value(SecretId="canary/json", SecretString=canaries[1], ClientRequestToken=token)
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sm.put_secret_value(SecretId="canary/json", SecretString=canaries[0], ClientRequestToken=token)
        assert error_code(e) == "ResourceExistsException"
    finally:
        g.stop()
    needles = []
    for c in canaries:
        needles += [c.encode(), base64.b64encode(c.encode())]
    assert not _files_containing(tmp_path / "data", needles)
    log = Path(g.log.name).read_bytes()
    assert b"DEBUG" in log or b"debug" in log.lower(), "the server did not log at debug level"
    assert not [n for n in needles if n in log]
    master = tmp_path / "data" / "master-key"
    assert stat.S_IMODE(os.stat(master).st_mode) == 0o600


def test_secret_tags_random_passwords_and_batch_reads(gantry):
    sm = gantry.client("secretsmanager")
    arn = sm.create_secret(Name="tagged", SecretString="t1", Tags=[{"Key": "team", "Value": "db"}])["ARN"]
    sm.create_secret(Name="plain", SecretString="p1")
    sm.tag_resource(SecretId="tagged", Tags=[{"Key": "env", "Value": "prod"}])
    assert sorted((t["Key"], t["Value"]) for t in sm.describe_secret(SecretId=arn)["Tags"]) == [
        ("env", "prod"), ("team", "db")]
    found = sm.list_secrets(Filters=[{"Key": "tag-key", "Values": ["env"]}])["SecretList"]
    assert [s["Name"] for s in found] == ["tagged"]
    sm.untag_resource(SecretId=arn, TagKeys=["env"])
    assert [t["Key"] for t in sm.describe_secret(SecretId="tagged")["Tags"]] == ["team"]
    assert sm.list_secrets(Filters=[{"Key": "tag-key", "Values": ["env"]}])["SecretList"] == []
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.tag_resource(SecretId="tagged", Tags=[{"Key": "aws:owner", "Value": "x"}])
    assert error_code(e) in ("ValidationException", "InvalidParameterException")

    got = gantry.aws_json("secretsmanager", "get-random-password", "--password-length", "40",
                          "--exclude-punctuation")["RandomPassword"]
    assert len(got) == 40 and got.isalnum()
    assert any(c.isdigit() for c in got) and any(c.islower() for c in got) and any(c.isupper() for c in got)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.get_random_password(PasswordLength=4097)
    assert error_code(e) in ("ValidationException", "InvalidParameterException")

    batch = sm.batch_get_secret_value(SecretIdList=["tagged", "plain", "missing"])
    assert sorted((v["Name"], v["SecretString"]) for v in batch["SecretValues"]) == [("plain", "p1"), ("tagged", "t1")]
    assert [(x["SecretId"], x["ErrorCode"]) for x in batch["Errors"]] == [("missing", "ResourceNotFoundException")]

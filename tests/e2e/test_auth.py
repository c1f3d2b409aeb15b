"""SigV4 on every request, with AWS's error codes."""

import datetime
import json
import urllib.error
import urllib.request
from unittest import mock

import botocore.exceptions
import pytest


def error_code(exc: botocore.exceptions.ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def test_wrong_secret_is_invalid_signature(gantry):
    ecs = gantry.client("ecs", aws_secret_access_key="not-the-secret")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.list_clusters()
    assert error_code(e.value) == ("InvalidSignatureException", 400)


def test_unknown_key_is_unrecognized_client(gantry):
    ecs = gantry.client("ecs", aws_access_key_id="AKIAUNKNOWNKEY000000")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.list_clusters()
    assert error_code(e.value)[0] == "UnrecognizedClientException"


def test_unsigned_request_is_missing_authentication_token(gantry):
    req = urllib.request.Request(
        gantry.endpoint + "/",
        data=b"{}",
        headers={"X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListClusters",
                 "Content-Type": "application/x-amz-json-1.1"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    body = json.loads(e.value.read())
    assert body["__type"] == "MissingAuthenticationTokenException"
    assert e.value.code in (400, 403)
    assert e.value.headers["x-amzn-RequestId"]


@pytest.mark.parametrize("minutes", [6, -6])
def test_six_minutes_of_clock_skew_is_rejected(gantry, minutes):
    ecs = gantry.client("ecs")
    skewed = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(minutes=minutes)
    with mock.patch("botocore.auth.get_current_datetime", return_value=skewed):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ecs.list_clusters()
    code, status = error_code(e.value)
    assert (code, status) == ("InvalidSignatureException", 400)
    assert "Signature" in e.value.response["Error"]["Message"]


def test_four_minutes_of_skew_is_accepted(gantry):
    ecs = gantry.client("ecs")
    skewed = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(minutes=4)
    with mock.patch("botocore.auth.get_current_datetime", return_value=skewed):
        assert ecs.list_clusters()["clusterArns"] == []


def test_presigned_sts_url_works_and_tampering_fails(gantry):
    sts = gantry.client("sts")
    url = sts.generate_presigned_url("get_caller_identity", ExpiresIn=60)
    # botocore signs the operation's own method (POST for query-protocol calls).
    with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=10) as r:
        body = r.read().decode()
    assert "<Account>000000000000</Account>" in body
    bad = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(bad, data=b"", method="POST"), timeout=10)
    assert "SignatureDoesNotMatch" in e.value.read().decode()


def test_tampered_body_fails(gantry):
    """A signature over one body does not verify another."""
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    creds = botocore.credentials.Credentials(gantry.access_key, gantry.secret_key)
    req = botocore.awsrequest.AWSRequest(
        method="POST", url=gantry.endpoint + "/", data=b'{"clusterName":"a"}',
        headers={"X-Amz-Target": "AmazonEC2ContainerServiceV20141113.CreateCluster",
                 "Content-Type": "application/x-amz-json-1.1"})
    botocore.auth.SigV4Auth(creds, "ecs", "us-east-1").add_auth(req)
    prepared = req.prepare()
    http_req = urllib.request.Request(prepared.url, data=b'{"clusterName":"b"}',
                                      headers=dict(prepared.headers), method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(http_req, timeout=10)
    assert json.loads(e.value.read())["__type"] == "InvalidSignatureException"


def test_unknown_operation_and_malformed_json(gantry):
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    creds = botocore.credentials.Credentials(gantry.access_key, gantry.secret_key)

    def call(target, body):
        req = botocore.awsrequest.AWSRequest(
            method="POST", url=gantry.endpoint + "/", data=body,
            headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"})
        botocore.auth.SigV4Auth(creds, "ecs", "us-east-1").add_auth(req)
        p = req.prepare()
        try:
            with urllib.request.urlopen(urllib.request.Request(p.url, data=body, headers=dict(p.headers),
                                                               method="POST"), timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, body = call("AmazonEC2ContainerServiceV20141113.NoSuchThing", b"{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, body = call("AmazonEC2ContainerServiceV20141113.CreateCluster", b"{not json")
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body = call("AmazonEC2ContainerServiceV20141113.CreateCluster",
                        b'{"clusterName": "x", "someFutureMember": {"a": 1}}')
    assert status == 200 and body["cluster"]["clusterName"] == "x"
    status, body = call("AmazonEC2ContainerServiceV20141113.CreateCluster", b'{"clusterName": 5}')
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body = call("AmazonEC2ContainerServiceV20141113.ExecuteCommand", b"{}")
    assert status == 400 and body["__type"] == "UnsupportedFeatureException"


def documented_body_limit() -> int:
    """The API body limit as ARCHITECTURE.md states it (`gantry_front::BODY_LIMIT` (N MiB, ...)."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[2] / "ARCHITECTURE.md").read_text()
    stated = set(re.findall(r"BODY_LIMIT`?,? \(?(\d+) MiB", text))
    assert len(stated) == 1, f"ARCHITECTURE.md states the body limit as {stated}"
    return int(stated.pop()) * 1024 * 1024


def test_the_body_limit_is_the_documented_one_and_carries_a_full_layer_part(gantry):
    """One truth for the API body limit: a body one byte over the limit ARCHITECTURE.md states
    answers 413 before anything else runs, a body of exactly that size is read (and then fails
    authentication), and ECR's largest `UploadLayerPart` (20 MiB, base64 in JSON) fits."""
    import hashlib

    limit = documented_body_limit()

    def post(size: int):
        req = urllib.request.Request(
            gantry.endpoint + "/", data=b" " * size, method="POST",
            headers={"X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListClusters",
                     "Content-Type": "application/x-amz-json-1.1"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=60)
        return e.value.code, json.loads(e.value.read()), e.value.headers

    status, body, headers = post(limit + 1)
    assert status == 413, body
    assert body["__type"] == "RequestEntityTooLargeException"
    assert str(limit) in body["message"]
    assert headers["x-amzn-RequestId"]
    status, body, _ = post(limit)
    assert body["__type"] == "MissingAuthenticationTokenException", (status, body)

    ecr = gantry.client("ecr")
    ecr.create_repository(repositoryName="bigpart")
    part = bytes(range(256)) * (20 * 1024 * 1024 // 256)
    assert len(part) == 20_971_520  # the model's layerPartBlob maximum
    upload = ecr.initiate_layer_upload(repositoryName="bigpart")["uploadId"]
    r = ecr.upload_layer_part(repositoryName="bigpart", uploadId=upload, partFirstByte=0,
                              partLastByte=len(part) - 1, layerPartBlob=part)
    assert r["lastByteReceived"] == len(part) - 1
    digest = "sha256:" + hashlib.sha256(part).hexdigest()
    done = ecr.complete_layer_upload(repositoryName="bigpart", uploadId=upload, layerDigests=[digest])
    assert done["layerDigest"] == digest

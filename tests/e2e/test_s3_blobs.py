"""Registry blobs in an S3-compatible bucket (`--blob-store s3://...`, a real-wire s3s-fs server)
shared by two server replicas on one etcd: docker push to one replica and pull from the other,
an upload session started on one replica and finished on the other, and bytes that only become
a blob when their digest matches."""

import base64
import hashlib
import json
import shutil
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import EtcdCluster, Gantry, S3Server, require_docker, require_etcd, require_s3s
from images import build_busybox_image, docker


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require_etcd()
    require_s3s()
    base = tmp_path_factory.mktemp("s3")
    etcd = EtcdCluster(base, 1).start()
    s3 = S3Server(base)
    args = ["--store", etcd.url("s3-blobs"), "--blob-store", s3.url("registry")]
    one = Gantry(base / "one").start(args, extra_env=s3.env())
    two = Gantry(base / "two", one.access_key, one.secret_key)
    two.data_dir.mkdir()
    for name in ("master-key", "registry-token-secret"):
        shutil.copy2(one.data_dir / name, two.data_dir / name)
    two.start(args, extra_env=s3.env())
    yield one, two, s3
    one.stop()
    two.stop()
    s3.stop()
    etcd.stop()


def request(g: Gantry, method: str, path: str, password: str, data: bytes | None = None, headers=None):
    req = urllib.request.Request(f"{g.endpoint}{path}", data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(f"AWS:{password}".encode()).decode())
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def test_upload_session_moves_between_replicas_and_digest_gates_visibility(cluster):
    one, two, s3 = cluster
    repo = f"moves-{uuid.uuid4().hex[:8]}"
    one.aws("ecr", "create-repository", "--repository-name", repo)
    password = one.aws("ecr", "get-login-password").stdout.strip()

    # Started on one, first chunk on two, last chunk on one, committed on two.
    status, headers, _ = request(one, "POST", f"/v2/{repo}/blobs/uploads/", password)
    assert status == 202, status
    location = headers["location"]
    path = location.split("://", 1)[-1].split("/", 1)[-1] if "://" in location else location.lstrip("/")
    path = "/" + path
    part1, part2 = b"a" * 70000, b"b" * 1234
    status, headers, _ = request(two, "PATCH", path, password, part1,
                                 {"Content-Type": "application/octet-stream", "Content-Range": f"0-{len(part1) - 1}"})
    assert status == 202, status
    status, headers, _ = request(one, "PATCH", path, password, part2,
                                 {"Content-Type": "application/octet-stream",
                                  "Content-Range": f"{len(part1)}-{len(part1) + len(part2) - 1}"})
    assert status == 202, status
    assert headers["range"] == f"0-{len(part1) + len(part2) - 1}"

    # A wrong digest ends the session and stores nothing.
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    status, _, body = request(two, "PUT", f"{path}{'&' if '?' in path else '?'}digest={wrong}", password, b"")
    assert status == 400 and b"DIGEST_INVALID" in body, (status, body)
    assert request(one, "HEAD", f"/v2/{repo}/blobs/{wrong}", password)[0] == 404

    # Again, with the right digest: visible from both replicas, stored in the bucket.
    status, headers, _ = request(two, "POST", f"/v2/{repo}/blobs/uploads/", password)
    loc = headers["location"]
    path = "/" + loc.split("://", 1)[-1].split("/", 1)[-1] if "://" in loc else loc
    request(one, "PATCH", path, password, part1, {"Content-Type": "application/octet-stream"})
    digest = "sha256:" + hashlib.sha256(part1 + part2).hexdigest()
    status, _, body = request(two, "PUT", f"{path}{'&' if '?' in path else '?'}digest={digest}", password, part2)
    assert status == 201, (status, body)
    for g in (one, two):
        status, _, body = request(g, "GET", f"/v2/{repo}/blobs/{digest}", password)
        assert status == 200 and body == part1 + part2
    stored = s3.dir / s3.bucket / "registry" / "blobs" / "sha256" / digest.split(":")[1]
    assert stored.read_bytes() == part1 + part2
    assert not (one.data_dir / "registry" / "blobs" / "sha256").exists() or not any(
        (one.data_dir / "registry" / "blobs" / "sha256").iterdir())


def test_docker_push_to_one_replica_pull_from_the_other(cluster, tmp_path):
    require_docker()
    one, two, _ = cluster
    repo = f"replicas-{uuid.uuid4().hex[:8]}"
    one.aws("ecr", "create-repository", "--repository-name", repo)
    local = build_busybox_image(tmp_path, f"gantry-e2e-etcd/{repo}:src", page="pushed to one\n")
    pushed = f"{one.registry}/{repo}:v1"
    pulled = f"{two.registry}/{repo}:v1"
    try:
        for g in (one, two):
            password = g.aws("ecr", "get-login-password").stdout.strip()
            docker("login", "--username", "AWS", "--password-stdin", g.registry, input=password)
        docker("tag", local, pushed)
        push = docker("push", pushed)
        digest = next(w for w in push.stdout.split() if w.startswith("sha256:"))
        described = two.aws_json("ecr", "describe-images", "--repository-name", repo)["imageDetails"]
        assert [d["imageDigest"] for d in described] == [digest]
        docker("pull", pulled)
        run = docker("run", "--rm", pulled, "cat", "/www/index.html")
        assert run.stdout == "pushed to one\n"
        inspect = json.loads(docker("image", "inspect", pulled).stdout)[0]
        assert f"{two.registry}/{repo}@{digest}" in inspect["RepoDigests"]
    finally:
        docker("rmi", "-f", pushed, pulled, local, check=False)

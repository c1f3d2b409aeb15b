"""Fixtures that start the real `gantry` binary on port 0 and drive it with real AWS clients."""

import atexit
import fcntl
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"


def _own_docker_config() -> None:
    """Gives this pytest process (each xdist worker) its own docker CLI config directory.

    `docker login` reads config.json, adds its registry and writes the whole file back, so two workers
    logging in to their servers at once could each drop the other's credentials (a later push then
    fails with "no basic auth credentials"). Plugins of the user's config stay reachable.
    """
    original = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    own = Path(tempfile.mkdtemp(prefix="gantry-e2e-docker-"))
    if (original / "cli-plugins").is_dir():
        (own / "cli-plugins").symlink_to(original / "cli-plugins")
    os.environ["DOCKER_CONFIG"] = str(own)
    atexit.register(shutil.rmtree, own, True)


_own_docker_config()


def gantry_binary() -> str:
    path = os.environ.get("GANTRY_BIN") or str(ROOT / "target" / "debug" / "gantry")
    if not Path(path).exists():
        raise RuntimeError(f"gantry binary not found at {path}: run `cargo build -p gantry` first")
    return path


class Gantry:
    """One running `gantry server` with its own data dir, port and root credentials."""

    def __init__(self, data_dir: Path, access_key: str | None = None, secret_key: str | None = None):
        self.data_dir = data_dir
        self.access_key = access_key or "AKIA" + secrets.token_hex(8).upper()
        self.secret_key = secret_key or secrets.token_urlsafe(30)
        self.proc: subprocess.Popen | None = None
        self.endpoint = ""
        self.registry = ""

    def start(self, extra_args=(), timeout=30.0, listen="127.0.0.1:0", extra_env=None):
        ready = self.data_dir.parent / f"{self.data_dir.name}.ready.json"
        if ready.exists():
            ready.unlink()
        env = dict(os.environ)
        env.update(extra_env or {})
        env.update(
            GANTRY_ROOT_ACCESS_KEY_ID=self.access_key,
            GANTRY_ROOT_SECRET_ACCESS_KEY=self.secret_key,
            GANTRY_LOG=os.environ.get("GANTRY_LOG", "warn"),
        )
        self.log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")
        self.proc = subprocess.Popen(
            [gantry_binary(), "server", "--data-dir", str(self.data_dir), "--listen", listen,
             "--ready-file", str(ready), *extra_args],
            env=env, stdout=self.log, stderr=self.log,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready.exists():
                info = json.loads(ready.read_text())
                self.endpoint = info["endpoint"]
                self.registry = info["registry"]
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"gantry exited with {self.proc.returncode}; see {self.log.name}")
            time.sleep(0.02)
        raise RuntimeError("gantry did not become ready in time")

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
        return self.proc.returncode if self.proc else None

    def env(self) -> dict:
        """Environment for the plain `aws` CLI, exactly what `gantry up` prints."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ENDPOINT_URL=self.endpoint,
            AWS_ACCESS_KEY_ID=self.access_key,
            AWS_SECRET_ACCESS_KEY=self.secret_key,
            AWS_REGION=REGION,
            AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE="/dev/null",
            AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        )
        return env

    def client(self, service: str, **kw):
        cfg = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})
        return boto3.client(
            service,
            endpoint_url=kw.pop("endpoint_url", self.endpoint),
            region_name=kw.pop("region_name", REGION),
            aws_access_key_id=kw.pop("aws_access_key_id", self.access_key),
            aws_secret_access_key=kw.pop("aws_secret_access_key", self.secret_key),
            config=kw.pop("config", cfg),
            **kw,
        )

    def aws(self, *args, check=True, input=None) -> subprocess.CompletedProcess:
        """Runs the real AWS CLI against this server."""
        # The pip-installed AWS CLI v1 (honours AWS_ENDPOINT_URL), as `aws` would run it.
        p = subprocess.run([sys.executable, "-m", "awscli", *args], env=self.env(), capture_output=True, text=True, input=input,
                           timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def aws_json(self, *args):
        return json.loads(self.aws(*args, "--output", "json").stdout or "{}")


@pytest.fixture(scope="session", autouse=True)
def _no_task_containers_left(tmp_path_factory):
    """After this pytest process's last test, removes the task containers of every agent it started.

    A test that kills an agent (a lost host) or stops it leaves that host's containers behind, as a
    stopped ECS agent does. Each agent's checkpoint under this process's temp dir names its container
    instance, and Gantry labels each task container with it, so the containers of the other worker's
    agents, which may still be running tests, are not touched.
    """
    yield
    if shutil.which("docker") is None:
        return
    instances = set()
    for checkpoint in tmp_path_factory.getbasetemp().rglob("agent-checkpoint.json"):
        try:
            instances.add(json.loads(checkpoint.read_text())["containerInstanceArn"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    listed = subprocess.run(["docker", "ps", "-a", "--filter", "label=com.amazonaws.ecs.task-arn",
                             "--format", '{{.ID}} {{.Label "gantry.container-instance"}}'],
                            capture_output=True, text=True, timeout=60).stdout
    ours = [line.split()[0] for line in listed.splitlines() if len(line.split()) == 2 and line.split()[1] in instances]
    if ours:
        subprocess.run(["docker", "rm", "-f", *ours], capture_output=True, timeout=300)


@pytest.fixture
def gantry(tmp_path):
    g = Gantry(tmp_path / "data").start()
    yield g
    g.stop()


@pytest.fixture
def ecs(gantry):
    return gantry.client("ecs")


def default_subnets(gantry, count=2):
    """Ids of the default VPC's subnets in the first `count` zones (an application load balancer
    needs two zones)."""
    subnets = gantry.client("ec2").describe_subnets(
        Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    subnets.sort(key=lambda s: s["AvailabilityZone"])
    return [s["SubnetId"] for s in subnets[:count]]


def error_of(call, *args, **kw):
    """(HTTP status, error code, message) of a call that must fail."""
    with pytest.raises(ClientError) as e:
        call(*args, **kw)
    err = e.value.response["Error"]
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"], err["Code"], err["Message"]


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def require_docker():
    """Skips loudly without Docker; fails when GANTRY_REQUIRE_DOCKER=1 (CI)."""
    if docker_available():
        return
    if os.environ.get("GANTRY_REQUIRE_DOCKER") == "1":
        pytest.fail("Docker is required (GANTRY_REQUIRE_DOCKER=1) but is not available")
    print("SKIPPED: Docker is not available on this machine")
    pytest.skip("SKIPPED: Docker is not available on this machine")


def require_network_powers():
    """Docker plus what awsvpc tasks need from the host: iptables with root powers, Docker's
    DOCKER-USER chain, bridged traffic through iptables. Skips loudly without them; fails when
    GANTRY_REQUIRE_DOCKER=1 (CI)."""
    require_docker()
    problems = []
    p = subprocess.run(["iptables", "--wait", "-S", "DOCKER-USER"], capture_output=True, text=True)
    if p.returncode != 0:
        problems.append(f"iptables -S DOCKER-USER failed (root and Docker's iptables rules needed): {p.stderr.strip()}")
    try:
        if Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text().strip() != "1":
            problems.append("net.bridge.bridge-nf-call-iptables is not 1")
    except OSError as e:
        problems.append(f"br_netfilter is not loaded: {e}")
    if not problems:
        return
    msg = "awsvpc tests need root network powers: " + "; ".join(problems)
    if os.environ.get("GANTRY_REQUIRE_DOCKER") == "1":
        pytest.fail(msg)
    print("SKIPPED: " + msg)
    pytest.skip("SKIPPED: " + msg)


LOCKS = Path("/tmp/gantry-test-vpc-blocks")


@pytest.fixture
def vpc_block():
    """A /20 no other test on this machine uses while this one runs (Docker refuses two networks
    with overlapping blocks): 10.128.0.0/20 ... 10.191.240.0/20, held by a file lock that is
    released when the test ends or its process dies."""
    LOCKS.mkdir(exist_ok=True)
    start = random.randrange(1024)
    for k in range(1024):
        i = (start + k) % 1024
        f = open(LOCKS / f"{i}.lock", "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        try:
            yield f"10.{128 + i // 16}.{(i % 16) * 16}.0/20"
        finally:
            f.close()
        return
    raise RuntimeError("no free VPC block for the test")


def remove_subnet_networks(block):
    """Removes the Docker networks Gantry made for subnets inside `block` (after a test)."""
    import ipaddress
    net = ipaddress.ip_network(block)
    ids = subprocess.run(["docker", "network", "ls", "-q", "--filter", "label=gantry.subnet-id"],
                         capture_output=True, text=True).stdout.split()
    for nid in ids:
        info = subprocess.run(["docker", "network", "inspect", nid], capture_output=True, text=True)
        if info.returncode != 0:
            continue
        for cfg in (json.loads(info.stdout)[0].get("IPAM", {}).get("Config") or []):
            if cfg.get("Subnet") and ipaddress.ip_network(cfg["Subnet"]).subnet_of(net):
                subprocess.run(["docker", "network", "rm", nid], capture_output=True)


def free_port() -> int:
    """A loopback port that is free now, for a server started next.

    Chosen below the kernel's ephemeral range (32768 and up), so an outgoing connection (etcd
    members talk to each other constantly) cannot take it as its source port between this check
    and the server's bind, as a port from bind(0) can."""
    import socket
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port in 20000-32000")


def require_etcd():
    """Skips loudly without the etcd binary; fails when GANTRY_REQUIRE_ETCD=1 (scripts/test)."""
    if shutil.which("etcd"):
        return
    if os.environ.get("GANTRY_REQUIRE_ETCD") == "1":
        pytest.fail("etcd is required (GANTRY_REQUIRE_ETCD=1) but is missing: apt-get install etcd-server")
    print("SKIPPED: etcd is not installed (apt-get install etcd-server)")
    pytest.skip("SKIPPED: etcd is not installed")


class EtcdCluster:
    """`n` real etcd members on free loopback ports, each with its data in `base`."""

    def __init__(self, base: Path, n: int = 1):
        self.base = base
        self.names = [f"m{i}" for i in range(n)]
        self.client_ports = [free_port() for _ in range(n)]
        self.peer_ports = [free_port() for _ in range(n)]
        self.procs: list[subprocess.Popen | None] = [None] * n
        self.initial = ",".join(f"{name}=http://127.0.0.1:{p}" for name, p in zip(self.names, self.peer_ports))

    def spawn(self, i: int):
        client = f"http://127.0.0.1:{self.client_ports[i]}"
        peer = f"http://127.0.0.1:{self.peer_ports[i]}"
        log = open(self.base / f"etcd-{self.names[i]}.log", "ab")
        self.procs[i] = subprocess.Popen(
            ["etcd", "--name", self.names[i], "--data-dir", str(self.base / f"etcd-{self.names[i]}"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", self.initial, "--initial-cluster-state", "new",
             "--heartbeat-interval", "50", "--election-timeout", "500"],
            stdout=log, stderr=log,
        )

    def start(self):
        for i in range(len(self.names)):
            self.spawn(i)
        self.wait_healthy()
        return self

    def healthy(self, i: int) -> bool:
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.client_ports[i]}/health", timeout=2) as r:
                return b'"health":"true"' in r.read()
        except OSError:
            return False

    def wait_healthy(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        for i, proc in enumerate(self.procs):
            if proc is None:
                continue
            while not self.healthy(i):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd member {self.names[i]} did not become healthy")
                time.sleep(0.05)

    def kill(self, i: int):
        proc = self.procs[i]
        if proc is not None:
            proc.kill()
            proc.wait()
            self.procs[i] = None

    def stop(self):
        for i in range(len(self.procs)):
            self.kill(i)

    def url(self, prefix="gantry") -> str:
        return "etcd://" + ",".join(f"127.0.0.1:{p}" for p in self.client_ports) + "/" + prefix


def require_s3s():
    """Skips loudly without s3s-fs (the real-wire S3 server of the tests); fails when
    GANTRY_REQUIRE_S3=1 (scripts/test installs it)."""
    if shutil.which("s3s-fs"):
        return
    if os.environ.get("GANTRY_REQUIRE_S3") == "1":
        pytest.fail("s3s-fs is required (GANTRY_REQUIRE_S3=1) but is missing: "
                    "cargo install s3s-fs --version 0.14.1 --features binary --locked")
    print("SKIPPED: s3s-fs is not installed")
    pytest.skip("SKIPPED: s3s-fs is not installed")


class S3Server:
    """A real-wire S3 server (s3s-fs) on a free loopback port, serving buckets from a temp dir."""

    def __init__(self, base: Path, bucket: str = "gantry-blobs"):
        self.dir = base / "s3"
        self.bucket = bucket
        (self.dir / bucket).mkdir(parents=True)
        self.access_key = "S3" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_urlsafe(24)
        self.log_path = base / "s3s-fs.log"
        self.log = open(self.log_path, "ab")
        # A port can still be lost to another server between free_port() and s3s-fs's bind: the
        # process then exits at once, and a new port is tried.
        for _attempt in range(5):
            self.port = free_port()
            self.proc = subprocess.Popen(
                # `--name=value`: a random key may begin with '-', which would read as a flag.
                ["s3s-fs", "--host", "127.0.0.1", "--port", str(self.port), f"--access-key={self.access_key}",
                 f"--secret-key={self.secret_key}", str(self.dir)],
                stdout=self.log, stderr=self.log,
            )
            if self._wait_listening():
                return
        self.log.close()
        raise RuntimeError("s3s-fs did not start: " + self.log_path.read_text(errors="replace")[-2000:])

    def _wait_listening(self) -> bool:
        import socket
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                if self.proc.poll() is not None:
                    return False
                if time.monotonic() > deadline:
                    self.proc.kill()
                    self.proc.wait()
                    return False
                time.sleep(0.02)

    def url(self, prefix="registry") -> str:
        return f"s3://{self.bucket}/{prefix}?endpoint=http://127.0.0.1:{self.port}&region=us-east-1"

    def env(self) -> dict:
        """Credentials for the server, through the standard chain's environment variables."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


@pytest.fixture
def private_registry(tmp_path):
    """Debian's docker-registry on loopback with htpasswd (bcrypt) authentication: a dict with
    its `host`, `user`, `password`, and `stop()`, which stops it before the test ends."""
    import socket
    import uuid
    require_docker()
    binary = shutil.which("docker-registry")
    htpasswd = shutil.which("htpasswd")
    if not binary or not htpasswd:
        if os.environ.get("GANTRY_REQUIRE_DOCKER") == "1":
            pytest.fail("docker-registry and htpasswd are required (apt-get install docker-registry apache2-utils)")
        pytest.skip("docker-registry or htpasswd missing")
    user, password = "puller", f"pw-{uuid.uuid4().hex}"
    root = tmp_path / "registry2"
    root.mkdir()
    auth = root / "htpasswd"
    auth.write_text(subprocess.run([htpasswd, "-Bbn", user, password], check=True, capture_output=True,
                                   text=True).stdout)
    for _ in range(5):
        port = free_port()
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
            f"auth:\n  htpasswd:\n    realm: gantry-e2e\n    path: {auth}\n")
        log = open(root / "registry.log", "ab")
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        up = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    up = True
                    break
            except OSError:
                time.sleep(0.05)
        if up:
            break
        proc.kill()
        proc.wait()
        log.close()
    else:
        raise AssertionError(f"docker-registry did not start: {(root / 'registry.log').read_text()[-2000:]}")

    def stop():
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)

    try:
        yield {"host": f"127.0.0.1:{port}", "user": user, "password": password, "stop": stop}
    finally:
        stop()
        log.close()

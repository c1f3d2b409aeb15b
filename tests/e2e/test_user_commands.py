"""The `gantry` user commands (ps, services, logs, deploy, scale, status, env, push) and the
server's health probes, against a running server and agent on real Docker. Output is checked
as text: tab-separated when piped, aligned (and coloured unless NO_COLOR) on a terminal."""

import os
import pty
import select
import subprocess
import time
import urllib.request
import uuid

import pytest

from conftest import Gantry, gantry_binary, require_docker
from images import build_busybox_image, docker
from test_agent_tasks import Agent, wait_until

CLUSTER = "cli"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One server, one agent, a busybox image pushed with `gantry push`, and a service `ticker`
    of two tasks printing a numbered line every second to awslogs."""
    require_docker()
    tmp = tmp_path_factory.mktemp("cli")
    g = Gantry(tmp / "data").start()
    agent = None
    local = build_busybox_image(tmp, f"gantry-console/ticker-{uuid.uuid4().hex[:8]}:v1")
    try:
        ecs = g.client("ecs")
        ecs.create_cluster(clusterName=CLUSTER)
        agent = Agent(g, CLUSTER, tmp / "agent").start()
        wait_until(lambda: ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"], what="agent")
        p = gantry(g, "push", local, "--repository", "ticker")
        assert p.returncode == 0, p.stderr
        uri = f"{g.registry}/ticker"
        assert "created repository ticker" in p.stdout and f"pushed {uri}:v1" in p.stdout, p.stdout
        ecs.register_task_definition(family="ticker", containerDefinitions=[{
            "name": "app", "image": f"{uri}:v1", "memory": 32, "essential": True, "stopTimeout": 1,
            "command": ["/bin/sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done"],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/ecs/ticker", "awslogs-stream-prefix": "cli", "awslogs-create-group": "true"}},
        }])
        ecs.create_service(cluster=CLUSTER, serviceName="ticker", taskDefinition="ticker", desiredCount=2)
        ecs.get_waiter("services_stable").wait(cluster=CLUSTER, services=["ticker"],
                                               WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        yield g, uri, local
    finally:
        ecs = g.client("ecs")
        for s in ecs.list_services(cluster=CLUSTER)["serviceArns"]:
            ecs.delete_service(cluster=CLUSTER, service=s, force=True)
        tasks = ecs.list_tasks(cluster=CLUSTER)["taskArns"]
        for t in tasks:
            ecs.stop_task(cluster=CLUSTER, task=t)
        if tasks and agent:
            # The agent stops the containers; a stopped agent leaves them running, as ECS's does.
            ecs.get_waiter("tasks_stopped").wait(cluster=CLUSTER, tasks=tasks[:100],
                                                 WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        if agent:
            agent.stop()
        g.stop()
        docker("rmi", "-f", local, f"{g.registry}/ticker:v1", f"{g.registry}/ticker:v2", check=False)


def gantry(g, *args, extra_env=None, timeout=180):
    """Runs a user command with the standard AWS environment, stdout piped."""
    env = g.env()
    env.update(extra_env or {})
    return subprocess.run([gantry_binary(), *args], env=env, capture_output=True, text=True, timeout=timeout)


def on_terminal(g, *args, extra_env=None, timeout=60):
    """Runs a user command with stdout on a pseudo-terminal; returns what it printed."""
    env = g.env()
    env.pop("NO_COLOR", None)
    env["TERM"] = "xterm"
    env.update(extra_env or {})
    master, slave = pty.openpty()
    p = subprocess.Popen([gantry_binary(), *args], env=env, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    p.wait(timeout=10)
    os.close(master)
    assert p.returncode == 0, p.stderr.read()
    return out.decode().replace("\r\n", "\n")


def test_health_probes_answer_without_credentials_and_reveal_nothing(env):
    g, _, _ = env
    for path, body in (("/healthz", "ok\n"), ("/readyz", "ready\n")):
        with urllib.request.urlopen(g.endpoint + path, timeout=10) as r:
            assert r.status == 200
            assert r.read().decode() == body
            assert r.headers["Cache-Control"] == "no-store"


def test_env_prints_the_exports_again(env, tmp_path):
    g, _, _ = env
    p = gantry(g, "env", "--data-dir", str(g.data_dir),
               extra_env={"GANTRY_ROOT_ACCESS_KEY_ID": g.access_key, "GANTRY_ROOT_SECRET_ACCESS_KEY": g.secret_key})
    assert p.returncode == 0, p.stderr
    assert f"export AWS_ENDPOINT_URL={g.endpoint}\n" in p.stdout
    assert f"export AWS_ACCESS_KEY_ID={g.access_key}\n" in p.stdout
    assert f"export AWS_SECRET_ACCESS_KEY={g.secret_key}\n" in p.stdout
    assert "export AWS_REGION=us-east-1\n" in p.stdout
    missing = gantry(g, "env", "--data-dir", str(tmp_path / "nothing"))
    assert missing.returncode != 0 and "gantry up" in missing.stderr


def test_ps_and_services_piped_and_on_a_terminal(env):
    g, _, _ = env
    p = gantry(g, "ps", "--cluster", CLUSTER)
    assert p.returncode == 0, p.stderr
    assert "\x1b" not in p.stdout
    lines = p.stdout.splitlines()
    assert lines[0].split("\t") == ["TASK", "CLUSTER", "GROUP", "DEFINITION", "STATUS", "HEALTH", "AGE", "PORTS"]
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == 2, p.stdout
    assert all(r[1] == CLUSTER and r[2] == "service:ticker" and r[3] == "ticker:1" and r[4] == "RUNNING"
               for r in rows), rows
    # Every cluster when none is named.
    assert len(gantry(g, "ps").stdout.splitlines()) >= 3

    s = gantry(g, "services")
    assert s.returncode == 0, s.stderr
    rows = [line.split("\t") for line in s.stdout.splitlines()]
    assert rows[0][:6] == ["SERVICE", "CLUSTER", "STATUS", "DESIRED", "RUNNING", "PENDING"]
    assert ["ticker", CLUSTER, "ACTIVE", "2", "2", "0", "ticker:1", "COMPLETED"] in rows, rows

    coloured = on_terminal(g, "ps", "--cluster", CLUSTER)
    assert "\x1b[1mTASK\x1b[0m" in coloured and "\x1b[32mRUNNING\x1b[0m" in coloured, coloured
    plain = on_terminal(g, "ps", "--cluster", CLUSTER, extra_env={"NO_COLOR": "1"})
    assert "\x1b" not in plain and "\t" not in plain
    header, first = plain.splitlines()[:2]
    # Columns are aligned: each starts at the same offset in the header and the rows.
    assert header.index("CLUSTER") == first.index(CLUSTER + " ")
    assert header.index("STATUS") == first.index("RUNNING")


def test_logs_of_a_service_and_following_a_task(env):
    g, _, _ = env
    ecs = g.client("ecs")

    def some_lines():
        p = gantry(g, "logs", "ticker")
        return p.returncode == 0 and "tick" in p.stdout and p
    p = wait_until(some_lines, timeout=60, interval=1, what="logs of the service")
    assert "\x1b" not in p.stdout
    first = p.stdout.splitlines()[0]
    assert first.startswith("app/") and " | tick " in first, first

    task = ecs.list_tasks(cluster=CLUSTER, serviceName="ticker")["taskArns"][0]
    task_id = task.rsplit("/", 1)[1]
    seen = [int(line.split()[-1]) for line in gantry(g, "logs", task_id).stdout.splitlines() if line.startswith("tick")]
    assert seen, "no lines of the task"
    follow = subprocess.Popen([gantry_binary(), "logs", "-f", task_id], env=g.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        newer = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and newer is None:
            line = follow.stdout.readline()
            if line.startswith("tick") and int(line.split()[-1]) > max(seen):
                newer = line
        assert newer, "no new line while following"
    finally:
        follow.terminate()
        follow.wait(timeout=10)


def test_scale_deploy_and_status(env):
    g, uri, local = env
    p = gantry(g, "scale", "ticker", "3", "--wait")
    assert p.returncode == 0, p.stderr
    assert "service ticker: desired count 2 -> 3" in p.stdout
    assert "service ticker runs 3 tasks" in p.stdout

    docker("tag", local, f"{local}-v2")
    p = gantry(g, "push", f"{local}-v2", "--repository", "ticker")
    assert p.returncode == 0, p.stderr
    tag = local.rsplit(":", 1)[1] + "-v2"
    p = gantry(g, "deploy", "ticker", "--image", f"{uri}:{tag}")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "registered ticker:2 (was ticker:1)" in p.stdout, p.stdout
    assert "rollout" in p.stdout
    assert p.stdout.rstrip().endswith("service ticker is stable on ticker:2"), p.stdout
    s = g.client("ecs").describe_services(cluster=CLUSTER, services=["ticker"])["services"][0]
    assert s["taskDefinition"].endswith("ticker:2") and s["runningCount"] == 3
    td = g.client("ecs").describe_task_definition(taskDefinition="ticker:2")["taskDefinition"]
    assert td["containerDefinitions"][0]["image"] == f"{uri}:{tag}"
    assert td["containerDefinitions"][0]["logConfiguration"]["options"]["awslogs-group"] == "/ecs/ticker"

    bad = gantry(g, "deploy", "ticker", "--image", "a=b")
    assert bad.returncode != 0 and "has no container a" in bad.stderr

    st = gantry(g, "status")
    assert st.returncode == 0, st.stderr
    assert "health: ok" in st.stdout and "store:  ready" in st.stdout, st.stdout
    rows = [line.split("\t") for line in st.stdout.splitlines()]
    assert any(r[0] == CLUSTER and r[1] == "ACTIVE" and r[2] == "1" for r in rows), st.stdout
    assert any(len(r) == 8 and r[1] == CLUSTER and r[3] == "connected" for r in rows), st.stdout
    assert "load balancers:" in st.stdout


def test_missing_credentials_and_endpoint_are_named(env):
    g, _, _ = env
    p = subprocess.run([gantry_binary(), "ps"], capture_output=True, text=True, timeout=30,
                       env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"})
    assert p.returncode != 0 and "no endpoint" in p.stderr
    p = subprocess.run([gantry_binary(), "ps"], capture_output=True, text=True, timeout=30,
                       env={"PATH": os.environ["PATH"], "HOME": "/nonexistent", "AWS_ENDPOINT_URL": g.endpoint})
    assert p.returncode != 0 and "no credentials" in p.stderr
    wrong = gantry(g, "ps", extra_env={"AWS_SECRET_ACCESS_KEY": "wrong"})
    assert wrong.returncode != 0 and "InvalidSignatureException" in wrong.stderr, wrong.stderr

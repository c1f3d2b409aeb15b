#!/usr/bin/env python3
"""Agent CPU with 50 tasks sampled: a real `gantry agent` runs 50 sleeping busybox tasks and
samples their usage through the Docker stats API every `--usage-interval` (default 60 s, ECS's
one-minute metrics); its CPU time (utime + stime from /proc) is read over WINDOW seconds once
every task is RUNNING, along with its RSS. The server runs on the same machine but is not counted.

Usage: scripts/bench-agent-usage.sh (builds release binaries, then runs this).
Environment: WINDOW (seconds, default 180), USAGE_INTERVAL (seconds, default 60), TASKS (50)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import botocore.config

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ.get("GANTRY_BIN", str(ROOT / "target" / "release" / "gantry"))
WINDOW = int(os.environ.get("WINDOW", "180"))
USAGE_INTERVAL = int(os.environ.get("USAGE_INTERVAL", "60"))
TASKS = int(os.environ.get("TASKS", "50"))
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    # Fields after the command name (which may hold spaces): utime is field 14, stime 15.
    rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICKS


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def machine_busy():
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


def main():
    tmp = Path(tempfile.mkdtemp(prefix="gantry-bench-agent-", dir="/var/tmp"))
    procs = []
    cluster = f"bench-agent-usage-{os.getpid()}"
    tag = f"gantry-bench/busybox-usage:{os.getpid()}"
    try:
        ctx = tmp / "img"
        ctx.mkdir(parents=True)
        shutil.copy(shutil.which("busybox") or "/bin/busybox", ctx / "busybox")
        (ctx / "Dockerfile").write_text('FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n')
        subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True)

        env = dict(os.environ, GANTRY_ROOT_ACCESS_KEY_ID="AKIABENCHAGENTUSAGE1", GANTRY_ROOT_SECRET_ACCESS_KEY="bench-secret",
                   GANTRY_LOG="warn")
        ready = tmp / "ready.json"
        server = subprocess.Popen([BIN, "server", "--data-dir", str(tmp / "data"), "--listen", "127.0.0.1:0",
                                   "--ready-file", str(ready)], env=env, stderr=open(tmp / "server.log", "w"))
        procs.append(server)
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline, "server not ready"
            time.sleep(0.05)
        endpoint = json.loads(ready.read_text())["endpoint"]
        agent = subprocess.Popen([BIN, "agent", "--endpoint", endpoint, "--cluster", cluster,
                                  "--data-dir", str(tmp / "agent"), "--usage-interval", str(USAGE_INTERVAL)],
                                 env=env, stderr=open(tmp / "agent.log", "w"))
        procs.append(agent)
        ecs = boto3.client("ecs", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id=env["GANTRY_ROOT_ACCESS_KEY_ID"],
                           aws_secret_access_key=env["GANTRY_ROOT_SECRET_ACCESS_KEY"],
                           config=botocore.config.Config(retries={"max_attempts": 1}))
        ecs.create_cluster(clusterName=cluster)
        deadline = time.monotonic() + 60
        while not ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]:
            assert time.monotonic() < deadline, "agent not registered"
            time.sleep(0.1)
        ecs.register_task_definition(family="usage", containerDefinitions=[
            {"name": "c", "image": tag, "memory": 8, "command": ["sleep", "3600"], "stopTimeout": 1}])
        arns = []
        while len(arns) < TASKS:
            run = ecs.run_task(cluster=cluster, taskDefinition="usage", count=min(10, TASKS - len(arns)))
            assert not run["failures"], run["failures"]
            arns += [t["taskArn"] for t in run["tasks"]]
        deadline = time.monotonic() + 300
        while True:
            ts = []
            for i in range(0, len(arns), 100):
                ts += ecs.describe_tasks(cluster=cluster, tasks=arns[i:i + 100])["tasks"]
            if all(t["lastStatus"] == "RUNNING" for t in ts):
                break
            assert not any(t["lastStatus"] == "STOPPED" for t in ts), "a task stopped"
            assert time.monotonic() < deadline, "tasks not RUNNING within 300 s"
            time.sleep(0.5)
        # Let the starts settle, then measure whole sampling intervals.
        time.sleep(10)
        c0, b0, t0 = cpu_seconds(agent.pid), machine_busy(), time.monotonic()
        time.sleep(WINDOW)
        c1, b1, t1 = cpu_seconds(agent.pid), machine_busy(), time.monotonic()
        elapsed = t1 - t0
        busy = (b1[0] - b0[0]) / max(1, b1[1] - b0[1]) * 100
        print(f"tasks: {len(arns)} RUNNING on one agent, --usage-interval {USAGE_INTERVAL} s, window {elapsed:.0f} s")
        print(f"agent CPU: {c1 - c0:.2f} s in {elapsed:.0f} s = {(c1 - c0) / elapsed * 100:.2f} % of one core (target <= 2 %)")
        print(f"agent RSS: {rss_kib(agent.pid) / 1024:.1f} MiB; machine busy {busy:.0f} % of all cores during the window")
        for a in arns:
            ecs.stop_task(cluster=cluster, task=a)
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.amazonaws.ecs.cluster={cluster}"],
                             capture_output=True, text=True).stdout.split()
        if out:
            subprocess.run(["docker", "rm", "-f", *out], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

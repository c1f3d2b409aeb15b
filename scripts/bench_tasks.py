#!/usr/bin/env python3
"""Task-start benchmark: RunTask → RUNNING through a real `gantry agent` against a plain
`docker run` of the same cached image, in one run; 50 tasks on one agent; idle RSS.

Usage: scripts/bench-tasks.sh (builds release binaries, then runs this)."""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import botocore.config

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ.get("GANTRY_BIN", str(ROOT / "target" / "release" / "gantry"))
SAMPLES = int(os.environ.get("SAMPLES", "20"))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    tmp = Path(tempfile.mkdtemp(prefix="gantry-bench-tasks-", dir="/var/tmp"))
    procs = []
    tag = f"gantry-bench/busybox:{os.getpid()}"
    try:
        ctx = tmp / "img"
        (ctx / "www").mkdir(parents=True)
        shutil.copy("/bin/busybox", ctx / "busybox")
        (ctx / "www" / "index.html").write_text("bench\n")
        (ctx / "Dockerfile").write_text('FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nCOPY www /www\n')
        subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True)

        env = dict(os.environ, GANTRY_ROOT_ACCESS_KEY_ID="AKIABENCHTASKS000001", GANTRY_ROOT_SECRET_ACCESS_KEY="bench-secret",
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
        agent = subprocess.Popen([BIN, "agent", "--endpoint", endpoint, "--cluster", "bench",
                                  "--data-dir", str(tmp / "agent")], env=env, stderr=open(tmp / "agent.log", "w"))
        procs.append(agent)
        ecs = boto3.client("ecs", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id=env["GANTRY_ROOT_ACCESS_KEY_ID"],
                           aws_secret_access_key=env["GANTRY_ROOT_SECRET_ACCESS_KEY"],
                           config=botocore.config.Config(retries={"max_attempts": 1}))
        ecs.create_cluster(clusterName="bench")
        while not ecs.list_container_instances(cluster="bench")["containerInstanceArns"]:
            time.sleep(0.05)
        ecs.register_task_definition(family="bench", containerDefinitions=[
            {"name": "c", "image": tag, "memory": 16, "command": ["sleep", "600"], "stopTimeout": 1}])

        def wait_running(arns):
            while True:
                ts = ecs.describe_tasks(cluster="bench", tasks=arns)["tasks"]
                if all(t["lastStatus"] == "RUNNING" for t in ts):
                    return
                if any(t["lastStatus"] == "STOPPED" for t in ts):
                    raise RuntimeError(f"task stopped: {ts[0].get('stoppedReason')}")
                time.sleep(0.01)

        gantry_s, docker_s = [], []
        for _ in range(SAMPLES):
            # Interleaved: one docker run, one RunTask.
            t0 = time.perf_counter()
            cid = subprocess.run(["docker", "run", "-d", "--rm", tag, "sleep", "600"], check=True,
                                 capture_output=True, text=True).stdout.strip()
            docker_s.append(time.perf_counter() - t0)
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
            t0 = time.perf_counter()
            arn = ecs.run_task(cluster="bench", taskDefinition="bench")["tasks"][0]["taskArn"]
            wait_running([arn])
            gantry_s.append(time.perf_counter() - t0)
            ecs.stop_task(cluster="bench", task=arn)
        time.sleep(2)

        t0 = time.perf_counter()
        arns = []
        for _ in range(5):
            arns += [t["taskArn"] for t in ecs.run_task(cluster="bench", taskDefinition="bench", count=10)["tasks"]]
        for i in range(0, len(arns), 100):
            wait_running(arns[i:i + 100])
        fifty = time.perf_counter() - t0
        for a in arns:
            ecs.stop_task(cluster="bench", task=a)
        ecs.get_waiter("tasks_stopped").wait(cluster="bench", tasks=arns[:100], WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        time.sleep(5)
        agent_rss = rss_kib(agent.pid)
        server_rss = rss_kib(server.pid)

        p50g, p99g = statistics.median(gantry_s), pct(gantry_s, 99)
        p50d, p99d = statistics.median(docker_s), pct(docker_s, 99)
        print(f"samples: {SAMPLES} (interleaved)")
        print("| measure | p50 | p99 |")
        print("|---|---:|---:|")
        print(f"| `docker run -d` (cached image) | {p50d*1000:.0f} ms | {p99d*1000:.0f} ms |")
        print(f"| RunTask → RUNNING (cached image) | {p50g*1000:.0f} ms | {p99g*1000:.0f} ms |")
        print(f"| ratio p50 (target ≤ 1.3×) | {p50g/p50d:.2f}× | |")
        print(f"50 tasks on one agent: RunTask ×5 (count 10) → all RUNNING in {fifty:.2f} s")
        print(f"idle RSS: agent {agent_rss/1024:.1f} MiB (target ≤ 20), server {server_rss/1024:.1f} MiB (target ≤ 50)")
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        out = subprocess.run(["docker", "ps", "-aq", "--filter", "label=com.amazonaws.ecs.cluster=bench"],
                             capture_output=True, text=True).stdout.split()
        if out:
            subprocess.run(["docker", "rm", "-f", *out], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

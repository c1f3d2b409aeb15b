#!/usr/bin/env python3
"""Fargate benchmarks, in one run (docs/benchmarks.md, "Fargate"):

(a) placement: `gantry server` with 200 simulated platform hosts (`gantry simulate --fargate-pool`,
    3 zones, tasks acknowledged at once), then 1,000 Fargate tasks through RunTask (count 10,
    8 calls in flight) over the three default subnets, until all are RUNNING: errors, time, the
    spread over zones;
(b) task start: `gantry server --fargate-local` (this machine's Docker Engine as the platform
    host), RunTask (FARGATE, 256 CPU / 512 MiB) → RUNNING against `docker run -d` of the same
    cached image in a network namespace of its own on a user-defined bridge with the same limits
    (0.25 CPU, 512 MiB, pids limit, no-new-privileges), interleaved.

Usage: scripts/bench-fargate.sh (builds release binaries, then runs this). Needs root with
Docker and iptables (awsvpc tasks), as the e2e tests of Fargate do."""

import ipaddress
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import botocore.config

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ.get("GANTRY_BIN", str(ROOT / "target" / "release" / "gantry"))
SAMPLES = int(os.environ.get("SAMPLES", "20"))
TASKS = int(os.environ.get("BENCH_FARGATE_TASKS", "1000"))
HOSTS = int(os.environ.get("BENCH_FARGATE_HOSTS", "200"))
# The default VPC of the task-start server: a block no other network on this machine uses.
VPC_BLOCK = os.environ.get("BENCH_FARGATE_VPC", "10.200.0.0/20")
KEY, SECRET = "AKIABENCHFARGATE0001", "bench-fargate-secret"
# Which part to run: all, placement or start.
PART = os.environ.get("BENCH_FARGATE_PART", "all")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def wait_for(fn, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    raise RuntimeError(f"{what} not reached in {timeout}s")


def start_server(tmp, name, extra):
    env = dict(os.environ, GANTRY_ROOT_ACCESS_KEY_ID=KEY, GANTRY_ROOT_SECRET_ACCESS_KEY=SECRET,
               GANTRY_LOG=os.environ.get("BENCH_LOG", "warn"))
    ready = tmp / f"{name}-ready.json"
    p = subprocess.Popen([BIN, "server", "--data-dir", str(tmp / name), "--listen", "127.0.0.1:0",
                          "--ready-file", str(ready), *extra], env=env, stderr=open(tmp / f"{name}.log", "w"))
    wait_for(lambda: ready.exists() and ready.read_text().strip(), 30, "server ready")
    endpoint = json.loads(ready.read_text())["endpoint"]
    return p, endpoint, env


def clients(endpoint):
    cfg = botocore.config.Config(retries={"max_attempts": 1}, max_pool_connections=16)
    mk = lambda s: boto3.client(s, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY,
                                aws_secret_access_key=SECRET, config=cfg)
    return mk("ecs"), mk("ec2")


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def td(family, image, command):
    return {"family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "256",
            "memory": "512", "containerDefinitions": [{"name": "app", "image": image, "essential": True,
                                                       "stopTimeout": 1, "command": command}]}


def placement(tmp):
    server, endpoint, env = start_server(tmp, "placement", [])
    sim = None
    try:
        log = tmp / "sim.log"
        t0 = time.monotonic()
        sim = subprocess.Popen([BIN, "simulate", "--endpoint", endpoint, "--fargate-pool", "sim",
                                "--instances", str(HOSTS), "--seed", "3"], env=dict(env, GANTRY_LOG="info"),
                               stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        wait_for(lambda: "all simulated instances registered and connected" in log.read_text(errors="replace"),
                 300, f"{HOSTS} simulated platform hosts", interval=0.2)
        connect_s = time.monotonic() - t0
        ecs, ec2 = clients(endpoint)
        ecs.create_cluster(clusterName="bench-fargate")
        ecs.register_task_definition(**td("bench", "busybox", ["sleep", "600"]))
        subnets = [s["SubnetId"] for s in ec2.describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]]
        net = {"awsvpcConfiguration": {"subnets": subnets}}
        latencies = []

        def run(_):
            c0 = time.perf_counter()
            r = ecs.run_task(cluster="bench-fargate", taskDefinition="bench", count=10, launchType="FARGATE",
                             networkConfiguration=net)
            latencies.append(time.perf_counter() - c0)
            return r["tasks"], r["failures"]
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(run, range(TASKS // 10)))
        placed_s = time.monotonic() - t0
        failures = [f for _, fs in results for f in fs]
        arns = [t["taskArn"] for ts, _ in results for t in ts]

        def described():
            out = []
            for i in range(0, len(arns), 100):
                out += ecs.describe_tasks(cluster="bench-fargate", tasks=arns[i:i + 100])["tasks"]
            return out
        wait_for(lambda: all(t["lastStatus"] == "RUNNING" for t in described()), 300, "all RUNNING", interval=0.5)
        running_s = time.monotonic() - t0
        tasks = described()
        zones = {}
        for t in tasks:
            zones[t["availabilityZone"]] = zones.get(t["availabilityZone"], 0) + 1
        instances = ecs.list_container_instances(cluster="bench-fargate")["containerInstanceArns"]
        return {
            "hosts": HOSTS, "connect_s": connect_s, "tasks": len(arns), "failures": len(failures),
            "running": sum(t["lastStatus"] == "RUNNING" and t["launchType"] == "FARGATE" for t in tasks),
            "placed_s": placed_s, "running_s": running_s, "zones": dict(sorted(zones.items())),
            "call_p50_ms": statistics.median(latencies) * 1000, "call_p99_ms": pct(latencies, 99) * 1000,
            "cluster_instances": len(instances),
        }
    finally:
        if sim:
            stop(sim)
        stop(server)


def task_start(tmp):
    tag = f"gantry-bench/fargate-busybox:{os.getpid()}"
    ctx = tmp / "img"
    ctx.mkdir()
    shutil.copy("/bin/busybox", ctx / "busybox")
    (ctx / "Dockerfile").write_text('FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n')
    subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True)
    block = ipaddress.ip_network(VPC_BLOCK)
    bench_net = f"gantry-bench-fargate-{os.getpid()}"
    # The docker side's own bridge, in the last /24 of the block (the default subnets use the first /24s).
    last = list(block.subnets(new_prefix=24))[-1]
    subprocess.run(["docker", "network", "create", "--subnet", str(last), "--label", "gantry-bench=fargate",
                    bench_net], check=True, capture_output=True)
    server, endpoint, _ = start_server(tmp, "start", ["--fargate-local", "--default-vpc-cidr", VPC_BLOCK])
    try:
        ecs, ec2 = clients(endpoint)
        ecs.create_cluster(clusterName="bench-start")
        ecs.register_task_definition(**td("start", tag, ["sleep", "600"]))
        subnet = wait_for(lambda: ec2.describe_subnets(Filters=[
            {"Name": "default-for-az", "Values": ["true"]},
            {"Name": "availability-zone", "Values": ["us-east-1a"]}])["Subnets"], 60, "a default subnet")[0]
        net = {"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]]}}

        def wait_running(arn):
            while True:
                t = ecs.describe_tasks(cluster="bench-start", tasks=[arn])["tasks"][0]
                if t["lastStatus"] == "RUNNING":
                    return
                if t["lastStatus"] == "STOPPED":
                    raise RuntimeError(f"task stopped: {t.get('stoppedReason')}")
                time.sleep(0.01)

        def fargate_once():
            t0 = time.perf_counter()
            sent = time.time()
            r = ecs.run_task(cluster="bench-start", taskDefinition="start", launchType="FARGATE",
                             networkConfiguration=net)
            answered = time.time()
            if r["failures"]:
                raise RuntimeError(r["failures"])
            arn = r["tasks"][0]["taskArn"]
            wait_running(arn)
            took = time.perf_counter() - t0
            if os.environ.get("BENCH_KEEP_LOGS") == "1":
                # Client-side times (epoch seconds) to lay beside the server's log.
                with open(tmp / "timeline.jsonl", "a") as f:
                    f.write(json.dumps({"task": arn, "sent": sent, "answered": answered,
                                        "running_seen": time.time()}) + "\n")
            ecs.stop_task(cluster="bench-start", task=arn)
            return took, arn

        # The first task of a subnet creates its Docker network: not a start to time.
        _, warm = fargate_once()
        gantry_s, docker_s, arns = [], [], [warm]
        for _ in range(SAMPLES):
            t0 = time.perf_counter()
            cid = subprocess.run(["docker", "run", "-d", "--network", bench_net, "--cpus", "0.25", "--memory", "512m",
                                  "--pids-limit", "4096", "--security-opt", "no-new-privileges", tag, "sleep", "600"],
                                 check=True, capture_output=True, text=True).stdout.strip()
            docker_s.append(time.perf_counter() - t0)
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
            took, arn = fargate_once()
            gantry_s.append(took)
            arns.append(arn)
        for i in range(0, len(arns), 100):
            ecs.get_waiter("tasks_stopped").wait(cluster="bench-start", tasks=arns[i:i + 100],
                                                 WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        return {"samples": SAMPLES, "docker_p50_ms": statistics.median(docker_s) * 1000,
                "docker_p99_ms": pct(docker_s, 99) * 1000, "fargate_p50_ms": statistics.median(gantry_s) * 1000,
                "fargate_p99_ms": pct(gantry_s, 99) * 1000,
                "ratio_p50": statistics.median(gantry_s) / statistics.median(docker_s)}
    finally:
        stop(server)
        env = dict(os.environ, GANTRY_ROOT_ACCESS_KEY_ID=KEY, GANTRY_ROOT_SECRET_ACCESS_KEY=SECRET)
        # The platform host's leftovers (pause containers, subnet networks, its iptables rules).
        subprocess.run([BIN, "agent", "--endpoint", "http://127.0.0.1:9", "--data-dir", str(tmp / "start" / "fargate-agent"),
                        "--uninstall"], env=env, capture_output=True, timeout=120)
        subprocess.run(["docker", "network", "rm", bench_net], capture_output=True)
        for nid in subprocess.run(["docker", "network", "ls", "-q", "--filter", "label=gantry.subnet-id"],
                                  capture_output=True, text=True).stdout.split():
            info = subprocess.run(["docker", "network", "inspect", nid], capture_output=True, text=True)
            cfgs = json.loads(info.stdout)[0].get("IPAM", {}).get("Config") or [] if info.returncode == 0 else []
            if any(c.get("Subnet") and ipaddress.ip_network(c["Subnet"]).subnet_of(block) for c in cfgs):
                subprocess.run(["docker", "network", "rm", nid], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def main():
    tmp = Path(tempfile.mkdtemp(prefix="gantry-bench-fargate-", dir="/var/tmp"))
    try:
        a = placement(tmp) if PART in ("all", "placement") else None
        b = task_start(tmp) if PART in ("all", "start") else None
    finally:
        if os.environ.get("BENCH_KEEP_LOGS") == "1":
            print(f"server logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if a:
        print_placement(a)
    if b:
        print_start(b)
    return 0 if a is None or (a["failures"] == 0 and a["running"] == TASKS) else 1


def print_placement(a):
    print(f"(a) {a['tasks']} Fargate tasks on {a['hosts']} simulated platform hosts "
          f"(registered and connected in {a['connect_s']:.1f} s):")
    print(f"    failures {a['failures']}, RUNNING {a['running']}, container instances in the user cluster "
          f"{a['cluster_instances']}")
    print(f"    RunTask calls (count 10, 8 in flight) done in {a['placed_s']:.1f} s, all RUNNING after "
          f"{a['running_s']:.1f} s; call p50 {a['call_p50_ms']:.0f} ms, p99 {a['call_p99_ms']:.0f} ms")
    print(f"    tasks per zone: {a['zones']}")


def print_start(b):
    print(f"(b) task start, {b['samples']} samples interleaved:")
    print("| measure | p50 | p99 |")
    print("|---|---:|---:|")
    print(f"| `docker run -d` (own network namespace on a bridge, 0.25 CPU, 512 MiB) | {b['docker_p50_ms']:.0f} ms "
          f"| {b['docker_p99_ms']:.0f} ms |")
    print(f"| RunTask FARGATE → RUNNING (256/512) | {b['fargate_p50_ms']:.0f} ms | {b['fargate_p99_ms']:.0f} ms |")
    print(f"| ratio p50 (target ≤ 1.5×) | {b['ratio_p50']:.2f}× | |")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    sys.exit(main())

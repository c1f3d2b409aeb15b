#!/usr/bin/env python3
"""Rolling deployment on real Docker: a 10-task busybox httpd service on one local agent,
UpdateService to a new revision → one COMPLETED deployment with 10 running. Prints seconds.

Usage: scripts/bench-deploy-docker.sh (builds the release binary, then runs this)."""

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
TASKS = int(os.environ.get("TASKS", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))


def main():
    tmp = Path(tempfile.mkdtemp(prefix="gantry-bench-deploy-", dir="/var/tmp"))
    tag = f"gantry-bench/deploy:{os.getpid()}"
    procs = []
    try:
        ctx = tmp / "img"
        (ctx / "www").mkdir(parents=True)
        shutil.copy("/bin/busybox", ctx / "busybox")
        (ctx / "www" / "index.html").write_text("ok\n")
        (ctx / "Dockerfile").write_text('FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nCOPY www /www\n')
        subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True)
        env = dict(os.environ, GANTRY_ROOT_ACCESS_KEY_ID="AKIABENCHDEPLOY00001", GANTRY_ROOT_SECRET_ACCESS_KEY="s", GANTRY_LOG="warn")
        ready = tmp / "ready.json"
        procs.append(subprocess.Popen([BIN, "server", "--data-dir", str(tmp / "data"), "--listen", "127.0.0.1:0",
                                       "--ready-file", str(ready)], env=env, stderr=open(tmp / "server.log", "w")))
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        endpoint = json.loads(ready.read_text())["endpoint"]
        procs.append(subprocess.Popen([BIN, "agent", "--endpoint", endpoint, "--cluster", "deploy", "--data-dir",
                                       str(tmp / "agent")], env=env, stderr=open(tmp / "agent.log", "w")))
        ecs = boto3.client("ecs", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id=env["GANTRY_ROOT_ACCESS_KEY_ID"], aws_secret_access_key="s",
                           config=botocore.config.Config(retries={"max_attempts": 1}))
        ecs.create_cluster(clusterName="deploy")
        while not ecs.list_container_instances(cluster="deploy")["containerInstanceArns"]:
            time.sleep(0.05)

        def td(v):
            return ecs.register_task_definition(family="web", containerDefinitions=[{
                "name": "web", "image": tag, "memory": 16, "stopTimeout": 2,
                "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                "environment": [{"name": "V", "value": str(v)}],
                "portMappings": [{"containerPort": 8080, "hostPort": 0}]}])["taskDefinition"]["revision"]

        def done(rev):
            s = ecs.describe_services(cluster="deploy", services=["web"])["services"][0]
            d = s["deployments"]
            return (len(d) == 1 and d[0]["taskDefinition"].endswith(f":{rev}") and d[0]["rolloutState"] == "COMPLETED"
                    and s["runningCount"] == TASKS)

        rev = td(0)
        t0 = time.perf_counter()
        ecs.create_service(cluster="deploy", serviceName="web", taskDefinition=f"web:{rev}", desiredCount=TASKS)
        while not done(rev):
            time.sleep(0.05)
        print(f"CreateService → {TASKS} running, COMPLETED: {time.perf_counter() - t0:.2f} s")
        times = []
        for r in range(1, ROUNDS + 1):
            rev = td(r)
            t0 = time.perf_counter()
            ecs.update_service(cluster="deploy", service="web", taskDefinition=f"web:{rev}")
            while not done(rev):
                time.sleep(0.05)
            times.append(time.perf_counter() - t0)
            print(f"round {r}: UpdateService → one COMPLETED deployment with {TASKS} running: {times[-1]:.2f} s")
        print(f"RESULT tasks={TASKS} rounds={ROUNDS} median_s={sorted(times)[len(times)//2]:.2f} max_s={max(times):.2f}")
        ecs.update_service(cluster="deploy", service="web", desiredCount=0)
        ecs.delete_service(cluster="deploy", service="web")
        time.sleep(5)
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        out = subprocess.run(["docker", "ps", "-aq", "--filter", "label=com.amazonaws.ecs.cluster=deploy"],
                             capture_output=True, text=True).stdout.split()
        if out:
            subprocess.run(["docker", "rm", "-f", *out], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""A seeded, bounded fault test of the scaled-out control plane: three `gantry server` replicas on a
3-member etcd cluster and an S3-compatible bucket, simulated container instances and simulated
Fargate hosts given all three endpoints. Each round runs concurrent RunTask, StopTask,
CreateService, RegisterTaskDefinition, Fargate RunTask and `docker push` against random live
replicas while one replica, the leader replica or one etcd member (chosen by the seed) is killed
with SIGKILL, then brings it back. Afterwards: every acknowledged write is present, no instance is over-committed, no
two live tasks hold the same host port on one instance or the same IP, and every service converges
to its desired count.

GANTRY_FAULT_ROUNDS (default 5) and GANTRY_FAULT_SEED (default 21) change the run; the seed, the
rounds and the operation counts are printed, so a failing run can be repeated. The seed fixes
what is killed and when, and each worker's sequence of operations; how many operations fit in a
round's four seconds depends on the machine."""

import os
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid

import botocore.exceptions

from conftest import EtcdCluster, Gantry, S3Server, gantry_binary, require_docker, require_etcd, require_s3s
from images import build_busybox_image, docker
from test_agent_tasks import wait_until
from test_three_replicas import leader_endpoint

PREFIX = "three"  # the etcd prefix `leader_endpoint` reads
CLUSTER = "fault"
FARGATE_CLUSTER = "fault-fargate"
INSTANCES = 8
RUN_PORT = 8080
RUN_CPU, RUN_MEMORY = 1024, 1024
SVC_CPU, SVC_MEMORY = 256, 256
ROUND_SECONDS = 4.0


def run_td():
    """Standalone tasks: one static host port, a large share of an instance."""
    return {"family": "fault-run", "containerDefinitions": [{
        "name": "c", "image": "busybox", "cpu": RUN_CPU, "memory": RUN_MEMORY, "essential": True,
        "portMappings": [{"containerPort": 80, "hostPort": RUN_PORT}]}]}


def svc_td(port):
    """A service's tasks: a static host port of their own, so two on one instance would clash."""
    return {"family": f"fault-svc-{port}", "containerDefinitions": [{
        "name": "c", "image": "busybox", "cpu": SVC_CPU, "memory": SVC_MEMORY, "essential": True,
        "portMappings": [{"containerPort": 80, "hostPort": port}]}]}


def fargate_td():
    return {"family": "fault-fargate", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
            "cpu": "256", "memory": "512",
            "containerDefinitions": [{"name": "app", "image": "busybox", "essential": True}]}


class Ledger:
    """What the control plane acknowledged, and how many operations were tried."""

    def __init__(self):
        self.lock = threading.Lock()
        self.tried = {}
        self.acked = {}
        self.task_defs: list[str] = []
        self.tasks: list[str] = []
        self.stopped: list[str] = []
        self.fargate: list[str] = []
        self.services: dict[str, int] = {}
        self.images: dict[str, str] = {}

    def count(self, op, ok):
        with self.lock:
            self.tried[op] = self.tried.get(op, 0) + 1
            if ok:
                self.acked[op] = self.acked.get(op, 0) + 1


def unavailable(e: Exception) -> bool:
    """Errors a killed replica or etcd member may cause: no answer, or a retryable 5xx."""
    if isinstance(e, botocore.exceptions.ClientError):
        return e.response["ResponseMetadata"]["HTTPStatusCode"] >= 500
    return isinstance(e, (botocore.exceptions.BotoCoreError, OSError))


def sim_env(g: Gantry) -> dict:
    return dict(os.environ, GANTRY_ROOT_ACCESS_KEY_ID=g.access_key, GANTRY_ROOT_SECRET_ACCESS_KEY=g.secret_key,
                GANTRY_LOG="info")


def all_pages(fn, key, **kw):
    out, token = [], None
    while True:
        page = fn(**kw, **({"nextToken": token} if token else {}))
        out += page[key]
        token = page.get("nextToken")
        if not token:
            return out


def describe_all_tasks(ecs, cluster, arns):
    found, missing = [], []
    for i in range(0, len(arns), 100):
        r = ecs.describe_tasks(cluster=cluster, tasks=arns[i:i + 100])
        found += r["tasks"]
        missing += [f["arn"] for f in r["failures"]]
    return found, missing


def describe_services(ecs, names):
    out = []
    for i in range(0, len(names), 10):
        out += ecs.describe_services(cluster=CLUSTER, services=names[i:i + 10])["services"]
    return out


def test_seeded_fault_rounds(tmp_path):
    require_docker()
    require_etcd()
    require_s3s()
    rounds = int(os.environ.get("GANTRY_FAULT_ROUNDS", "5"))
    seed = int(os.environ.get("GANTRY_FAULT_SEED", "21"))
    rng = random.Random(seed)
    print(f"fault rounds: seed={seed} rounds={rounds}")

    etcd = EtcdCluster(tmp_path, 3).start()
    s3 = S3Server(tmp_path)
    args = ["--store", etcd.url(PREFIX), "--blob-store", s3.url("registry"),
            "--heartbeat-grace", "60", "--lost-after", "300"]
    replicas = [Gantry(tmp_path / "r1").start(args, extra_env=s3.env())]
    for name in ("r2", "r3"):
        g = Gantry(tmp_path / name, replicas[0].access_key, replicas[0].secret_key)
        g.data_dir.mkdir()
        for f in ("master-key", "registry-token-secret"):
            shutil.copy2(replicas[0].data_dir / f, g.data_dir / f)
        replicas.append(g.start(args, extra_env=s3.env()))
    endpoints = ",".join(g.endpoint for g in replicas)
    sims = []
    repo = f"fault-{uuid.uuid4().hex[:8]}"
    local_images: list[str] = []
    ledger = Ledger()
    alive = set(range(3))
    alive_lock = threading.Lock()

    def live_replica(r: random.Random) -> Gantry:
        with alive_lock:
            return replicas[r.choice(sorted(alive))]

    try:
        wait_until(lambda: leader_endpoint(etcd, [0, 1, 2]), what="a leader")
        r1 = replicas[0]
        ecs = r1.client("ecs")
        ecs.create_cluster(clusterName=CLUSTER)
        ecs.create_cluster(clusterName=FARGATE_CLUSTER)
        for kind in (["--cluster", CLUSTER], ["--fargate-pool", "fault"]):
            log = tmp_path / f"sim-{kind[1]}.log"
            sims.append(subprocess.Popen(
                [gantry_binary(), "simulate", "--endpoint", endpoints, *kind, "--instances", str(INSTANCES),
                 "--seed", str(seed)], env=sim_env(r1), stdout=open(log, "wb"), stderr=subprocess.STDOUT))
        wait_until(lambda: len(all_pages(ecs.list_container_instances, "containerInstanceArns", cluster=CLUSTER))
                   == INSTANCES, timeout=60, what="simulated instances registered")
        subnets = [s["SubnetId"] for s in r1.client("ec2").describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]]
        ecs.register_task_definition(**run_td())
        ecs.register_task_definition(**fargate_td())
        r1.aws("ecr", "create-repository", "--repository-name", repo)
        for g in replicas:
            docker("login", "--username", "AWS", "--password-stdin", g.registry,
                   input=g.aws("ecr", "get-login-password").stdout.strip())
        # One image with a layer of its own per round: each push uploads a new blob.
        for k in range(rounds):
            local_images.append(build_busybox_image(tmp_path / f"img{k}", f"gantry-e2e-fault/{repo}:r{k}",
                                                    page=f"round {k} {uuid.uuid4()}\n"))

        def worker(wseed: int, round_no: int, deadline: float):
            r = random.Random(wseed)
            n = 0
            while time.monotonic() < deadline:
                g = live_replica(r)
                c = g.client("ecs")
                op = r.choice(["register", "run", "run", "stop", "fargate"])
                n += 1
                try:
                    if op == "register":
                        out = c.register_task_definition(family="fault-acked", containerDefinitions=[{
                            "name": "c", "image": "busybox", "memory": 64,
                            "environment": [{"name": "N", "value": f"{wseed}-{n}"}]}])
                        with ledger.lock:
                            ledger.task_defs.append(out["taskDefinition"]["taskDefinitionArn"])
                    elif op == "run":
                        out = c.run_task(cluster=CLUSTER, taskDefinition="fault-run", count=r.randint(1, 2))
                        with ledger.lock:
                            ledger.tasks += [t["taskArn"] for t in out["tasks"]]
                    elif op == "stop":
                        with ledger.lock:
                            running = [t for t in ledger.tasks if t not in ledger.stopped]
                        if not running:
                            continue
                        arn = r.choice(running)
                        c.stop_task(cluster=CLUSTER, task=arn, reason="fault test")
                        with ledger.lock:
                            ledger.stopped.append(arn)
                    elif op == "fargate":
                        out = c.run_task(cluster=FARGATE_CLUSTER, taskDefinition="fault-fargate", launchType="FARGATE",
                                         networkConfiguration={"awsvpcConfiguration": {"subnets": subnets}})
                        with ledger.lock:
                            ledger.fargate += [t["taskArn"] for t in out["tasks"]]
                    ledger.count(op, True)
                except Exception as e:  # noqa: BLE001 - only unavailability is expected
                    ledger.count(op, False)
                    assert unavailable(e), f"{op} failed with an unexpected error: {e!r}"
                    time.sleep(0.2)

        def create_service(wseed: int, round_no: int):
            r = random.Random(wseed)
            port = 9000 + round_no
            name, desired = f"svc-{round_no}", r.randint(1, 3)
            for _ in range(20):
                c = live_replica(r).client("ecs")
                try:
                    c.register_task_definition(**svc_td(port))
                    c.create_service(cluster=CLUSTER, serviceName=name, taskDefinition=f"fault-svc-{port}",
                                     desiredCount=desired)
                    ledger.count("create-service", True)
                    with ledger.lock:
                        ledger.services[name] = desired
                    return
                except botocore.exceptions.ClientError as e:
                    if "not idempotent" in str(e):
                        # An earlier attempt applied but its answer was lost: not acknowledged.
                        ledger.count("create-service", False)
                        return
                    ledger.count("create-service", False)
                    assert unavailable(e), f"CreateService failed with an unexpected error: {e!r}"
                except Exception as e:  # noqa: BLE001
                    ledger.count("create-service", False)
                    assert unavailable(e), f"CreateService failed with an unexpected error: {e!r}"
                time.sleep(0.3)

        def push(wseed: int, round_no: int):
            r = random.Random(wseed)
            g = live_replica(r)
            remote = f"{g.registry}/{repo}:r{round_no}"
            docker("tag", local_images[round_no], remote)
            p = docker("push", remote, check=False, timeout=90)
            ok = p.returncode == 0
            ledger.count("docker-push", ok)
            if ok:
                digest = next((w for w in p.stdout.split() if w.startswith("sha256:")), None)
                assert digest, p.stdout
                with ledger.lock:
                    ledger.images[f"r{round_no}"] = digest
            docker("rmi", remote, check=False)

        faults = []
        for k in range(rounds):
            kind = rng.choice(["replica", "leader", "etcd"])
            victim = rng.randrange(3)
            kill_after = rng.uniform(0.5, ROUND_SECONDS - 1.0)
            deadline = time.monotonic() + ROUND_SECONDS
            threads = [threading.Thread(target=worker, args=(rng.randrange(2**32), k, deadline)) for _ in range(3)]
            threads.append(threading.Thread(target=create_service, args=(rng.randrange(2**32), k)))
            threads.append(threading.Thread(target=push, args=(rng.randrange(2**32), k)))
            failures = []

            def guarded(t):
                orig = t._target

                def run(*a):
                    try:
                        orig(*a)
                    except BaseException as e:  # noqa: BLE001 - reported after the round
                        failures.append(e)
                t._target = run
                return t
            for t in threads:
                guarded(t).start()
            time.sleep(kill_after)
            leader_kill = kind == "leader"
            if leader_kill:
                # The replica running the controllers (when one is elected right now).
                leader = leader_endpoint(etcd, [0, 1, 2])
                victim = next((i for i, g in enumerate(replicas) if g.endpoint == leader), victim)
                kind = "replica"
            if kind == "replica":
                with alive_lock:
                    alive.discard(victim)
                replicas[victim].stop(sig=signal.SIGKILL)
            else:
                etcd.kill(victim)
            faults.append(f"{'leader ' if leader_kill else ''}{kind}{victim}@{kill_after:.1f}s")
            for t in threads:
                t.join(timeout=150)
                assert not t.is_alive(), "an operation did not finish"
            assert not failures, failures
            # Bring the victim back, on the same port (the simulators know these endpoints).
            if kind == "replica":
                g = replicas[victim]
                g.start(args, listen=g.endpoint.removeprefix("http://"), extra_env=s3.env())
                with alive_lock:
                    alive.add(victim)
            else:
                etcd.spawn(victim)
                etcd.wait_healthy()
        ops = sum(ledger.tried.values())
        print(f"fault rounds: {rounds} rounds, faults {faults}; {ops} operations tried, "
              f"{sum(ledger.acked.values())} acknowledged: tried {ledger.tried}, acknowledged {ledger.acked}")

        # Every acknowledged write is present, read through every replica.
        wait_until(lambda: leader_endpoint(etcd, [0, 1, 2]), what="a leader after the rounds")
        for g in replicas:
            c = g.client("ecs")
            arns = set(all_pages(c.list_task_definitions, "taskDefinitionArns", familyPrefix="fault-acked"))
            assert set(ledger.task_defs) <= arns, set(ledger.task_defs) - arns
        found, missing = describe_all_tasks(ecs, CLUSTER, ledger.tasks)
        assert missing == [], missing
        stopped = {t["taskArn"] for t in found if t["desiredStatus"] == "STOPPED"}
        assert set(ledger.stopped) <= stopped, set(ledger.stopped) - stopped
        _, missing = describe_all_tasks(ecs, FARGATE_CLUSTER, ledger.fargate)
        assert missing == [], missing
        described = {s["serviceName"]: s for s in describe_services(ecs, list(ledger.services))}
        for name, desired in ledger.services.items():
            assert described[name]["status"] == "ACTIVE" and described[name]["desiredCount"] == desired, name
        ecr = replicas[2].client("ecr")
        for tag, digest in ledger.images.items():
            img = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": tag}])["imageDetails"][0]
            assert img["imageDigest"] == digest, (tag, img)

        def check_placement():
            """No instance over-committed, no host port held twice on an instance, no IP twice."""
            insts = ecs.describe_container_instances(cluster=CLUSTER, containerInstances=all_pages(
                ecs.list_container_instances, "containerInstanceArns", cluster=CLUSTER))["containerInstances"]
            arns = all_pages(ecs.list_tasks, "taskArns", cluster=CLUSTER)
            live = [t for t in describe_all_tasks(ecs, CLUSTER, arns)[0] if t["lastStatus"] != "STOPPED"]
            for inst in insts:
                mine = [t for t in live if t.get("containerInstanceArn") == inst["containerInstanceArn"]]
                reg = {r["name"]: r.get("integerValue") for r in inst["registeredResources"]}
                cpu = sum(RUN_CPU if ":task-definition/fault-run:" in t["taskDefinitionArn"] else SVC_CPU
                          for t in mine)
                mem = sum(RUN_MEMORY if ":task-definition/fault-run:" in t["taskDefinitionArn"] else SVC_MEMORY
                          for t in mine)
                assert cpu <= reg["CPU"] and mem <= reg["MEMORY"], (inst["containerInstanceArn"], cpu, mem, reg)
                remaining = {r["name"]: r.get("integerValue") for r in inst["remainingResources"]}
                assert remaining["CPU"] >= 0 and remaining["MEMORY"] >= 0, remaining
                ports = [RUN_PORT if ":task-definition/fault-run:" in t["taskDefinitionArn"]
                         else int(t["taskDefinitionArn"].split("fault-svc-")[1].split(":")[0]) for t in mine]
                assert len(ports) == len(set(ports)), (inst["containerInstanceArn"], sorted(ports))
            fg_arns = all_pages(ecs.list_tasks, "taskArns", cluster=FARGATE_CLUSTER)
            ips = [d["value"] for t in describe_all_tasks(ecs, FARGATE_CLUSTER, fg_arns)[0]
                   if t["lastStatus"] != "STOPPED"
                   for a in t.get("attachments", []) for d in a["details"] if d["name"] == "privateIPv4Address"]
            assert len(ips) == len(set(ips)), sorted(ips)
            return len(live), len(ips)
        live_tasks, ips = check_placement()

        # Every service (acknowledged or not) converges to its desired count once the
        # standalone tasks are gone.
        for t in describe_all_tasks(ecs, CLUSTER, all_pages(ecs.list_tasks, "taskArns", cluster=CLUSTER))[0]:
            if not t.get("group", "").startswith("service:") and t["desiredStatus"] != "STOPPED":
                ecs.stop_task(cluster=CLUSTER, task=t["taskArn"])

        services = all_pages(ecs.list_services, "serviceArns", cluster=CLUSTER)

        def converged():
            ss = describe_services(ecs, services)
            return all(s["runningCount"] == s["desiredCount"] and s["pendingCount"] == 0
                       and len(s["deployments"]) == 1 for s in ss) and ss
        if services:
            wait_until(converged, timeout=90, interval=1, what="every service at its desired count")
            for s in describe_services(ecs, services):
                running = all_pages(ecs.list_tasks, "taskArns", cluster=CLUSTER, serviceName=s["serviceName"],
                                    desiredStatus="RUNNING")
                assert len(running) == s["desiredCount"], (s["serviceName"], running)
        check_placement()
        print(f"fault rounds: {len(ledger.task_defs)} task definitions, {len(ledger.tasks)} tasks "
              f"({len(ledger.stopped)} stopped), {len(ledger.fargate)} Fargate tasks, {len(ledger.services)} "
              f"services, {len(ledger.images)} images acknowledged and found; {live_tasks} live tasks and "
              f"{ips} Fargate IPs checked")
    finally:
        for sim in sims:
            sim.send_signal(signal.SIGTERM)
            try:
                sim.wait(timeout=20)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
        for g in replicas:
            g.stop()
        s3.stop()
        etcd.stop()
        docker("rmi", "-f", *local_images, check=False)

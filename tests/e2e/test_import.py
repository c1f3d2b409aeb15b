"""`gantry import dockerrun` and `gantry import compose` against a running server and agent on real
Docker: Elastic Beanstalk's documented Dockerrun.aws.json example (two containers, a link, host
volumes from the source bundle, a log volume) runs as a service; a Compose file of three services
where one waits for another's health runs in order; bad files are refused before anything is
registered."""

import json
import subprocess
import time
import urllib.request
import uuid

import pytest

from conftest import Gantry, gantry_binary, require_docker
from images import build_busybox_image, docker
from test_agent_tasks import Agent, wait_until

CLUSTER = "import"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One server that allows host volumes under the module's temporary directory, one agent,
    and a busybox image pushed to the registry."""
    require_docker()
    tmp = tmp_path_factory.mktemp("import")
    g = Gantry(tmp / "data").start(extra_args=["--allowed-host-paths", str(tmp)])
    agent = None
    local = build_busybox_image(tmp, f"gantry-import/busybox-{uuid.uuid4().hex[:8]}:v1")
    try:
        ecs = g.client("ecs")
        ecs.create_cluster(clusterName=CLUSTER)
        agent = Agent(g, CLUSTER, tmp / "agent").start()
        wait_until(lambda: ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"], what="agent")
        p = run(g, "push", local, "--repository", "busybox")
        assert p.returncode == 0, p.stderr
        yield g, f"{g.registry}/busybox:v1", tmp
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
                                                 WaiterConfig={"Delay": 1, "MaxAttempts": 90})
        if agent:
            agent.stop()
        g.stop()
        docker("rmi", "-f", local, f"{g.registry}/busybox:v1", check=False)


def run(g, *args, timeout=240):
    """Runs `gantry ARGS` with the standard AWS environment, stdout piped."""
    return subprocess.run([gantry_binary(), *args], env=g.env(), capture_output=True, text=True, timeout=timeout)


def task_containers(task_arn):
    """Container name → `docker inspect` of the task's containers."""
    ids = docker("ps", "-aq", "--filter", f"label=com.amazonaws.ecs.task-arn={task_arn}").stdout.split()
    out = {}
    for info in json.loads(docker("inspect", *ids).stdout) if ids else []:
        out[info["Config"]["Labels"]["com.amazonaws.ecs.container-name"]] = info
    return out


def http_via(container_id, host, port, path):
    """GET http://HOST:PORT/PATH from inside a container (busybox nc: its static wget cannot
    resolve names)."""
    return docker("exec", container_id, "sh", "-c",
                  f"printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc {host} {port}", check=False).stdout


def started_at(info):
    return docker_time(info["State"]["StartedAt"])


def docker_time(text):
    """Docker's RFC 3339 time with nanoseconds, as seconds since the epoch."""
    base, _, frac = text.rstrip("Z").partition(".")
    return time.mktime(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) - time.timezone + float(f"0.{frac or 0}")


# Elastic Beanstalk's example (docs: "Configuring the Dockerrun.aws.json v2 file"), images
# swapped for the test's busybox and given commands in the roles of php-fpm and nginx; the host
# port is left dynamic so that tests can run side by side.
def eb_example(image):
    return {
        "AWSEBDockerrunVersion": 2,
        "volumes": [
            {"name": "php-app", "host": {"sourcePath": "/var/app/current/php-app"}},
            {"name": "nginx-proxy-conf", "host": {"sourcePath": "/var/app/current/proxy/conf.d"}},
        ],
        "containerDefinitions": [
            {
                "name": "php-app",
                "image": image,
                "essential": True,
                "memory": 128,
                "command": ["httpd", "-f", "-p", "9000", "-h", "/var/www/html"],
                "mountPoints": [
                    {"sourceVolume": "php-app", "containerPath": "/var/www/html", "readOnly": True},
                ],
            },
            {
                "name": "nginx-proxy",
                "image": image,
                "essential": True,
                "memory": 128,
                "command": ["sh", "-c", "cat /etc/nginx/conf.d/default.conf > /var/log/nginx/started.log;"
                                        " exec httpd -f -p 80 -h /var/www/html"],
                "portMappings": [{"hostPort": 0, "containerPort": 80}],
                "links": ["php-app"],
                "mountPoints": [
                    {"sourceVolume": "php-app", "containerPath": "/var/www/html", "readOnly": True},
                    {"sourceVolume": "nginx-proxy-conf", "containerPath": "/etc/nginx/conf.d", "readOnly": True},
                    {"sourceVolume": "awseb-logs-nginx-proxy", "containerPath": "/var/log/nginx"},
                ],
            },
        ],
    }


def test_beanstalk_example_runs_with_its_link_and_volumes(env):
    g, image, tmp = env
    bundle = tmp / "eb-bundle"
    (bundle / "php-app").mkdir(parents=True)
    (bundle / "proxy" / "conf.d").mkdir(parents=True)
    (bundle / "php-app" / "index.php").write_text("<?php echo 'from the bundle'; ?>\n")
    (bundle / "proxy" / "conf.d" / "default.conf").write_text("upstream php { server php-app:9000; }\n")
    (bundle / "Dockerrun.aws.json").write_text(json.dumps(eb_example(image), indent=2))
    logs = tmp / "eb-logs"

    p = run(g, "import", "dockerrun", str(bundle / "Dockerrun.aws.json"), "--cluster", CLUSTER,
            "--family", "ebapp", "--log-dir", str(logs), "--wait")
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"volume php-app: /var/app/current/php-app is {bundle}/php-app" in p.stdout, p.stdout
    assert f"log volume awseb-logs-nginx-proxy: {logs}/nginx-proxy" in p.stdout, p.stdout
    assert "registered task definition ebapp:1 (2 containers: php-app, nginx-proxy)" in p.stdout, p.stdout
    assert "created service ebapp in cluster import: 1 x ebapp:1" in p.stdout, p.stdout
    assert p.stdout.rstrip().endswith("service ebapp is stable on ebapp:1"), p.stdout

    ecs = g.client("ecs")
    td = ecs.describe_task_definition(taskDefinition="ebapp:1")["taskDefinition"]
    assert td["networkMode"] == "bridge"
    assert {v["name"]: v["host"]["sourcePath"] for v in td["volumes"]} == {
        "php-app": f"{bundle}/php-app", "nginx-proxy-conf": f"{bundle}/proxy/conf.d",
        "awseb-logs-nginx-proxy": f"{logs}/nginx-proxy"}
    arns = ecs.list_tasks(cluster=CLUSTER, serviceName="ebapp")["taskArns"]
    assert len(arns) == 1
    task = ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"][0]
    assert task["lastStatus"] == "RUNNING"
    assert sorted((c["name"], c["lastStatus"]) for c in task["containers"]) == [
        ("nginx-proxy", "RUNNING"), ("php-app", "RUNNING")]

    ctrs = task_containers(arns[0])
    proxy, app = ctrs["nginx-proxy"], ctrs["php-app"]
    # The link target was started first, and its name resolves inside the linking container.
    assert started_at(app) <= started_at(proxy)
    answer = http_via(proxy["Id"], "php-app", 9000, "/index.php")
    assert "200 OK" in answer and "from the bundle" in answer, answer
    # Both containers see the bundle's directory, live: a file added on the host appears in both.
    (bundle / "php-app" / "added.html").write_text("added later\n")
    assert "added later" in http_via(proxy["Id"], "php-app", 9000, "/added.html")
    assert docker("exec", proxy["Id"], "cat", "/var/www/html/added.html").stdout == "added later\n"
    # The log volume is the host directory LOG_DIR/nginx-proxy.
    wait_until(lambda: (logs / "nginx-proxy" / "started.log").exists(), timeout=30, what="log file")
    assert (logs / "nginx-proxy" / "started.log").read_text() == "upstream php { server php-app:9000; }\n"
    # The dynamic host port reaches the proxy.
    port = next(b["hostPort"] for c in task["containers"] if c["name"] == "nginx-proxy"
                for b in c["networkBindings"] if b["containerPort"] == 80)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.php", timeout=10) as r:
        assert r.read().decode() == "<?php echo 'from the bundle'; ?>\n"

    # Importing again updates the service to a new revision.
    p = run(g, "import", "dockerrun", str(bundle / "Dockerrun.aws.json"), "--cluster", CLUSTER,
            "--family", "ebapp", "--log-dir", str(logs))
    assert p.returncode == 0, p.stderr
    assert "updated service ebapp in cluster import to ebapp:2" in p.stdout, p.stdout


COMPOSE = """
name: ordered
x-quick: &quick
  stop_grace_period: 1s
services:
  web:
    <<: *quick
    image: {image}
    command: ["sleep", "3600"]
    depends_on: [api]
  api:
    <<: *quick
    image: {image}
    command: httpd -f -p 8080 -h /www
    environment:
      GREETING: ${{GREETING:-hello}}
    ports: ["8080"]
    depends_on:
      db:
        condition: service_healthy
  db:
    <<: *quick
    image: {image}
    command: sh -c 'sleep 3; touch /ready; exec sleep 3600'
    healthcheck:
      test: ["CMD", "test", "-f", "/ready"]
      interval: 5s
      timeout: 2s
      retries: 3
"""


def test_compose_services_start_in_dependency_order(env):
    g, image, tmp = env
    d = tmp / "compose-ordered"
    d.mkdir()
    (d / "compose.yaml").write_text(COMPOSE.format(image=image))
    p = run(g, "import", "compose", str(d / "compose.yaml"), "--cluster", CLUSTER, "--run-task", "--wait")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "registered task definition ordered:1 (3 containers: api, db, web)" in p.stdout, p.stdout
    assert "started task " in p.stdout and p.stdout.rstrip().endswith("1 tasks RUNNING"), p.stdout

    ecs = g.client("ecs")
    td = ecs.describe_task_definition(taskDefinition="ordered:1")["taskDefinition"]
    defs = {c["name"]: c for c in td["containerDefinitions"]}
    assert defs["api"]["dependsOn"] == [{"containerName": "db", "condition": "HEALTHY"}]
    assert defs["web"]["dependsOn"] == [{"containerName": "api", "condition": "START"}]
    assert defs["db"]["healthCheck"]["command"] == ["CMD", "test", "-f", "/ready"]
    assert defs["api"]["environment"] == [{"name": "GREETING", "value": "hello"}]

    arns = [a for a in ecs.list_tasks(cluster=CLUSTER, family="ordered")["taskArns"]]
    assert len(arns) == 1
    task = ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"][0]
    assert task["lastStatus"] == "RUNNING"
    states = {c["name"]: (c["lastStatus"], c.get("healthStatus")) for c in task["containers"]}
    assert states == {"web": ("RUNNING", None), "api": ("RUNNING", None), "db": ("RUNNING", "HEALTHY")}, states

    ctrs = task_containers(arns[0])
    db, api, web = ctrs["db"], ctrs["api"], ctrs["web"]
    healthy_at = min(docker_time(entry["End"]) for entry in db["State"]["Health"]["Log"] if entry["ExitCode"] == 0)
    assert started_at(api) >= healthy_at, (api["State"]["StartedAt"], db["State"]["Health"]["Log"])
    assert started_at(api) - started_at(db) >= 3
    assert started_at(web) >= started_at(api)
    # The dependent reaches its dependency by the service name, as on Compose's network.
    answer = http_via(web["Id"], "api", 8080, "/index.html")
    assert "hello from gantry" in answer, answer


@pytest.mark.parametrize("kind,name,text,message", [
    ("dockerrun", "Dockerrun.aws.json", '{"AWSEBDockerrunVersion": 2, "containerDefinitions": [',
     "not valid JSON: EOF while parsing"),
    ("dockerrun", "Dockerrun.aws.json",
     '{"AWSEBDockerrunVersion": 2, "authentication": {"bucket": "b", "key": "k"},'
     ' "containerDefinitions": [{"name": "a", "image": "x", "memory": 8}]}',
     "authentication (a .dockercfg in Amazon S3) is not supported"),
    ("compose", "compose.yaml", "services:\n  a:\n    image: [x\n", "not valid YAML: "),
    ("compose", "compose.yaml", "services:\n  a:\n    build: .\n",
     "services.a.build is not supported: build and push the image first"),
    ("compose", "compose.yaml", "services:\n  a:\n    image: x\n    cap_add: [NET_ADMIN]\n",
     "services.a.cap_add is not supported"),
])
def test_bad_files_are_refused_and_nothing_is_registered(env, kind, name, text, message):
    g, _, tmp = env
    family = f"bad{uuid.uuid4().hex[:8]}"
    d = tmp / family
    d.mkdir()
    (d / name).write_text(text)
    p = run(g, "import", kind, str(d / name), "--cluster", CLUSTER, "--family", family)
    assert p.returncode != 0
    assert f"{d / name}: " in p.stderr and message in p.stderr, p.stderr
    assert g.client("ecs").list_task_definition_families(familyPrefix=family)["families"] == []


def test_the_server_refuses_links_outside_the_bridge_mode(env):
    g, image, tmp = env
    d = tmp / "hostlinks"
    d.mkdir()
    (d / "compose.yaml").write_text(
        f"services:\n  a:\n    image: {image}\n    network_mode: host\n    links: [b]\n"
        f"  b:\n    image: {image}\n    network_mode: host\n")
    p = run(g, "import", "compose", str(d / "compose.yaml"), "--cluster", CLUSTER, "--register-only")
    assert p.returncode != 0
    assert "ClientException: Links are not supported when networkMode=host." in p.stderr, p.stderr
    assert g.client("ecs").list_task_definition_families(familyPrefix="hostlinks")["families"] == []

"""The web console in a real browser (Debian's chromium driven by Playwright, no browser
download): an admin signs in, sees a service of 3 tasks and scales it to 5; a read-only user
is refused the same action; a task's logs follow as new lines arrive. Screenshots of the main
pages are kept in GANTRY_ARTIFACTS (default target/e2e-artifacts/console)."""

import json
import os
import re
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, Gantry, require_docker
from images import build_busybox_image, docker
from test_agent_tasks import Agent, wait_until
from test_user_commands import gantry as run_gantry

CLUSTER = "web"
CHROMIUM = "/usr/bin/chromium"


def artifacts() -> Path:
    d = Path(os.environ.get("GANTRY_ARTIFACTS") or ROOT / "target" / "e2e-artifacts") / "console"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("GANTRY_REQUIRE_DOCKER") == "1":
            pytest.fail("playwright is required in CI (tests/e2e/requirements.txt)")
        pytest.skip("SKIPPED: playwright is not installed")
    if not Path(CHROMIUM).exists():
        if os.environ.get("GANTRY_REQUIRE_DOCKER") == "1":
            pytest.fail("Debian's chromium is required in CI (scripts/test installs it)")
        pytest.skip("SKIPPED: no /usr/bin/chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_docker()
    tmp = tmp_path_factory.mktemp("console")
    g = Gantry(tmp / "data").start()
    agent = None
    local = build_busybox_image(tmp, f"gantry-console/web-{uuid.uuid4().hex[:8]}:v1")
    try:
        ecs = g.client("ecs")
        ecs.create_cluster(clusterName=CLUSTER)
        agent = Agent(g, CLUSTER, tmp / "agent").start()
        wait_until(lambda: ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"], what="agent")
        p = run_gantry(g, "push", local, "--repository", "web")
        assert p.returncode == 0, p.stderr
        ecs.register_task_definition(family="web", containerDefinitions=[{
            "name": "app", "image": f"{g.registry}/web:v1", "memory": 16, "essential": True, "stopTimeout": 1,
            "command": ["/bin/sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 1; done"],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/ecs/web", "awslogs-stream-prefix": "web", "awslogs-create-group": "true"}},
        }])
        ecs.create_service(cluster=CLUSTER, serviceName="web", taskDefinition="web", desiredCount=3)
        ecs.get_waiter("services_stable").wait(cluster=CLUSTER, services=["web"],
                                               WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        iam = g.client("iam")
        iam.create_user(UserName="viewer")
        iam.put_user_policy(UserName="viewer", PolicyName="read", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
                "ecs:Describe*", "ecs:List*", "logs:Describe*", "logs:FilterLogEvents", "logs:GetLogEvents"]}]}))
        key = iam.create_access_key(UserName="viewer")["AccessKey"]
        yield g, (key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        ecs = g.client("ecs")
        for s in ecs.list_services(cluster=CLUSTER)["serviceArns"]:
            ecs.delete_service(cluster=CLUSTER, service=s, force=True)
        for t in ecs.list_tasks(cluster=CLUSTER)["taskArns"]:
            ecs.stop_task(cluster=CLUSTER, task=t)
        if agent:
            agent.stop()
        g.stop()
        docker("rmi", "-f", local, f"{g.registry}/web:v1", check=False)


def sign_in(browser, g, key_id, secret):
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(g.endpoint + "/console/")
    assert page.url.endswith("/console/login")
    page.fill("input[name=access_key_id]", key_id)
    page.fill("input[name=secret_access_key]", secret)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/$"))
    return page


def shot(page, name):
    page.screenshot(path=str(artifacts() / f"{name}.png"), full_page=True)


def test_admin_scales_a_service_from_the_console(browser, env):
    g, _ = env
    page = sign_in(browser, g, g.access_key, g.secret_key)
    cookie = next(c for c in page.context.cookies() if c["name"] == "gantry_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    shot(page, "clusters")
    page.click(f"a[href='/console/clusters/{CLUSTER}']")
    assert page.locator("h1").inner_text() == f"Cluster {CLUSTER}"
    shot(page, "cluster")
    page.click(f"a[href='/console/clusters/{CLUSTER}/services/web']")
    assert "3 running, 0 pending, 3 desired" in page.locator("#counts").inner_text()
    shot(page, "service")
    page.fill("input[name=desired_count]", "5")
    page.click("button[value=scale]")
    assert "desired count set to 5" in page.locator("[role=status]").inner_text()

    def five_running():
        page.reload()
        return "5 running" in page.locator("#counts").inner_text()
    wait_until(five_running, timeout=90, interval=1, what="5 running in the console")
    shot(page, "service-scaled")
    for path, name in (("/console/repositories", "repositories"), ("/console/load-balancers", "load-balancers"),
                       ("/console/log-groups?group=%2Fecs%2Fweb", "log-groups")):
        page.goto(g.endpoint + path)
        assert page.locator("[role=alert]").count() == 0, page.content()
        shot(page, name)
    page.goto(g.endpoint + "/console/repositories")
    assert f"{g.registry}/web" in page.content()

    # A form without the session's CSRF token is refused.
    r = page.request.post(g.endpoint + f"/console/clusters/{CLUSTER}/services/web/scale",
                          form={"desired_count": "1"})
    assert r.status == 403
    assert g.client("ecs").describe_services(cluster=CLUSTER, services=["web"])["services"][0]["desiredCount"] == 5


def test_a_read_only_user_sees_but_is_refused_scaling(browser, env):
    g, (key_id, secret) = env
    page = sign_in(browser, g, key_id, secret)
    page.goto(g.endpoint + f"/console/clusters/{CLUSTER}/services/web")
    assert "desired" in page.locator("#counts").inner_text()
    page.fill("input[name=desired_count]", "1")
    with page.expect_response(lambda r: r.url.endswith("/scale")) as resp:
        page.click("button[value=scale]")
    assert resp.value.status == 403
    alert = page.locator("[role=alert]").inner_text()
    assert "AccessDenied" in alert and "ecs:UpdateService" in alert, alert
    shot(page, "read-only-refused")
    assert g.client("ecs").describe_services(cluster=CLUSTER, services=["web"])["services"][0]["desiredCount"] != 1


def test_a_task_page_follows_its_logs(browser, env):
    g, _ = env
    page = sign_in(browser, g, g.access_key, g.secret_key)
    task = g.client("ecs").list_tasks(cluster=CLUSTER, serviceName="web")["taskArns"][0].rsplit("/", 1)[1]
    page.goto(g.endpoint + f"/console/clusters/{CLUSTER}/tasks/{task}")
    logs = page.locator("#logs")

    def numbers():
        return [int(m) for m in re.findall(r"\| line (\d+)", logs.inner_text())]
    first = wait_until(lambda: numbers(), timeout=30, interval=0.5, what="log lines in the page")
    # A line that was not there when the page first showed some appears without a reload.
    wait_until(lambda: max(numbers()) > max(first), timeout=30, interval=0.5, what="a new log line")
    shot(page, "task-logs")

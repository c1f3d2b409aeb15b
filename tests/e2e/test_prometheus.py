"""`GET /metrics` on the server's listener: OpenMetrics text that Prometheus parsers read, behind
HTTP Basic authentication with the root key."""

import base64
import uuid
import urllib.error
import urllib.request

import pytest

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus


def scrape(gantry, user=None, password=None):
    req = urllib.request.Request(f"{gantry.endpoint}/metrics")
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers.get("Content-Type"), r.read().decode()


def test_metrics_parse_and_count_requests(gantry):
    cw, ecs = gantry.client("cloudwatch"), gantry.client("ecs")
    for _ in range(3):
        cw.put_metric_data(Namespace="App", MetricData=[{"MetricName": "M", "Value": 1.0}])
    ecs.list_clusters()
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.describe_services(cluster="absent", services=["web"])
    gantry.aws("sts", "get-caller-identity")

    for user, password in [(None, None), (gantry.access_key, "wrong"), ("AKIAUNKNOWN", gantry.secret_key)]:
        with pytest.raises(urllib.error.HTTPError) as e:
            scrape(gantry, user, password)
        assert e.value.code == 401

    ctype, text = scrape(gantry, gantry.access_key, gantry.secret_key)
    assert ctype.startswith("application/openmetrics-text")
    families = {f.name: f for f in parse_openmetrics(text)}
    requests = families["gantry_api_requests"]
    assert requests.type == "counter"
    counts = {(s.labels["service"], s.labels["operation"], s.labels["status"]): s.value
              for s in requests.samples if s.name == "gantry_api_requests_total"}
    assert counts[("GraniteServiceVersion20100801", "PutMetricData", "200")] == 3
    assert counts[("AmazonEC2ContainerServiceV20141113", "ListClusters", "200")] == 1
    assert counts[("sts", "GetCallerIdentity", "200")] == 1
    assert counts[("AmazonEC2ContainerServiceV20141113", "DescribeServices", "400")] == 1
    latency = families["gantry_api_request_duration_seconds"]
    assert latency.type == "histogram"
    put_count = [s for s in latency.samples if s.name == "gantry_api_request_duration_seconds_count"
                 and s.labels["operation"] == "PutMetricData"]
    assert put_count and put_count[0].value == 3
    # The classic Prometheus text parser reads it too.
    names = {f.name for f in parse_prometheus(text)}
    assert "gantry_api_request_duration_seconds" in names


def scrape_open(addr):
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        return r.read().decode()


def samples(text, name):
    """{labels-tuple: value} of the samples named `name`, parsed by the Prometheus text parser."""
    out = {}
    for family in parse_prometheus(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_lb_metrics_count_requests_latency_and_upstream_errors(gantry, tmp_path):
    import http.server
    import os
    import subprocess
    import threading

    from conftest import default_subnets, gantry_binary
    from test_agent_tasks import wait_until
    from test_load_balancing import free_port

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"up\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    closed_port = free_port()  # nothing listens there: connections are refused
    metrics_addr = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, GANTRY_ROOT_ACCESS_KEY_ID=gantry.access_key,
               GANTRY_ROOT_SECRET_ACCESS_KEY=gantry.secret_key, GANTRY_LOG="info")
    log = open(tmp_path / "lb.log", "ab")
    lb_proc = subprocess.Popen([gantry_binary(), "lb", "--endpoint", gantry.endpoint,
                                "--metrics-listen", metrics_addr], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        elb = gantry.client("elbv2")
        lb = elb.create_load_balancer(Name="prom", Type="application",
                                      Subnets=default_subnets(gantry))["LoadBalancers"][0]
        groups = {}
        for name, port in [("up", backend.server_address[1]), ("down", closed_port)]:
            tg = elb.create_target_group(Name=name, Protocol="HTTP", Port=port, VpcId="vpc-1",
                                         TargetType="ip")["TargetGroups"][0]
            elb.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": "127.0.0.1", "Port": port}])
            groups[name] = tg["TargetGroupArn"]
        port = free_port()
        listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                                       DefaultActions=[{"Type": "forward", "TargetGroupArn": groups["up"]}])
        elb.create_rule(ListenerArn=listener["Listeners"][0]["ListenerArn"], Priority=1,
                        Conditions=[{"Field": "path-pattern", "Values": ["/down*"]}],
                        Actions=[{"Type": "forward", "TargetGroupArn": groups["down"]}])

        def get(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code
            except OSError:
                return None

        wait_until(lambda: get("/") == 200 and get("/down") == 502, timeout=30, interval=0.2,
                   what="the listener forwards to both groups")
        before = scrape_open(metrics_addr)
        for _ in range(5):
            assert get("/") == 200
        for _ in range(3):
            assert get("/down/x") == 502
        text = scrape_open(metrics_addr)

        def dim(arn):
            return (("target_group", arn[arn.index("targetgroup/"):]),)

        def delta(name, arn):
            return samples(text, name).get(dim(arn), 0) - samples(before, name).get(dim(arn), 0)

        assert delta("gantry_lb_requests_total", groups["up"]) == 5
        assert delta("gantry_lb_requests_total", groups["down"]) == 3
        assert delta("gantry_lb_target_response_seconds_count", groups["up"]) == 5
        assert delta("gantry_lb_target_response_seconds_count", groups["down"]) == 0
        assert delta("gantry_lb_upstream_errors_total", groups["down"]) == 3
        assert delta("gantry_lb_upstream_errors_total", groups["up"]) == 0
        assert samples(text, "gantry_lb_target_response_seconds_sum")[dim(groups["up"])] > 0
        families = {f.name: f.type for f in parse_prometheus(text)}
        assert families["gantry_lb_target_response_seconds"] == "histogram"
        assert families["gantry_lb_requests"] == "counter"
        # The OpenMetrics parser reads the same exposition.
        assert "gantry_lb_requests" in {f.name for f in parse_openmetrics(text)}
    finally:
        lb_proc.terminate()
        lb_proc.wait(timeout=20)
        log.close()
        backend.shutdown()


def test_agent_metrics_count_task_starts_docker_calls_and_stats_samples(gantry, tmp_path):
    from conftest import require_docker
    from images import build_busybox_image, docker
    from test_agent_tasks import Agent, wait_until
    from test_load_balancing import free_port

    require_docker()
    local = build_busybox_image(tmp_path, f"gantry-e2e/prom-agent-{uuid.uuid4().hex[:8]}:src")
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="prom")
    metrics_addr = f"127.0.0.1:{free_port()}"
    agent = Agent(gantry, "prom", tmp_path / "agent", extra=["--metrics-listen", metrics_addr,
                                                            "--usage-interval", "1"]).start()
    arns = []
    try:
        wait_until(lambda: ecs.list_container_instances(cluster="prom")["containerInstanceArns"], what="agent")
        ecs.register_task_definition(family="prom", containerDefinitions=[{
            "name": "sleep", "image": local, "memory": 32, "essential": True,
            "command": ["/bin/sh", "-c", "sleep 300"]}])
        arns = [t["taskArn"] for t in ecs.run_task(cluster="prom", taskDefinition="prom", count=2)["tasks"]]
        gantry.aws("ecs", "wait", "tasks-running", "--cluster", "prom", "--tasks", *arns)

        def stats_taken():
            text = scrape_open(metrics_addr)
            ok = samples(text, "gantry_agent_stats_samples_total").get((("outcome", "ok"),), 0)
            return ok >= 2 and text
        text = wait_until(stats_taken, timeout=30, interval=0.5, what="stats samples")
        starts = samples(text, "gantry_agent_task_starts_total")
        assert starts[(("outcome", "running"),)] == 2
        assert starts.get((("outcome", "failed"),), 0) == 0
        docker_calls = samples(text, "gantry_agent_docker_request_duration_seconds_count")
        assert docker_calls[(("operation", "create"),)] >= 2
        assert docker_calls[(("operation", "start"),)] >= 2
        assert docker_calls[(("operation", "stats"),)] >= 2
        assert {f.name: f.type for f in parse_prometheus(text)}["gantry_agent_docker_request_duration_seconds"] \
            == "histogram"
    finally:
        for arn in arns:
            ecs.stop_task(cluster="prom", task=arn)
        if arns:
            gantry.aws("ecs", "wait", "tasks-stopped", "--cluster", "prom", "--tasks", *arns, check=False)
        agent.stop()
        docker("rmi", "-f", local, check=False)

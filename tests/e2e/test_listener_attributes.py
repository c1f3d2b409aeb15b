"""Listener attributes honoured by `gantry lb`: response headers (security and CORS headers,
the load balancer's own `Server` header) of an application load balancer's HTTP listener,
seen by real clients on the target's answers, fixed responses and the load balancer's error
pages; the TCP idle timeout of a network load balancer's TCP listener stored and validated
(the closing of idle flows is shown by the proxy's in-process tests: AWS's minimum is 60 s);
and the refusals of what `gantry lb` does not do."""

import http.server
import subprocess
import threading
import urllib.error
import urllib.request

import botocore.exceptions
import pytest

from conftest import default_subnets, free_port
from test_agent_tasks import wait_until
from test_elb_metrics import listening
from test_load_balancing import start_lb


class _Target(http.server.BaseHTTPRequestHandler):
    server_version = "target/1.0"
    sys_version = ""

    def do_GET(self):
        body = b"from the target"
        self.send_response(200)
        self.send_header("X-Frame-Options", "SAMEORIGIN")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def fetch(port, path):
    """(status, headers) of a GET through the listener (HTTP/1.1, urllib)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


def fetch_h2(port, path):
    """(status, headers) over HTTP/2 (curl, prior knowledge), header names lowercased."""
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-D", "-", "--max-time", "5",
                        "--http2-prior-knowledge", f"http://127.0.0.1:{port}{path}"],
                       capture_output=True, text=True, check=True)
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("HTTP/2"), lines[0]
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


def attrs_of(elb, arn):
    return {a["Key"]: a["Value"] for a in elb.describe_listener_attributes(ListenerArn=arn)["Attributes"]}


def error_of(fn, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        fn(**kw)
    err = e.value.response["Error"]
    return err["Code"], err["Message"]


def test_listener_response_headers_and_tcp_idle_timeout(gantry, tmp_path):
    elb = gantry.client("elbv2")
    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    lb_proc = None
    try:
        alb = elb.create_load_balancer(Name="headers", Subnets=default_subnets(gantry))["LoadBalancers"][0]
        tg = elb.create_target_group(Name="headers", Protocol="HTTP", Port=80, VpcId=alb["VpcId"], TargetType="ip",
                                     HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2,
                                     HealthyThresholdCount=2)["TargetGroups"][0]
        elb.register_targets(TargetGroupArn=tg["TargetGroupArn"],
                             Targets=[{"Id": "127.0.0.1", "Port": target.server_address[1]}])
        empty = elb.create_target_group(Name="nobody", Protocol="HTTP", Port=80, VpcId=alb["VpcId"],
                                        TargetType="ip")["TargetGroups"][0]
        port = free_port()
        listener = elb.create_listener(LoadBalancerArn=alb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                                       DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])[
            "Listeners"][0]["ListenerArn"]
        elb.create_rule(ListenerArn=listener, Priority=1, Conditions=[{"Field": "path-pattern", "Values": ["/fixed"]}],
                        Actions=[{"Type": "fixed-response", "FixedResponseConfig": {
                            "StatusCode": "200", "ContentType": "text/plain", "MessageBody": "fixed"}}])
        elb.create_rule(ListenerArn=listener, Priority=2, Conditions=[{"Field": "path-pattern", "Values": ["/empty"]}],
                        Actions=[{"Type": "forward", "TargetGroupArn": empty["TargetGroupArn"]}])

        defaults = attrs_of(elb, listener)
        assert defaults["routing.http.response.server.enabled"] == "true"
        assert defaults["routing.http.response.x_frame_options.header_value"] == ""
        wanted = {
            "routing.http.response.strict_transport_security.header_value": "max-age=31536000; includeSubDomains",
            "routing.http.response.x_frame_options.header_value": "DENY",
            "routing.http.response.x_content_type_options.header_value": "nosniff",
            "routing.http.response.access_control_allow_origin.header_value": "https://app.example.com",
            "routing.http.response.access_control_allow_methods.header_value": "GET, POST, OPTIONS",
            "routing.http.response.access_control_allow_credentials.header_value": "true",
            "routing.http.response.access_control_max_age.header_value": "600",
            "routing.http.response.content_security_policy.header_value": "default-src 'self'",
            "routing.http.response.server.enabled": "false",
        }
        answer = elb.modify_listener_attributes(
            ListenerArn=listener, Attributes=[{"Key": k, "Value": v} for k, v in wanted.items()])["Attributes"]
        assert {a["Key"]: a["Value"] for a in answer} == {**defaults, **wanted}
        assert attrs_of(elb, listener) == {**defaults, **wanted}

        # Values are checked as AWS does; nothing changes on a refusal.
        for key, value in [
            ("routing.http.response.x_frame_options.header_value", "NEVER"),
            ("routing.http.response.access_control_allow_credentials.header_value", "false"),
            ("routing.http.response.access_control_max_age.header_value", "a day"),
            ("routing.http.response.strict_transport_security.header_value", "includeSubDomains"),
            ("routing.http.response.server.enabled", "maybe"),
        ]:
            code, message = error_of(elb.modify_listener_attributes, ListenerArn=listener,
                                     Attributes=[{"Key": key, "Value": value}])
            assert code == "InvalidConfigurationRequest" and key in message, (key, message)
        assert error_of(elb.modify_listener_attributes, ListenerArn=listener,
                        Attributes=[{"Key": "tcp.idle_timeout.seconds", "Value": "60"}]) == (
            "InvalidConfigurationRequest", "Key 'tcp.idle_timeout.seconds' not valid")
        assert attrs_of(elb, listener) == {**defaults, **wanted}

        lb_proc = start_lb(gantry, tmp_path / "lb.log")
        wait_until(lambda: listening(port), timeout=30, interval=0.2, what="the listener")
        wait_until(lambda: fetch(port, "/")[0] == 200, timeout=60, interval=0.5, what="the target answering")
        for get in (fetch, fetch_h2):
            for path, status in (("/", 200), ("/fixed", 200), ("/empty", 503)):
                got, h = get(port, path)
                assert got == status, (get.__name__, path)
                h = {k.lower(): v for k, v in h.items()}
                # The listener's value replaces the target's own X-Frame-Options.
                assert h["x-frame-options"] == "DENY", (get.__name__, path, h)
                assert h["strict-transport-security"] == "max-age=31536000; includeSubDomains"
                assert h["x-content-type-options"] == "nosniff"
                assert h["access-control-allow-origin"] == "https://app.example.com"
                assert h["access-control-allow-methods"] == "GET, POST, OPTIONS"
                assert h["access-control-allow-credentials"] == "true"
                assert h["access-control-max-age"] == "600"
                assert h["content-security-policy"] == "default-src 'self'"
                if path == "/":
                    # The target's own Server header stays.
                    assert h["server"].startswith("target/1.0"), h
                else:
                    assert "server" not in h, (get.__name__, path, h)

        # Back to the defaults: no header added, the error page says awselb/2.0 again.
        elb.modify_listener_attributes(ListenerArn=listener, Attributes=[
            {"Key": k, "Value": defaults[k]} for k in wanted])
        assert attrs_of(elb, listener) == defaults

        def back():
            status, h = fetch(port, "/empty")
            return status == 503 and h.get("Server") == "awselb/2.0" and "X-Frame-Options" not in h
        wait_until(back, timeout=30, interval=0.2, what="the defaults served")
        status, h = fetch(port, "/")
        assert status == 200 and h["X-Frame-Options"] == "SAMEORIGIN"

        # Network load balancer: the TCP idle timeout (60 to 6000 s, 350 by default).
        nlb = elb.create_load_balancer(Name="idle", Type="network",
                                       Subnets=default_subnets(gantry, 1))["LoadBalancers"][0]
        tcp_tg = elb.create_target_group(Name="idle", Protocol="TCP", Port=80, VpcId=nlb["VpcId"],
                                         TargetType="ip")["TargetGroups"][0]
        tcp = elb.create_listener(LoadBalancerArn=nlb["LoadBalancerArn"], Protocol="TCP", Port=free_port(),
                                  DefaultActions=[{"Type": "forward", "TargetGroupArn": tcp_tg["TargetGroupArn"]}])[
            "Listeners"][0]["ListenerArn"]
        assert attrs_of(elb, tcp) == {"tcp.idle_timeout.seconds": "350"}
        for bad in ("59", "6001", "ten"):
            assert error_of(elb.modify_listener_attributes, ListenerArn=tcp,
                            Attributes=[{"Key": "tcp.idle_timeout.seconds", "Value": bad}]) == (
                "InvalidConfigurationRequest", "The value of 'tcp.idle_timeout.seconds' must be an integer between 60 and 6000")
        elb.modify_listener_attributes(ListenerArn=tcp, Attributes=[{"Key": "tcp.idle_timeout.seconds", "Value": "60"}])
        assert attrs_of(elb, tcp) == {"tcp.idle_timeout.seconds": "60"}
        assert error_of(elb.modify_listener_attributes, ListenerArn=tcp,
                        Attributes=[{"Key": "routing.http.response.server.enabled", "Value": "false"}]) == (
            "InvalidConfigurationRequest", "Key 'routing.http.response.server.enabled' not valid")
    finally:
        if lb_proc is not None:
            lb_proc.terminate()
            try:
                lb_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                lb_proc.kill()
        target.shutdown()

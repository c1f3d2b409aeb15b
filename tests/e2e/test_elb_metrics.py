"""CloudWatch's AWS/ApplicationELB metrics from the traffic through `gantry lb`: an HTTP target
on this machine behind an application load balancer, N requests, then the counts, response
times (percentiles included) and host counts through the AWS CLI and boto3."""

import http.server
import os
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import botocore.exceptions
import pytest

from conftest import default_subnets, free_port, gantry_binary
from test_agent_tasks import wait_until


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = 404 if self.path.startswith("/missing") else 200
        body = b"up\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_traffic_through_the_lb_becomes_application_elb_metrics(gantry, tmp_path):
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    env = dict(os.environ, GANTRY_ROOT_ACCESS_KEY_ID=gantry.access_key,
               GANTRY_ROOT_SECRET_ACCESS_KEY=gantry.secret_key, GANTRY_LOG="info")
    lb_proc = subprocess.Popen([gantry_binary(), "lb", "--endpoint", gantry.endpoint, "--metrics-interval", "1"],
                               env=env, stdout=open(tmp_path / "lb.log", "ab"), stderr=subprocess.STDOUT)
    try:
        elb, cw = gantry.client("elbv2"), gantry.client("cloudwatch")
        subnets = default_subnets(gantry)
        lb = elb.create_load_balancer(Name="metered", Type="application", Subnets=subnets)["LoadBalancers"][0]
        # A proxy started without --availability-zone counts in the load balancer's first zone.
        first_zone = gantry.client("ec2").describe_subnets(SubnetIds=subnets[:1])["Subnets"][0]["AvailabilityZone"]
        tg = elb.create_target_group(Name="metered", Protocol="HTTP", Port=backend.server_address[1],
                                     VpcId="vpc-1", TargetType="ip", HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2,
                                     HealthyThresholdCount=2)["TargetGroups"][0]
        elb.register_targets(TargetGroupArn=tg["TargetGroupArn"],
                             Targets=[{"Id": "127.0.0.1", "Port": backend.server_address[1]}])
        port = free_port()
        elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])
        lb_dim = lb["LoadBalancerArn"].split(":loadbalancer/")[1]
        tg_dim = tg["TargetGroupArn"].split(":")[-1]
        assert lb_dim.startswith("app/metered/") and tg_dim.startswith("targetgroup/metered/")

        # Ready without a request through the listener: every request counts below.
        def healthy():
            th = elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])["TargetHealthDescriptions"]
            return [t for t in th if t["TargetHealth"]["State"] == "healthy"]
        wait_until(healthy, timeout=60, interval=0.5, what="a healthy target")
        wait_until(lambda: listening(port), timeout=30, interval=0.2, what="the listener")

        ok, missing = 17, 5
        for _ in range(ok):
            assert get(port, "/") == 200
        for _ in range(missing):
            assert get(port, "/missing") == 404
        n = ok + missing
        start = datetime.now(timezone.utc) - timedelta(minutes=10)
        end = datetime.now(timezone.utc) + timedelta(minutes=2)

        def total(name, dims, stat="Sum"):
            points = gantry.aws_json(
                "cloudwatch", "get-metric-statistics", "--namespace", "AWS/ApplicationELB",
                "--metric-name", name, "--dimensions", *[f"Name={k},Value={v}" for k, v in dims],
                "--start-time", start.isoformat(), "--end-time", end.isoformat(), "--period", "60",
                "--statistics", stat)["Datapoints"]
            return sum(p[stat] for p in points)

        lb_only = [("LoadBalancer", lb_dim)]
        # The lb reports every second here (60 s by default, as ELB).
        wait_until(lambda: total("RequestCount", lb_only) >= n, timeout=30, interval=0.5,
                   what="RequestCount published")
        both = [("LoadBalancer", lb_dim), ("TargetGroup", tg_dim)]
        # Later reports (each adds a HealthyHostCount sample) must not add to the count.
        reports = total("HealthyHostCount", both, "SampleCount")
        wait_until(lambda: total("HealthyHostCount", both, "SampleCount") >= reports + 2, timeout=30,
                   interval=0.5, what="two more reports")
        assert total("RequestCount", lb_only) == n
        tg_only = [("TargetGroup", tg_dim)]
        assert total("RequestCount", both) == n
        assert total("RequestCount", tg_only) == n
        assert total("HTTPCode_Target_2XX_Count", lb_only) == ok
        assert total("HTTPCode_Target_4XX_Count", both) == missing
        assert total("TargetResponseTime", lb_only, "SampleCount") == n
        # One healthy target: a target's share is every request.
        assert total("RequestCountPerTarget", tg_only) == n
        assert total("RequestCountPerTarget", both) == n
        in_zone = [("AvailabilityZone", first_zone), ("LoadBalancer", lb_dim)]
        assert total("RequestCount", in_zone) == n
        assert total("HTTPCode_Target_4XX_Count", in_zone + [("TargetGroup", tg_dim)]) == missing
        assert total("TargetResponseTime", in_zone, "SampleCount") == n
        # The target was registered without a zone: it counts in the proxy's.
        assert metric_total(gantry, "AWS/ApplicationELB", "HealthyHostCount",
                            in_zone + [("TargetGroup", tg_dim)], "Maximum") == 1

        def one_period(stats=None, extended=None, **kw):
            args = dict(Namespace="AWS/ApplicationELB", MetricName="TargetResponseTime",
                        Dimensions=[{"Name": "LoadBalancer", "Value": lb_dim}],
                        StartTime=start, EndTime=end, Period=720, **kw)
            if stats:
                args["Statistics"] = stats
            if extended:
                args["ExtendedStatistics"] = extended
            return cw.get_metric_statistics(**args)["Datapoints"]

        basic = one_period(["Minimum", "Maximum", "SampleCount"])
        assert len(basic) == 1 and basic[0]["SampleCount"] == n and basic[0]["Unit"] == "Seconds"
        p = one_period(extended=["p0", "p50", "p99", "p100"])[0]["ExtendedStatistics"]
        assert p["p0"] == basic[0]["Minimum"] and p["p100"] == basic[0]["Maximum"]
        assert 0 < p["p0"] <= p["p50"] <= p["p99"] <= p["p100"] < 5
        r = cw.get_metric_data(StartTime=start, EndTime=end, MetricDataQueries=[{
            "Id": "p99", "MetricStat": {"Metric": {
                "Namespace": "AWS/ApplicationELB", "MetricName": "TargetResponseTime",
                "Dimensions": [{"Name": "LoadBalancer", "Value": lb_dim}]}, "Period": 720, "Stat": "p99"}}])
        assert r["MetricDataResults"][0]["Values"] == [p["p99"]]

        points = cw.get_metric_statistics(
            Namespace="AWS/ApplicationELB", MetricName="HealthyHostCount",
            Dimensions=[{"Name": "LoadBalancer", "Value": lb_dim}, {"Name": "TargetGroup", "Value": tg_dim}],
            StartTime=start, EndTime=end, Period=720, Statistics=["Average", "Maximum"])["Datapoints"]
        assert points and points[0]["Maximum"] == 1
        names = {m["MetricName"] for m in cw.list_metrics(Namespace="AWS/ApplicationELB")["Metrics"]}
        assert {"RequestCount", "TargetResponseTime", "HealthyHostCount", "UnHealthyHostCount",
                "RequestCountPerTarget", "HTTPCode_Target_2XX_Count", "HTTPCode_Target_4XX_Count"} <= names

        # Users still cannot publish into the AWS/ namespaces, and the lb's route wants a signature.
        with pytest.raises(botocore.exceptions.ClientError) as e:
            cw.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=[{"MetricName": "RequestCount", "Value": 1}])
        assert e.value.response["Error"]["Code"] == "InvalidParameterValue"
        req = urllib.request.Request(f"{gantry.endpoint}/lb/v1/metrics", method="POST", data=b'{"proxyId":"x","windows":[]}',
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        assert e.value.code in (400, 403)
    finally:
        lb_proc.send_signal(signal.SIGTERM)
        try:
            lb_proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lb_proc.kill()
        backend.shutdown()


def start_metered_lb(gantry, tmp_path, *extra):
    """`gantry lb` reporting every second (60 s by default, as ELB)."""
    env = dict(os.environ, GANTRY_ROOT_ACCESS_KEY_ID=gantry.access_key,
               GANTRY_ROOT_SECRET_ACCESS_KEY=gantry.secret_key, GANTRY_LOG="info")
    return subprocess.Popen([gantry_binary(), "lb", "--endpoint", gantry.endpoint, "--metrics-interval", "1",
                             *extra], env=env, stdout=open(tmp_path / "lb.log", "ab"), stderr=subprocess.STDOUT)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def metric_total(gantry, namespace, name, dims, stat="Sum"):
    """The statistic over the last ten minutes (Sum and SampleCount add up, Maximum is the
    largest), through the AWS CLI."""
    start = datetime.now(timezone.utc) - timedelta(minutes=10)
    end = datetime.now(timezone.utc) + timedelta(minutes=2)
    points = gantry.aws_json(
        "cloudwatch", "get-metric-statistics", "--namespace", namespace,
        "--metric-name", name, "--dimensions", *[f"Name={k},Value={v}" for k, v in dims],
        "--start-time", start.isoformat(), "--end-time", end.isoformat(), "--period", "60",
        "--statistics", stat)["Datapoints"]
    values = [p[stat] for p in points]
    if stat == "Maximum":
        return max(values, default=0)
    return sum(values)


def test_answers_made_by_the_load_balancer_become_elb_code_metrics(gantry, tmp_path):
    elb = gantry.client("elbv2")
    subnets = default_subnets(gantry)
    zones = {s["SubnetId"]: s["AvailabilityZone"]
             for s in gantry.client("ec2").describe_subnets(SubnetIds=subnets)["Subnets"]}
    first_zone, second_zone = zones[subnets[0]], zones[subnets[1]]
    assert first_zone != second_zone
    lb_proc = None
    try:
        lb = elb.create_load_balancer(Name="answers", Type="application", Subnets=subnets)["LoadBalancers"][0]
        empty = elb.create_target_group(Name="empty", Protocol="HTTP", Port=80, VpcId=lb["VpcId"],
                                        TargetType="ip")["TargetGroups"][0]
        port = free_port()
        listener = elb.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
            DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {
                "StatusCode": "404", "ContentType": "text/plain", "MessageBody": "no route"}}])["Listeners"][0]

        def fixed(code):
            return [{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": code}}]
        for priority, path, actions in [
            (1, "/teapot", fixed("418")),
            (2, "/down", fixed("503")),
            (3, "/moved", [{"Type": "redirect", "RedirectConfig": {"Path": "/elsewhere", "StatusCode": "HTTP_301"}}]),
            (4, "/empty", [{"Type": "forward", "TargetGroupArn": empty["TargetGroupArn"]}]),
        ]:
            elb.create_rule(ListenerArn=listener["ListenerArn"], Priority=priority, Actions=actions,
                            Conditions=[{"Field": "path-pattern", "Values": [path]}])
        # Started once everything is configured: its first configuration has every rule. It
        # serves as a load balancer node in the second zone.
        lb_proc = start_metered_lb(gantry, tmp_path, "--availability-zone", second_zone)
        wait_until(lambda: listening(port), timeout=30, interval=0.2, what="the listener")

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args):
                return None
        opener = urllib.request.build_opener(NoRedirect)

        def status(path):
            try:
                with opener.open(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code
        sent = {"/nowhere": (404, 3), "/teapot": (418, 2), "/down": (503, 4), "/moved": (301, 2),
                "/empty": (503, 5)}
        for path, (code, times) in sent.items():
            for _ in range(times):
                assert status(path) == code, path
        fourxx, fivexx, threexx = 3 + 2, 4 + 5, 2
        lb_dim = lb["LoadBalancerArn"].split(":loadbalancer/")[1]
        lb_only = [("LoadBalancer", lb_dim)]
        in_zone = [("AvailabilityZone", second_zone), ("LoadBalancer", lb_dim)]

        def total(name, dims, stat="Sum"):
            return metric_total(gantry, "AWS/ApplicationELB", name, dims, stat)
        wait_until(lambda: total("HTTPCode_ELB_5XX_Count", lb_only) >= fivexx, timeout=30, interval=0.5,
                   what="HTTPCode_ELB_5XX_Count published")
        # Later reports must not change the counts: wait for two more through the empty
        # group's host count samples (one per report).
        pair = [("LoadBalancer", lb_dim), ("TargetGroup", empty["TargetGroupArn"].split(":")[-1])]
        samples = total("UnHealthyHostCount", pair, "SampleCount")
        wait_until(lambda: total("UnHealthyHostCount", pair, "SampleCount") >= samples + 2,
                   timeout=30, interval=0.5, what="two more reports")
        for dims in (lb_only, in_zone):
            assert total("HTTPCode_ELB_4XX_Count", dims) == fourxx, dims
            assert total("HTTPCode_ELB_5XX_Count", dims) == fivexx, dims
            assert total("HTTPCode_ELB_3XX_Count", dims) == threexx, dims
            assert total("HTTP_Fixed_Response_Count", dims) == 3 + 2 + 4, dims
            assert total("HTTP_Redirect_Count", dims) == threexx, dims
        assert total("HTTPCode_ELB_503_Count", lb_only) == fivexx
        assert total("HTTPCode_ELB_502_Count", lb_only) == 0
        # Counted in the proxy's zone only.
        assert total("HTTPCode_ELB_4XX_Count", [("AvailabilityZone", first_zone), ("LoadBalancer", lb_dim)]) == 0
        # No target answered any of them.
        assert total("RequestCount", lb_only) == 5
        assert total("HTTPCode_Target_5XX_Count", lb_only) == 0
    finally:
        if lb_proc is not None:
            stop(lb_proc)


class TcpEcho:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn):
        with conn:
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def close(self):
        self.sock.close()


def recv_exactly(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "connection closed early"
        out += chunk
    return out


def test_network_load_balancer_flows_become_network_elb_metrics(gantry, tmp_path):
    from test_udp_listeners import EchoTarget

    elb = gantry.client("elbv2")
    echo, udp_echo = TcpEcho(), EchoTarget("u")
    lb_proc = start_metered_lb(gantry, tmp_path)
    conns, udp_client = [], None
    try:
        subnets = default_subnets(gantry, 1)
        zone = gantry.client("ec2").describe_subnets(SubnetIds=subnets)["Subnets"][0]["AvailabilityZone"]
        nlb = elb.create_load_balancer(Name="flows", Subnets=subnets, Type="network")["LoadBalancers"][0]
        groups = {}
        for proto, port in (("TCP", echo.port), ("UDP", udp_echo.port)):
            tg = elb.create_target_group(Name=f"flows-{proto.lower()}", Protocol=proto, Port=port, VpcId=nlb["VpcId"],
                                         TargetType="ip", HealthCheckProtocol="TCP", HealthCheckIntervalSeconds=5,
                                         HealthCheckTimeoutSeconds=2, HealthyThresholdCount=2)["TargetGroups"][0]
            elb.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": "127.0.0.1", "Port": port}])
            groups[proto] = tg["TargetGroupArn"]
        tcp_port, udp_port = free_port(), free_port()
        for proto, port in (("TCP", tcp_port), ("UDP", udp_port)):
            elb.create_listener(LoadBalancerArn=nlb["LoadBalancerArn"], Protocol=proto, Port=port,
                                DefaultActions=[{"Type": "forward", "TargetGroupArn": groups[proto]}])

        def healthy():
            return all(t["TargetHealth"]["State"] == "healthy"
                       for arn in groups.values()
                       for t in elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"])
        wait_until(healthy, timeout=60, interval=0.5, what="healthy targets")
        # Each connection that succeeds is a flow too.
        probes = []

        def probe():
            ok = listening(tcp_port)
            probes.extend([1] if ok else [])
            return ok
        wait_until(probe, timeout=30, interval=0.2, what="the TCP listener")
        tcp_flows = 3 + len(probes)

        # Three TCP flows open at once, each echoing its message twice.
        sent = 0
        for i in range(3):
            conns.append(socket.create_connection(("127.0.0.1", tcp_port), timeout=5))
        for i, c in enumerate(conns):
            for k in range(2):
                msg = f"flow {i} message {k}".encode()
                c.sendall(msg)
                assert recv_exactly(c, len(msg)) == msg
                sent += len(msg)
        for c in conns:
            c.close()
        conns = []
        # One UDP flow of two datagrams; the target prefixes "u " to each reply.
        udp_client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp_client.bind(("127.0.0.1", 0))
        udp_client.settimeout(0.5)
        udp_bytes = 0
        for msg in (b"ping", b"pong!"):
            # Sent again if a datagram is lost; every datagram either way counts.
            for _ in range(20):
                udp_client.sendto(msg, ("127.0.0.1", udp_port))
                udp_bytes += len(msg)
                try:
                    reply, _ = udp_client.recvfrom(2048)
                except socket.timeout:
                    continue
                udp_bytes += len(reply)
                break
            assert reply == b"u " + msg
        # Late replies to datagrams sent again count too.
        try:
            while True:
                udp_bytes += len(udp_client.recvfrom(2048)[0])
        except socket.timeout:
            pass

        lb_dim = nlb["LoadBalancerArn"].split(":loadbalancer/")[1]
        lb_only = [("LoadBalancer", lb_dim)]
        in_zone = [("AvailabilityZone", zone), ("LoadBalancer", lb_dim)]

        def total(name, dims, stat="Sum"):
            return metric_total(gantry, "AWS/NetworkELB", name, dims, stat)
        wait_until(lambda: total("NewFlowCount", lb_only) >= tcp_flows + 1, timeout=30, interval=0.5,
                   what="NewFlowCount published")
        tcp_pair = [("LoadBalancer", lb_dim), ("TargetGroup", groups["TCP"].split(":")[-1])]
        samples = total("HealthyHostCount", tcp_pair, "SampleCount")
        wait_until(lambda: total("HealthyHostCount", tcp_pair, "SampleCount") >= samples + 2, timeout=30,
                   interval=0.5, what="two more reports")
        for dims in (lb_only, in_zone):
            assert total("NewFlowCount", dims) == tcp_flows + 1, dims
            assert total("NewFlowCount_TCP", dims) == tcp_flows, dims
            assert total("NewFlowCount_UDP", dims) == 1, dims
            # The three held open at once (a listener probe may still have been closing).
            assert 3 <= total("ActiveFlowCount_TCP", dims, "Maximum") <= tcp_flows, dims
            assert total("ActiveFlowCount_UDP", dims, "Maximum") == 1, dims
            assert total("ProcessedBytes_TCP", dims) == 2 * sent, dims
            assert total("ProcessedBytes_UDP", dims) == udp_bytes, dims
            assert total("ProcessedBytes", dims) == 2 * sent + udp_bytes, dims
        assert total("NewFlowCount_TLS", lb_only) == 0
        assert total("HealthyHostCount", tcp_pair, "Maximum") == 1
        assert total("HealthyHostCount", [("AvailabilityZone", zone)] + tcp_pair, "Maximum") == 1
        names = {m["MetricName"] for m in gantry.client("cloudwatch").list_metrics(Namespace="AWS/NetworkELB")["Metrics"]}
        assert {"ActiveFlowCount", "NewFlowCount", "ProcessedBytes", "ActiveFlowCount_TCP",
                "ProcessedBytes_UDP"} <= names
    finally:
        for c in conns:
            c.close()
        if udp_client is not None:
            udp_client.close()
        stop(lb_proc)
        echo.close()
        udp_echo.close()

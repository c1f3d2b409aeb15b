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
        lb = elb.create_load_balancer(Name="metered", Type="application",
                                      Subnets=default_subnets(gantry))["LoadBalancers"][0]
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

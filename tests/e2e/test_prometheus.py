"""`GET /metrics` on the server's listener: OpenMetrics text that Prometheus parsers read, behind
HTTP Basic authentication with the root key."""

import base64
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

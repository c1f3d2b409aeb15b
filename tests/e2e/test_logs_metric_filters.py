"""CloudWatch Logs metric filters through the real binary: matching log lines become a CloudWatch
metric series, read back with get-metric-statistics."""

import datetime
import json
import time

import botocore.exceptions
import pytest

from conftest import Gantry


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    g = Gantry(tmp_path_factory.mktemp("metricfilters") / "data").start()
    yield g
    g.stop()


def test_matching_log_lines_become_a_metric_series(server):
    logs = server.client("logs")
    group = "/app/metrics"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    logs.put_metric_filter(
        logGroupName=group, filterName="errors", filterPattern="ERROR",
        metricTransformations=[{"metricName": "ErrorCount", "metricNamespace": "App", "metricValue": "1",
                                "unit": "Count"}])
    logs.put_metric_filter(
        logGroupName=group, filterName="latency", filterPattern="{ $.latency >= 0 }",
        metricTransformations=[{"metricName": "Latency", "metricNamespace": "App", "metricValue": "$.latency",
                                "dimensions": {"Service": "$.svc"}, "unit": "Milliseconds"}])
    minute = (int(time.time()) // 60 - 5) * 60
    events = [
        (minute * 1000 + 1_000, "ERROR disk full"),
        (minute * 1000 + 2_000, "INFO all good"),
        (minute * 1000 + 3_000, json.dumps({"svc": "api", "latency": 120})),
        (minute * 1000 + 4_000, "ERROR timeout"),
        (minute * 1000 + 61_000, "ERROR again"),
        (minute * 1000 + 62_000, json.dumps({"svc": "api", "latency": 80})),
        (minute * 1000 + 63_000, json.dumps({"svc": "web", "latency": 5})),
    ]
    logs.put_log_events(logGroupName=group, logStreamName="s",
                        logEvents=[{"timestamp": t, "message": m} for t, m in events])

    start, end = datetime.datetime.fromtimestamp(minute - 60, datetime.timezone.utc), \
        datetime.datetime.fromtimestamp(minute + 180, datetime.timezone.utc)
    out = server.aws_json("cloudwatch", "get-metric-statistics", "--namespace", "App", "--metric-name", "ErrorCount",
                          "--start-time", start.isoformat(), "--end-time", end.isoformat(), "--period", "60",
                          "--statistics", "Sum", "SampleCount")
    points = sorted((p["Timestamp"], p["Sum"], p["SampleCount"], p["Unit"]) for p in out["Datapoints"])
    assert [(p[1], p[2], p[3]) for p in points] == [(2.0, 2.0, "Count"), (1.0, 1.0, "Count")]

    cw = server.client("cloudwatch")
    lat = cw.get_metric_statistics(Namespace="App", MetricName="Latency", Dimensions=[{"Name": "Service", "Value": "api"}],
                                   StartTime=datetime.datetime.fromtimestamp(minute, datetime.timezone.utc),
                                   EndTime=end, Period=120, Statistics=["Average", "Maximum"])
    assert [(p["Average"], p["Maximum"]) for p in lat["Datapoints"]] == [(100.0, 120.0)]
    listed = cw.list_metrics(Namespace="App")["Metrics"]
    assert {(m["MetricName"], tuple((d["Name"], d["Value"]) for d in m["Dimensions"])) for m in listed} == {
        ("ErrorCount", ()), ("Latency", (("Service", "api"),)), ("Latency", (("Service", "web"),))}

    described = logs.describe_metric_filters(logGroupName=group)["metricFilters"]
    assert [f["filterName"] for f in described] == ["errors", "latency"]
    assert described[1]["metricTransformations"][0]["dimensions"] == {"Service": "$.svc"}
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["metricFilterCount"] == 2
    by_metric = logs.describe_metric_filters(metricName="ErrorCount", metricNamespace="App")["metricFilters"]
    assert [f["filterName"] for f in by_metric] == ["errors"]
    logs.delete_metric_filter(logGroupName=group, filterName="latency")
    assert [f["filterName"] for f in logs.describe_metric_filters(logGroupName=group)["metricFilters"]] == ["errors"]


def test_test_metric_filter_and_errors(server):
    logs = server.client("logs")
    out = logs.test_metric_filter(filterPattern='{ $.level = "ERROR" }',
                                  logEventMessages=['{"level":"ERROR"}', "plain", '{"level":"INFO"}',
                                                    '{"level":"ERROR","x":1}'])
    assert [(m["eventNumber"], m["eventMessage"]) for m in out["matches"]] == [
        (1, '{"level":"ERROR"}'), (4, '{"level":"ERROR","x":1}')]
    cli = server.aws_json("logs", "test-metric-filter", "--filter-pattern", "timeout",
                          "--log-event-messages", "a timeout here", "nothing")
    assert [m["eventNumber"] for m in cli["matches"]] == [1]

    def error(call):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]

    t = [{"metricName": "M", "metricNamespace": "N", "metricValue": "1"}]
    code, msg = error(lambda: logs.put_metric_filter(logGroupName="/none", filterName="f", filterPattern="x",
                                                     metricTransformations=t))
    assert (code, msg) == ("ResourceNotFoundException", "The specified log group does not exist.")
    logs.create_log_group(logGroupName="/app/errors")
    code, _ = error(lambda: logs.put_metric_filter(logGroupName="/app/errors", filterName="f",
                                                   filterPattern="[ip, user]", metricTransformations=t))
    assert code == "InvalidParameterException"
    code, _ = error(lambda: logs.put_metric_filter(
        logGroupName="/app/errors", filterName="f", filterPattern="x",
        metricTransformations=[{**t[0], "defaultValue": 0.0, "dimensions": {"D": "$.d"}}]))
    assert code == "InvalidParameterException"
    code, _ = error(lambda: logs.delete_metric_filter(logGroupName="/app/errors", filterName="nope"))
    assert code == "ResourceNotFoundException"
    code, _ = error(lambda: logs.describe_metric_filters(filterNamePrefix="x"))
    assert code == "InvalidParameterException"

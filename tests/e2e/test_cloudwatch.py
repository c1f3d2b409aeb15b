"""CloudWatch metrics and alarms through boto3 (awsJson1.0, query-compatible), the pip AWS CLI v1
(awsJson1.0) and Debian's AWS CLI v2 (awsQuery)."""

import json
import math
import os
import random
import signal
import subprocess
import time
from datetime import datetime, timezone

import botocore.exceptions
import pytest

from conftest import Gantry


def minute(t: float) -> int:
    return int(t) - int(t) % 60


def reference(values):
    return {
        "SampleCount": float(len(values)),
        "Sum": sum(values),
        "Average": sum(values) / len(values),
        "Minimum": min(values),
        "Maximum": max(values),
    }


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def test_put_metric_data_round_trips_with_reference_statistics(gantry):
    cw = gantry.client("cloudwatch")
    now = time.time()
    base = minute(now) - 600
    rng = random.Random(7)
    samples = {}  # minute -> values
    data = []
    for i in range(300):
        t = base + rng.randrange(0, 540)
        v = round(rng.uniform(-100, 100), 3)
        samples.setdefault(minute(t), []).append(v)
        data.append({"MetricName": "Latency", "Dimensions": [{"Name": "Service", "Value": "web"}],
                     "Timestamp": datetime.fromtimestamp(t, timezone.utc), "Value": v, "Unit": "Milliseconds"})
    # 300 items in one call: botocore gzips the body (over 10 KiB).
    cw.put_metric_data(Namespace="App", MetricData=data)
    # A statistic set and a values/counts item land in the same series.
    cw.put_metric_data(Namespace="App", MetricData=[
        {"MetricName": "Latency", "Dimensions": [{"Name": "Service", "Value": "web"}],
         "Timestamp": datetime.fromtimestamp(base, timezone.utc), "Unit": "Milliseconds",
         "Values": [1.0, 2.0], "Counts": [3.0, 1.0]},
    ])
    samples.setdefault(minute(base), []).extend([1.0, 1.0, 1.0, 2.0])

    out = cw.get_metric_statistics(
        Namespace="App", MetricName="Latency", Dimensions=[{"Name": "Service", "Value": "web"}],
        StartTime=datetime.fromtimestamp(base, timezone.utc), EndTime=datetime.fromtimestamp(base + 600, timezone.utc),
        Period=60, Statistics=["SampleCount", "Sum", "Average", "Minimum", "Maximum"])
    assert out["Label"] == "Latency"
    got = {int(p["Timestamp"].timestamp()): p for p in out["Datapoints"]}
    assert sorted(got) == sorted(samples)
    for m, values in samples.items():
        ref = reference(values)
        for stat, want in ref.items():
            assert close(got[m][stat], want), (m, stat, got[m][stat], want)
        assert got[m]["Unit"] == "Milliseconds"

    # 5-minute periods over the same data.
    out5 = cw.get_metric_statistics(
        Namespace="App", MetricName="Latency", Dimensions=[{"Name": "Service", "Value": "web"}],
        StartTime=datetime.fromtimestamp(base, timezone.utc), EndTime=datetime.fromtimestamp(base + 600, timezone.utc),
        Period=300, Statistics=["Sum"])
    total = sum(sum(v) for v in samples.values())
    assert close(sum(p["Sum"] for p in out5["Datapoints"]), total)

    # GetMetricData: the statistic, metric math on it, descending timestamps.
    md = cw.get_metric_data(
        StartTime=datetime.fromtimestamp(base, timezone.utc), EndTime=datetime.fromtimestamp(base + 600, timezone.utc),
        MetricDataQueries=[
            {"Id": "m1", "MetricStat": {"Metric": {"Namespace": "App", "MetricName": "Latency",
                                                    "Dimensions": [{"Name": "Service", "Value": "web"}]},
                                         "Period": 60, "Stat": "Maximum"}},
            {"Id": "e1", "Expression": "m1 * 2 + 1", "Label": "doubled"},
            {"Id": "e2", "Expression": "SUM(METRICS())"},
        ])
    results = {r["Id"]: r for r in md["MetricDataResults"]}
    m1 = results["m1"]
    assert m1["Label"] == "Latency" and m1["StatusCode"] == "Complete"
    stamps = [int(t.timestamp()) for t in m1["Timestamps"]]
    assert stamps == sorted(samples, reverse=True)
    for t, v in zip(stamps, m1["Values"]):
        assert close(v, max(samples[t]))
    assert results["e1"]["Label"] == "doubled"
    assert all(close(b, a * 2 + 1) for a, b in zip(m1["Values"], results["e1"]["Values"]))
    assert results["e2"]["Values"] == m1["Values"]

    metrics = cw.list_metrics(Namespace="App", Dimensions=[{"Name": "Service"}])["Metrics"]
    assert metrics == [{"Namespace": "App", "MetricName": "Latency",
                        "Dimensions": [{"Name": "Service", "Value": "web"}]}]
    assert cw.list_metrics(Namespace="App", Dimensions=[{"Name": "Service", "Value": "db"}])["Metrics"] == []


def error_of(call):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def test_bad_input_gets_cloudwatchs_errors(gantry):
    cw = gantry.client("cloudwatch")
    item = {"MetricName": "M", "Value": 1.0}
    code, msg = error_of(lambda: cw.put_metric_data(Namespace="App", MetricData=[item] * 1001))
    assert code == "InvalidParameterValue" and "1000" in msg
    dims = [{"Name": f"d{i}", "Value": "v"} for i in range(31)]
    code, msg = error_of(lambda: cw.put_metric_data(Namespace="App", MetricData=[{**item, "Dimensions": dims}]))
    assert code == "ValidationError" and "less than or equal to 30" in msg
    code, msg = error_of(lambda: cw.put_metric_data(Namespace="App", MetricData=[{"MetricName": "M", "Value": float("nan")}]))
    assert code == "InvalidParameterValue" and "NaN" in msg and "MetricData.member.1.Value" in msg
    code, msg = error_of(lambda: cw.put_metric_data(Namespace="App", MetricData=[{**item, "StatisticValues": {
        "SampleCount": 1, "Sum": 1, "Minimum": 1, "Maximum": 1}}]))
    assert code == "InvalidParameterCombination"
    code, msg = error_of(lambda: cw.put_metric_data(Namespace="AWS/ECS", MetricData=[item]))
    assert code == "InvalidParameterValue" and "AWS/ECS" in msg
    # An unknown unit (the AWS CLI passes it through; boto3 does too).
    p = gantry.aws("cloudwatch", "put-metric-data", "--namespace", "App", "--metric-name", "M",
                   "--value", "1", "--unit", "Parsecs", check=False)
    assert p.returncode != 0 and "ValidationError" in p.stderr and "Parsecs" in p.stderr
    code, msg = error_of(lambda: cw.get_metric_statistics(
        Namespace="App", MetricName="M", StartTime=datetime(2026, 1, 2), EndTime=datetime(2026, 1, 1),
        Period=60, Statistics=["Average"]))
    assert code == "InvalidParameterValue" and "StartTime" in msg
    code, msg = error_of(lambda: cw.get_metric_statistics(
        Namespace="App", MetricName="M", StartTime=datetime(2026, 1, 1), EndTime=datetime(2026, 1, 10),
        Period=60, Statistics=["Average"]))
    assert code == "InvalidParameterCombination" and "1440" in msg.replace(",", "")
    code, msg = error_of(lambda: cw.get_metric_data(
        StartTime=datetime(2026, 1, 1), EndTime=datetime(2026, 1, 2),
        MetricDataQueries=[{"Id": "e1", "Expression": "NOPE(1)"}]))
    assert code == "ValidationError" and "NOPE" in msg
    code, msg = error_of(lambda: cw.set_alarm_state(AlarmName="absent", StateValue="OK", StateReason="x"))
    assert code == "ResourceNotFound"


def test_alarm_moves_with_the_data_and_honours_treat_missing_data(tmp_path):
    g = Gantry(tmp_path / "data").start(extra_args=["--alarm-evaluation-interval", "1"])
    try:
        cw = g.client("cloudwatch")
        now = time.time()
        m = minute(now)
        dims = [{"Name": "Service", "Value": "api"}]

        def put(values, minutes):
            cw.put_metric_data(Namespace="App", MetricData=[
                {"MetricName": "CPU", "Dimensions": dims, "Values": values,
                 "Timestamp": datetime.fromtimestamp(t, timezone.utc), "Unit": "Percent"} for t in minutes])

        put([90.0], [m - 120, m - 60])
        cw.put_metric_alarm(AlarmName="cpu-high", Namespace="App", MetricName="CPU", Dimensions=dims,
                            Statistic="Average", Period=60, EvaluationPeriods=2, DatapointsToAlarm=1,
                            Threshold=50.0, ComparisonOperator="GreaterThanThreshold", Unit="Percent")
        for name, treat in [("absent-missing", "missing"), ("absent-breaching", "breaching"),
                            ("absent-not-breaching", "notBreaching")]:
            cw.put_metric_alarm(AlarmName=name, Namespace="App", MetricName="Nothing", Statistic="Sum",
                                Period=60, EvaluationPeriods=1, Threshold=1.0,
                                ComparisonOperator="GreaterThanThreshold", TreatMissingData=treat)

        def state(name):
            return cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]

        def wait_for(name, want, timeout=20):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                a = state(name)
                if a["StateValue"] == want:
                    return a
                time.sleep(0.2)
            raise AssertionError(f"{name} stayed {a['StateValue']}: {a.get('StateReason')}")

        a = wait_for("cpu-high", "ALARM")
        assert a["StateReason"].startswith("Threshold Crossed: "), a["StateReason"]
        assert "greater than the threshold (50" in a["StateReason"]
        assert json.loads(a["StateReasonData"])["threshold"] == 50.0
        wait_for("absent-breaching", "ALARM")
        wait_for("absent-not-breaching", "OK")
        time.sleep(2)
        assert state("absent-missing")["StateValue"] == "INSUFFICIENT_DATA"

        # Enough low samples bring every recent minute's average under the threshold.
        put([0.0] * 20, [m - 120, m - 60, m])
        wait_for("cpu-high", "OK")
        history = cw.describe_alarm_history(AlarmName="cpu-high", HistoryItemType="StateUpdate")
        summaries = [h["HistorySummary"] for h in history["AlarmHistoryItems"]]
        assert summaries[:2] == ["Alarm updated from ALARM to OK", "Alarm updated from INSUFFICIENT_DATA to ALARM"]

        # set-alarm-state holds until the next evaluation puts the alarm back.
        g.aws("cloudwatch", "set-alarm-state", "--alarm-name", "absent-missing", "--state-value", "ALARM",
              "--state-reason", "testing")
        assert g.aws_json("cloudwatch", "describe-alarms-for-metric", "--namespace", "App",
                          "--metric-name", "Nothing")["MetricAlarms"]
        wait_for("absent-missing", "INSUFFICIENT_DATA")

        code, msg = error_of(lambda: cw.put_metric_alarm(
            AlarmName="with-action", Namespace="App", MetricName="CPU", Statistic="Average", Period=60,
            EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold",
            AlarmActions=["arn:aws:sns:us-east-1:000000000000:topic"]))
        assert code == "InvalidParameterValue" and "arn:aws:sns" in msg
        code, _ = error_of(lambda: cw.put_metric_alarm(
            AlarmName="bad", Namespace="App", MetricName="CPU", Statistic="Average", Period=60,
            EvaluationPeriods=2, DatapointsToAlarm=3, Threshold=1.0, ComparisonOperator="GreaterThanThreshold"))
        assert code == "InvalidParameterCombination"
        cw.delete_alarms(AlarmNames=["cpu-high", "absent-missing"])
        names = [a["AlarmName"] for a in cw.describe_alarms()["MetricAlarms"]]
        assert names == ["absent-breaching", "absent-not-breaching"]
    finally:
        g.stop()


def test_aws_cli_v1_json_protocol(gantry):
    gantry.aws("cloudwatch", "put-metric-data", "--namespace", "Cli", "--metric-name", "Hits",
               "--dimensions", "Page=home", "--value", "5", "--unit", "Count")
    gantry.aws("cloudwatch", "put-metric-data", "--namespace", "Cli", "--metric-name", "Hits",
               "--dimensions", "Page=home", "--statistic-values", "SampleCount=2,Sum=7,Minimum=3,Maximum=4",
               "--unit", "Count")
    end = time.time() + 60
    out = gantry.aws_json("cloudwatch", "get-metric-statistics", "--namespace", "Cli", "--metric-name", "Hits",
                          "--dimensions", "Name=Page,Value=home", "--start-time", str(int(end - 600)),
                          "--end-time", str(int(end)), "--period", "3600", "--statistics", "Sum", "SampleCount")
    assert len(out["Datapoints"]) == 1
    assert out["Datapoints"][0]["Sum"] == 12.0 and out["Datapoints"][0]["SampleCount"] == 3.0
    listed = gantry.aws_json("cloudwatch", "list-metrics", "--namespace", "Cli")["Metrics"]
    assert listed == [{"Namespace": "Cli", "MetricName": "Hits", "Dimensions": [{"Name": "Page", "Value": "home"}]}]


def test_aws_cli_v2_query_protocol(gantry):
    """Debian's AWS CLI v2 speaks awsQuery to CloudWatch."""
    cli = "/usr/bin/aws"
    if not os.path.exists(cli):
        if os.environ.get("GANTRY_REQUIRE_DOCKER") == "1":
            pytest.fail("Debian's awscli v2 is required in CI")
        pytest.skip("SKIPPED: no Debian AWS CLI v2 on this machine")
    env = gantry.env()

    def v2(*args, check=True):
        p = subprocess.run([cli, "--endpoint-url", gantry.endpoint, "--output", "json", *args],
                           capture_output=True, text=True, env=env, timeout=60)
        if check:
            assert p.returncode == 0, p.stderr
        return p

    v2("cloudwatch", "put-metric-data", "--namespace", "Q", "--metric-data",
       json.dumps([{"MetricName": "Depth", "Dimensions": [{"Name": "Queue", "Value": "jobs"}],
                    "Values": [1, 2, 3], "Counts": [1, 1, 2], "Unit": "Count"}]))
    end = time.time() + 60
    out = json.loads(v2("cloudwatch", "get-metric-statistics", "--namespace", "Q", "--metric-name", "Depth",
                        "--dimensions", "Name=Queue,Value=jobs", "--start-time", str(int(end - 600)),
                        "--end-time", str(int(end)), "--period", "3600",
                        "--statistics", "Average", "Maximum").stdout)
    assert out["Label"] == "Depth"
    [p] = out["Datapoints"]
    assert p["Average"] == 9 / 4 and p["Maximum"] == 3.0 and p["Unit"] == "Count"
    md = json.loads(v2("cloudwatch", "get-metric-data", "--start-time", str(int(end - 3600)),
                       "--end-time", str(int(end)), "--metric-data-queries", json.dumps([
                           {"Id": "m", "MetricStat": {"Metric": {"Namespace": "Q", "MetricName": "Depth",
                                                                  "Dimensions": [{"Name": "Queue", "Value": "jobs"}]},
                                                       "Period": 60, "Stat": "Sum"}}])).stdout)
    assert md["MetricDataResults"][0]["Values"] == [9.0]
    v2("cloudwatch", "put-metric-alarm", "--alarm-name", "q-depth", "--namespace", "Q", "--metric-name", "Depth",
       "--dimensions", "Name=Queue,Value=jobs", "--statistic", "Maximum", "--period", "60",
       "--evaluation-periods", "1", "--threshold", "10", "--comparison-operator", "GreaterThanThreshold")
    alarms = json.loads(v2("cloudwatch", "describe-alarms", "--alarm-names", "q-depth").stdout)["MetricAlarms"]
    assert alarms[0]["AlarmArn"] == "arn:aws:cloudwatch:us-east-1:000000000000:alarm:q-depth"
    assert alarms[0]["StateValue"] == "INSUFFICIENT_DATA" and alarms[0]["Dimensions"] == [{"Name": "Queue", "Value": "jobs"}]
    bad = v2("cloudwatch", "put-metric-data", "--namespace", "Q", "--metric-name", "Depth", "--value", "nan",
             check=False)
    assert bad.returncode != 0 and "InvalidParameterValue" in bad.stderr, bad.stderr
    listed = json.loads(v2("cloudwatch", "list-metrics", "--namespace", "Q").stdout)["Metrics"]
    assert listed == [{"Namespace": "Q", "MetricName": "Depth", "Dimensions": [{"Name": "Queue", "Value": "jobs"}]}]


def test_acknowledged_metric_data_survives_kill_9(tmp_path):
    g = Gantry(tmp_path / "data").start()
    try:
        cw = g.client("cloudwatch")
        t = minute(time.time()) - 60
        cw.put_metric_data(Namespace="Durable", MetricData=[
            {"MetricName": "N", "Timestamp": datetime.fromtimestamp(t, timezone.utc), "Value": float(i)}
            for i in range(10)])
        g.stop(sig=signal.SIGKILL)
        g.start()
        cw = g.client("cloudwatch")
        out = cw.get_metric_statistics(
            Namespace="Durable", MetricName="N", StartTime=datetime.fromtimestamp(t - 60, timezone.utc),
            EndTime=datetime.fromtimestamp(t + 60, timezone.utc), Period=60, Statistics=["Sum", "SampleCount"])
        [p] = out["Datapoints"]
        assert p["Sum"] == 45.0 and p["SampleCount"] == 10.0
    finally:
        g.stop()


def nearest_rank(samples, p):
    ordered = sorted(samples)
    return ordered[max(math.ceil(p / 100 * len(ordered)), 1) - 1]


def test_percentiles_from_values_and_counts(gantry):
    cw = gantry.client("cloudwatch")
    now = time.time()
    t0 = datetime.fromtimestamp(minute(now) - 120, timezone.utc)
    rng = random.Random(7)
    values = [round(rng.uniform(0, 1000), 3) for _ in range(140)]
    counts = [rng.randint(1, 5) for _ in values]
    samples = [v for v, c in zip(values, counts) for _ in range(c)]
    cw.put_metric_data(Namespace="Pct", MetricData=[
        {"MetricName": "Latency", "Timestamp": t0, "Values": values[:70], "Counts": counts[:70]},
        {"MetricName": "Latency", "Timestamp": t0, "Values": values[70:], "Counts": counts[70:]}])
    window = dict(StartTime=datetime.fromtimestamp(minute(now) - 600, timezone.utc),
                  EndTime=datetime.fromtimestamp(minute(now) + 60, timezone.utc), Period=660)
    wanted = ["p0", "p10", "p50", "p90", "p99", "p99.9", "p100"]
    points = cw.get_metric_statistics(Namespace="Pct", MetricName="Latency", ExtendedStatistics=wanted,
                                      **window)["Datapoints"]
    assert len(points) == 1
    got = points[0]["ExtendedStatistics"]
    assert got == {p: nearest_rank(samples, float(p[1:])) for p in wanted}
    r = cw.get_metric_data(StartTime=window["StartTime"], EndTime=window["EndTime"], MetricDataQueries=[{
        "Id": "p90", "MetricStat": {"Metric": {"Namespace": "Pct", "MetricName": "Latency"},
                                    "Period": 660, "Stat": "p90"}}])
    assert r["MetricDataResults"][0]["Values"] == [nearest_rank(samples, 90)]

    # A statistic set of distinct values hides the raw values: no percentile, as in CloudWatch.
    cw.put_metric_data(Namespace="Pct", MetricData=[{"MetricName": "Set", "Timestamp": t0, "StatisticValues": {
        "SampleCount": 3, "Sum": 6, "Minimum": 1, "Maximum": 3}}])
    points = cw.get_metric_statistics(Namespace="Pct", MetricName="Set", ExtendedStatistics=["p50"], **window)["Datapoints"]
    assert len(points) == 1 and "ExtendedStatistics" not in points[0]
    # One repeated value does not.
    cw.put_metric_data(Namespace="Pct", MetricData=[{"MetricName": "Same", "Timestamp": t0, "StatisticValues": {
        "SampleCount": 4, "Sum": 8, "Minimum": 2, "Maximum": 2}}])
    points = cw.get_metric_statistics(Namespace="Pct", MetricName="Same", ExtendedStatistics=["p50"], **window)["Datapoints"]
    assert points[0]["ExtendedStatistics"] == {"p50": 2.0}
    # The AWS CLI v2 (awsQuery) reads the same map.
    out = gantry.aws_json("cloudwatch", "get-metric-statistics", "--namespace", "Pct", "--metric-name", "Latency",
                          "--start-time", window["StartTime"].isoformat(), "--end-time", window["EndTime"].isoformat(),
                          "--period", "660", "--extended-statistics", "p50", "p99")
    assert out["Datapoints"][0]["ExtendedStatistics"] == {"p50": got["p50"], "p99": got["p99"]}

    code, msg = error_of(lambda: cw.get_metric_statistics(
        Namespace="Pct", MetricName="Latency", ExtendedStatistics=["tm99"], **window))
    assert code == "InvalidParameterValue" and "tm99" in msg
    code, msg = error_of(lambda: cw.get_metric_statistics(
        Namespace="Pct", MetricName="Latency", ExtendedStatistics=["p99"], Statistics=["Sum"], **window))
    assert code == "InvalidParameterCombination"


def test_alarm_on_a_percentile(tmp_path):
    g = Gantry(tmp_path / "data").start(extra_args=["--alarm-evaluation-interval", "1"])
    try:
        cw = g.client("cloudwatch")
        cw.put_metric_alarm(AlarmName="p90-high", Namespace="Pct", MetricName="Latency", ExtendedStatistic="p90",
                            Period=60, EvaluationPeriods=1, Threshold=100, ComparisonOperator="GreaterThanThreshold",
                            TreatMissingData="notBreaching")
        alarm = cw.describe_alarms(AlarmNames=["p90-high"])["MetricAlarms"][0]
        assert alarm["ExtendedStatistic"] == "p90" and "Statistic" not in alarm
        # Nine fast values and one slow: Average 109 would breach, p90 (10) does not.
        ts = datetime.fromtimestamp(minute(time.time()) - 60, timezone.utc)
        cw.put_metric_data(Namespace="Pct", MetricData=[{"MetricName": "Latency", "Timestamp": ts,
                                                         "Values": [10, 1000], "Counts": [9, 1]}])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = cw.describe_alarms(AlarmNames=["p90-high"])["MetricAlarms"][0]["StateValue"]
            if state != "INSUFFICIENT_DATA":
                break
            time.sleep(0.5)
        assert state == "OK"
        code, _ = error_of(lambda: cw.put_metric_alarm(
            AlarmName="both", Namespace="Pct", MetricName="Latency", ExtendedStatistic="p90", Statistic="Average",
            Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold"))
        assert code == "InvalidParameterCombination"
    finally:
        g.stop()

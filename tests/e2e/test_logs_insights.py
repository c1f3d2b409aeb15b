"""CloudWatch Logs Insights through the real binary, with boto3 and the AWS CLI."""

import time

import botocore.exceptions
import pytest

from conftest import Gantry

MINUTE = 60_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    g = Gantry(tmp_path_factory.mktemp("insights") / "data").start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def known_events(server):
    """A group with events at known minutes across two streams: 3 in minute 0, 5 in minute 1,
    none in minute 2, 1 in minute 3."""
    logs = server.client("logs")
    group = "/insights/known"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="a")
    logs.create_log_stream(logGroupName=group, logStreamName="b")
    base = (int(time.time() * 1000) // MINUTE - 30) * MINUTE
    a = [
        (base + 1_000, "GET /index.html 200 12"),
        (base + 59_999, "GET /api/users 500 40"),
        (base + MINUTE, '{"level":"ERROR","path":"/api/orders","ms":250}'),
        (base + MINUTE + 10, '{"level":"INFO","path":"/api/orders","ms":30}'),
        (base + 3 * MINUTE + 5, "POST /api/orders 503 7"),
    ]
    b = [
        (base + 30_000, "GET /health 200 1"),
        (base + MINUTE + 1, '{"level":"ERROR","path":"/api/users","ms":90}'),
        (base + MINUTE + 2, '{"level":"WARN","path":"/api/users","ms":60}'),
        (base + 2 * MINUTE - 1, "GET /index.html 404 3"),
    ]
    for stream, events in (("a", a), ("b", b)):
        logs.put_log_events(logGroupName=group, logStreamName=stream,
                            logEvents=[{"timestamp": t, "message": m} for t, m in events])
    return group, base


def wait_results(logs, query_id, deadline_s=30):
    deadline = time.monotonic() + deadline_s
    while True:
        out = logs.get_query_results(queryId=query_id)
        if out["status"] not in ("Scheduled", "Running"):
            return out
        assert time.monotonic() < deadline, f"query {query_id} still {out['status']}"
        time.sleep(0.05)


def rows_as_dicts(out):
    return [{c["field"]: c["value"] for c in row} for row in out["results"]]


def fmt_minute(ms):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + ".000"


def test_stats_count_by_bin_returns_the_exact_counts(server, known_events):
    group, base = known_events
    logs = server.client("logs")
    qid = logs.start_query(logGroupName=group, startTime=base // 1000, endTime=(base + 10 * MINUTE) // 1000,
                           queryString="stats count(*) by bin(1m)")["queryId"]
    out = wait_results(logs, qid)
    assert out["status"] == "Complete"
    got = {r["bin(1m)"]: r["count(*)"] for r in rows_as_dicts(out)}
    assert got == {fmt_minute(base): "3", fmt_minute(base + MINUTE): "5", fmt_minute(base + 3 * MINUTE): "1"}
    stats = out["statistics"]
    assert stats["recordsScanned"] == 9.0 and stats["recordsMatched"] == 9.0
    assert stats["bytesScanned"] > 0 and stats["logGroupsScanned"] == 1.0
    # The time range selects: only minute 1 (endTime is inclusive, in seconds).
    qid = logs.start_query(logGroupName=group, startTime=(base + MINUTE) // 1000,
                           endTime=(base + 2 * MINUTE) // 1000 - 1, queryString="stats count(*) as n")["queryId"]
    assert rows_as_dicts(wait_results(logs, qid)) == [{"n": "5"}]


def test_filter_parse_sort_limit_dedup_display(server, known_events):
    group, base = known_events
    logs = server.client("logs")
    window = dict(logGroupName=group, startTime=base // 1000, endTime=(base + 10 * MINUTE) // 1000)

    def run(q, **kw):
        out = wait_results(logs, logs.start_query(queryString=q, **{**window, **kw})["queryId"])
        assert out["status"] == "Complete", out
        return rows_as_dicts(out)

    rows = run("parse @message '* * * *' as method, path, status, ms | filter status >= 500 "
               "| sort ms desc | display path, status, ms")
    assert rows == [{"path": "/api/users", "status": "500", "ms": "40"},
                    {"path": "/api/orders", "status": "503", "ms": "7"}]
    rows = run("filter level in ['ERROR', 'WARN'] and path like /users/ | fields @logStream, level, ms | sort ms asc")
    assert [(r["@logStream"], r["level"], r["ms"]) for r in rows] == [("b", "WARN", "60"), ("b", "ERROR", "90")]
    rows = run("filter ispresent(level) | stats avg(ms) as avg, max(ms) as max, min(ms) as min, sum(ms) as sum, "
               "pct(ms, 50) as p50 by level | sort level")
    assert rows == [
        {"level": "ERROR", "avg": "170", "max": "250", "min": "90", "sum": "340", "p50": "90"},
        {"level": "INFO", "avg": "30", "max": "30", "min": "30", "sum": "30", "p50": "30"},
        {"level": "WARN", "avg": "60", "max": "60", "min": "60", "sum": "60", "p50": "60"},
    ]
    rows = run("parse @message /^(?<verb>[A-Z]+) (?<url>\\S+)/ | filter ispresent(verb) | sort @timestamp asc "
               "| dedup url | display url")
    assert [r["url"] for r in rows] == ["/index.html", "/health", "/api/users", "/api/orders"]
    rows = run("fields @timestamp, @message | filter not @message like 'api' | limit 2")
    # Most recent first when there is no sort.
    assert [r["@message"] for r in rows] == ["GET /index.html 404 3", "GET /health 200 1"]
    assert set(rows[0]) == {"@timestamp", "@message"}
    assert rows[0]["@timestamp"] == time.strftime(
        "%Y-%m-%d %H:%M:%S", time.gmtime((base + 2 * MINUTE - 1) // 1000)) + ".999"
    rows = run("filter @message like 'orders'", limit=1)
    assert len(rows) == 1 and rows[0]["@log"].endswith(":" + group) and rows[0]["@logStream"] == "a"


def test_queries_through_the_aws_cli(server, known_events):
    group, base = known_events
    started = server.aws_json("logs", "start-query", "--log-group-names", group,
                              "--start-time", str(base // 1000), "--end-time", str((base + 10 * MINUTE) // 1000),
                              "--query-string", "filter @message like /index/ | stats count(*) as hits")
    deadline = time.monotonic() + 30
    while True:
        out = server.aws_json("logs", "get-query-results", "--query-id", started["queryId"])
        if out["status"] == "Complete":
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert out["results"] == [[{"field": "hits", "value": "2"}]]
    listed = server.aws_json("logs", "describe-queries", "--log-group-name", group, "--status", "Complete")
    assert started["queryId"] in [q["queryId"] for q in listed["queries"]]
    q = next(q for q in listed["queries"] if q["queryId"] == started["queryId"])
    assert q["logGroupName"] == group and q["queryLanguage"] == "CWLI"


def client_error(call):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    return e.value.response


def test_query_errors_answer_as_aws(server, known_events):
    group, base = known_events
    logs = server.client("logs")
    window = dict(startTime=base // 1000, endTime=(base + 10 * MINUTE) // 1000)
    r = client_error(lambda: logs.start_query(logGroupName=group, queryString="fields @message | frobnicate x",
                                              **window))
    assert r["Error"]["Code"] == "MalformedQueryException"
    assert r["Error"]["Message"] == "unexpected symbol found frobnicate at line 1 and position 18"
    assert r["queryCompileError"]["location"] == {"startCharOffset": 18, "endCharOffset": 28}
    r = client_error(lambda: logs.start_query(logGroupName="/insights/none", queryString="fields @message", **window))
    assert r["Error"]["Code"] == "ResourceNotFoundException"
    assert r["Error"]["Message"] == "Log group '/insights/none' does not exist for account ID '000000000000'"
    r = client_error(lambda: logs.start_query(logGroupName=group, queryString="fields @message",
                                              startTime=window["endTime"], endTime=window["startTime"]))
    assert (r["Error"]["Code"], r["Error"]["Message"]) == (
        "InvalidParameterException", "End time should not be before the start time")
    r = client_error(lambda: logs.start_query(logGroupName=group, queryString="SELECT 1", queryLanguage="SQL",
                                              **window))
    assert r["Error"]["Code"] == "InvalidParameterException" and "SQL is not supported" in r["Error"]["Message"]
    r = client_error(lambda: logs.start_query(logGroupName=group, logGroupNames=[group],
                                              queryString="fields @message", **window))
    assert r["Error"]["Code"] == "InvalidParameterException"
    r = client_error(lambda: logs.start_query(logGroupName=group, queryString="fields @message", limit=100_001,
                                              **window))
    assert r["Error"]["Code"] == "InvalidParameterException"
    r = client_error(lambda: logs.get_query_results(queryId="00000000-0000-0000-0000-000000000000"))
    assert r["Error"]["Code"] == "ResourceNotFoundException"
    r = client_error(lambda: logs.stop_query(queryId="00000000-0000-0000-0000-000000000000"))
    assert r["Error"]["Code"] == "ResourceNotFoundException"
    done = logs.start_query(logGroupName=group, queryString="stats count(*)", **window)["queryId"]
    wait_results(logs, done)
    assert logs.stop_query(queryId=done)["success"] is False


def test_query_definitions_lifecycle(server):
    logs = server.client("logs")
    qid = logs.put_query_definition(name="ops/errors", queryString="filter level = 'ERROR'",
                                    logGroupNames=["/insights/known"])["queryDefinitionId"]
    logs.put_query_definition(name="other", queryString="fields @message")
    defs = logs.describe_query_definitions(queryDefinitionNamePrefix="ops/")["queryDefinitions"]
    assert [(d["queryDefinitionId"], d["name"], d["queryString"], d["logGroupNames"]) for d in defs] == [
        (qid, "ops/errors", "filter level = 'ERROR'", ["/insights/known"])]
    assert logs.put_query_definition(queryDefinitionId=qid, name="ops/errors",
                                     queryString="filter level = 'WARN'")["queryDefinitionId"] == qid
    defs = logs.describe_query_definitions(queryDefinitionNamePrefix="ops/")["queryDefinitions"]
    assert defs[0]["queryString"] == "filter level = 'WARN'" and "lastModified" in defs[0]
    assert logs.delete_query_definition(queryDefinitionId=qid)["success"] is True
    assert logs.describe_query_definitions(queryDefinitionNamePrefix="ops/")["queryDefinitions"] == []
    r = client_error(lambda: logs.delete_query_definition(queryDefinitionId=qid))
    assert r["Error"]["Code"] == "ResourceNotFoundException"
    r = client_error(lambda: logs.put_query_definition(queryDefinitionId=qid, name="x", queryString="fields a"))
    assert r["Error"]["Code"] == "ResourceNotFoundException"

"""Drives Gantry's CloudWatch Logs API with boto3 and the AWS CLI.

Run by tests/clients.rs with AWS_ENDPOINT_URL and credentials in the environment. Each check
asserts; any failure exits non-zero with a traceback. Bounded: every wait has a deadline.
"""

import json
import os
import subprocess
import sys
import threading
import time
import uuid

import boto3
from botocore.config import Config

GROUP = "/ecs/e2e-" + uuid.uuid4().hex[:8]
CLI = [sys.executable, "-m", "awscli"]

logs = boto3.client("logs", config=Config(retries={"max_attempts": 2}))


def now_ms():
    return int(time.time() * 1000)


def cli(*args, check=True):
    out = subprocess.run(
        CLI + list(args) + ["--output", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and out.returncode != 0:
        raise AssertionError(f"aws {' '.join(args)} failed: {out.stderr}")
    return out


def expect_error(code, fn, **kwargs):
    try:
        fn(**kwargs)
    except logs.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"expected {code}, got {got}: {e}"
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        return e
    raise AssertionError(f"expected {code}")


# Groups and streams.
logs.create_log_group(logGroupName=GROUP, tags={"team": "e2e"})
expect_error("ResourceAlreadyExistsException", logs.create_log_group, logGroupName=GROUP)
try:
    logs.delete_log_group(logGroupName=GROUP + "-missing")
    raise AssertionError("expected ResourceNotFoundException")
except logs.exceptions.ResourceNotFoundException as e:
    assert e.response["Error"]["Message"] == "The specified log group does not exist."
streams = ["web/app/task1", "web/app/task2"]
for s in streams:
    logs.create_log_stream(logGroupName=GROUP, logStreamName=s)
groups = logs.describe_log_groups(logGroupNamePrefix=GROUP)["logGroups"]
assert [g["logGroupName"] for g in groups] == [GROUP], groups
arn = groups[0]["logGroupArn"]
assert arn == f"arn:aws:logs:us-east-1:000000000000:log-group:{GROUP}", arn
assert groups[0]["arn"] == arn + ":*"

# Ingestion: 25 events interleaved across two streams, in several batches.
base = now_ms() - 60_000
expected = []
for batch in range(5):
    for i, s in enumerate(streams):
        events = []
        for k in range(2 + i):
            ts = base + batch * 1000 + i * 10 + k
            msg = f"{'ERROR' if (batch + k) % 3 == 0 else 'INFO'} batch={batch} stream={i} k={k}"
            events.append({"timestamp": ts, "message": msg})
            expected.append((ts, s, msg))
        r = logs.put_log_events(logGroupName=GROUP, logStreamName=s, logEvents=events)
        assert r["nextSequenceToken"], r
expected.sort()
assert len(expected) == 25

# The filter_log_events paginator, 4 events a page.
pages = list(
    logs.get_paginator("filter_log_events").paginate(
        logGroupName=GROUP, interleaved=True, PaginationConfig={"PageSize": 4}
    )
)
got = [(e["timestamp"], e["logStreamName"], e["message"]) for p in pages for e in p["events"]]
assert got == expected, got
assert len(pages) == 7, len(pages)
assert len({e["eventId"] for p in pages for e in p["events"]}) == 25
errors = [m for (_, _, m) in expected if m.startswith("ERROR")]
full = logs.get_paginator("filter_log_events").paginate(
    logGroupName=GROUP, filterPattern="ERROR -stream=9"
).build_full_result()
assert [e["message"] for e in full["events"]] == errors

# GetLogEvents forward until the token repeats; backward from the tail.
seen, token = [], None
while True:
    kw = {"logGroupName": GROUP, "logStreamName": streams[0], "startFromHead": True, "limit": 3}
    if token:
        kw["nextToken"] = token
    r = logs.get_log_events(**kw)
    seen += [e["message"] for e in r["events"]]
    if r["nextForwardToken"] == token:
        break
    token = r["nextForwardToken"]
assert seen == [m for (_, s, m) in expected if s == streams[0]], seen
tail = logs.get_log_events(logGroupName=GROUP, logStreamName=streams[0], limit=2)
assert [e["message"] for e in tail["events"]] == seen[-2:]
assert tail["nextBackwardToken"].startswith("b/") and tail["nextForwardToken"].startswith("f/")

# Streams: ordered by last event time, descending, paginated.
ds = logs.get_paginator("describe_log_streams").paginate(
    logGroupName=GROUP, orderBy="LastEventTime", descending=True, PaginationConfig={"PageSize": 1}
).build_full_result()
assert [s["logStreamName"] for s in ds["logStreams"]] == list(reversed(streams)), ds
assert ds["logStreams"][0]["lastEventTimestamp"] == expected[-1][0]

# Validation the way AWS answers it.
expect_error(
    "InvalidParameterException",
    logs.put_log_events,
    logGroupName=GROUP,
    logStreamName=streams[0],
    logEvents=[{"timestamp": base + 10, "message": "b"}, {"timestamp": base, "message": "a"}],
)
r = logs.put_log_events(
    logGroupName=GROUP,
    logStreamName=streams[0],
    logEvents=[{"timestamp": now_ms() - 20 * 86_400_000, "message": "ancient"}],
)
assert r["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 1}, r
expect_error("InvalidParameterException", logs.put_retention_policy, logGroupName=GROUP, retentionInDays=2)
logs.put_retention_policy(logGroupName=GROUP, retentionInDays=7)
assert logs.describe_log_groups(logGroupNamePrefix=GROUP)["logGroups"][0]["retentionInDays"] == 7
logs.tag_resource(resourceArn=arn, tags={"env": "test"})
assert logs.list_tags_for_resource(resourceArn=arn)["tags"] == {"team": "e2e", "env": "test"}
logs.untag_resource(resourceArn=arn, tagKeys=["team"])
assert logs.list_tags_log_group(logGroupName=GROUP)["tags"] == {"env": "test"}
expect_error("MalformedQueryException", logs.start_query, logGroupName=GROUP, startTime=0, endTime=1, queryString="x")
expect_error("InvalidOperationException", logs.create_export_task, logGroupName=GROUP, fromTime=0, to=1, destination="bucket")

# The AWS CLI.
out = json.loads(cli("logs", "describe-log-groups", "--log-group-name-prefix", GROUP).stdout)
assert out["logGroups"][0]["logGroupName"] == GROUP
out = json.loads(cli("logs", "filter-log-events", "--log-group-name", GROUP, "--filter-pattern", "ERROR", "--page-size", "2").stdout)
assert [e["message"] for e in out["events"]] == errors, out
out = json.loads(cli("logs", "get-log-events", "--log-group-name", GROUP, "--log-stream-name", streams[1], "--start-from-head").stdout)
assert [e["message"] for e in out["events"]] == [m for (_, s, m) in expected if s == streams[1]]
out = cli("logs", "describe-log-streams", "--log-group-name", GROUP + "-missing", check=False)
assert out.returncode != 0 and "ResourceNotFoundException" in out.stderr, out.stderr


def tail_events(start_ms, follow_seconds=0.0, poll=1.0):
    """`aws logs tail` (AWS CLI v2, customizations/logs/tail.py) as it drives the API: the
    filter_log_events paginator with interleaved=True; with --follow, repeated calls from the
    newest timestamp seen, dropping event ids already shown at that timestamp."""
    kwargs = {"logGroupName": GROUP, "interleaved": True, "startTime": start_ms}
    if not follow_seconds:
        for page in logs.get_paginator("filter_log_events").paginate(**kwargs):
            yield from page["events"]
        return
    deadline = time.time() + follow_seconds
    seen_at = {}
    while time.time() < deadline:
        r = logs.filter_log_events(**kwargs)
        for e in r["events"]:
            ids = seen_at.setdefault(e["timestamp"], set())
            if e["eventId"] not in ids:
                ids.add(e["eventId"])
                yield e
        if seen_at:
            newest = max(seen_at)
            seen_at = {newest: seen_at[newest]}
        if "nextToken" in r:
            kwargs["nextToken"] = r["nextToken"]
        else:
            kwargs.pop("nextToken", None)
            if seen_at:
                kwargs["startTime"] = max(seen_at)
            time.sleep(poll)


since_1h = now_ms() - 3_600_000
probe = cli("logs", "tail", GROUP, "--since", "1h", check=False)
if probe.returncode == 0:
    lines = probe.stdout.splitlines()
    assert len(lines) == 25 and all(m in probe.stdout for (_, _, m) in expected), probe.stdout
    print("aws logs tail: real CLI", flush=True)
else:
    assert "Invalid choice" in probe.stderr or "invalid choice" in probe.stderr, probe.stderr
    print("*** NOTE: this AWS CLI (v1) has no `logs tail`; driving the API exactly as its v2 implementation does ***", flush=True)
    got = [e["message"] for e in tail_events(since_1h)]
    assert got == [m for (_, _, m) in expected], got

# --follow: events written while following show up, once each.
def writer():
    for n in range(3):
        time.sleep(0.7)
        logs.put_log_events(
            logGroupName=GROUP,
            logStreamName=streams[n % 2],
            logEvents=[{"timestamp": now_ms(), "message": f"followed {n}"}],
        )


t = threading.Thread(target=writer)
if probe.returncode == 0:
    t.start()
    try:
        follow = subprocess.run(CLI + ["logs", "tail", GROUP, "--since", "1h", "--follow"], capture_output=True, text=True, timeout=12)
        followed = follow.stdout
    except subprocess.TimeoutExpired as e:
        followed = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    t.join()
    for n in range(3):
        assert f"followed {n}" in followed, followed
else:
    t.start()
    followed = [e["message"] for e in tail_events(since_1h, follow_seconds=5, poll=0.5)]
    t.join()
    assert followed[:25] == [m for (_, _, m) in expected]
    assert followed[25:] == ["followed 0", "followed 1", "followed 2"], followed[25:]

logs.delete_log_group(logGroupName=GROUP)
assert logs.describe_log_groups(logGroupNamePrefix=GROUP)["logGroups"] == []
print("logs clients: all checks passed", flush=True)

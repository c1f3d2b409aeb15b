"""CloudWatch Logs through the real binary, with boto3 and the AWS CLI."""

import os
import subprocess
import time

import pytest


def test_logs_round_trip_with_boto3_and_cli(gantry):
    logs = gantry.client("logs")
    logs.create_log_group(logGroupName="/ecs/web", tags={"team": "a"})
    logs.create_log_stream(logGroupName="/ecs/web", logStreamName="web/app/task1")
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName="/ecs/web", logStreamName="web/app/task1",
                        logEvents=[{"timestamp": now + i, "message": f"GET /index.html {i}"} for i in range(5)])
    out = gantry.aws_json("logs", "get-log-events", "--log-group-name", "/ecs/web",
                          "--log-stream-name", "web/app/task1", "--start-from-head")
    assert [e["message"] for e in out["events"]] == [f"GET /index.html {i}" for i in range(5)]
    found = gantry.aws_json("logs", "filter-log-events", "--log-group-name", "/ecs/web",
                            "--filter-pattern", '"index.html 3"')
    assert [e["message"] for e in found["events"]] == ["GET /index.html 3"]
    groups = logs.describe_log_groups(logGroupNamePrefix="/ecs")["logGroups"]
    assert groups[0]["logGroupName"] == "/ecs/web" and groups[0]["arn"].startswith("arn:aws:logs:us-east-1:")
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.get_log_events(logGroupName="/nope", logStreamName="x")


def test_aws_logs_tail(gantry):
    """`aws logs tail` (AWS CLI v2; Debian's package takes --endpoint-url)."""
    # pip's AWS CLI v1 has no `logs tail`; Debian's v2 package (scripts/test installs it) does.
    cli = "/usr/bin/aws"
    if not os.path.exists(cli):
        if os.environ.get("GANTRY_REQUIRE_DOCKER") == "1":
            pytest.fail("an AWS CLI with `logs tail` (Debian's awscli v2) is required in CI")
        pytest.skip("SKIPPED: no AWS CLI with `logs tail` on this machine")
    logs = gantry.client("logs")
    logs.create_log_group(logGroupName="/ecs/tail")
    logs.create_log_stream(logGroupName="/ecs/tail", logStreamName="s1")
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName="/ecs/tail", logStreamName="s1",
                        logEvents=[{"timestamp": now, "message": "first line"}])
    env = gantry.env()
    p = subprocess.run([cli, "--endpoint-url", gantry.endpoint, "logs", "tail", "/ecs/tail", "--since", "1h"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "first line" in p.stdout

    follow = subprocess.Popen([cli, "--endpoint-url", gantry.endpoint, "logs", "tail", "/ecs/tail", "--follow",
                               "--since", "1h"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(2)
        logs.put_log_events(logGroupName="/ecs/tail", logStreamName="s1",
                            logEvents=[{"timestamp": int(time.time() * 1000), "message": "second line"}])
        time.sleep(7)
    finally:
        follow.terminate()
        out, _ = follow.communicate(timeout=30)
    assert "first line" in out and "second line" in out
    assert out.count("second line") == 1

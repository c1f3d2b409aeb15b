"""CloudWatch Logs' documented error cases, operation by operation, as boto3 sees them: the
exception code, HTTP status and AWS's wording."""

import re
import time
from pathlib import Path

import botocore.config
from botocore.exceptions import ClientError

from conftest import error_of

GROUP_NOT_FOUND = (400, "ResourceNotFoundException", "The specified log group does not exist.")
STREAM_NOT_FOUND = (400, "ResourceNotFoundException", "The specified log stream does not exist.")
QUERY_ID = "00000000-0000-0000-0000-000000000000"


def now_ms():
    return int(time.time() * 1000)


def test_a_missing_log_group_is_reported_by_every_operation_on_a_group(gantry):
    logs = gantry.client("logs")
    arn = "arn:aws:logs:us-east-1:000000000000:log-group:nope"
    transform = [{"metricName": "m", "metricNamespace": "n", "metricValue": "1"}]
    calls = [
        (logs.delete_log_group, dict(logGroupName="nope")),
        (logs.create_log_stream, dict(logGroupName="nope", logStreamName="s")),
        (logs.delete_log_stream, dict(logGroupName="nope", logStreamName="s")),
        (logs.describe_log_streams, dict(logGroupName="nope")),
        (logs.put_log_events, dict(logGroupName="nope", logStreamName="s",
                                   logEvents=[{"timestamp": now_ms(), "message": "m"}])),
        (logs.get_log_events, dict(logGroupName="nope", logStreamName="s")),
        (logs.filter_log_events, dict(logGroupName="nope")),
        (logs.put_retention_policy, dict(logGroupName="nope", retentionInDays=1)),
        (logs.delete_retention_policy, dict(logGroupName="nope")),
        (logs.tag_log_group, dict(logGroupName="nope", tags={"k": "v"})),
        (logs.untag_log_group, dict(logGroupName="nope", tags=["k"])),
        (logs.list_tags_log_group, dict(logGroupName="nope")),
        (logs.tag_resource, dict(resourceArn=arn, tags={"k": "v"})),
        (logs.untag_resource, dict(resourceArn=arn, tagKeys=["k"])),
        (logs.list_tags_for_resource, dict(resourceArn=arn)),
        (logs.put_metric_filter, dict(logGroupName="nope", filterName="f", filterPattern="",
                                      metricTransformations=transform)),
        (logs.delete_metric_filter, dict(logGroupName="nope", filterName="f")),
        (logs.describe_metric_filters, dict(logGroupName="nope")),
    ]
    for call, kw in calls:
        assert error_of(call, **kw) == GROUP_NOT_FOUND, call.__name__
    status, code, message = error_of(logs.start_query, logGroupName="nope", startTime=0, endTime=10,
                                     queryString="fields @message")
    assert (status, code) == (400, "ResourceNotFoundException")
    assert "nope" in message
    assert logs.describe_log_groups()["logGroups"] == []


def test_groups_and_streams(gantry):
    logs = gantry.client("logs")
    logs.create_log_group(logGroupName="g")
    assert error_of(logs.create_log_group, logGroupName="g") == (
        400, "ResourceAlreadyExistsException", "The specified log group already exists")
    logs.create_log_stream(logGroupName="g", logStreamName="s")
    assert error_of(logs.create_log_stream, logGroupName="g", logStreamName="s") == (
        400, "ResourceAlreadyExistsException", "The specified log stream already exists")
    assert error_of(logs.delete_log_stream, logGroupName="g", logStreamName="nope") == STREAM_NOT_FOUND
    assert error_of(logs.put_log_events, logGroupName="g", logStreamName="nope",
                    logEvents=[{"timestamp": now_ms(), "message": "m"}]) == STREAM_NOT_FOUND
    assert error_of(logs.get_log_events, logGroupName="g", logStreamName="nope") == STREAM_NOT_FOUND
    assert error_of(logs.delete_metric_filter, logGroupName="g", filterName="nope") == (
        400, "ResourceNotFoundException", "The specified metric filter does not exist.")
    status, code, message = error_of(logs.put_retention_policy, logGroupName="g", retentionInDays=2)
    assert (status, code) == (400, "InvalidParameterException")
    assert message.startswith("1 validation error detected: Value '2' at 'retentionInDays' failed to satisfy "
                              "constraint: Member must satisfy enum value set: [1, 3, 5, 7, 14, 30, 60, 90,")
    assert error_of(logs.describe_log_streams, logGroupName="g", orderBy="LastEventTime",
                    logStreamNamePrefix="s") == (
        400, "InvalidParameterException", "Cannot order by LastEventTime with a logStreamNamePrefix.")
    assert error_of(logs.filter_log_events, logGroupName="g", logStreamNames=["s"],
                    logStreamNamePrefix="s") == (
        400, "InvalidParameterException",
        "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.")
    assert error_of(logs.get_log_events, logStreamName="s")[:2] == (400, "InvalidParameterException")


def test_put_log_events(gantry):
    logs = gantry.client("logs")
    logs.create_log_group(logGroupName="g")
    logs.create_log_stream(logGroupName="g", logStreamName="s")
    t = now_ms()
    assert error_of(logs.put_log_events, logGroupName="g", logStreamName="s",
                    logEvents=[{"timestamp": t, "message": "a"}, {"timestamp": t - 1000, "message": "b"}]) == (
        400, "InvalidParameterException",
        "Log events in a single PutLogEvents request must be in chronological order.")
    # Events too old for the batch are rejected one by one, not the call.
    out = logs.put_log_events(logGroupName="g", logStreamName="s",
                              logEvents=[{"timestamp": t - 20 * 86_400_000, "message": "old"}])
    assert out["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 1}
    # Sequence tokens are ignored, as CloudWatch Logs does now: no InvalidSequenceTokenException.
    logs.put_log_events(logGroupName="g", logStreamName="s", sequenceToken="123",
                        logEvents=[{"timestamp": t, "message": "m"}])
    assert [e["message"] for e in logs.get_log_events(logGroupName="g", logStreamName="s")["events"]] == ["m"]


def test_queries(gantry):
    logs = gantry.client("logs")
    logs.create_log_group(logGroupName="g")
    for call, kw in [(logs.get_query_results, {}), (logs.stop_query, {})]:
        assert error_of(call, queryId=QUERY_ID, **kw) == (
            400, "ResourceNotFoundException", "Query does not exist."), call.__name__
    not_found = (400, "ResourceNotFoundException", "The specified query definition does not exist.")
    assert error_of(logs.delete_query_definition, queryDefinitionId=QUERY_ID) == not_found
    assert error_of(logs.put_query_definition, name="q", queryDefinitionId=QUERY_ID,
                    queryString="fields @message") == not_found
    assert error_of(logs.start_query, logGroupName="g", startTime=0, endTime=10,
                    queryString="nonsense |||")[:2] == (400, "MalformedQueryException")
    assert error_of(logs.start_query, logGroupName="g", startTime=10, endTime=0,
                    queryString="fields @message") == (
        400, "InvalidParameterException", "End time should not be before the start time")
    assert error_of(logs.start_query, startTime=0, endTime=10, queryString="fields @message")[:2] == (
        400, "InvalidParameterException")


def documented_logs_operations():
    """The CloudWatch Logs table of docs/compatibility.md: operation -> status."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "compatibility.md").read_text()
    section = doc.split("\n## CloudWatch Logs (")[1].split("\n## ")[0]
    return dict(re.findall(r"^\| (\w+) \| (implemented|partial|missing) \|", section, re.M))


def test_every_model_operation_is_served_or_answers_the_uniform_error(gantry):
    """Each operation of botocore's Logs model is either served or answers InvalidOperationException
    and is listed as missing in docs/compatibility.md (and the other way round)."""
    # No client-side checks (required members), and no `stream-` host prefix (StartLiveTail,
    # GetLogObject), so every call reaches the server.
    cfg = botocore.config.Config(parameter_validation=False, inject_host_prefix=False,
                                 retries={"max_attempts": 1})
    logs = gantry.client("logs", config=cfg)
    model = logs.meta.service_model
    documented = documented_logs_operations()
    assert sorted(documented) == sorted(model.operation_names), "docs/compatibility.md lists the model's operations"
    methods = {op: method for method, op in logs.meta.method_to_api_mapping.items()}
    for op in model.operation_names:
        try:
            getattr(logs, methods[op])()
            answered = None
        except ClientError as e:
            answered = (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"],
                        e.response["Error"]["Message"])
        unsupported = (400, "InvalidOperationException", f"The operation {op} is not supported by this endpoint.")
        if documented[op] == "missing":
            assert answered == unsupported, op
        else:
            assert answered is None or answered[1] not in ("InvalidOperationException", "UnknownOperationException"), \
                (op, answered)

"""Application Auto Scaling of ECS services: scalable targets, step scaling fired by a user
alarm through set-alarm-state, target tracking with the alarms it owns, scaling activities."""

import json
import re
import time
from datetime import datetime, timezone

import botocore.exceptions
import pytest

from conftest import Gantry


def wait_for(fn, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} not met in {timeout}s (last: {last!r})")


@pytest.fixture
def fast(tmp_path):
    g = Gantry(tmp_path / "data").start(extra_args=["--alarm-evaluation-interval", "1"])
    yield g
    g.stop()


def service(g, cluster, name, desired):
    ecs = g.client("ecs")
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(family=name, containerDefinitions=[
        {"name": "app", "image": "busybox", "cpu": 128, "memory": 64, "essential": True}])
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=name, desiredCount=desired)
    return ecs


def desired(ecs, cluster, name):
    return ecs.describe_services(cluster=cluster, services=[name])["services"][0]["desiredCount"]


def test_step_scaling_fires_from_a_user_alarm(fast):
    ecs = service(fast, "c1", "api", 1)
    aas, cw = fast.client("application-autoscaling"), fast.client("cloudwatch")
    rid = "service/c1/api"
    # Registering with a minimum above the current count scales up to it.
    aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=rid,
                                 ScalableDimension="ecs:service:DesiredCount", MinCapacity=2, MaxCapacity=6)
    assert desired(ecs, "c1", "api") == 2
    targets = aas.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [(rid, 2, 6)]

    arn = aas.put_scaling_policy(
        PolicyName="out", ServiceNamespace="ecs", ResourceId=rid, ScalableDimension="ecs:service:DesiredCount",
        PolicyType="StepScaling", StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity", "Cooldown": 0, "MetricAggregationType": "Average",
            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 3}]})["PolicyARN"]
    assert arn.startswith("arn:aws:autoscaling:us-east-1:000000000000:scalingPolicy:") and arn.endswith(
        ":resource/ecs/service/c1/api:policyName/out")
    cw.put_metric_alarm(AlarmName="queue-deep", Namespace="App", MetricName="Depth", Statistic="Maximum",
                        Period=60, EvaluationPeriods=1, Threshold=100, ComparisonOperator="GreaterThanThreshold",
                        TreatMissingData="ignore", AlarmActions=[arn])
    fast.aws("cloudwatch", "set-alarm-state", "--alarm-name", "queue-deep", "--state-value", "ALARM",
             "--state-reason", "load test")
    # ALARM: +3 (to 5); the alarm stays in ALARM (missing data is ignored) and Auto Scaling
    # actions run every period, so the next +3 is clamped at MaxCapacity 6.
    wait_for(lambda: desired(ecs, "c1", "api") == 6, what="desired count clamped at 6")
    time.sleep(2)
    assert desired(ecs, "c1", "api") == 6
    acts = fast.aws_json("application-autoscaling", "describe-scaling-activities", "--service-namespace", "ecs",
                         "--resource-id", rid)["ScalingActivities"]
    assert [a["Description"] for a in acts] == [
        "Setting desired count to 6.", "Setting desired count to 5.", "Setting desired count to 2."]
    assert acts[0]["Cause"] == "monitor alarm queue-deep in state ALARM triggered policy out"
    assert acts[1]["Cause"] == "monitor alarm queue-deep in state ALARM triggered policy out"
    assert acts[2]["Cause"] == "minimum capacity was set to 2"
    assert all(a["StatusCode"] == "Successful" for a in acts)

    with pytest.raises(botocore.exceptions.ClientError) as e:
        aas.put_scaling_policy(PolicyName="p", ServiceNamespace="ecs", ResourceId="service/c1/nope",
                               ScalableDimension="ecs:service:DesiredCount", PolicyType="StepScaling",
                               StepScalingPolicyConfiguration={"AdjustmentType": "ChangeInCapacity",
                                                               "StepAdjustments": [{"ScalingAdjustment": 1}]})
    assert e.value.response["Error"]["Code"] == "ObjectNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        cw.put_metric_alarm(AlarmName="sns", Namespace="App", MetricName="Depth", Statistic="Maximum",
                            Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
                            AlarmActions=["arn:aws:sns:us-east-1:000000000000:ops"])
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_target_tracking_owns_its_alarms(fast):
    ecs = service(fast, "c2", "web", 1)
    aas, cw = fast.client("application-autoscaling"), fast.client("cloudwatch")
    rid = "service/c2/web"
    aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=rid,
                                 ScalableDimension="ecs:service:DesiredCount", MinCapacity=1, MaxCapacity=4)
    out = aas.put_scaling_policy(
        PolicyName="cpu50", ServiceNamespace="ecs", ResourceId=rid, ScalableDimension="ecs:service:DesiredCount",
        PolicyType="TargetTrackingScaling", TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 50.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}})
    names = sorted(a["AlarmName"] for a in out["Alarms"])
    assert len(names) == 2 and names[0].startswith("TargetTracking-service/c2/web-AlarmHigh-")
    assert names[1].startswith("TargetTracking-service/c2/web-AlarmLow-")
    alarms = {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNamePrefix="TargetTracking-")["MetricAlarms"]}
    high = alarms[names[0]]
    assert (high["Namespace"], high["MetricName"], high["Threshold"], high["EvaluationPeriods"]) == (
        "AWS/ECS", "CPUUtilization", 50.0, 3)
    assert high["Dimensions"] == [{"Name": "ClusterName", "Value": "c2"}, {"Name": "ServiceName", "Value": "web"}]
    assert high["AlarmActions"] == [out["PolicyARN"]]
    assert alarms[names[1]]["Threshold"] == 45.0 and alarms[names[1]]["EvaluationPeriods"] == 15
    policies = aas.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=rid)["ScalingPolicies"]
    assert [p["PolicyName"] for p in policies] == ["cpu50"]
    assert sorted(a["AlarmName"] for a in policies[0]["Alarms"]) == names

    # The alarm's action scales out by metric / target.
    fast.aws("cloudwatch", "set-alarm-state", "--alarm-name", names[0], "--state-value", "ALARM",
             "--state-reason", "test")
    # No datapoint came with set-alarm-state: target tracking needs a metric value, so nothing moves.
    time.sleep(1.5)
    assert desired(ecs, "c2", "web") == 1

    aas.delete_scaling_policy(PolicyName="cpu50", ServiceNamespace="ecs", ResourceId=rid,
                              ScalableDimension="ecs:service:DesiredCount")
    assert cw.describe_alarms(AlarmNamePrefix="TargetTracking-")["MetricAlarms"] == []
    aas.deregister_scalable_target(ServiceNamespace="ecs", ResourceId=rid, ScalableDimension="ecs:service:DesiredCount")
    assert aas.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"] == []


def test_scheduled_action_changes_min_and_max_at_its_time(fast):
    ecs = service(fast, "c3", "batch", 1)
    aas = fast.client("application-autoscaling")
    rid = "service/c3/batch"
    dim = "ecs:service:DesiredCount"
    aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=rid, ScalableDimension=dim,
                                 MinCapacity=1, MaxCapacity=2)
    # Far enough ahead for the AWS CLI to start on a loaded machine (an at() already past when
    # the action is created never runs).
    when = time.gmtime(time.time() + 20)
    at = time.strftime("at(%Y-%m-%dT%H:%M:%S)", when)
    fast.aws("application-autoscaling", "put-scheduled-action", "--service-namespace", "ecs",
             "--resource-id", rid, "--scalable-dimension", dim, "--scheduled-action-name", "morning",
             "--schedule", at, "--scalable-target-action", "MinCapacity=3,MaxCapacity=5")
    [action] = aas.describe_scheduled_actions(ServiceNamespace="ecs", ResourceId=rid)["ScheduledActions"]
    assert action["Schedule"] == at and action["ScalableTargetAction"] == {"MinCapacity": 3, "MaxCapacity": 5}
    assert desired(ecs, "c3", "batch") == 1
    wait_for(lambda: desired(ecs, "c3", "batch") == 3, timeout=60, what="desired count 3 at the scheduled time")
    [target] = aas.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[rid])["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (3, 5)
    # The activity is recorded just after the desired count is set: wait (bounded) for it.
    wait_for(lambda: aas.describe_scaling_activities(ServiceNamespace="ecs", ResourceId=rid)["ScalingActivities"],
             timeout=10, what="the scheduled action's scaling activity")
    [act] = aas.describe_scaling_activities(ServiceNamespace="ecs", ResourceId=rid)["ScalingActivities"]
    assert act["Description"] == "Setting desired count to 3."
    assert act["Cause"] == "scheduled action name morning set min capacity to 3"

    for schedule, zone, word in [("cron(0 8 * * * *)", None, "exactly one of Day-of-month and Day-of-week"),
                                 ("cron(0 8 * *)", None, "6 fields"), ("cron(0 8 ? * 3#6 *)", None, "cron(0 8 ? * 3#6 *)"),
                                 ("rate(1 hours)", None, "unit"), (at, "Mars/Olympus", "Mars/Olympus")]:
        kw = {"Timezone": zone} if zone else {}
        with pytest.raises(botocore.exceptions.ClientError) as e:
            aas.put_scheduled_action(ServiceNamespace="ecs", ResourceId=rid, ScalableDimension=dim,
                                     ScheduledActionName="x", Schedule=schedule,
                                     ScalableTargetAction={"MinCapacity": 1}, **kw)
        assert e.value.response["Error"]["Code"] == "ValidationException" and word in e.value.response["Error"]["Message"]
    aas.delete_scheduled_action(ServiceNamespace="ecs", ResourceId=rid, ScalableDimension=dim,
                                ScheduledActionName="morning")
    assert aas.describe_scheduled_actions(ServiceNamespace="ecs")["ScheduledActions"] == []


def test_cron_scheduled_action_fires_in_its_time_zone(fast):
    """A cron() schedule in a time zone, put with the AWS CLI, changes min/max at its minute."""
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    ecs = service(fast, "c4", "nightly", 1)
    aas = fast.client("application-autoscaling")
    rid, dim = "service/c4/nightly", "ecs:service:DesiredCount"
    aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=rid, ScalableDimension=dim,
                                 MinCapacity=1, MaxCapacity=2)
    zone = "Asia/Kolkata"  # UTC+05:30: local minutes differ from UTC's hours
    now = datetime.now(timezone.utc)
    fire = (now + timedelta(seconds=65)).replace(second=0, microsecond=0)
    local = fire.astimezone(ZoneInfo(zone))
    weekday = (local.isoweekday() % 7) + 1  # AWS numbers weekdays 1-7 from Sunday
    schedule = f"cron({local.minute} {local.hour} ? * {weekday} {local.year})"
    fast.aws("application-autoscaling", "put-scheduled-action", "--service-namespace", "ecs",
             "--resource-id", rid, "--scalable-dimension", dim, "--scheduled-action-name", "kolkata",
             "--schedule", schedule, "--timezone", zone, "--scalable-target-action", "MinCapacity=2,MaxCapacity=4")
    [action] = aas.describe_scheduled_actions(ServiceNamespace="ecs", ResourceId=rid)["ScheduledActions"]
    assert action["Schedule"] == schedule and action["Timezone"] == zone
    assert desired(ecs, "c4", "nightly") == 1
    wait_for(lambda: desired(ecs, "c4", "nightly") == 2, timeout=100, what="desired count 2 at the cron minute")
    assert datetime.now(timezone.utc) >= fire
    [target] = aas.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[rid])["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 4)
    [act] = aas.describe_scaling_activities(ServiceNamespace="ecs", ResourceId=rid)["ScalingActivities"]
    assert act["Cause"] == "scheduled action name kolkata set min capacity to 2"


def test_scalable_target_tags(gantry):
    service(gantry, "ct", "tagged", 1)
    aas = gantry.client("application-autoscaling")
    rid = "service/ct/tagged"
    dim = "ecs:service:DesiredCount"

    def code(fn, **kw):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            fn(**kw)
        return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]

    arn = aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=rid, ScalableDimension=dim,
                                       MinCapacity=1, MaxCapacity=3,
                                       Tags={"env": "prod", "team": "web"})["ScalableTargetARN"]
    assert re.fullmatch(r"arn:aws:application-autoscaling:us-east-1:000000000000:scalable-target/[0-9a-f]{32}", arn)
    [target] = aas.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[rid])["ScalableTargets"]
    assert target["ScalableTargetARN"] == arn and "Tags" not in target
    assert aas.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"env": "prod", "team": "web"}

    # Updating the target keeps its tags; tags on an existing target go through TagResource.
    aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=rid, ScalableDimension=dim, MaxCapacity=4)
    assert aas.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"env": "prod", "team": "web"}
    c, m = code(aas.register_scalable_target, ServiceNamespace="ecs", ResourceId=rid, ScalableDimension=dim,
                Tags={"x": "y"})
    assert c == "ValidationException" and "TagResource" in m

    aas.tag_resource(ResourceARN=arn, Tags={"env": "staging", "cost": ""})
    assert aas.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"env": "staging", "team": "web", "cost": ""}
    aas.untag_resource(ResourceARN=arn, TagKeys=["team", "absent"])
    assert aas.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"env": "staging", "cost": ""}

    # AWS's errors.
    unknown = "arn:aws:application-autoscaling:us-east-1:000000000000:scalable-target/0123456789abcdef"
    for op, kw in [(aas.list_tags_for_resource, {}), (aas.tag_resource, {"Tags": {"a": "b"}}),
                   (aas.untag_resource, {"TagKeys": ["a"]})]:
        c, m = code(op, ResourceARN=unknown, **kw)
        assert c == "ResourceNotFoundException" and unknown in m
    c, m = code(aas.list_tags_for_resource, ResourceARN="arn:aws:ecs:us-east-1:000000000000:cluster/ct")
    assert c == "ValidationException"
    c, m = code(aas.tag_resource, ResourceARN=arn, Tags={f"k{i}": "v" for i in range(49)})
    assert c == "TooManyTagsException" and arn in m
    c, m = code(aas.tag_resource, ResourceARN=arn, Tags={"k" * 129: "v"})
    assert c == "ValidationException"
    c, m = code(aas.tag_resource, ResourceARN=arn, Tags={"k": "v" * 257})
    assert c == "ValidationException"
    c, m = code(aas.tag_resource, ResourceARN=arn, Tags={"aws:owner": "me"})
    assert c == "ValidationException" and "aws:owner" in m
    assert aas.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"env": "staging", "cost": ""}
    c, m = code(aas.get_predictive_scaling_forecast, ServiceNamespace="ecs", ResourceId=rid,
                ScalableDimension=dim, PolicyName="p", StartTime=0, EndTime=1)
    assert (c, m) == ("ValidationException",
                      "The operation GetPredictiveScalingForecast is not supported by this endpoint.")

    # Authorization names the target's ARN: a user allowed tagging of this target only.
    iam = gantry.client("iam")
    iam.create_user(UserName="tagger")
    iam.put_user_policy(UserName="tagger", PolicyName="inline", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": arn, "Action": [
            "application-autoscaling:ListTagsForResource", "application-autoscaling:TagResource"]}]}))
    key = iam.create_access_key(UserName="tagger")["AccessKey"]
    tagger = gantry.client("application-autoscaling", aws_access_key_id=key["AccessKeyId"],
                           aws_secret_access_key=key["SecretAccessKey"])
    assert tagger.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"env": "staging", "cost": ""}
    c, m = code(tagger.list_tags_for_resource, ResourceARN=unknown)
    assert c == "AccessDeniedException" and f"application-autoscaling:ListTagsForResource on resource: {unknown}" in m
    c, m = code(tagger.untag_resource, ResourceARN=arn, TagKeys=["env"])
    assert c == "AccessDeniedException" and "application-autoscaling:UntagResource" in m

    # Tags go with the target.
    aas.deregister_scalable_target(ServiceNamespace="ecs", ResourceId=rid, ScalableDimension=dim)
    assert code(aas.list_tags_for_resource, ResourceARN=arn)[0] == "ResourceNotFoundException"


def test_terraform_style_register_then_list_tags(gantry):
    """As the Terraform provider creates `aws_appautoscaling_target`: register with tags, read
    the target back for its ARN, then list its tags (here through the AWS CLI)."""
    service(gantry, "tf", "app", 1)
    rid = "service/tf/app"
    out = gantry.aws_json("application-autoscaling", "register-scalable-target", "--service-namespace", "ecs",
                          "--resource-id", rid, "--scalable-dimension", "ecs:service:DesiredCount",
                          "--min-capacity", "1", "--max-capacity", "2", "--tags", "Name=app,owner=ops")
    [target] = gantry.aws_json("application-autoscaling", "describe-scalable-targets", "--service-namespace",
                               "ecs", "--resource-ids", rid)["ScalableTargets"]
    assert target["ScalableTargetARN"] == out["ScalableTargetARN"]
    tags = gantry.aws_json("application-autoscaling", "list-tags-for-resource", "--resource-arn",
                           target["ScalableTargetARN"])["Tags"]
    assert tags == {"Name": "app", "owner": "ops"}


def test_target_tracking_on_a_customized_metric(tmp_path):
    # High alarm after 1 one-minute period above the target, low after 2 (AWS: 3 and 15).
    g = Gantry(tmp_path / "data").start(extra_args=[
        "--alarm-evaluation-interval", "1", "--target-tracking-periods", "1,2"])
    try:
        ecs = service(g, "c5", "worker", 1)
        aas, cw = g.client("application-autoscaling"), g.client("cloudwatch")
        rid = "service/c5/worker"
        aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=rid,
                                     ScalableDimension="ecs:service:DesiredCount", MinCapacity=1, MaxCapacity=5)
        dims = [{"Name": "Queue", "Value": "jobs"}]
        spec = {"MetricName": "BacklogPerTask", "Namespace": "App/Queue", "Dimensions": dims,
                "Statistic": "Maximum", "Unit": "Count"}

        def put_policy(cfg):
            return aas.put_scaling_policy(
                PolicyName="backlog", ServiceNamespace="ecs", ResourceId=rid,
                ScalableDimension="ecs:service:DesiredCount", PolicyType="TargetTrackingScaling",
                TargetTrackingScalingPolicyConfiguration={"TargetValue": 40.0, "ScaleOutCooldown": 0, **cfg})

        for cfg, needle in [
            ({"CustomizedMetricSpecification": spec,
              "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}},
             "Only one of"),
            ({}, "Either PredefinedMetricSpecification or CustomizedMetricSpecification"),
            ({"CustomizedMetricSpecification": {**spec, "Statistic": "p99"}}, "'p99'"),
            ({"CustomizedMetricSpecification": {"Metrics": [
                {"Id": "m1", "MetricStat": {"Metric": {"MetricName": "BacklogPerTask", "Namespace": "App/Queue"},
                                            "Stat": "Sum"}, "ReturnData": True}]}},
             "CustomizedMetricSpecification.Metrics"),
        ]:
            with pytest.raises(botocore.exceptions.ClientError) as e:
                put_policy(cfg)
            assert e.value.response["Error"]["Code"] == "ValidationException"
            assert needle in e.value.response["Error"]["Message"]
        assert cw.describe_alarms(AlarmNamePrefix="TargetTracking-")["MetricAlarms"] == []

        out = put_policy({"CustomizedMetricSpecification": spec})
        names = sorted(a["AlarmName"] for a in out["Alarms"])
        assert names[0].startswith("TargetTracking-service/c5/worker-AlarmHigh-")
        assert names[1].startswith("TargetTracking-service/c5/worker-AlarmLow-")
        alarms = {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNamePrefix="TargetTracking-")["MetricAlarms"]}
        assert sorted(alarms) == names
        for a in alarms.values():
            assert (a["Namespace"], a["MetricName"], a["Statistic"], a["Unit"], a["Dimensions"], a["Period"]) == (
                "App/Queue", "BacklogPerTask", "Maximum", "Count", dims, 60)
            assert a["AlarmActions"] == [out["PolicyARN"]]
        assert (alarms[names[0]]["Threshold"], alarms[names[0]]["ComparisonOperator"]) == (40.0, "GreaterThanThreshold")
        assert (alarms[names[1]]["Threshold"], alarms[names[1]]["ComparisonOperator"]) == (36.0, "LessThanThreshold")
        described = aas.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=rid)["ScalingPolicies"]
        assert described[0]["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"] == spec

        # A backlog of 100 per task against a target of 40: ceil(1 × 100 / 40) = 3 tasks.
        now = time.time()
        m = now - now % 60
        cw.put_metric_data(Namespace="App/Queue", MetricData=[
            {"MetricName": "BacklogPerTask", "Dimensions": dims, "Value": 100.0, "Unit": "Count",
             "Timestamp": datetime.fromtimestamp(t, timezone.utc)} for t in (m - 60, m)])
        wait_for(lambda: desired(ecs, "c5", "worker") == 3, timeout=30, what="desired count raised to 3")
        acts = aas.describe_scaling_activities(ServiceNamespace="ecs", ResourceId=rid)["ScalingActivities"]
        assert acts[0]["Description"] == "Setting desired count to 3."
        assert acts[0]["Cause"] == f"monitor alarm {names[0]} in state ALARM triggered policy backlog"

        aas.delete_scaling_policy(PolicyName="backlog", ServiceNamespace="ecs", ResourceId=rid,
                                  ScalableDimension="ecs:service:DesiredCount")
        assert cw.describe_alarms(AlarmNamePrefix="TargetTracking-")["MetricAlarms"] == []
        ecs.update_service(cluster="c5", service="worker", desiredCount=0)
        ecs.delete_service(cluster="c5", service="worker", force=True)
    finally:
        g.stop()

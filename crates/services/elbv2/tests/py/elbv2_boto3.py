"""Drives every implemented ELBv2 operation through boto3 against a Gantry endpoint.

Env: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION.
Exits non-zero (with the failing assertion) on the first mismatch; prints "ok <n>" at the end.
"""
import json
import os
import sys
import urllib.request

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
from botocore.exceptions import ClientError

ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
REGION = os.environ["AWS_DEFAULT_REGION"]
elb = boto3.client("elbv2", endpoint_url=ENDPOINT, region_name=REGION)
checks = 0



def other(arn):
    """The same ARN with its last character changed: one that does not exist."""
    return arn[:-1] + ("1" if arn.endswith("0") else "0")

def check(cond, what):
    global checks
    checks += 1
    if not cond:
        print("FAILED:", what, file=sys.stderr)
        sys.exit(1)


def error_code(fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    return None, 200


def expect_error(code, fn, **kw):
    got, status = error_code(fn, **kw)
    check(got == code, f"{fn.__name__}({kw}) -> {got}, want {code}")
    return status


def signed(method, path, body=b""):
    creds = botocore.credentials.Credentials(
        os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    )
    req = botocore.awsrequest.AWSRequest(method=method, url=ENDPOINT + path, data=body)
    botocore.auth.SigV4Auth(creds, "elasticloadbalancing", REGION).add_auth(req)
    prepared = req.prepare()
    return urllib.request.Request(
        prepared.url, data=body or None, headers=dict(prepared.headers), method=method
    )


# --- load balancers ---
lb = elb.create_load_balancer(
    Name="web", Type="application", Subnets=["subnet-1", "subnet-2"],
    Tags=[{"Key": "env", "Value": "test"}],
)["LoadBalancers"][0]
check(lb["LoadBalancerName"] == "web", "lb name")
check(lb["State"]["Code"] == "active", "lb active")
check(lb["Type"] == "application" and lb["Scheme"] == "internet-facing", "lb type/scheme")
check(lb["LoadBalancerArn"].startswith("arn:aws:elasticloadbalancing:%s:000000000000:loadbalancer/app/web/" % REGION), lb["LoadBalancerArn"])
check(lb["DNSName"].startswith("web-") and lb["DNSName"].endswith(".elb.localhost"), lb["DNSName"])
check(len(lb["AvailabilityZones"]) == 2, "azs")
lb_arn = lb["LoadBalancerArn"]
again = elb.create_load_balancer(Name="web", Subnets=["subnet-1"])["LoadBalancers"][0]
check(again["LoadBalancerArn"] == lb_arn, "create is idempotent")
expect_error("DuplicateLoadBalancerName", elb.create_load_balancer, Name="web", Type="network")
expect_error("ValidationError", elb.create_load_balancer, Name="-bad-")
nlb_arn = elb.create_load_balancer(Name="tcp", Type="network")["LoadBalancers"][0]["LoadBalancerArn"]
check(":loadbalancer/net/tcp/" in nlb_arn, "nlb arn")
for i in range(3):
    elb.create_load_balancer(Name=f"page{i}")
pages = list(elb.get_paginator("describe_load_balancers").paginate(PaginationConfig={"PageSize": 2}))
check(len(pages) == 3, f"3 pages of lbs, got {len(pages)}")
names = [l["LoadBalancerName"] for p in pages for l in p["LoadBalancers"]]
check(names == ["page0", "page1", "page2", "tcp", "web"], names)
check(elb.describe_load_balancers(Names=["web"])["LoadBalancers"][0]["LoadBalancerArn"] == lb_arn, "by name")
expect_error("LoadBalancerNotFound", elb.describe_load_balancers, Names=["nope"])
expect_error("LoadBalancerNotFound", elb.describe_load_balancers, LoadBalancerArns=[other(lb_arn)])
elb.get_waiter("load_balancer_available").wait(LoadBalancerArns=[lb_arn], WaiterConfig={"Delay": 1})

attrs = {a["Key"]: a["Value"] for a in elb.describe_load_balancer_attributes(LoadBalancerArn=lb_arn)["Attributes"]}
check(attrs["idle_timeout.timeout_seconds"] == "60" and attrs["deletion_protection.enabled"] == "false", attrs)
attrs = {a["Key"]: a["Value"] for a in elb.modify_load_balancer_attributes(
    LoadBalancerArn=lb_arn, Attributes=[{"Key": "idle_timeout.timeout_seconds", "Value": "30"}])["Attributes"]}
check(attrs["idle_timeout.timeout_seconds"] == "30", "modified lb attribute")
expect_error("InvalidConfigurationRequest", elb.modify_load_balancer_attributes,
             LoadBalancerArn=lb_arn, Attributes=[{"Key": "no.such", "Value": "1"}])

# --- target groups ---
tg = elb.create_target_group(
    Name="api", Protocol="HTTP", Port=8080, VpcId="vpc-1", TargetType="ip",
    HealthCheckPath="/health", HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2,
    HealthyThresholdCount=2, UnhealthyThresholdCount=2, Matcher={"HttpCode": "200-299"},
)["TargetGroups"][0]
check(tg["HealthCheckPath"] == "/health" and tg["Matcher"]["HttpCode"] == "200-299", tg)
check(tg["HealthCheckPort"] == "traffic-port" and tg["HealthCheckProtocol"] == "HTTP", tg)
check(tg["LoadBalancerArns"] == [], "unused tg")
tg_arn = tg["TargetGroupArn"]
tg2_arn = elb.create_target_group(Name="web2", Protocol="HTTP", Port=80, VpcId="vpc-1")["TargetGroups"][0]["TargetGroupArn"]
tcp_tg = elb.create_target_group(Name="tcp", Protocol="TCP", Port=5432, VpcId="vpc-1", TargetType="ip")["TargetGroups"][0]
check(tcp_tg["HealthCheckProtocol"] == "TCP" and "Matcher" not in tcp_tg and tcp_tg["HealthCheckTimeoutSeconds"] == 10, tcp_tg)
expect_error("DuplicateTargetGroupName", elb.create_target_group, Name="api", Protocol="HTTP", Port=9999, VpcId="vpc-1")
expect_error("InvalidConfigurationRequest", elb.create_target_group, Name="bad", Protocol="HTTP", Port=80, HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=10)
expect_error("ValidationError", elb.create_target_group, Name="bad", Protocol="HTTP", Port=80, Matcher={"HttpCode": "xyz"})
tg = elb.modify_target_group(TargetGroupArn=tg_arn, HealthCheckPath="/ready")["TargetGroups"][0]
check(tg["HealthCheckPath"] == "/ready", "modified hc path")
expect_error("TargetGroupNotFound", elb.modify_target_group, TargetGroupArn=other(tg_arn), HealthCheckPath="/x")
check(len(elb.describe_target_groups()["TargetGroups"]) == 3, "3 tgs")
check(elb.describe_target_groups(Names=["api"])["TargetGroups"][0]["TargetGroupArn"] == tg_arn, "tg by name")
expect_error("TargetGroupNotFound", elb.describe_target_groups, Names=["nope"])
p1 = elb.describe_target_groups(PageSize=2)
check(len(p1["TargetGroups"]) == 2 and "NextMarker" in p1, "tg page 1")
p2 = elb.describe_target_groups(PageSize=2, Marker=p1["NextMarker"])
check(len(p2["TargetGroups"]) == 1 and "NextMarker" not in p2, "tg page 2")
tattrs = {a["Key"]: a["Value"] for a in elb.describe_target_group_attributes(TargetGroupArn=tg_arn)["Attributes"]}
check(tattrs["deregistration_delay.timeout_seconds"] == "300", tattrs)
check(tattrs["load_balancing.algorithm.type"] == "round_robin" and tattrs["stickiness.type"] == "lb_cookie", tattrs)
tattrs = {a["Key"]: a["Value"] for a in elb.modify_target_group_attributes(TargetGroupArn=tg_arn, Attributes=[
    {"Key": "deregistration_delay.timeout_seconds", "Value": "1"},
    {"Key": "load_balancing.algorithm.type", "Value": "least_outstanding_requests"},
    {"Key": "stickiness.enabled", "Value": "true"},
])["Attributes"]}
check(tattrs["deregistration_delay.timeout_seconds"] == "1" and tattrs["stickiness.enabled"] == "true", tattrs)
expect_error("InvalidConfigurationRequest", elb.modify_target_group_attributes, TargetGroupArn=tg_arn,
             Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "99999"}])

# --- listeners ---
listener = elb.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=18080,
                               DefaultActions=[{"Type": "forward", "TargetGroupArn": tg2_arn}])["Listeners"][0]
l_arn = listener["ListenerArn"]
check(listener["Port"] == 18080 and listener["DefaultActions"][0]["TargetGroupArn"] == tg2_arn, listener)
check(listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"][0]["Weight"] == 1, listener)
check(":listener/app/web/" in l_arn, l_arn)
expect_error("DuplicateListener", elb.create_listener, LoadBalancerArn=lb_arn, Protocol="HTTP", Port=18080,
             DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}])
expect_error("TargetGroupNotFound", elb.create_listener, LoadBalancerArn=lb_arn, Protocol="HTTP", Port=18081,
             DefaultActions=[{"Type": "forward", "TargetGroupArn": other(tg_arn)}])
expect_error("IncompatibleProtocols", elb.create_listener, LoadBalancerArn=lb_arn, Protocol="HTTP", Port=18081,
             DefaultActions=[{"Type": "forward", "TargetGroupArn": tcp_tg["TargetGroupArn"]}])
expect_error("LoadBalancerNotFound", elb.create_listener, LoadBalancerArn=other(lb_arn), Protocol="HTTP", Port=1,
             DefaultActions=[{"Type": "forward", "TargetGroupArn": tg2_arn}])
expect_error("UnsupportedProtocol", elb.create_listener, LoadBalancerArn=lb_arn, Protocol="HTTPS", Port=18443,
             DefaultActions=[{"Type": "forward", "TargetGroupArn": tg2_arn}])
fixed = elb.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=18082, DefaultActions=[
    {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503", "ContentType": "text/plain", "MessageBody": "down"}}])["Listeners"][0]
check(fixed["DefaultActions"][0]["FixedResponseConfig"]["MessageBody"] == "down", fixed)
weighted = elb.modify_listener(ListenerArn=fixed["ListenerArn"], DefaultActions=[{"Type": "forward", "ForwardConfig": {
    "TargetGroups": [{"TargetGroupArn": tg_arn, "Weight": 3}, {"TargetGroupArn": tg2_arn, "Weight": 1}],
    "TargetGroupStickinessConfig": {"Enabled": True, "DurationSeconds": 60}}}])["Listeners"][0]
fc = weighted["DefaultActions"][0]["ForwardConfig"]
check([g["Weight"] for g in fc["TargetGroups"]] == [3, 1] and fc["TargetGroupStickinessConfig"]["Enabled"], weighted)
redirect = elb.modify_listener(ListenerArn=fixed["ListenerArn"], Port=18083, DefaultActions=[
    {"Type": "redirect", "RedirectConfig": {"Protocol": "HTTP", "Port": "18080", "StatusCode": "HTTP_301"}}])["Listeners"][0]
check(redirect["Port"] == 18083 and redirect["DefaultActions"][0]["RedirectConfig"]["Path"] == "/#{path}", redirect)
expect_error("DuplicateListener", elb.modify_listener, ListenerArn=fixed["ListenerArn"], Port=18080)
ls = elb.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]
check([l["Port"] for l in ls] == [18080, 18083], ls)
check(elb.describe_listeners(ListenerArns=[l_arn])["Listeners"][0]["ListenerArn"] == l_arn, "listener by arn")
expect_error("ListenerNotFound", elb.describe_listeners, ListenerArns=[other(l_arn)])
expect_error("ValidationError", elb.describe_listeners)
check(len(elb.describe_listeners(LoadBalancerArn=lb_arn, PageSize=1)["Listeners"]) == 1, "listener paging")
# Listener attributes: AWS's keys for HTTP listeners, values checked and kept.
lattrs = {a["Key"]: a["Value"] for a in elb.describe_listener_attributes(ListenerArn=l_arn)["Attributes"]}
check(lattrs["routing.http.response.server.enabled"] == "true", lattrs)
check(lattrs["routing.http.response.strict_transport_security.header_value"] == "", lattrs)
check("tcp.idle_timeout.seconds" not in lattrs and not any(k.startswith("routing.http.request.") for k in lattrs), lattrs)
same = elb.modify_listener_attributes(ListenerArn=l_arn, Attributes=[
    {"Key": "routing.http.response.server.enabled", "Value": "true"}])["Attributes"]
check({a["Key"]: a["Value"] for a in same} == lattrs, same)
changed = elb.modify_listener_attributes(ListenerArn=l_arn, Attributes=[
    {"Key": "routing.http.response.server.enabled", "Value": "false"},
    {"Key": "routing.http.response.x_frame_options.header_value", "Value": "DENY"}])["Attributes"]
check({a["Key"]: a["Value"] for a in changed} == {**lattrs, "routing.http.response.server.enabled": "false",
                                                   "routing.http.response.x_frame_options.header_value": "DENY"}, changed)
elb.modify_listener_attributes(ListenerArn=l_arn, Attributes=[
    {"Key": "routing.http.response.server.enabled", "Value": "true"},
    {"Key": "routing.http.response.x_frame_options.header_value", "Value": ""}])
check({a["Key"]: a["Value"] for a in elb.describe_listener_attributes(ListenerArn=l_arn)["Attributes"]} == lattrs, "reset")
for key, value in [("routing.http.response.server.enabled", "off"), ("routing.http.response.x_frame_options.header_value", "NEVER"),
                   ("tcp.idle_timeout.seconds", "350"), ("no.such.key", "1")]:
    expect_error("InvalidConfigurationRequest", elb.modify_listener_attributes, ListenerArn=l_arn, Attributes=[{"Key": key, "Value": value}])
expect_error("ListenerNotFound", elb.describe_listener_attributes, ListenerArn=other(l_arn))
expect_error("ListenerNotFound", elb.modify_listener_attributes, ListenerArn=other(l_arn),
             Attributes=[{"Key": "routing.http.response.server.enabled", "Value": "true"}])
tgd = elb.describe_target_groups(LoadBalancerArn=lb_arn)["TargetGroups"]
check(sorted(t["TargetGroupName"] for t in tgd) == ["web2"], tgd)
check(tgd[0]["LoadBalancerArns"] == [lb_arn], tgd)
expect_error("ResourceInUse", elb.delete_target_group, TargetGroupArn=tg2_arn)

# --- rules ---
r1 = elb.create_rule(ListenerArn=l_arn, Priority=10, Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
                     Actions=[{"Type": "forward", "TargetGroupArn": tg_arn}])["Rules"][0]
check(r1["Priority"] == "10" and r1["Conditions"][0]["Values"] == ["/api/*"] and not r1["IsDefault"], r1)
check(r1["Conditions"][0]["PathPatternConfig"]["Values"] == ["/api/*"], r1)
r2 = elb.create_rule(ListenerArn=l_arn, Priority=20, Conditions=[
    {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X-Env", "Values": ["blue"]}},
    {"Field": "query-string", "QueryStringConfig": {"Values": [{"Key": "v", "Value": "2"}]}},
    {"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": ["GET"]}},
    {"Field": "source-ip", "SourceIpConfig": {"Values": ["127.0.0.0/8"]}},
], Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200", "MessageBody": "blue"}}])["Rules"][0]
check(r2["Conditions"][0]["HttpHeaderConfig"]["HttpHeaderName"] == "X-Env", r2)
check(r2["Conditions"][1]["QueryStringConfig"]["Values"] == [{"Key": "v", "Value": "2"}], r2)
expect_error("PriorityInUse", elb.create_rule, ListenerArn=l_arn, Priority=10,
             Conditions=[{"Field": "host-header", "Values": ["a.example.com"]}],
             Actions=[{"Type": "forward", "TargetGroupArn": tg_arn}])
expect_error("ValidationError", elb.create_rule, ListenerArn=l_arn, Priority=30,
             Conditions=[{"Field": "bogus", "Values": ["x"]}], Actions=[{"Type": "forward", "TargetGroupArn": tg_arn}])
expect_error("ListenerNotFound", elb.create_rule, ListenerArn=other(l_arn), Priority=30,
             Conditions=[{"Field": "path-pattern", "Values": ["/x"]}], Actions=[{"Type": "forward", "TargetGroupArn": tg_arn}])
rules = elb.describe_rules(ListenerArn=l_arn)["Rules"]
check([r["Priority"] for r in rules] == ["10", "20", "default"], rules)
check(rules[2]["IsDefault"] and rules[2]["Actions"][0]["TargetGroupArn"] == tg2_arn, rules[2])
check(elb.describe_rules(RuleArns=[r1["RuleArn"]])["Rules"][0]["RuleArn"] == r1["RuleArn"], "rule by arn")
expect_error("RuleNotFound", elb.describe_rules, RuleArns=[other(r1["RuleArn"])])
m = elb.modify_rule(RuleArn=r1["RuleArn"], Conditions=[{"Field": "path-pattern", "Values": ["/v1/*"]}])["Rules"][0]
check(m["Conditions"][0]["Values"] == ["/v1/*"], m)
swapped = elb.set_rule_priorities(RulePriorities=[{"RuleArn": r1["RuleArn"], "Priority": 20}, {"RuleArn": r2["RuleArn"], "Priority": 10}])["Rules"]
check(sorted((r["RuleArn"] == r1["RuleArn"], r["Priority"]) for r in swapped) == [(False, "10"), (True, "20")], swapped)
expect_error("PriorityInUse", elb.set_rule_priorities, RulePriorities=[{"RuleArn": r1["RuleArn"], "Priority": 10}])
expect_error("OperationNotPermitted", elb.delete_rule, RuleArn=rules[2]["RuleArn"])
elb.modify_rule(RuleArn=rules[2]["RuleArn"], Actions=[{"Type": "forward", "TargetGroupArn": tg_arn}])
check(elb.describe_listeners(ListenerArns=[l_arn])["Listeners"][0]["DefaultActions"][0]["TargetGroupArn"] == tg_arn, "default rule drives listener")
elb.delete_rule(RuleArn=r2["RuleArn"])
expect_error("RuleNotFound", elb.delete_rule, RuleArn=r2["RuleArn"])
check(len(elb.describe_rules(ListenerArn=l_arn)["Rules"]) == 2, "rule deleted")

# --- targets and health ---
elb.register_targets(TargetGroupArn=tg_arn, Targets=[{"Id": "127.0.0.1", "Port": 9001}, {"Id": "127.0.0.1", "Port": 9002}])
expect_error("InvalidTarget", elb.register_targets, TargetGroupArn=tg_arn, Targets=[{"Id": "i-0123456789abcdef0", "Port": 80}])
expect_error("TargetGroupNotFound", elb.register_targets, TargetGroupArn=other(tg_arn), Targets=[{"Id": "127.0.0.1"}])
health = elb.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
check(sorted(h["Target"]["Port"] for h in health) == [9001, 9002], health)
check(all(h["TargetHealth"]["State"] == "initial" and h["TargetHealth"]["Reason"] == "Elb.RegistrationInProgress" for h in health), health)
check(health[0]["HealthCheckPort"] == str(health[0]["Target"]["Port"]), health)
# A proxy reports: 9001 healthy, 9002 unhealthy.
report = {"proxyId": "test-proxy", "targetGroups": [{"targetGroupArn": tg_arn, "targets": [
    {"id": "127.0.0.1", "port": 9001, "state": "healthy"},
    {"id": "127.0.0.1", "port": 9002, "state": "unhealthy", "reason": "Target.ResponseCodeMismatch",
     "description": "Health checks failed with these codes: [500]"}]}]}
with urllib.request.urlopen(signed("POST", "/lb/v1/health", json.dumps(report).encode())) as r:
    check(r.status == 200, "health report accepted")
health = {h["Target"]["Port"]: h["TargetHealth"] for h in elb.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]}
check(health[9001] == {"State": "healthy"}, health)
check(health[9002]["State"] == "unhealthy" and health[9002]["Reason"] == "Target.ResponseCodeMismatch", health)
elb.get_waiter("target_in_service").wait(TargetGroupArn=tg_arn, Targets=[{"Id": "127.0.0.1", "Port": 9001}], WaiterConfig={"Delay": 1})
one = elb.describe_target_health(TargetGroupArn=tg_arn, Targets=[{"Id": "10.9.9.9", "Port": 1}])["TargetHealthDescriptions"][0]
check(one["TargetHealth"]["State"] == "unused" and one["TargetHealth"]["Reason"] == "Target.NotRegistered", one)
# The config stream carries the targets.
with urllib.request.urlopen(signed("GET", "/lb/v1/config"), timeout=10) as r:
    first = json.loads(r.readline())
check(first["type"] == "config", first)
cfg_tg = [g for g in first["config"]["targetGroups"] if g["targetGroup"]["arn"] == tg_arn][0]
check(sorted(t["port"] for t in cfg_tg["targets"]) == [9001, 9002], cfg_tg)
check(any(l["port"] == 18080 for b in first["config"]["loadBalancers"] for l in b["listeners"]), "listener in config")
elb.deregister_targets(TargetGroupArn=tg_arn, Targets=[{"Id": "127.0.0.1", "Port": 9002}])
health = {h["Target"]["Port"]: h["TargetHealth"] for h in elb.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]}
check(health[9002]["State"] == "draining" and health[9002]["Reason"] == "Target.DeregistrationInProgress", health)
expect_error("InvalidTarget", elb.deregister_targets, TargetGroupArn=tg_arn, Targets=[{"Id": "127.0.0.2", "Port": 9002}])
# deregistration_delay is 1 s: the waiter sees it go.
elb.get_waiter("target_deregistered").wait(TargetGroupArn=tg_arn, Targets=[{"Id": "127.0.0.1", "Port": 9002}], WaiterConfig={"Delay": 1, "MaxAttempts": 10})
elb.register_targets(TargetGroupArn=tg2_arn, Targets=[{"Id": "127.0.0.1", "Port": 9003}])
unused_tg = elb.create_target_group(Name="idle", Protocol="HTTP", Port=80, VpcId="vpc-1", TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
elb.register_targets(TargetGroupArn=unused_tg, Targets=[{"Id": "127.0.0.1"}])
idle = elb.describe_target_health(TargetGroupArn=unused_tg)["TargetHealthDescriptions"][0]
check(idle["Target"]["Port"] == 80 and idle["TargetHealth"]["State"] == "unused" and idle["TargetHealth"]["Reason"] == "Target.NotInUse", idle)

# --- tags ---
elb.add_tags(ResourceArns=[lb_arn, tg_arn, l_arn, r1["RuleArn"]], Tags=[{"Key": "team", "Value": "core"}])
td = elb.describe_tags(ResourceArns=[lb_arn, tg_arn, l_arn, r1["RuleArn"]])["TagDescriptions"]
check(len(td) == 4, td)
check({t["Key"]: t["Value"] for t in td[0]["Tags"]} == {"env": "test", "team": "core"}, td[0])
check(td[2]["Tags"] == [{"Key": "team", "Value": "core"}], td[2])
elb.remove_tags(ResourceArns=[lb_arn], TagKeys=["env"])
check(elb.describe_tags(ResourceArns=[lb_arn])["TagDescriptions"][0]["Tags"] == [{"Key": "team", "Value": "core"}], "removed")
expect_error("DuplicateTagKeys", elb.add_tags, ResourceArns=[lb_arn], Tags=[{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}])
expect_error("TooManyTags", elb.add_tags, ResourceArns=[lb_arn], Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
expect_error("LoadBalancerNotFound", elb.describe_tags, ResourceArns=[other(lb_arn)])
expect_error("TargetGroupNotFound", elb.add_tags, ResourceArns=[other(tg_arn)], Tags=[{"Key": "a", "Value": "1"}])

# --- unsupported and unknown operations ---
status = expect_error("OperationNotPermitted", elb.describe_trust_stores)
check(status == 400, "unsupported is a 400")
# Account limits: the ones Gantry enforces, under AWS's names.
limits = {l["Name"]: l["Max"] for l in elb.describe_account_limits()["Limits"]}
check(limits == {"application-load-balancers": "50", "network-load-balancers": "50", "target-groups": "3000",
                 "listeners-per-application-load-balancer": "50", "listeners-per-network-load-balancer": "50",
                 "rules-per-application-load-balancer": "100"}, limits)
first_page = elb.describe_account_limits(PageSize=4)
rest = elb.describe_account_limits(Marker=first_page["NextMarker"])
check(len(first_page["Limits"]) == 4 and len(rest["Limits"]) == 2 and "NextMarker" not in rest, rest)
status = expect_error("ValidationError", elb.describe_account_limits, PageSize=401)
check(status == 400, "unsupported is a 400")
# Security policies list what the proxy negotiates; unknown names are refused.
policies = {p["Name"]: p for p in elb.describe_ssl_policies()["SslPolicies"]}
check(policies["ELBSecurityPolicy-TLS13-1-3-2021-06"]["SslProtocols"] == ["TLSv1.3"], policies)
check(policies["ELBSecurityPolicy-2016-08"]["SslProtocols"] == ["TLSv1.2"], policies)
expect_error("SSLPolicyNotFound", elb.describe_ssl_policies, Names=["ELBSecurityPolicy-2015-05"])
# Without EC2 behind it (this in-process server), subnets and groups are kept as given.
zones = elb.set_subnets(LoadBalancerArn=lb_arn, Subnets=["subnet-9", "subnet-8"])["AvailabilityZones"]
check([z["SubnetId"] for z in zones] == ["subnet-9", "subnet-8"], zones)
check(elb.set_security_groups(LoadBalancerArn=lb_arn, SecurityGroups=["sg-1"])["SecurityGroupIds"] == ["sg-1"], "groups")
check(elb.describe_load_balancers(LoadBalancerArns=[lb_arn])["LoadBalancers"][0]["SecurityGroups"] == ["sg-1"], "groups kept")

# --- deletion ---
elb.modify_load_balancer_attributes(LoadBalancerArn=lb_arn, Attributes=[{"Key": "deletion_protection.enabled", "Value": "true"}])
expect_error("OperationNotPermitted", elb.delete_load_balancer, LoadBalancerArn=lb_arn)
elb.modify_load_balancer_attributes(LoadBalancerArn=lb_arn, Attributes=[{"Key": "deletion_protection.enabled", "Value": "false"}])
elb.delete_listener(ListenerArn=fixed["ListenerArn"])
expect_error("ListenerNotFound", elb.delete_listener, ListenerArn=fixed["ListenerArn"])
elb.delete_load_balancer(LoadBalancerArn=lb_arn)
elb.delete_load_balancer(LoadBalancerArn=lb_arn)  # deleting twice succeeds, as on AWS
elb.get_waiter("load_balancers_deleted").wait(LoadBalancerArns=[lb_arn], WaiterConfig={"Delay": 1})
expect_error("ListenerNotFound", elb.describe_listeners, ListenerArns=[l_arn])
elb.delete_target_group(TargetGroupArn=tg_arn)
expect_error("TargetGroupNotFound", elb.describe_target_groups, TargetGroupArns=[tg_arn])
check(elb.describe_target_groups(Names=["web2"])["TargetGroups"][0]["LoadBalancerArns"] == [], "no lb after delete")
# --- UDP and TCP_UDP on network load balancers ---
udp_tg = elb.create_target_group(Name="udp", Protocol="UDP", Port=53, VpcId="vpc-1", TargetType="ip")["TargetGroups"][0]
check(udp_tg["Protocol"] == "UDP" and udp_tg["HealthCheckProtocol"] == "TCP" and udp_tg["HealthCheckPort"] == "traffic-port", udp_tg)
both_tg = elb.create_target_group(Name="both", Protocol="TCP_UDP", Port=53, VpcId="vpc-1",
                                  HealthCheckProtocol="HTTP", HealthCheckPath="/ready")["TargetGroups"][0]
check(both_tg["Protocol"] == "TCP_UDP" and both_tg["HealthCheckProtocol"] == "HTTP" and both_tg["HealthCheckPath"] == "/ready", both_tg)
for proto in ["UDP", "TCP_UDP", "TLS"]:
    expect_error("ValidationError", elb.create_target_group, Name="badhc", Protocol="UDP", Port=53, HealthCheckProtocol=proto)
expect_error("ValidationError", elb.modify_target_group, TargetGroupArn=udp_tg["TargetGroupArn"], HealthCheckProtocol="UDP")
expect_error("InvalidConfigurationRequest", elb.create_target_group, Name="badtt", Protocol="TCP", Port=80, TargetType="lambda")
# --- an application load balancer as the target of a network load balancer ---
alb_t_arn = elb.create_load_balancer(Name="alb-target")["LoadBalancers"][0]["LoadBalancerArn"]
elb.create_listener(LoadBalancerArn=alb_t_arn, Protocol="HTTP", Port=8081,
                    DefaultActions=[{"Type": "forward", "TargetGroupArn": tg2_arn}])
alb_tg = elb.create_target_group(Name="to-alb", Protocol="TCP", Port=8081, VpcId="vpc-1", TargetType="alb")["TargetGroups"][0]
check(alb_tg["TargetType"] == "alb" and alb_tg["HealthCheckProtocol"] == "HTTP" and alb_tg["HealthCheckPath"] == "/", alb_tg)
alb_tg_arn = alb_tg["TargetGroupArn"]
expect_error("ValidationError", elb.create_target_group, Name="badalb", Protocol="HTTP", Port=80, TargetType="alb")
expect_error("ValidationError", elb.create_target_group, Name="badalb", Protocol="TCP", Port=80, TargetType="alb", HealthCheckProtocol="TCP")
expect_error("ValidationError", elb.modify_target_group, TargetGroupArn=alb_tg_arn, HealthCheckProtocol="TCP")
expect_error("InvalidTarget", elb.register_targets, TargetGroupArn=alb_tg_arn, Targets=[{"Id": other(alb_t_arn)}])
expect_error("InvalidTarget", elb.register_targets, TargetGroupArn=alb_tg_arn, Targets=[{"Id": nlb_arn}])
expect_error("InvalidTarget", elb.register_targets, TargetGroupArn=alb_tg_arn, Targets=[{"Id": "10.0.0.1"}])
expect_error("InvalidTarget", elb.register_targets, TargetGroupArn=alb_tg_arn, Targets=[{"Id": alb_t_arn, "Port": 8082}])
alb_tg9 = elb.create_target_group(Name="to-alb-9", Protocol="TCP", Port=9090, TargetType="alb")["TargetGroups"][0]["TargetGroupArn"]
expect_error("InvalidTarget", elb.register_targets, TargetGroupArn=alb_tg9, Targets=[{"Id": alb_t_arn}])
elb.register_targets(TargetGroupArn=alb_tg_arn, Targets=[{"Id": alb_t_arn}])
th = elb.describe_target_health(TargetGroupArn=alb_tg_arn)["TargetHealthDescriptions"]
check([(t["Target"]["Id"], t["Target"]["Port"]) for t in th] == [(alb_t_arn, 8081)], th)
alb2_arn = elb.create_load_balancer(Name="alb-target2")["LoadBalancers"][0]["LoadBalancerArn"]
elb.create_listener(LoadBalancerArn=alb2_arn, Protocol="HTTP", Port=8081,
                    DefaultActions=[{"Type": "forward", "TargetGroupArn": tg2_arn}])
expect_error("InvalidTarget", elb.register_targets, TargetGroupArn=alb_tg_arn, Targets=[{"Id": alb2_arn}])
alb_l = elb.create_listener(LoadBalancerArn=nlb_arn, Protocol="TCP", Port=58,
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": alb_tg_arn}])["Listeners"][0]
check(elb.describe_target_groups(Names=["to-alb"])["TargetGroups"][0]["LoadBalancerArns"] == [nlb_arn], "alb tg in use")
elb.delete_listener(ListenerArn=alb_l["ListenerArn"])
elb.deregister_targets(TargetGroupArn=alb_tg_arn, Targets=[{"Id": alb_t_arn}])
for arn in [alb_tg_arn, alb_tg9]:
    elb.delete_target_group(TargetGroupArn=arn)
for arn in [alb_t_arn, alb2_arn]:
    elb.delete_load_balancer(LoadBalancerArn=arn)
udp_fwd = [{"Type": "forward", "TargetGroupArn": udp_tg["TargetGroupArn"]}]
both_fwd = [{"Type": "forward", "TargetGroupArn": both_tg["TargetGroupArn"]}]
tcp_fwd = [{"Type": "forward", "TargetGroupArn": tcp_tg["TargetGroupArn"]}]
udp_l = elb.create_listener(LoadBalancerArn=nlb_arn, Protocol="UDP", Port=53, DefaultActions=udp_fwd)["Listeners"][0]
check(udp_l["Protocol"] == "UDP" and udp_l["Port"] == 53, udp_l)
check(elb.describe_target_groups(Names=["udp"])["TargetGroups"][0]["LoadBalancerArns"] == [nlb_arn], "udp tg in use")
both_l = elb.create_listener(LoadBalancerArn=nlb_arn, Protocol="TCP_UDP", Port=54, DefaultActions=both_fwd)["Listeners"][0]
check(both_l["Protocol"] == "TCP_UDP", both_l)
# A UDP listener forwards to UDP or TCP_UDP groups, a TCP one to TCP or TCP_UDP, TCP_UDP to TCP_UDP.
tcp_l = elb.create_listener(LoadBalancerArn=nlb_arn, Protocol="TCP", Port=55, DefaultActions=both_fwd)["Listeners"][0]
check(tcp_l["Protocol"] == "TCP", tcp_l)
tcp_attrs = elb.describe_listener_attributes(ListenerArn=tcp_l["ListenerArn"])["Attributes"]
check(tcp_attrs == [{"Key": "tcp.idle_timeout.seconds", "Value": "350"}], tcp_attrs)
elb.modify_listener_attributes(ListenerArn=tcp_l["ListenerArn"], Attributes=[{"Key": "tcp.idle_timeout.seconds", "Value": "600"}])
tcp_attrs = elb.describe_listener_attributes(ListenerArn=tcp_l["ListenerArn"])["Attributes"]
check(tcp_attrs == [{"Key": "tcp.idle_timeout.seconds", "Value": "600"}], tcp_attrs)
for value in ["59", "6001"]:
    expect_error("InvalidConfigurationRequest", elb.modify_listener_attributes, ListenerArn=tcp_l["ListenerArn"],
                 Attributes=[{"Key": "tcp.idle_timeout.seconds", "Value": value}])
check(elb.describe_listener_attributes(ListenerArn=udp_l["ListenerArn"])["Attributes"] == [], "udp listener has no attributes")
expect_error("IncompatibleProtocols", elb.create_listener, LoadBalancerArn=nlb_arn, Protocol="UDP", Port=56, DefaultActions=tcp_fwd)
expect_error("IncompatibleProtocols", elb.create_listener, LoadBalancerArn=nlb_arn, Protocol="TCP", Port=56, DefaultActions=udp_fwd)
expect_error("IncompatibleProtocols", elb.create_listener, LoadBalancerArn=nlb_arn, Protocol="TCP_UDP", Port=56, DefaultActions=udp_fwd)
expect_error("IncompatibleProtocols", elb.modify_listener, ListenerArn=udp_l["ListenerArn"], Protocol="TCP")
expect_error("IncompatibleProtocols", elb.modify_listener, ListenerArn=udp_l["ListenerArn"], DefaultActions=tcp_fwd)
moved = elb.modify_listener(ListenerArn=udp_l["ListenerArn"], Protocol="TCP_UDP", DefaultActions=both_fwd)["Listeners"][0]
check(moved["Protocol"] == "TCP_UDP", moved)
expect_error("DuplicateListener", elb.create_listener, LoadBalancerArn=nlb_arn, Protocol="UDP", Port=54, DefaultActions=udp_fwd)
# UDP is a network load balancer protocol only; QUIC is not served.
app_arn = elb.create_load_balancer(Name="app-udp")["LoadBalancers"][0]["LoadBalancerArn"]
# 50 listeners per load balancer, 100 rules per application load balancer (default rules aside).
fixed_200 = [{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}]
many = [elb.create_listener(LoadBalancerArn=app_arn, Protocol="HTTP", Port=20000 + i, DefaultActions=fixed_200)["Listeners"][0]["ListenerArn"]
        for i in range(50)]
expect_error("TooManyListeners", elb.create_listener, LoadBalancerArn=app_arn, Protocol="HTTP", Port=20050, DefaultActions=fixed_200)
for i in range(100):
    elb.create_rule(ListenerArn=many[i % 2], Priority=i + 1, Conditions=[{"Field": "path-pattern", "Values": [f"/{i}"]}], Actions=fixed_200)
expect_error("TooManyRules", elb.create_rule, ListenerArn=many[2], Priority=1,
             Conditions=[{"Field": "path-pattern", "Values": ["/x"]}], Actions=fixed_200)
expect_error("ValidationError", elb.create_listener, LoadBalancerArn=app_arn, Protocol="UDP", Port=53, DefaultActions=udp_fwd)
expect_error("UnsupportedProtocol", elb.create_listener, LoadBalancerArn=nlb_arn, Protocol="QUIC", Port=57, DefaultActions=udp_fwd)
dual_arn = elb.create_load_balancer(Name="dual", Type="network", IpAddressType="dualstack")["LoadBalancers"][0]["LoadBalancerArn"]
# SetIpAddressType: stored and reported; this server has no EC2 subnets, so dualstack is stored as given.
check(elb.set_ip_address_type(LoadBalancerArn=dual_arn, IpAddressType="ipv4")["IpAddressType"] == "ipv4", "set ipv4")
check(elb.describe_load_balancers(LoadBalancerArns=[dual_arn])["LoadBalancers"][0]["IpAddressType"] == "ipv4", "ipv4 reported")
check(elb.set_ip_address_type(LoadBalancerArn=dual_arn, IpAddressType="dualstack")["IpAddressType"] == "dualstack", "set dualstack")
expect_error("InvalidConfigurationRequest", elb.set_ip_address_type, LoadBalancerArn=dual_arn, IpAddressType="dualstack-without-public-ipv4")
expect_error("InvalidConfigurationRequest", elb.set_ip_address_type, LoadBalancerArn=nlb_arn, IpAddressType="dualstack")
expect_error("ValidationError", elb.set_ip_address_type, LoadBalancerArn=dual_arn, IpAddressType="ipv6")
expect_error("ValidationError", elb.create_load_balancer, Name="badip", IpAddressType="ipv6")
expect_error("LoadBalancerNotFound", elb.set_ip_address_type, LoadBalancerArn=other(dual_arn), IpAddressType="ipv4")
internal = elb.create_load_balancer(Name="inside", Scheme="internal")["LoadBalancers"][0]["LoadBalancerArn"]
expect_error("InvalidConfigurationRequest", elb.set_ip_address_type, LoadBalancerArn=internal, IpAddressType="dualstack")
elb.delete_load_balancer(LoadBalancerArn=internal)
expect_error("InvalidConfigurationRequest", elb.create_listener, LoadBalancerArn=dual_arn, Protocol="UDP", Port=53, DefaultActions=udp_fwd)
for arn in [udp_l["ListenerArn"], both_l["ListenerArn"], tcp_l["ListenerArn"]]:
    elb.delete_listener(ListenerArn=arn)
for arn in [app_arn, dual_arn]:
    elb.delete_load_balancer(LoadBalancerArn=arn)
for t in [udp_tg, both_tg]:
    elb.delete_target_group(TargetGroupArn=t["TargetGroupArn"])
print("ok", checks)

"""Elastic Load Balancing v2's documented error cases, operation by operation, as boto3 sees
them: the error code, HTTP status and AWS's wording, and which check wins when a request has more
than one problem."""

import pytest
from botocore.exceptions import ClientError

from conftest import default_subnets

PREFIX = "arn:aws:elasticloadbalancing:us-east-1:000000000000:"
LB = PREFIX + "loadbalancer/app/nope/0123456789abcdef"
TG = PREFIX + "targetgroup/nope/0123456789abcdef"
LISTENER = PREFIX + "listener/app/nope/0123456789abcdef/0123456789abcdef"
RULE = PREFIX + "listener-rule/app/nope/0123456789abcdef/0123456789abcdef/0123456789abcdef"
FORWARD_MISSING = [{"Type": "forward", "TargetGroupArn": TG}]


def error_of(call, *args, **kw):
    with pytest.raises(ClientError) as e:
        call(*args, **kw)
    err = e.value.response["Error"]
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"], err["Code"], err["Message"]


def lb_not_found(what=LB):
    return 400, "LoadBalancerNotFound", f"One or more load balancers not found: '{what}'"


def tg_not_found(what=TG):
    return 400, "TargetGroupNotFound", f"One or more target groups not found: '{what}'"


def test_missing_resources(gantry):
    elb = gantry.client("elbv2")
    subnets = default_subnets(gantry)
    for call, kw in [
        (elb.describe_load_balancers, dict(LoadBalancerArns=[LB])),
        (elb.describe_load_balancer_attributes, dict(LoadBalancerArn=LB)),
        (elb.modify_load_balancer_attributes,
         dict(LoadBalancerArn=LB, Attributes=[{"Key": "idle_timeout.timeout_seconds", "Value": "30"}])),
        (elb.set_subnets, dict(LoadBalancerArn=LB, Subnets=subnets)),
        (elb.set_security_groups, dict(LoadBalancerArn=LB, SecurityGroups=["sg-1"])),
        (elb.set_ip_address_type, dict(LoadBalancerArn=LB, IpAddressType="ipv4")),
        (elb.describe_target_groups, dict(LoadBalancerArn=LB)),
        (elb.describe_listeners, dict(LoadBalancerArn=LB)),
        # The load balancer is checked before the target group it would forward to.
        (elb.create_listener, dict(LoadBalancerArn=LB, Protocol="HTTP", Port=80, DefaultActions=FORWARD_MISSING)),
        (elb.add_tags, dict(ResourceArns=[LB], Tags=[{"Key": "k", "Value": "v"}])),
        (elb.remove_tags, dict(ResourceArns=[LB], TagKeys=["k"])),
        (elb.describe_tags, dict(ResourceArns=[LB])),
    ]:
        assert error_of(call, **kw) == lb_not_found(), call.__name__
    assert error_of(elb.describe_load_balancers, Names=["nope"]) == lb_not_found("nope")
    for call, kw in [
        (elb.describe_target_groups, dict(TargetGroupArns=[TG])),
        (elb.modify_target_group, dict(TargetGroupArn=TG, HealthCheckPath="/x")),
        (elb.describe_target_group_attributes, dict(TargetGroupArn=TG)),
        (elb.modify_target_group_attributes,
         dict(TargetGroupArn=TG, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "5"}])),
        (elb.register_targets, dict(TargetGroupArn=TG, Targets=[{"Id": "10.0.0.1"}])),
        (elb.deregister_targets, dict(TargetGroupArn=TG, Targets=[{"Id": "10.0.0.1"}])),
        (elb.describe_target_health, dict(TargetGroupArn=TG)),
        (elb.describe_tags, dict(ResourceArns=[TG])),
    ]:
        assert error_of(call, **kw) == tg_not_found(), call.__name__
    assert error_of(elb.describe_target_groups, Names=["nope"]) == tg_not_found("nope")
    listener_not_found = (400, "ListenerNotFound", f"One or more listeners not found: '{LISTENER}'")
    for call, kw in [
        (elb.describe_listeners, dict(ListenerArns=[LISTENER])),
        (elb.delete_listener, dict(ListenerArn=LISTENER)),
        (elb.modify_listener, dict(ListenerArn=LISTENER, Port=81)),
        (elb.describe_listener_attributes, dict(ListenerArn=LISTENER)),
        (elb.modify_listener_attributes,
         dict(ListenerArn=LISTENER, Attributes=[{"Key": "routing.http.response.server.enabled", "Value": "true"}])),
        (elb.describe_rules, dict(ListenerArn=LISTENER)),
        (elb.create_rule, dict(ListenerArn=LISTENER, Priority=1, Actions=FORWARD_MISSING,
                               Conditions=[{"Field": "path-pattern", "Values": ["/a"]}])),
    ]:
        assert error_of(call, **kw) == listener_not_found, call.__name__
    rule_not_found = (400, "RuleNotFound", f"One or more rules not found: '{RULE}'")
    for call, kw in [
        (elb.describe_rules, dict(RuleArns=[RULE])),
        (elb.delete_rule, dict(RuleArn=RULE)),
        (elb.modify_rule, dict(RuleArn=RULE, Conditions=[{"Field": "path-pattern", "Values": ["/a"]}])),
        (elb.set_rule_priorities, dict(RulePriorities=[{"RuleArn": RULE, "Priority": 2}])),
    ]:
        assert error_of(call, **kw) == rule_not_found, call.__name__
    # Deleting what does not exist succeeds, as AWS's deletes are idempotent.
    elb.delete_load_balancer(LoadBalancerArn=LB)
    elb.delete_target_group(TargetGroupArn=TG)


def test_malformed_arns_are_validation_errors(gantry):
    elb = gantry.client("elbv2")
    lb = (400, "ValidationError", "'nope' is not a valid load balancer ARN")
    tg = (400, "ValidationError", "'nope' is not a valid target group ARN")
    assert error_of(elb.describe_load_balancers, LoadBalancerArns=["nope"]) == lb
    assert error_of(elb.delete_load_balancer, LoadBalancerArn="nope") == lb
    assert error_of(elb.describe_load_balancer_attributes, LoadBalancerArn="nope") == lb
    assert error_of(elb.describe_target_groups, TargetGroupArns=["nope"]) == tg
    assert error_of(elb.delete_target_group, TargetGroupArn="nope") == tg
    assert error_of(elb.describe_target_health, TargetGroupArn="nope") == tg
    # A target group ARN where a load balancer's is expected (and the other way round).
    assert error_of(elb.describe_load_balancer_attributes, LoadBalancerArn=TG) == (
        400, "ValidationError", f"'{TG}' is not a valid load balancer ARN")
    assert error_of(elb.describe_target_group_attributes, TargetGroupArn=LB) == (
        400, "ValidationError", f"'{LB}' is not a valid target group ARN")


def test_creation_conflicts_and_validation(gantry):
    elb = gantry.client("elbv2")
    ec2 = gantry.client("ec2")
    subnets = default_subnets(gantry)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    assert error_of(elb.create_load_balancer, Name="one", Subnets=subnets[:1]) == (
        400, "ValidationError", "At least two subnets in two different Availability Zones must be specified")
    assert error_of(elb.create_load_balancer, Name="-bad", Subnets=subnets) == (
        400, "ValidationError",
        "Load balancer name '-bad' can have a maximum of 32 characters, can contain only alphanumeric characters "
        "or hyphens, and must not begin or end with a hyphen")
    assert error_of(elb.create_load_balancer, Name="internal-x", Subnets=subnets) == (
        400, "ValidationError", "Load balancer names cannot begin with 'internal-'")
    assert error_of(elb.create_load_balancer, Name="badsub",
                    Subnets=["subnet-00000000000000000", "subnet-11111111111111111"])[:2] == (400, "SubnetNotFound")
    assert error_of(elb.create_target_group, Name="-bad", Protocol="HTTP", Port=80, VpcId=vpc) == (
        400, "ValidationError",
        "Target group name '-bad' can have a maximum of 32 characters, can contain only alphanumeric characters "
        "or hyphens, and must not begin or end with a hyphen")
    lb = elb.create_load_balancer(Name="lb", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    # The same name with the same settings is the same load balancer.
    assert elb.create_load_balancer(Name="lb", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"] == lb
    assert error_of(elb.create_load_balancer, Name="lb", Subnets=subnets, Scheme="internal") == (
        400, "DuplicateLoadBalancerName", "A load balancer with the same name 'lb' exists, but with different settings")
    assert error_of(elb.set_subnets, LoadBalancerArn=lb, Subnets=subnets[:1]) == (
        400, "ValidationError", "At least two subnets in two different Availability Zones must be specified")
    tg = elb.create_target_group(Name="tg", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]["TargetGroupArn"]
    assert error_of(elb.create_target_group, Name="tg", Protocol="HTTP", Port=81, VpcId=vpc) == (
        400, "DuplicateTargetGroupName", "A target group with the same name 'tg' exists, but with different settings")
    assert error_of(elb.create_listener, LoadBalancerArn=lb, Protocol="HTTP", Port=80,
                    DefaultActions=FORWARD_MISSING) == tg_not_found()
    forward = [{"Type": "forward", "TargetGroupArn": tg}]
    listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80,
                                   DefaultActions=forward)["Listeners"][0]["ListenerArn"]
    other = elb.create_target_group(Name="other", Protocol="HTTP", Port=80,
                                    VpcId=vpc)["TargetGroups"][0]["TargetGroupArn"]
    assert error_of(elb.create_listener, LoadBalancerArn=lb, Protocol="HTTP", Port=80,
                    DefaultActions=[{"Type": "forward", "TargetGroupArn": other}])[:2] == (400, "DuplicateListener")
    path = [{"Field": "path-pattern", "Values": ["/a"]}]
    elb.create_rule(ListenerArn=listener, Priority=1, Conditions=path, Actions=forward)
    assert error_of(elb.create_rule, ListenerArn=listener, Priority=1, Actions=forward,
                    Conditions=[{"Field": "path-pattern", "Values": ["/b"]}]) == (
        400, "PriorityInUse", "Priority '1' is currently in use")
    assert error_of(elb.create_rule, ListenerArn=listener, Priority=2, Conditions=path,
                    Actions=FORWARD_MISSING) == tg_not_found()
    assert error_of(elb.delete_target_group, TargetGroupArn=tg) == (
        400, "ResourceInUse",
        f"Target group '{tg}' is currently in use by a listener or a rule of '{lb}'")
    assert error_of(elb.modify_load_balancer_attributes, LoadBalancerArn=lb,
                    Attributes=[{"Key": "nope", "Value": "1"}]) == (
        400, "InvalidConfigurationRequest", "Key 'nope' not valid")
    assert error_of(elb.modify_target_group_attributes, TargetGroupArn=tg,
                    Attributes=[{"Key": "nope", "Value": "1"}]) == (
        400, "InvalidConfigurationRequest", "Key 'nope' not valid")
    assert error_of(elb.describe_load_balancers, LoadBalancerArns=[lb], Names=["lb"]) == (
        400, "ValidationError", "Load balancer names and load balancer ARNs cannot be specified at the same time")
    assert error_of(elb.describe_load_balancers, Names=["lb", "nope"]) == lb_not_found("nope")
    assert error_of(elb.describe_listeners) == (
        400, "ValidationError", "You must specify either listener ARNs or a load balancer ARN")
    assert error_of(elb.add_tags, ResourceArns=[lb], Tags=[{"Key": "a", "Value": "b"}, {"Key": "a", "Value": "c"}])[:2] == (
        400, "DuplicateTagKeys")
    elb.modify_load_balancer_attributes(LoadBalancerArn=lb,
                                        Attributes=[{"Key": "deletion_protection.enabled", "Value": "true"}])
    assert error_of(elb.delete_load_balancer, LoadBalancerArn=lb) == (
        400, "OperationNotPermitted",
        f"Load balancer '{lb}' cannot be deleted because deletion protection is enabled")


def test_ip_address_type_on_ipv4_only_subnets(gantry):
    elb = gantry.client("elbv2")
    subnets = default_subnets(gantry)
    no_ipv6 = (400, "InvalidSubnet",
               "IP address type 'dualstack' needs subnets with an IPv6 CIDR block, and this server's subnets are IPv4 only")
    assert error_of(elb.create_load_balancer, Name="dual", Subnets=subnets, IpAddressType="dualstack") == no_ipv6
    lb = elb.create_load_balancer(Name="v4", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    assert error_of(elb.set_ip_address_type, LoadBalancerArn=lb, IpAddressType="dualstack") == no_ipv6
    assert elb.set_ip_address_type(LoadBalancerArn=lb, IpAddressType="ipv4")["IpAddressType"] == "ipv4"
    assert elb.describe_load_balancers(LoadBalancerArns=[lb])["LoadBalancers"][0]["IpAddressType"] == "ipv4"
    assert error_of(elb.set_ip_address_type, LoadBalancerArn=lb, IpAddressType="ipv6")[:2] == (400, "ValidationError")
    listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=[
        {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "204"}}])["Listeners"][0]["ListenerArn"]
    assert error_of(elb.modify_listener_attributes, ListenerArn=listener,
                    Attributes=[{"Key": "routing.http.response.server.enabled", "Value": "no"}]) == (
        400, "InvalidConfigurationRequest",
        "The value of 'routing.http.response.server.enabled' must be one of [true, false]")
    assert error_of(elb.modify_listener_attributes, ListenerArn=listener,
                    Attributes=[{"Key": "routing.http.response.x_frame_options.header_value", "Value": "NEVER"}]) == (
        400, "InvalidConfigurationRequest",
        "The value 'NEVER' of 'routing.http.response.x_frame_options.header_value' is not valid: "
        "it must be DENY, SAMEORIGIN or ALLOW-FROM <uri>")
    assert error_of(elb.modify_listener_attributes, ListenerArn=listener,
                    Attributes=[{"Key": "tcp.idle_timeout.seconds", "Value": "350"}]) == (
        400, "InvalidConfigurationRequest", "Key 'tcp.idle_timeout.seconds' not valid")
    limits = {l["Name"]: l["Max"] for l in elb.describe_account_limits()["Limits"]}
    assert limits["application-load-balancers"] == "50" and limits["target-groups"] == "3000", limits
    elb.delete_load_balancer(LoadBalancerArn=lb)

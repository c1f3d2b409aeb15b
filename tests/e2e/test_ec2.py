"""The networking part of the EC2 API, driven by the AWS CLI and boto3: the default VPC and its
default subnets, a custom VPC, subnet and security group created, described, tagged and deleted,
and EC2's error codes for bad input."""

import json

import botocore.exceptions
import pytest


def cli_error(gantry, *args):
    p = gantry.aws(*args, check=False)
    assert p.returncode != 0, f"aws {' '.join(args)} succeeded"
    return p.stderr


def test_default_vpc_and_subnets(gantry):
    vpcs = gantry.aws_json("ec2", "describe-vpcs", "--filters", "Name=is-default,Values=true")["Vpcs"]
    assert len(vpcs) == 1 and vpcs[0]["IsDefault"] is True
    assert vpcs[0]["CidrBlock"] == "172.31.0.0/16"
    subnets = gantry.aws_json("ec2", "describe-subnets", "--filters", "Name=default-for-az,Values=true")["Subnets"]
    zones = sorted(s["AvailabilityZone"] for s in subnets)
    assert zones == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert {s["VpcId"] for s in subnets} == {vpcs[0]["VpcId"]}
    assert sorted(s["CidrBlock"] for s in subnets) == ["172.31.0.0/20", "172.31.16.0/20", "172.31.32.0/20"]
    for s in subnets:
        assert s["SubnetId"].startswith("subnet-") and len(s["SubnetId"]) == len("subnet-") + 17
        assert s["AvailableIpAddressCount"] == 4091
        assert s["MapPublicIpOnLaunch"] is True
    groups = gantry.aws_json("ec2", "describe-security-groups", "--filters", "Name=group-name,Values=default")["SecurityGroups"]
    assert len(groups) == 1 and groups[0]["VpcId"] == vpcs[0]["VpcId"]
    assert groups[0]["IpPermissions"][0]["UserIdGroupPairs"][0]["GroupId"] == groups[0]["GroupId"]
    attrs = gantry.aws_json("ec2", "describe-account-attributes", "--attribute-names", "default-vpc")
    assert attrs["AccountAttributes"][0]["AttributeValues"][0]["AttributeValue"] == vpcs[0]["VpcId"]
    zones = gantry.aws_json("ec2", "describe-availability-zones")["AvailabilityZones"]
    assert [(z["ZoneName"], z["ZoneId"]) for z in zones][:1] == [("us-east-1a", "use1-az1")]


def test_custom_vpc_subnet_group_lifecycle(gantry):
    vpc = gantry.aws_json("ec2", "create-vpc", "--cidr-block", "10.77.0.0/16",
                          "--tag-specifications", "ResourceType=vpc,Tags=[{Key=Name,Value=lab}]")["Vpc"]
    vpc_id = vpc["VpcId"]
    assert vpc_id.startswith("vpc-") and vpc["IsDefault"] is False
    assert vpc["Tags"] == [{"Key": "Name", "Value": "lab"}]
    found = gantry.aws_json("ec2", "describe-vpcs", "--filters", "Name=tag:Name,Values=lab")["Vpcs"]
    assert [v["VpcId"] for v in found] == [vpc_id]
    # Every VPC has its default group.
    default = gantry.aws_json("ec2", "describe-security-groups", "--filters", f"Name=vpc-id,Values={vpc_id}")["SecurityGroups"]
    assert [g["GroupName"] for g in default] == ["default"]

    subnet = gantry.aws_json("ec2", "create-subnet", "--vpc-id", vpc_id, "--cidr-block", "10.77.1.0/24",
                             "--availability-zone", "us-east-1b")["Subnet"]
    subnet_id = subnet["SubnetId"]
    assert subnet["AvailableIpAddressCount"] == 251 and subnet["DefaultForAz"] is False
    assert "InvalidSubnet.Conflict" in cli_error(gantry, "ec2", "create-subnet", "--vpc-id", vpc_id,
                                                 "--cidr-block", "10.77.1.128/25")
    assert "InvalidSubnet.Range" in cli_error(gantry, "ec2", "create-subnet", "--vpc-id", vpc_id,
                                              "--cidr-block", "10.78.0.0/24")
    assert "InvalidVpcID.NotFound" in cli_error(gantry, "ec2", "create-subnet", "--vpc-id", "vpc-0123456789abcdef0",
                                                "--cidr-block", "10.77.2.0/24")

    sg = gantry.aws_json("ec2", "create-security-group", "--group-name", "web", "--description", "web tier",
                         "--vpc-id", vpc_id)["GroupId"]
    assert "InvalidGroup.Duplicate" in cli_error(gantry, "ec2", "create-security-group", "--group-name", "web",
                                                 "--description", "again", "--vpc-id", vpc_id)
    rules = gantry.aws_json("ec2", "authorize-security-group-ingress", "--group-id", sg, "--protocol", "tcp",
                            "--port", "80", "--cidr", "10.0.0.0/8")["SecurityGroupRules"]
    assert rules[0]["SecurityGroupRuleId"].startswith("sgr-") and rules[0]["CidrIpv4"] == "10.0.0.0/8"
    assert "InvalidPermission.Duplicate" in cli_error(gantry, "ec2", "authorize-security-group-ingress", "--group-id", sg,
                                                      "--protocol", "tcp", "--port", "80", "--cidr", "10.0.0.0/8")
    gantry.aws("ec2", "authorize-security-group-ingress", "--group-id", sg, "--ip-permissions",
               f"IpProtocol=tcp,FromPort=8080,ToPort=8081,UserIdGroupPairs=[{{GroupId={sg}}}]",
               "IpProtocol=tcp,FromPort=443,ToPort=443,PrefixListIds=[{PrefixListId=pl-12345678}]")
    described = gantry.aws_json("ec2", "describe-security-groups", "--group-ids", sg)["SecurityGroups"][0]
    perms = {(p["IpProtocol"], p["FromPort"]): p for p in described["IpPermissions"]}
    assert perms[("tcp", 80)]["IpRanges"] == [{"CidrIp": "10.0.0.0/8"}]
    assert perms[("tcp", 8080)]["UserIdGroupPairs"][0]["GroupId"] == sg
    assert perms[("tcp", 443)]["PrefixListIds"] == [{"PrefixListId": "pl-12345678"}]
    sgr = gantry.aws_json("ec2", "describe-security-group-rules", "--filters", f"Name=group-id,Values={sg}")["SecurityGroupRules"]
    assert len(sgr) == 4 and sum(r["IsEgress"] for r in sgr) == 1

    gantry.aws("ec2", "create-tags", "--resources", subnet_id, sg, "--tags", "Key=env,Value=dev", "Key=team,Value=net")
    tags = gantry.aws_json("ec2", "describe-tags", "--filters", f"Name=resource-id,Values={subnet_id}")["Tags"]
    assert sorted((t["Key"], t["Value"], t["ResourceType"]) for t in tags) == [("env", "dev", "subnet"), ("team", "net", "subnet")]
    gantry.aws("ec2", "delete-tags", "--resources", subnet_id, "--tags", "Key=team")
    assert [t["Key"] for t in gantry.aws_json("ec2", "describe-subnets", "--subnet-ids", subnet_id)["Subnets"][0]["Tags"]] == ["env"]

    assert "DependencyViolation" in cli_error(gantry, "ec2", "delete-vpc", "--vpc-id", vpc_id)
    gantry.aws("ec2", "revoke-security-group-ingress", "--group-id", sg, "--protocol", "tcp", "--port", "80", "--cidr", "10.0.0.0/8")
    assert "InvalidPermission.NotFound" in cli_error(gantry, "ec2", "revoke-security-group-ingress", "--group-id", sg,
                                                     "--protocol", "tcp", "--port", "80", "--cidr", "10.0.0.0/8")
    gantry.aws("ec2", "delete-security-group", "--group-id", sg)
    gantry.aws("ec2", "delete-subnet", "--subnet-id", subnet_id)
    gantry.aws("ec2", "delete-vpc", "--vpc-id", vpc_id)
    assert "InvalidVpcID.NotFound" in cli_error(gantry, "ec2", "describe-vpcs", "--vpc-ids", vpc_id)


def test_bad_input_gets_ec2_errors(gantry):
    ec2 = gantry.client("ec2")

    def code(fn, **kw):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            fn(**kw)
        return e.value.response["Error"]["Code"]

    assert code(ec2.create_vpc, CidrBlock="10.0.0.0/8") == "InvalidVpc.Range"
    assert code(ec2.create_vpc, CidrBlock="10.0.0.1/16") == "InvalidParameterValue"
    assert code(ec2.create_vpc, CidrBlock="10.0.0.0/16", AmazonProvidedIpv6CidrBlock=True) == "InvalidParameter"
    assert code(ec2.describe_subnets, SubnetIds=["subnet-0123456789abcdef0"]) == "InvalidSubnetID.NotFound"
    assert code(ec2.describe_security_groups, GroupIds=["sg-0123456789abcdef0"]) == "InvalidGroup.NotFound"
    assert code(ec2.describe_vpcs, Filters=[{"Name": "no-such-filter", "Values": ["x"]}]) == "InvalidParameterValue"
    assert code(ec2.create_security_group, GroupName="default", Description="d") == "InvalidGroup.Reserved"
    assert code(ec2.run_instances, ImageId="ami-12345678", MinCount=1, MaxCount=1) == "UnsupportedOperation"
    assert code(ec2.create_vpc, CidrBlock="10.0.0.0/16", DryRun=True) == "DryRunOperation"
    default_sg = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    assert code(ec2.delete_security_group, GroupId=default_sg) == "CannotDelete"


def test_pagination_and_filters_with_boto3(gantry):
    ec2 = gantry.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    made = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24")["Subnet"]["SubnetId"] for i in range(7)]
    seen = []
    for page in ec2.get_paginator("describe_subnets").paginate(Filters=[{"Name": "vpc-id", "Values": [vpc]}],
                                                              PaginationConfig={"PageSize": 5}):
        seen += [s["SubnetId"] for s in page["Subnets"]]
    assert sorted(seen) == sorted(made)
    wild = ec2.describe_subnets(Filters=[{"Name": "cidr-block", "Values": ["10.9.1*"]}])["Subnets"]
    assert [s["CidrBlock"] for s in wild] == ["10.9.1.0/24"]
    for s in made:
        ec2.delete_subnet(SubnetId=s)
    ec2.delete_vpc(VpcId=vpc)


def test_load_balancer_subnets_and_groups_come_from_ec2(gantry):
    ec2, elb = gantry.client("ec2"), gantry.client("elbv2")
    subnets = sorted(ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"],
                     key=lambda s: s["AvailabilityZone"])
    a, b, c = (s["SubnetId"] for s in subnets[:3])
    vpc = subnets[0]["VpcId"]
    default_sg = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                       {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"][0]["GroupId"]

    def code(fn, **kw):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            fn(**kw)
        return e.value.response["Error"]

    err = code(elb.create_load_balancer, Name="bad", Subnets=[a, "subnet-0123456789abcdef0"])
    assert err["Code"] == "SubnetNotFound" and "subnet-0123456789abcdef0" in err["Message"]
    same_zone = ec2.create_subnet(VpcId=vpc, CidrBlock="172.31.240.0/24",
                                  AvailabilityZone=subnets[0]["AvailabilityZone"])["Subnet"]["SubnetId"]
    assert code(elb.create_load_balancer, Name="bad", Subnets=[a, same_zone])["Code"] == "InvalidConfigurationRequest"
    assert code(elb.create_load_balancer, Name="bad", Subnets=[a])["Code"] == "ValidationError"
    other_vpc = ec2.create_vpc(CidrBlock="10.61.0.0/16")["Vpc"]["VpcId"]
    foreign_sg = ec2.create_security_group(GroupName="x", Description="x", VpcId=other_vpc)["GroupId"]
    assert code(elb.create_load_balancer, Name="bad", Subnets=[a, b], SecurityGroups=[foreign_sg])["Code"] == "InvalidSecurityGroup"

    lb = elb.create_load_balancer(Name="good", Subnets=[a, b])["LoadBalancers"][0]
    assert lb["VpcId"] == vpc
    assert sorted(z["ZoneName"] for z in lb["AvailabilityZones"]) == ["us-east-1a", "us-east-1b"]
    assert lb["SecurityGroups"] == [default_sg]
    zones = elb.set_subnets(LoadBalancerArn=lb["LoadBalancerArn"], SubnetMappings=[{"SubnetId": a}, {"SubnetId": c}])["AvailabilityZones"]
    assert sorted(z["SubnetId"] for z in zones) == sorted([a, c])
    web = ec2.create_security_group(GroupName="lb", Description="lb", VpcId=vpc)["GroupId"]
    assert elb.set_security_groups(LoadBalancerArn=lb["LoadBalancerArn"], SecurityGroups=[web])["SecurityGroupIds"] == [web]
    assert code(elb.set_security_groups, LoadBalancerArn=lb["LoadBalancerArn"], SecurityGroups=[foreign_sg])["Code"] == "InvalidSecurityGroup"
    described = elb.describe_load_balancers(LoadBalancerArns=[lb["LoadBalancerArn"]])["LoadBalancers"][0]
    assert described["SecurityGroups"] == [web]
    assert sorted(z["ZoneName"] for z in described["AvailabilityZones"]) == ["us-east-1a", "us-east-1c"]


def test_vpc_attributes_and_egress_rules(gantry):
    ec2 = gantry.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.81.0.0/16")["Vpc"]["VpcId"]
    assert ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsHostnames")["EnableDnsHostnames"] == {"Value": False}
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": False})
    assert ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsHostnames")["EnableDnsHostnames"] == {"Value": True}
    assert ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsSupport")["EnableDnsSupport"] == {"Value": False}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.modify_vpc_attribute(VpcId="vpc-0123456789abcdef0", EnableDnsSupport={"Value": True})
    assert e.value.response["Error"]["Code"] == "InvalidVpcID.NotFound"
    assert "vpc-0123456789abcdef0" in e.value.response["Error"]["Message"]

    sg = ec2.create_security_group(GroupName="out", Description="egress", VpcId=vpc)["GroupId"]
    everything = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    # A new group may send anywhere.
    assert ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]["IpPermissionsEgress"] == [
        {**everything, "Ipv6Ranges": [], "PrefixListIds": [], "UserIdGroupPairs": []}]
    ec2.revoke_security_group_egress(GroupId=sg, IpPermissions=[everything])
    assert ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]["IpPermissionsEgress"] == []
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.revoke_security_group_egress(GroupId=sg, IpPermissions=[everything])
    assert e.value.response["Error"]["Code"] == "InvalidPermission.NotFound"
    added = ec2.authorize_security_group_egress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "10.81.1.0/24"}]}])
    rule = added["SecurityGroupRules"][0]
    assert rule["IsEgress"] is True and rule["CidrIpv4"] == "10.81.1.0/24" and rule["FromPort"] == 5432
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.authorize_security_group_egress(GroupId=sg, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "10.81.1.0/24"}]}])
    assert e.value.response["Error"]["Code"] == "InvalidPermission.Duplicate"
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [sg]}])["SecurityGroupRules"]
    assert [(r["IsEgress"], r["SecurityGroupRuleId"]) for r in rules] == [(True, rule["SecurityGroupRuleId"])]
    # Revoked by its rule id.
    ec2.revoke_security_group_egress(GroupId=sg, SecurityGroupRuleIds=[rule["SecurityGroupRuleId"]])
    assert ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [sg]}])["SecurityGroupRules"] == []
    ec2.delete_security_group(GroupId=sg)
    ec2.delete_vpc(VpcId=vpc)

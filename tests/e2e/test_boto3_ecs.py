"""boto3 drives every implemented ECS operation, with paginators and `failures[]`."""

import concurrent.futures
import copy

import botocore.exceptions
import pytest

from fixtures_taskdef import WEB

ACCOUNT = "000000000000"


def code(exc):
    return exc.value.response["Error"]["Code"]


def register_instance(ecs, cluster="default", **extra):
    return ecs.register_container_instance(
        cluster=cluster,
        totalResources=[
            {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 3768},
            {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "2375", "2376", "51678", "51679"]},
            {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
        ],
        versionInfo={"agentVersion": "1.0.0", "dockerVersion": "20.10.24"},
        **extra,
    )["containerInstance"]


def test_clusters_lifecycle_and_failures(ecs):
    c = ecs.create_cluster(clusterName="prod", tags=[{"key": "env", "value": "prod"}],
                           settings=[{"name": "containerInsights", "value": "enabled"}])["cluster"]
    assert c["clusterArn"] == f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/prod"
    again = ecs.create_cluster(clusterName="prod")["cluster"]
    assert again["clusterArn"] == c["clusterArn"], "creating an existing cluster returns it"

    d = ecs.describe_clusters(clusters=["prod", "ghost", c["clusterArn"]], include=["TAGS", "SETTINGS", "STATISTICS"])
    assert [x["clusterName"] for x in d["clusters"]] == ["prod", "prod"]
    assert d["clusters"][0]["tags"] == [{"key": "env", "value": "prod"}]
    assert d["clusters"][0]["settings"] == [{"name": "containerInsights", "value": "enabled"}]
    assert any(s["name"] == "runningEC2TasksCount" for s in d["clusters"][0]["statistics"])
    assert d["failures"] == [{"arn": f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/ghost", "reason": "MISSING"}]
    # `tags` only for a tagged cluster whose tags were asked for.
    assert "tags" not in ecs.describe_clusters(clusters=["prod"])["clusters"][0]
    plain = ecs.create_cluster(clusterName="untagged")["cluster"]
    assert "tags" not in plain
    assert "tags" not in ecs.describe_clusters(clusters=["untagged"], include=["TAGS"])["clusters"][0]
    ecs.delete_cluster(cluster="untagged")

    u = ecs.update_cluster_settings(cluster="prod", settings=[{"name": "containerInsights", "value": "disabled"}])
    assert u["cluster"]["settings"] == [{"name": "containerInsights", "value": "disabled"}]
    u = ecs.update_cluster(cluster="prod", configuration={"executeCommandConfiguration": {"logging": "DEFAULT"}})
    assert u["cluster"]["configuration"] == {"executeCommandConfiguration": {"logging": "DEFAULT"}}

    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.create_cluster(clusterName="bad name!")
    assert code(e) == "InvalidParameterException" and "bad name!" in e.value.response["Error"]["Message"]

    deleted = ecs.delete_cluster(cluster="prod")["cluster"]
    assert deleted["status"] == "INACTIVE"
    assert ecs.list_clusters()["clusterArns"] == []
    d = ecs.describe_clusters(clusters=["prod"])
    assert d["clusters"][0]["status"] == "INACTIVE"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.delete_cluster(cluster="prod")
    assert code(e) == "ClusterNotFoundException"


def test_list_clusters_paginator(ecs):
    names = [f"c{i:02d}" for i in range(23)]
    for n in names:
        ecs.create_cluster(clusterName=n)
    pages = list(ecs.get_paginator("list_clusters").paginate(PaginationConfig={"PageSize": 5}))
    assert len(pages) == 5
    got = [a.rsplit("/", 1)[1] for p in pages for a in p["clusterArns"]]
    assert got == names
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.list_clusters(maxResults=101)
    assert code(e) == "InvalidParameterException"


def test_delete_cluster_refused_while_instances_registered(ecs):
    ecs.create_cluster(clusterName="busy")
    ci = register_instance(ecs, "busy")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.delete_cluster(cluster="busy")
    assert code(e) == "ClusterContainsContainerInstancesException"
    ecs.deregister_container_instance(cluster="busy", containerInstance=ci["containerInstanceArn"])
    assert ecs.delete_cluster(cluster="busy")["cluster"]["status"] == "INACTIVE"


def test_task_definition_revisions_describe_list_deregister_delete(ecs):
    for _ in range(3):
        ecs.register_task_definition(**WEB)
    other = copy.deepcopy(WEB)
    other["family"] = "api"
    ecs.register_task_definition(**other)

    d = ecs.describe_task_definition(taskDefinition="web")["taskDefinition"]
    assert d["revision"] == 3
    assert d["compatibilities"] == ["EC2"]
    assert {"name": "ecs.capability.container-health-check"} in d["requiresAttributes"]
    arn = f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/web:2"
    assert ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["revision"] == 2

    arns = ecs.list_task_definitions(familyPrefix="web")["taskDefinitionArns"]
    assert [a.rsplit("/", 1)[1] for a in arns] == ["web:1", "web:2", "web:3"]
    desc = ecs.list_task_definitions(sort="DESC")["taskDefinitionArns"]
    assert [a.rsplit("/", 1)[1] for a in desc] == ["web:3", "web:2", "web:1", "api:1"]
    pages = list(ecs.get_paginator("list_task_definitions").paginate(PaginationConfig={"PageSize": 3}))
    assert [len(p["taskDefinitionArns"]) for p in pages] == [3, 1]
    pages = list(ecs.get_paginator("list_task_definitions").paginate(
        sort="DESC", PaginationConfig={"PageSize": 3}))
    assert [a.rsplit("/", 1)[1] for p in pages for a in p["taskDefinitionArns"]] == ["web:3", "web:2", "web:1", "api:1"]

    dereg = ecs.deregister_task_definition(taskDefinition="web:3")["taskDefinition"]
    assert dereg["status"] == "INACTIVE" and "deregisteredAt" in dereg
    assert ecs.describe_task_definition(taskDefinition="web")["taskDefinition"]["revision"] == 2
    inactive = ecs.list_task_definitions(status="INACTIVE")["taskDefinitionArns"]
    assert [a.rsplit("/", 1)[1] for a in inactive] == ["web:3"]

    fams = ecs.list_task_definition_families()["families"]
    assert fams == ["api", "web"]
    assert ecs.list_task_definition_families(familyPrefix="we")["families"] == ["web"]
    ecs.deregister_task_definition(taskDefinition="api:1")
    assert ecs.list_task_definition_families(status="ACTIVE")["families"] == ["web"]
    assert ecs.list_task_definition_families(status="INACTIVE")["families"] == ["api"]

    res = ecs.delete_task_definitions(taskDefinitions=["web:3", "web:1", "web:99"])
    assert [t["status"] for t in res["taskDefinitions"]] == ["DELETE_IN_PROGRESS"]
    assert len(res["failures"]) == 2

    # Revisions never repeat.
    assert ecs.register_task_definition(**WEB)["taskDefinition"]["revision"] == 4


def test_task_definition_validation_errors_name_the_value(ecs):
    bad = copy.deepcopy(WEB)
    bad["containerDefinitions"][0]["dependsOn"] = [{"containerName": "nope", "condition": "START"}]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.register_task_definition(**bad)
    assert code(e) == "ClientException" and "nope" in e.value.response["Error"]["Message"]

    far = {"family": "f", "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc",
           "cpu": "256", "memory": "8192", "containerDefinitions": [{"name": "a", "image": "busybox"}]}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.register_task_definition(**far)
    assert code(e) == "ClientException" and "256 CPU, 8192 memory" in e.value.response["Error"]["Message"]
    far["memory"] = "512"
    td = ecs.register_task_definition(**far)["taskDefinition"]
    assert td["compatibilities"] == ["EC2", "FARGATE"]
    assert td["containerDefinitions"][0]["essential"] is True

    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.describe_task_definition(taskDefinition="ghost")
    assert code(e) == "ClientException"


def test_sixty_four_concurrent_registrations_get_revisions_1_to_64(gantry):
    def reg(_):
        ecs = gantry.client("ecs")
        return ecs.register_task_definition(**WEB)["taskDefinition"]["revision"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        revs = list(pool.map(reg, range(64)))
    assert sorted(revs) == list(range(1, 65))


def test_container_instances_register_describe_list_drain(ecs):
    ecs.create_cluster(clusterName="hosts")
    attrs = [{"name": "stack", "value": "blue"}, {"name": "ecs.capability.docker-remote-api.1.44"}]
    ci = register_instance(ecs, "hosts", attributes=attrs, tags=[{"key": "rack", "value": "r1"}])
    arn = ci["containerInstanceArn"]
    assert arn.startswith(f"arn:aws:ecs:us-east-1:{ACCOUNT}:container-instance/hosts/")
    got = {a["name"]: a.get("value") for a in ci["attributes"]}
    for a in attrs:
        assert got[a["name"]] == a.get("value"), "every submitted attribute is echoed"
    for builtin in ["ecs.os-type", "ecs.cpu-architecture", "ecs.availability-zone", "ecs.instance-type"]:
        assert builtin in got
    assert ci["agentConnected"] is True and ci["status"] == "ACTIVE"
    assert ci["ec2InstanceId"].startswith("i-")
    rem = {r["name"]: r for r in ci["remainingResources"]}
    assert rem["CPU"]["integerValue"] == 2048 and rem["MEMORY"]["integerValue"] == 3768

    # Re-registration with the checkpointed ARN keeps the identity.
    again = register_instance(ecs, "hosts", containerInstanceArn=arn, attributes=attrs)
    assert again["containerInstanceArn"] == arn and again["version"] > ci["version"]

    second = register_instance(ecs, "hosts")
    d = ecs.describe_container_instances(cluster="hosts", containerInstances=[arn, "0" * 32], include=["TAGS"])
    assert [x["containerInstanceArn"] for x in d["containerInstances"]] == [arn]
    assert d["containerInstances"][0]["tags"] == [{"key": "rack", "value": "r1"}]
    assert d["failures"][0]["reason"] == "MISSING"
    assert d["failures"][0]["arn"].endswith("/hosts/" + "0" * 32)

    listed = ecs.list_container_instances(cluster="hosts")["containerInstanceArns"]
    assert sorted(listed) == sorted([arn, second["containerInstanceArn"]])
    pages = list(ecs.get_paginator("list_container_instances").paginate(
        cluster="hosts", PaginationConfig={"PageSize": 1}))
    assert len(pages) == 2

    up = ecs.update_container_instances_state(cluster="hosts", containerInstances=[arn, "f" * 32], status="DRAINING")
    assert up["containerInstances"][0]["status"] == "DRAINING"
    assert up["failures"][0]["reason"] == "MISSING"
    assert ecs.list_container_instances(cluster="hosts", status="DRAINING")["containerInstanceArns"] == [arn]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.update_container_instances_state(cluster="hosts", containerInstances=[arn], status="INACTIVE")
    assert code(e) == "InvalidParameterException"

    dereg = ecs.deregister_container_instance(cluster="hosts", containerInstance=second["containerInstanceArn"])
    assert dereg["containerInstance"]["status"] == "INACTIVE"
    # Without a status filter ECS lists ACTIVE and DRAINING instances, never INACTIVE ones.
    assert ecs.list_container_instances(cluster="hosts")["containerInstanceArns"] == [arn]
    assert ecs.list_container_instances(cluster="hosts", status="DRAINING")["containerInstanceArns"] == [arn]

    with pytest.raises(botocore.exceptions.ClientError) as e:
        register_instance(ecs, "no-such-cluster")
    assert code(e) == "ClusterNotFoundException"


def test_attributes_put_list_delete(ecs):
    ecs.create_cluster(clusterName="attrs")
    a = register_instance(ecs, "attrs")["containerInstanceArn"]
    b = register_instance(ecs, "attrs")["containerInstanceArn"]
    put = ecs.put_attributes(cluster="attrs", attributes=[
        {"name": "stack", "value": "prod", "targetType": "container-instance", "targetId": a},
        {"name": "stack", "value": "dev", "targetType": "container-instance", "targetId": b},
        {"name": "gpu", "targetType": "container-instance", "targetId": a},
    ])
    assert len(put["attributes"]) == 3
    listed = ecs.list_attributes(cluster="attrs", targetType="container-instance", attributeName="stack")["attributes"]
    assert sorted((x["targetId"], x["value"]) for x in listed) == sorted([(a, "prod"), (b, "dev")])
    prod = ecs.list_attributes(cluster="attrs", targetType="container-instance", attributeName="stack",
                               attributeValue="prod")["attributes"]
    assert [x["targetId"] for x in prod] == [a]
    everything = list(ecs.get_paginator("list_attributes").paginate(
        cluster="attrs", targetType="container-instance", PaginationConfig={"PageSize": 4}))
    names = [x["name"] for p in everything for x in p["attributes"]]
    assert names.count("stack") == 2 and "ecs.os-type" in names

    ecs.delete_attributes(cluster="attrs", attributes=[{"name": "stack", "targetId": a}])
    left = ecs.list_attributes(cluster="attrs", targetType="container-instance", attributeName="stack")["attributes"]
    assert [x["targetId"] for x in left] == [b]

    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.put_attributes(cluster="attrs", attributes=[{"name": "x", "value": "y", "targetId": "0" * 32}])
    assert code(e) == "TargetNotFoundException"
    many = [{"name": f"k{i}", "value": "v", "targetId": a} for i in range(10)]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.put_attributes(cluster="attrs", attributes=many)
    assert code(e) == "AttributeLimitExceededException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.put_attributes(cluster="attrs", attributes=[{"name": "bad name", "targetId": a}])
    assert code(e) == "InvalidParameterException"


def test_tags_on_clusters_task_definitions_and_instances(ecs):
    cluster = ecs.create_cluster(clusterName="tagged")["cluster"]["clusterArn"]
    td = ecs.register_task_definition(**WEB)["taskDefinition"]["taskDefinitionArn"]
    ci = register_instance(ecs, "tagged")["containerInstanceArn"]
    for arn in [cluster, td, ci]:
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "1"}, {"key": "b", "value": "2"}])
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "3"}])
        ecs.untag_resource(resourceArn=arn, tagKeys=["b"])
        tags = ecs.list_tags_for_resource(resourceArn=arn)["tags"]
        assert {"key": "a", "value": "3"} in tags and not any(t["key"] == "b" for t in tags)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.tag_resource(resourceArn=cluster, tags=[{"key": "aws:reserved", "value": "x"}])
    assert code(e) == "InvalidParameterException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.list_tags_for_resource(resourceArn=f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/ghost")
    assert code(e) == "ClusterNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.list_tags_for_resource(resourceArn="not-an-arn")
    assert code(e) == "InvalidParameterException"


def test_regions_are_separate(gantry):
    east = gantry.client("ecs")
    west = gantry.client("ecs", region_name="eu-west-1")
    east.create_cluster(clusterName="only-east")
    assert west.list_clusters()["clusterArns"] == []
    c = west.create_cluster(clusterName="w")["cluster"]
    assert c["clusterArn"].startswith("arn:aws:ecs:eu-west-1:")


def test_unimplemented_operation_answers_an_aws_error(ecs):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.list_services_by_namespace(namespace="ns")
    assert code(e) == "UnsupportedFeatureException"


def test_defaults_ecs_reports_network_mode_and_service_role(ecs):
    linux = ecs.register_task_definition(family="nm", containerDefinitions=[
        {"name": "app", "image": "busybox", "memory": 64}])["taskDefinition"]
    assert linux["networkMode"] == "bridge"
    assert ecs.describe_task_definition(taskDefinition="nm")["taskDefinition"]["networkMode"] == "bridge"
    host = ecs.register_task_definition(family="nm", networkMode="host", containerDefinitions=[
        {"name": "app", "image": "busybox", "memory": 64}])["taskDefinition"]
    assert host["networkMode"] == "host"
    windows = ecs.register_task_definition(
        family="nm-win", runtimePlatform={"operatingSystemFamily": "WINDOWS_SERVER_2022_CORE"},
        containerDefinitions=[{"name": "app", "image": "busybox", "memory": 64}])["taskDefinition"]
    assert "networkMode" not in windows

    ecs.create_cluster(clusterName="roles")
    role = f"arn:aws:iam::{ACCOUNT}:role/ecs-service"
    created = ecs.create_service(cluster="roles", serviceName="with-role", taskDefinition="nm:1",
                                 desiredCount=0, role=role)["service"]
    assert created["roleArn"] == role
    # A role named without its ARN is expanded in the caller's account.
    named = ecs.create_service(cluster="roles", serviceName="named-role", taskDefinition="nm:1",
                               desiredCount=0, role="path/svc-role")["service"]
    assert named["roleArn"] == f"arn:aws:iam::{ACCOUNT}:role/path/svc-role"
    described = ecs.describe_services(cluster="roles", services=["with-role", "named-role"])["services"]
    assert [s.get("roleArn") for s in described] == [role, named["roleArn"]]
    plain = ecs.create_service(cluster="roles", serviceName="no-role", taskDefinition="nm:1",
                               desiredCount=0)["service"]
    assert "roleArn" not in plain

"""ECS's documented error cases, operation by operation, as boto3 sees them: the exception code,
HTTP status and AWS's wording, and which check wins when a request has more than one problem
(an unknown cluster is reported before anything else of the request)."""

import pytest
from botocore.exceptions import ClientError

CLUSTER_NOT_FOUND = (400, "ClusterNotFoundException", "Cluster not found.")
SERVICE_NOT_FOUND = (400, "ServiceNotFoundException", "Service not found.")
SERVICE_NOT_ACTIVE = (400, "ServiceNotActiveException", "Service was not ACTIVE.")
TD_NOT_FOUND = (400, "ClientException", "TaskDefinition not found.")
TASK_ID = "0123456789abcdef0123456789abcdef"
CONTAINERS = [{"name": "app", "image": "busybox", "memory": 64}]


def error_of(call, *args, **kw):
    with pytest.raises(ClientError) as e:
        call(*args, **kw)
    err = e.value.response["Error"]
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"], err["Code"], err["Message"]


def code_of(call, *args, **kw):
    status, code, _ = error_of(call, *args, **kw)
    return status, code


def test_an_unknown_cluster_is_reported_first_by_every_operation_on_a_cluster(gantry):
    ecs = gantry.client("ecs")
    # Each call also names things that do not exist (service, task definition, task,
    # instance): the cluster is checked first, as AWS does.
    calls = [
        (ecs.delete_cluster, dict(cluster="nope")),
        (ecs.update_cluster, dict(cluster="nope", settings=[{"name": "containerInsights", "value": "enabled"}])),
        (ecs.update_cluster_settings, dict(cluster="nope", settings=[{"name": "containerInsights", "value": "enabled"}])),
        (ecs.put_cluster_capacity_providers,
         dict(cluster="nope", capacityProviders=[], defaultCapacityProviderStrategy=[])),
        (ecs.list_services, dict(cluster="nope")),
        (ecs.list_tasks, dict(cluster="nope")),
        (ecs.list_container_instances, dict(cluster="nope")),
        (ecs.list_attributes, dict(cluster="nope", targetType="container-instance")),
        (ecs.describe_services, dict(cluster="nope", services=["s"])),
        (ecs.describe_tasks, dict(cluster="nope", tasks=[TASK_ID])),
        (ecs.describe_container_instances, dict(cluster="nope", containerInstances=[TASK_ID])),
        # Before the empty list too, and with the default cluster when none is named.
        (ecs.describe_tasks, dict(tasks=[])),
        (ecs.describe_container_instances, dict(containerInstances=[])),
        (ecs.create_service, dict(cluster="nope", serviceName="s", taskDefinition="missing", desiredCount=1)),
        (ecs.update_service, dict(cluster="nope", service="s", taskDefinition="missing")),
        (ecs.delete_service, dict(cluster="nope", service="s")),
        (ecs.create_task_set, dict(cluster="nope", service="s", taskDefinition="missing")),
        (ecs.describe_task_sets, dict(cluster="nope", service="s")),
        (ecs.delete_task_set, dict(cluster="nope", service="s", taskSet="ts")),
        (ecs.update_service_primary_task_set, dict(cluster="nope", service="s", primaryTaskSet="ts")),
        (ecs.list_service_deployments, dict(cluster="nope", service="s")),
        (ecs.run_task, dict(cluster="nope", taskDefinition="missing")),
        (ecs.stop_task, dict(cluster="nope", task=TASK_ID)),
        (ecs.tag_resource, dict(resourceArn="arn:aws:ecs:us-east-1:000000000000:cluster/nope",
                                tags=[{"key": "k", "value": "v"}])),
        (ecs.untag_resource, dict(resourceArn="arn:aws:ecs:us-east-1:000000000000:cluster/nope", tagKeys=["k"])),
        (ecs.list_tags_for_resource, dict(resourceArn="arn:aws:ecs:us-east-1:000000000000:cluster/nope")),
    ]
    for call, kw in calls:
        assert error_of(call, **kw) == CLUSTER_NOT_FOUND, call.__name__
    # DescribeClusters reports unknown clusters as failures instead.
    out = ecs.describe_clusters(clusters=["nope"])
    assert out["clusters"] == []
    assert out["failures"] == [{"arn": "arn:aws:ecs:us-east-1:000000000000:cluster/nope", "reason": "MISSING"}]
    # A deleted (INACTIVE) cluster is not found either.
    ecs.create_cluster(clusterName="gone")
    ecs.delete_cluster(cluster="gone")
    assert error_of(ecs.delete_cluster, cluster="gone") == CLUSTER_NOT_FOUND
    assert error_of(ecs.list_services, cluster="gone") == CLUSTER_NOT_FOUND
    assert error_of(ecs.run_task, cluster="gone", taskDefinition="missing") == CLUSTER_NOT_FOUND


def test_task_definitions(gantry):
    ecs = gantry.client("ecs")
    describe = (400, "ClientException", "Unable to describe task definition.")
    assert error_of(ecs.describe_task_definition, taskDefinition="missing") == describe
    assert error_of(ecs.describe_task_definition, taskDefinition="missing:1") == describe
    assert code_of(ecs.deregister_task_definition, taskDefinition="missing:1") == (400, "ClientException")
    # A family without a revision is not something to deregister.
    assert code_of(ecs.deregister_task_definition, taskDefinition="missing") == (400, "ClientException")
    assert error_of(ecs.register_task_definition, family="f", containerDefinitions=[]) == (
        400, "ClientException", "Container list cannot be empty.")
    assert error_of(ecs.register_task_definition, family="f",
                    containerDefinitions=[{"name": "app", "image": "busybox"}]) == (
        400, "ClientException",
        "Invalid setting for container 'app'. At least one of 'memory' or 'memoryReservation' must be specified.")
    assert code_of(ecs.register_task_definition, family="bad family!", containerDefinitions=CONTAINERS) == (
        400, "ClientException")
    ecs.register_task_definition(family="f", containerDefinitions=CONTAINERS)
    assert error_of(ecs.describe_task_definition, taskDefinition="f:9") == describe
    # DeleteTaskDefinitions reports each one it cannot delete as a failure.
    # ECS names each reference as given, with its explanation as the reason.
    out = ecs.delete_task_definitions(taskDefinitions=["f:1", "missing:1", "no-revision"])
    assert out["taskDefinitions"] == []
    assert out["failures"] == [
        {"arn": "f:1", "reason": "The specified task definition is still in ACTIVE status. "
                                 "Please deregister the target and try again."},
        {"arn": "missing:1", "reason": "The specified task definition does not exist. "
                                       "Specify a valid account, family, revision and try again."},
        {"arn": "no-revision", "reason": "The specified task definition identifier is invalid. "
                                         "Specify a valid name or ARN and try again."},
    ]
    # Nothing was registered by the refused calls.
    assert ecs.list_task_definition_families()["families"] == ["f"]


def test_services(gantry):
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="c")
    assert error_of(ecs.create_service, cluster="c", serviceName="s", taskDefinition="missing",
                    desiredCount=1) == TD_NOT_FOUND
    assert error_of(ecs.update_service, cluster="c", service="missing", desiredCount=1) == SERVICE_NOT_FOUND
    assert error_of(ecs.delete_service, cluster="c", service="missing") == SERVICE_NOT_FOUND
    for call, kw in [
        (ecs.create_task_set, dict(taskDefinition="missing")),
        (ecs.describe_task_sets, {}),
        (ecs.delete_task_set, dict(taskSet="ts")),
        (ecs.update_task_set, dict(taskSet="ts", scale={"value": 50, "unit": "PERCENT"})),
        (ecs.update_service_primary_task_set, dict(primaryTaskSet="ts")),
        (ecs.list_service_deployments, {}),
    ]:
        assert error_of(call, cluster="c", service="missing", **kw) == SERVICE_NOT_FOUND, call.__name__
    # An unknown service named by name is reported without its cluster; an ARN as given.
    given = "arn:aws:ecs:us-east-1:000000000000:service/c/gone"
    out = ecs.describe_services(cluster="c", services=["missing", given])
    assert out["services"] == []
    assert out["failures"] == [{"arn": "arn:aws:ecs:us-east-1:000000000000:service/missing", "reason": "MISSING"},
                               {"arn": given, "reason": "MISSING"}]

    ecs.register_task_definition(family="f", containerDefinitions=CONTAINERS)
    ecs.create_service(cluster="c", serviceName="s", taskDefinition="f", desiredCount=0)
    assert error_of(ecs.create_service, cluster="c", serviceName="s", taskDefinition="f", desiredCount=0) == (
        400, "InvalidParameterException", "Creation of service was not idempotent.")
    assert error_of(ecs.update_service, cluster="c", service="s", taskDefinition="missing:3") == TD_NOT_FOUND
    assert error_of(ecs.delete_cluster, cluster="c") == (
        400, "ClusterContainsServicesException", "The Cluster cannot be deleted while Services are active.")
    ecs.update_service(cluster="c", service="s", desiredCount=1)
    assert error_of(ecs.delete_service, cluster="c", service="s") == (
        400, "InvalidParameterException", "The service cannot be stopped while it is scaled above 0.")
    ecs.delete_service(cluster="c", service="s", force=True)
    assert error_of(ecs.update_service, cluster="c", service="s", desiredCount=1) == SERVICE_NOT_ACTIVE
    assert error_of(ecs.delete_service, cluster="c", service="s") == SERVICE_NOT_ACTIVE
    # Creating a cluster that exists returns it.
    assert ecs.create_cluster(clusterName="c")["cluster"]["status"] == "ACTIVE"
    # A deregistered revision cannot start a new service.
    ecs.deregister_task_definition(taskDefinition="f:1")
    assert error_of(ecs.create_service, cluster="c", serviceName="s2", taskDefinition="f:1",
                    desiredCount=0) == TD_NOT_FOUND


def test_tasks_and_container_instances(gantry):
    ecs = gantry.client("ecs")
    ecs.create_cluster(clusterName="c")
    assert code_of(ecs.run_task, cluster="c", taskDefinition="missing") == (400, "ClientException")
    assert code_of(ecs.start_task, cluster="c", taskDefinition="missing", containerInstances=[TASK_ID]) == (
        400, "ClientException")
    ecs.register_task_definition(family="f", containerDefinitions=CONTAINERS)
    assert code_of(ecs.run_task, cluster="c", taskDefinition="f:9") == (400, "ClientException")
    assert error_of(ecs.run_task, cluster="c", taskDefinition="f") == (
        400, "InvalidParameterException", "No Container Instances were found in your cluster.")
    assert error_of(ecs.stop_task, cluster="c", task=TASK_ID) == (
        400, "InvalidParameterException", "The referenced task was not found.")
    arn = f"arn:aws:ecs:us-east-1:000000000000:task/c/{TASK_ID}"
    assert ecs.describe_tasks(cluster="c", tasks=[TASK_ID])["failures"] == [{"arn": arn, "reason": "MISSING"}]
    ci = f"arn:aws:ecs:us-east-1:000000000000:container-instance/c/{TASK_ID}"
    assert ecs.describe_container_instances(cluster="c", containerInstances=[TASK_ID])["failures"] == [
        {"arn": ci, "reason": "MISSING"}]
    assert error_of(ecs.describe_tasks, cluster="c", tasks=[]) == (
        400, "InvalidParameterException", "Tasks cannot be empty.")
    assert error_of(ecs.describe_container_instances, cluster="c", containerInstances=[]) == (
        400, "ClientException", "Container Instances cannot be empty.")
    assert ecs.update_container_instances_state(cluster="c", containerInstances=[TASK_ID],
                                                status="DRAINING")["failures"] == [{"arn": ci, "reason": "MISSING"}]
    assert code_of(ecs.deregister_container_instance, cluster="c", containerInstance=TASK_ID) == (
        400, "InvalidParameterException")
    for call in (ecs.put_attributes, ecs.delete_attributes):
        assert code_of(call, cluster="c", attributes=[{"name": "a", "value": "b", "targetId": TASK_ID}]) == (
            400, "TargetNotFoundException"), call.__name__


def test_capacity_providers_and_tags(gantry):
    ecs = gantry.client("ecs")
    out = ecs.describe_capacity_providers(capacityProviders=["missing"])
    assert out["capacityProviders"] == []
    assert [f["reason"] for f in out["failures"]] == ["MISSING"]
    assert code_of(ecs.delete_capacity_provider, capacityProvider="missing") == (400, "InvalidParameterException")
    assert code_of(ecs.list_tags_for_resource, resourceArn="not-an-arn") == (400, "InvalidParameterException")
    # A service ARN of the short format (no cluster) names no service.
    short = "arn:aws:ecs:us-east-1:000000000000:service/fake_service"
    for call, kw in [(ecs.list_tags_for_resource, {}), (ecs.tag_resource, dict(tags=[{"key": "k", "value": "v"}])),
                     (ecs.untag_resource, dict(tagKeys=["k"]))]:
        assert error_of(call, resourceArn=short, **kw) == SERVICE_NOT_FOUND, call.__name__

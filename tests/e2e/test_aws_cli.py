"""The plain AWS CLI (pip's v1), configured only with the variables `gantry up` prints."""

import json

from fixtures_taskdef import WEB


def test_cli_creates_and_lists_clusters(gantry):
    out = gantry.aws_json("ecs", "create-cluster", "--cluster-name", "prod")
    assert out["cluster"]["clusterArn"] == "arn:aws:ecs:us-east-1:000000000000:cluster/prod"
    assert out["cluster"]["status"] == "ACTIVE"
    gantry.aws_json("ecs", "create-cluster", "--cluster-name", "staging")
    arns = gantry.aws_json("ecs", "list-clusters")["clusterArns"]
    assert sorted(a.rsplit("/", 1)[1] for a in arns) == ["prod", "staging"]


def test_cli_registers_two_container_task_definition_from_input_json(gantry, tmp_path):
    spec = tmp_path / "web.json"
    spec.write_text(json.dumps(WEB))
    reg = gantry.aws_json("ecs", "register-task-definition", "--cli-input-json", f"file://{spec}")
    td = reg["taskDefinition"]
    assert td["taskDefinitionArn"].endswith(":task-definition/web:1")
    assert td["revision"] == 1 and td["status"] == "ACTIVE"
    assert td["memory"] == "1024", "1GB is stored in MiB"

    desc = gantry.aws_json("ecs", "describe-task-definition", "--task-definition", "web:1",
                           "--include", "TAGS")
    d = desc["taskDefinition"]
    assert [c["name"] for c in d["containerDefinitions"]] == ["app", "log-router"]
    app = d["containerDefinitions"][0]
    assert app["portMappings"] == [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}]
    assert app["healthCheck"]["interval"] == 10
    assert app["logConfiguration"]["options"]["awslogs-group"] == "/ecs/web"
    assert d["containerDefinitions"][1]["linuxParameters"] == {"initProcessEnabled": True}
    assert d["containerDefinitions"][1]["dependsOn"] == [{"containerName": "app", "condition": "START"}]
    assert desc["tags"] == [{"key": "team", "value": "payments"}]

    gantry.aws_json("ecs", "register-task-definition", "--cli-input-json", f"file://{spec}")
    arns = gantry.aws_json("ecs", "list-task-definitions")["taskDefinitionArns"]
    assert [a.rsplit("/", 1)[1] for a in arns] == ["web:1", "web:2"]
    latest = gantry.aws_json("ecs", "describe-task-definition", "--task-definition", "web")
    assert latest["taskDefinition"]["revision"] == 2


def test_cli_reports_aws_errors(gantry):
    p = gantry.aws("ecs", "describe-task-definition", "--task-definition", "nope:1", check=False)
    assert p.returncode != 0
    assert "ClientException" in p.stderr and "Unable to describe task definition" in p.stderr
    p = gantry.aws("ecs", "delete-cluster", "--cluster", "ghost", check=False)
    assert "ClusterNotFoundException" in p.stderr


def test_cli_sts_get_caller_identity(gantry):
    out = gantry.aws_json("sts", "get-caller-identity")
    assert out["Account"] == "000000000000"
    assert out["Arn"] == "arn:aws:iam::000000000000:root"

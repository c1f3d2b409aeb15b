"""RegisterTaskDefinition refuses what reaches into the host (host bind mounts outside
--allowed-host-paths, privileged settings without --allow-privileged-tasks) with a
ClientException naming the value, through the plain AWS CLI; the server flags allow them."""

import json

import pytest

from conftest import Gantry


def _register(g, tmp_path, td):
    spec = tmp_path / f"{td['family']}.json"
    spec.write_text(json.dumps(td))
    return g.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{spec}", check=False)


def _td(family, **extra):
    container = {"name": "app", "image": "127.0.0.1:5000/app:1", "memory": 32}
    container.update(extra.pop("container", {}))
    return {"family": family, "containerDefinitions": [container], **extra}


PRIVILEGED = [
    ("priv", {"container": {"privileged": True}}, "privileged: true"),
    ("caps", {"container": {"linuxParameters": {"capabilities": {"add": ["SYS_ADMIN"]}}}}, "SYS_ADMIN"),
    ("devs", {"container": {"linuxParameters": {"devices": [{"hostPath": "/dev/kmsg"}]}}},
     "linuxParameters.devices"),
    ("pid", {"pidMode": "host"}, "pidMode 'host'"),
    ("ipc", {"ipcMode": "host"}, "ipcMode 'host'"),
    ("secopt", {"container": {"dockerSecurityOptions": ["apparmor:unconfined"]}}, "apparmor:unconfined"),
]


def test_host_access_is_refused_by_default(gantry, tmp_path):
    p = _register(gantry, tmp_path, _td("rootfs", volumes=[{"name": "root", "host": {"sourcePath": "/"}}],
                                        container={"mountPoints": [{"sourceVolume": "root",
                                                                    "containerPath": "/host"}]}))
    assert p.returncode != 0
    assert "ClientException" in p.stderr and "host path '/'" in p.stderr
    assert "--allowed-host-paths" in p.stderr
    for family, extra, named in PRIVILEGED:
        p = _register(gantry, tmp_path, _td(family, **extra))
        assert p.returncode != 0, family
        assert "ClientException" in p.stderr and named in p.stderr, p.stderr
        assert "--allow-privileged-tasks" in p.stderr
    # Nothing was registered; Docker volumes need no flag.
    assert gantry.aws_json("ecs", "list-task-definitions")["taskDefinitionArns"] == []
    ok = _register(gantry, tmp_path, _td("named", volumes=[
        {"name": "scratch", "host": {}},
        {"name": "cache", "dockerVolumeConfiguration": {"scope": "task", "driver": "local"}}]))
    assert ok.returncode == 0, ok.stderr


@pytest.fixture
def permissive(tmp_path):
    allowed = tmp_path / "shared"
    allowed.mkdir()
    g = Gantry(tmp_path / "data").start(
        extra_args=["--allowed-host-paths", f"{allowed},/srv/other", "--allow-privileged-tasks"])
    yield g, allowed
    g.stop()


def test_server_flags_allow_host_access(permissive, tmp_path):
    g, allowed = permissive
    inside = _register(g, tmp_path, _td("inside", volumes=[
        {"name": "d", "host": {"sourcePath": str(allowed / "sub")}}]))
    assert inside.returncode == 0, inside.stderr
    outside = _register(g, tmp_path, _td("outside", volumes=[
        {"name": "d", "host": {"sourcePath": "/etc"}}]))
    assert outside.returncode != 0 and "host path '/etc'" in outside.stderr
    for family, extra, _ in PRIVILEGED:
        p = _register(g, tmp_path, _td(family, **extra))
        assert p.returncode == 0, p.stderr
    d = g.aws_json("ecs", "describe-task-definition", "--task-definition", "caps")["taskDefinition"]
    assert d["containerDefinitions"][0]["linuxParameters"]["capabilities"]["add"] == ["SYS_ADMIN"]

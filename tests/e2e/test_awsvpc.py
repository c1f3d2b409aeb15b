"""awsvpc tasks on the real Docker Engine: one address and network namespace per task on its
subnet's bridge, ENIs in EC2, security groups on the host's packet filter, ip target groups
behind `gantry lb`, agent restarts, and ECS's errors for bad network configurations."""

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import botocore.exceptions
import pytest

from conftest import Gantry, gantry_binary, remove_subnet_networks, require_network_powers
from images import build_busybox_image, docker
from test_agent_tasks import Agent, wait_until
from test_load_balancing import free_port, start_lb


@pytest.fixture
def net(tmp_path, vpc_block):
    """A server whose default VPC is `vpc_block`, and a busybox image; cleans the host after."""
    require_network_powers()
    g = Gantry(tmp_path / "data").start(extra_args=["--default-vpc-cidr", vpc_block])
    image = build_busybox_image(tmp_path, f"gantry-e2e/vpc-{uuid.uuid4().hex[:8]}:src")
    g.image = image
    g.agents = []
    yield g
    for a in g.agents:
        a.stop()
        uninstall(g, a)
    g.stop()
    remove_subnet_networks(vpc_block)
    docker("rmi", "-f", image, check=False)


def uninstall(gantry, agent):
    env = dict(os.environ, GANTRY_ROOT_ACCESS_KEY_ID=gantry.access_key,
               GANTRY_ROOT_SECRET_ACCESS_KEY=gantry.secret_key)
    p = subprocess.run([gantry_binary(), "agent", "--endpoint", gantry.endpoint, "--data-dir", str(agent.data_dir),
                        "--uninstall"], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def start_agent(gantry, tmp_path, cluster, name="agent", attributes=()):
    agent = Agent(gantry, cluster, tmp_path / name, list(attributes)).start()
    gantry.agents.append(agent)
    ecs = gantry.client("ecs")
    before = len(gantry.agents)

    def offering():
        arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
        if len(arns) < before:
            return False
        cis = ecs.describe_container_instances(cluster=cluster, containerInstances=arns)["containerInstances"]
        return all(any(a["name"] == "ecs.capability.task-eni" for a in ci["attributes"]) for ci in cis)
    wait_until(offering, what="agents offering awsvpc")
    return agent


def default_subnet(gantry, zone="us-east-1a"):
    return gantry.client("ec2").describe_subnets(Filters=[
        {"Name": "default-for-az", "Values": ["true"]}, {"Name": "availability-zone", "Values": [zone]}])["Subnets"][0]


def web_td(family, image, page="hello", sidecar=False):
    cmd = f"mkdir -p /tmp/w && echo \"{page} $(hostname)\" > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w"
    containers = [{"name": "app", "image": image, "memory": 32, "essential": True, "stopTimeout": 2,
                   "command": ["/bin/sh", "-c", cmd], "portMappings": [{"containerPort": 80}]}]
    if sidecar:
        # Shares the task's namespace: the app is on its 127.0.0.1:80.
        containers.append({"name": "sidecar", "image": image, "memory": 16, "essential": True, "stopTimeout": 2,
                           "command": ["/bin/sh", "-c", "exec sleep 3600"]})
    return {"family": family, "networkMode": "awsvpc", "containerDefinitions": containers}


def ctr(task_arn, name):
    ids = docker("ps", "-q", "--filter", f"label=com.amazonaws.ecs.task-arn={task_arn}",
                 "--filter", f"label=com.amazonaws.ecs.container-name={name}").stdout.split()
    assert ids, f"no running container {name} of {task_arn}"
    return ids[0]


def http_from(container, ip, port=80, path="/", timeout=2):
    """GET from inside a container (busybox nc); the body, or None when unreachable."""
    p = docker("exec", container, "sh", "-c",
               f"printf 'GET {path} HTTP/1.0\\r\\nHost: {ip}\\r\\n\\r\\n' | nc -w {timeout} {ip} {port}",
               check=False, timeout=30)
    out = p.stdout.replace("\r\n", "\n")
    if p.returncode != 0 or " 200 " not in out.split("\n", 1)[0]:
        return None
    return out.split("\n\n", 1)[-1]


def attachment(task):
    a = task["attachments"][0]
    details = {d["name"]: d["value"] for d in a["details"]}
    return a, details


def run_awsvpc(gantry, cluster, family, subnets, groups=None, count=1):
    cfg = {"subnets": subnets}
    if groups is not None:
        cfg["securityGroups"] = groups
    ecs = gantry.client("ecs")
    run = ecs.run_task(cluster=cluster, taskDefinition=family, count=count,
                       networkConfiguration={"awsvpcConfiguration": cfg})
    assert run["failures"] == [], run["failures"]
    arns = [t["taskArn"] for t in run["tasks"]]
    ecs.get_waiter("tasks_running").wait(cluster=cluster, tasks=arns, WaiterConfig={"Delay": 1, "MaxAttempts": 90})
    return ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]


def test_two_tasks_with_app_and_sidecar_each_on_their_own_address(net, tmp_path):
    ecs, ec2 = net.client("ecs"), net.client("ec2")
    ecs.create_cluster(clusterName="vpc")
    start_agent(net, tmp_path, "vpc")
    subnet = default_subnet(net)
    free_before = subnet["AvailableIpAddressCount"]
    ecs.register_task_definition(**web_td("pair", net.image, sidecar=True))
    tasks = run_awsvpc(net, "vpc", "pair", [subnet["SubnetId"]], count=2)
    ips = set()
    for t in tasks:
        a, d = attachment(t)
        assert a["type"] == "ElasticNetworkInterface" and a["status"] == "ATTACHED"
        assert set(d) == {"subnetId", "networkInterfaceId", "macAddress", "privateDnsName", "privateIPv4Address"}
        assert d["subnetId"] == subnet["SubnetId"] and d["networkInterfaceId"].startswith("eni-")
        ip = d["privateIPv4Address"]
        ips.add(ip)
        for c in t["containers"]:
            assert c["networkInterfaces"] == [{"attachmentId": a["id"], "privateIpv4Address": ip}]
            assert c["networkBindings"] == []
        # Reachable from the host at the task's own address, on port 80 of both tasks.
        body = urllib.request.urlopen(f"http://{ip}/index.html", timeout=5).read().decode()
        assert body.startswith("hello ip-" + ip.replace(".", "-"))
        # The sidecar shares the task's namespace: the app is on its 127.0.0.1.
        assert http_from(ctr(t["taskArn"], "sidecar"), "127.0.0.1", path="/index.html").startswith("hello")
        # Task metadata v4 reports the task's network.
        meta = docker("exec", ctr(t["taskArn"], "app"), "sh", "-c",
                      'u=${ECS_CONTAINER_METADATA_URI_V4#http://}; h=${u%%/*}; '
                      'printf "GET /${u#*/} HTTP/1.0\\r\\n\\r\\n" | nc -w 3 ${h%:*} ${h#*:}').stdout
        network = json.loads(meta.replace("\r\n", "\n").split("\n\n", 1)[1])["Networks"][0]
        assert network["NetworkMode"] == "awsvpc" and network["IPv4Addresses"] == [ip]
        assert network["IPv4SubnetCIDRBlock"] == subnet["CidrBlock"] and network["MACAddress"] == d["macAddress"]
        assert network["SubnetGatewayIpv4Address"].endswith("/" + subnet["CidrBlock"].split("/")[1])
    assert len(ips) == 2
    enis = ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [subnet["SubnetId"]]}])["NetworkInterfaces"]
    assert sorted(e["PrivateIpAddress"] for e in enis) == sorted(ips)
    assert {e["RequesterId"] for e in enis} == {t["taskArn"] for t in tasks}
    assert all(e["Status"] == "in-use" and e["RequesterManaged"] and e["Groups"] for e in enis)
    assert ec2.describe_subnets(SubnetIds=[subnet["SubnetId"]])["Subnets"][0]["AvailableIpAddressCount"] == free_before - 2
    # A subnet with interfaces in it cannot be deleted.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    assert e.value.response["Error"]["Code"] == "DependencyViolation"

    # The agent guards the tasks in a chain of its own.
    rules = subprocess.run(["iptables", "--wait", "-S"], capture_output=True, text=True).stdout
    ours = next(line.split()[-1].rsplit("-", 1)[0] for line in rules.splitlines()
                if f"-d {next(iter(ips))}/32 -j GANTRY-" in line)
    # StartTask places an awsvpc task on a named instance the same way.
    instance = ecs.list_container_instances(cluster="vpc")["containerInstanceArns"][0]
    started = ecs.start_task(cluster="vpc", taskDefinition="pair", containerInstances=[instance],
                             networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]]}})
    assert started["failures"] == [] and attachment(started["tasks"][0])[1]["privateIPv4Address"] not in ips
    tasks.append(started["tasks"][0])
    ecs.get_waiter("tasks_running").wait(cluster="vpc", tasks=[started["tasks"][0]["taskArn"]],
                                         WaiterConfig={"Delay": 1, "MaxAttempts": 90})

    # The pause container owns the namespace: when it dies, the task stops.
    docker("kill", ctr(tasks[0]["taskArn"], "~internal~ecs~pause"))
    for t in tasks[1:]:
        ecs.stop_task(cluster="vpc", task=t["taskArn"])
    ecs.get_waiter("tasks_stopped").wait(cluster="vpc", tasks=[t["taskArn"] for t in tasks],
                                         WaiterConfig={"Delay": 1, "MaxAttempts": 90})
    stopped = ecs.describe_tasks(cluster="vpc", tasks=[t["taskArn"] for t in tasks])["tasks"]
    assert all(attachment(t)[0]["status"] == "DELETED" for t in stopped)
    lost = next(t for t in stopped if t["taskArn"] == tasks[0]["taskArn"])
    assert "pause container" in lost["stoppedReason"], lost["stoppedReason"]
    # With no awsvpc task left, the agent's chain is gone.
    wait_until(lambda: ours not in subprocess.run(["iptables", "--wait", "-S"], capture_output=True, text=True).stdout,
               timeout=10, what="the agent's chain removed")
    assert ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [subnet["SubnetId"]]}])["NetworkInterfaces"] == []
    assert ec2.describe_subnets(SubnetIds=[subnet["SubnetId"]])["Subnets"][0]["AvailableIpAddressCount"] == free_before


def test_security_groups_admit_members_only_and_revocation_cuts_within_5s(net, tmp_path):
    ecs, ec2 = net.client("ecs"), net.client("ec2")
    ecs.create_cluster(clusterName="sg")
    agent = start_agent(net, tmp_path, "sg")
    subnet = default_subnet(net)
    vpc = subnet["VpcId"]
    server = ec2.create_security_group(GroupName="server", Description="s", VpcId=vpc)["GroupId"]
    client = ec2.create_security_group(GroupName="client", Description="c", VpcId=vpc)["GroupId"]
    other = ec2.create_security_group(GroupName="other", Description="o", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=server, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": client}]}])
    ecs.register_task_definition(**web_td("sgweb", net.image))
    srv = run_awsvpc(net, "sg", "sgweb", [subnet["SubnetId"]], [server])[0]
    cli = run_awsvpc(net, "sg", "sgweb", [subnet["SubnetId"]], [client])[0]
    oth = run_awsvpc(net, "sg", "sgweb", [subnet["SubnetId"]], [other])[0]
    ip = attachment(srv)[1]["privateIPv4Address"]
    from_client, from_other = ctr(cli["taskArn"], "app"), ctr(oth["taskArn"], "app")
    assert wait_until(lambda: http_from(from_client, ip), timeout=15, what="client reaches server")
    assert http_from(from_other, ip) is None, "a task outside the referenced group reached the server"
    # The server's own group admits nothing else; egress is open, so the server reaches out.
    assert http_from(ctr(srv["taskArn"], "app"), attachment(oth)[1]["privateIPv4Address"]) is None

    # The chain is Gantry's own, hooked from DOCKER-USER; Docker's rules are untouched.
    rules = subprocess.run(["iptables", "--wait", "-S", "DOCKER-USER"], capture_output=True, text=True).stdout
    assert "-j GANTRY-" in rules and "-A DOCKER-USER -j RETURN" in rules

    ec2.revoke_security_group_ingress(GroupId=server, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": client}]}])
    revoked = time.monotonic()
    while http_from(from_client, ip, timeout=1) is not None:
        assert time.monotonic() - revoked < 5, "the client still reaches the server 5 s after the revocation"
        time.sleep(0.1)
    cut = time.monotonic() - revoked
    assert cut < 5, cut

    # Admitting by CIDR works too, and the change also lands within seconds.
    ec2.authorize_security_group_ingress(GroupId=server, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
        "IpRanges": [{"CidrIp": attachment(oth)[1]["privateIPv4Address"] + "/32"}]}])
    assert wait_until(lambda: http_from(from_other, ip), timeout=5, what="CIDR rule admits the other task")

    # This agent's chain (other tests' agents may have theirs): the one guarding the server.
    rules = subprocess.run(["iptables", "--wait", "-S"], capture_output=True, text=True).stdout
    ours = next(line.split()[-1].rsplit("-", 1)[0] for line in rules.splitlines()
                if f"-d {ip}/32 -j GANTRY-" in line)
    assert f"-A DOCKER-USER -j {ours}" in rules
    # Uninstall leaves none of its rules behind, and Docker's in place.
    agent.stop()
    uninstall(net, agent)
    net.agents.remove(agent)
    rules = subprocess.run(["iptables", "--wait", "-S"], capture_output=True, text=True).stdout
    assert ours not in rules
    assert "-A DOCKER-USER -j RETURN" in rules


def test_egress_rules_are_enforced_and_changes_land_within_5s(net, tmp_path):
    ecs, ec2 = net.client("ecs"), net.client("ec2")
    ecs.create_cluster(clusterName="egress")
    start_agent(net, tmp_path, "egress")
    subnet = default_subnet(net)
    vpc = subnet["VpcId"]
    target = ec2.create_security_group(GroupName="target", Description="t", VpcId=vpc)["GroupId"]
    source = ec2.create_security_group(GroupName="source", Description="s", VpcId=vpc)["GroupId"]
    # The targets admit everyone on port 80: only the source's egress rules decide.
    ec2.authorize_security_group_ingress(GroupId=target, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    ecs.register_task_definition(**web_td("egweb", net.image))
    targets = run_awsvpc(net, "egress", "egweb", [subnet["SubnetId"]], [target], count=2)
    src = run_awsvpc(net, "egress", "egweb", [subnet["SubnetId"]], [source])[0]
    first, second = (attachment(t)[1]["privateIPv4Address"] for t in targets)
    sender = ctr(src["taskArn"], "app")
    # The default egress rule (everything) lets the source reach both.
    for ip in (first, second):
        assert wait_until(lambda: http_from(sender, ip), timeout=15, what=f"source reaches {ip}")

    everything = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    ec2.revoke_security_group_egress(GroupId=source, IpPermissions=[everything])
    revoked = time.monotonic()
    while http_from(sender, first, timeout=1) is not None:
        assert time.monotonic() - revoked < 5, "the source still sends 5 s after its egress rule went"
        time.sleep(0.1)
    assert http_from(sender, second, timeout=1) is None

    # Egress to the first target's address only: it passes again, the second stays cut off.
    ec2.authorize_security_group_egress(GroupId=source, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": f"{first}/32"}]}])
    assert wait_until(lambda: http_from(sender, first), timeout=5, what="egress to the first target admitted")
    assert http_from(sender, second) is None, "egress to an address no rule admits"


def page_td(family, image, version):
    td = web_td(family, image, page=f"v{version}")
    td["containerDefinitions"][0]["command"] = [
        "/bin/sh", "-c",
        f"mkdir -p /tmp/w && echo \"v{version} $(hostname)\" > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"]
    td["containerDefinitions"][0]["portMappings"] = [{"containerPort": 8080}]
    return td


def test_awsvpc_service_behind_an_ip_target_group_rolls_without_errors(net, tmp_path):
    ecs, elb, ec2 = net.client("ecs"), net.client("elbv2"), net.client("ec2")
    lb_proc = start_lb(net, tmp_path / "lb.log")
    ecs.create_cluster(clusterName="alb")
    start_agent(net, tmp_path, "alb")
    subnets = sorted(ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"],
                     key=lambda s: s["AvailabilityZone"])
    vpc = subnets[0]["VpcId"]
    stop_load = threading.Event()
    try:
        lb = elb.create_load_balancer(Name="vpcweb", Subnets=[s["SubnetId"] for s in subnets[:2]])["LoadBalancers"][0]
        tg = elb.create_target_group(Name="vpcweb", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip",
                                     HealthCheckPath="/index.html", HealthCheckIntervalSeconds=5,
                                     HealthCheckTimeoutSeconds=2, HealthyThresholdCount=2,
                                     UnhealthyThresholdCount=2)["TargetGroups"][0]
        elb.modify_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"], Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "3"}])
        port = free_port()
        elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])
        ecs.register_task_definition(**page_td("vpcweb", net.image, 1))
        ecs.create_service(cluster="alb", serviceName="web", taskDefinition="vpcweb", desiredCount=3,
                           networkConfiguration={"awsvpcConfiguration": {"subnets": [subnets[0]["SubnetId"]]}},
                           loadBalancers=[{"targetGroupArn": tg["TargetGroupArn"], "containerName": "app",
                                           "containerPort": 8080}],
                           deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200})
        svc = ecs.describe_services(cluster="alb", services=["web"])["services"][0]
        assert svc["networkConfiguration"]["awsvpcConfiguration"] == {
            "subnets": [subnets[0]["SubnetId"]], "securityGroups": [], "assignPublicIp": "DISABLED"}

        def healthy():
            th = elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])["TargetHealthDescriptions"]
            ok = [t for t in th if t["TargetHealth"]["State"] == "healthy"]
            return len(ok) == 3 and ok
        targets = wait_until(healthy, timeout=120, interval=0.5, what="3 healthy ip targets")
        task_ips = {attachment(t)[1]["privateIPv4Address"]
                    for t in ecs.describe_tasks(cluster="alb", tasks=ecs.list_tasks(cluster="alb")["taskArns"])["tasks"]}
        assert {t["Target"]["Id"] for t in targets} == task_ips
        assert {t["Target"]["Port"] for t in targets} == {8080}

        url = f"http://127.0.0.1:{port}/index.html"
        results = {"ok": 0, "bad": [], "v2": 0}

        def load():
            while not stop_load.is_set():
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        b = r.read().decode()
                        results["ok"] += 1
                        results["v2"] += b.startswith("v2")
                except urllib.error.HTTPError as e:
                    results["bad"].append(f"HTTP {e.code}")
                except Exception as e:  # connection errors count as failures
                    results["bad"].append(repr(e))
                time.sleep(0.005)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        ecs.register_task_definition(**page_td("vpcweb", net.image, 2))
        ecs.update_service(cluster="alb", service="web", taskDefinition="vpcweb:2")

        def rolled():
            s = ecs.describe_services(cluster="alb", services=["web"])["services"][0]
            return (len(s["deployments"]) == 1 and s["deployments"][0]["taskDefinition"].endswith(":2")
                    and s["runningCount"] == 3)
        wait_until(rolled, timeout=240, interval=0.5, what="rolling deployment")
        time.sleep(2)
        stop_load.set()
        loader.join(timeout=10)
        assert results["ok"] > 100 and results["v2"] > 0
        assert results["bad"] == [], f"{len(results['bad'])} failed requests, e.g. {results['bad'][:5]}"
    finally:
        stop_load.set()
        for s in ecs.list_services(cluster="alb")["serviceArns"]:
            ecs.delete_service(cluster="alb", service=s, force=True)
        lb_proc.send_signal(signal.SIGTERM)
        try:
            lb_proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lb_proc.kill()


def test_agent_kill9_keeps_addresses_and_hands_none_out_twice(net, tmp_path):
    ecs = net.client("ecs")
    ecs.create_cluster(clusterName="k9")
    agent = start_agent(net, tmp_path, "k9")
    subnet = default_subnet(net)["SubnetId"]
    ecs.register_task_definition(**web_td("k9web", net.image))
    before = run_awsvpc(net, "k9", "k9web", [subnet], count=3)
    addresses = {t["taskArn"]: attachment(t)[1]["privateIPv4Address"] for t in before}
    pauses = {arn: ctr(arn, "~internal~ecs~pause") for arn in addresses}

    agent.kill9()
    net.agents.remove(agent)
    agent = Agent(net, "k9", tmp_path / "agent").start()
    net.agents.append(agent)
    time.sleep(3)
    after = ecs.describe_tasks(cluster="k9", tasks=list(addresses))["tasks"]
    for t in after:
        assert t["lastStatus"] == "RUNNING"
        assert attachment(t)[1]["privateIPv4Address"] == addresses[t["taskArn"]]
        # Same namespace: the same pause container, still serving at the same address.
        assert ctr(t["taskArn"], "~internal~ecs~pause") == pauses[t["taskArn"]]
        ip = addresses[t["taskArn"]]
        assert urllib.request.urlopen(f"http://{ip}/index.html", timeout=5).read().decode().startswith("hello")

    more = run_awsvpc(net, "k9", "k9web", [subnet], count=5)
    new = [attachment(t)[1]["privateIPv4Address"] for t in more]
    assert len(set(new)) == 5 and not set(new) & set(addresses.values()), (new, addresses)


def test_a_service_across_two_hosts_gets_addresses_in_each_hosts_zone(net, tmp_path):
    ecs, ec2 = net.client("ecs"), net.client("ec2")
    ecs.create_cluster(clusterName="two")
    start_agent(net, tmp_path, "two", "a1")
    start_agent(net, tmp_path, "two", "a2", ["ecs.availability-zone=us-east-1b"])
    subnets = {z: default_subnet(net, z) for z in ("us-east-1a", "us-east-1b")}
    ecs.register_task_definition(**web_td("twoweb", net.image))
    ecs.create_service(cluster="two", serviceName="web", taskDefinition="twoweb", desiredCount=6,
                       networkConfiguration={"awsvpcConfiguration": {
                           "subnets": [s["SubnetId"] for s in subnets.values()]}})
    ecs.get_waiter("services_stable").wait(cluster="two", services=["web"], WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    tasks = ecs.describe_tasks(cluster="two", tasks=ecs.list_tasks(cluster="two")["taskArns"])["tasks"]
    assert len(tasks) == 6
    zones = {t["availabilityZone"] for t in tasks}
    assert zones == {"us-east-1a", "us-east-1b"}, "spread over both hosts' zones"
    ips = [attachment(t)[1]["privateIPv4Address"] for t in tasks]
    assert len(set(ips)) == 6
    for t in tasks:
        # Each task's interface is in the subnet of its instance's zone, attached to that instance.
        d = attachment(t)[1]
        assert d["subnetId"] == subnets[t["availabilityZone"]]["SubnetId"]
        eni = ec2.describe_network_interfaces(NetworkInterfaceIds=[d["networkInterfaceId"]])["NetworkInterfaces"][0]
        ci = ecs.describe_container_instances(cluster="two", containerInstances=[t["containerInstanceArn"]])["containerInstances"][0]
        assert eni["Attachment"]["InstanceId"] == ci["ec2InstanceId"]
        assert eni["AvailabilityZone"] == t["availabilityZone"]
        assert urllib.request.urlopen(f"http://{d['privateIPv4Address']}/index.html", timeout=5).read().decode().startswith("hello")
    ecs.update_service(cluster="two", service="web", desiredCount=0)
    ecs.delete_service(cluster="two", service="web")
    wait_until(lambda: ec2.describe_network_interfaces()["NetworkInterfaces"] == [], timeout=90, what="interfaces released")


def test_bad_network_configurations_get_ecs_errors_and_leave_nothing(gantry):
    # Validation happens before placement: no agent, no Docker needed.
    net = gantry
    ecs, ec2 = net.client("ecs"), net.client("ec2")
    ecs.create_cluster(clusterName="bad")
    ecs.register_task_definition(**web_td("badweb", "busybox"))
    ecs.register_task_definition(family="bridgeweb", containerDefinitions=[
        {"name": "app", "image": "busybox", "memory": 16}])
    subnet = default_subnet(net)
    other_vpc = ec2.create_vpc(CidrBlock="10.62.0.0/16")["Vpc"]["VpcId"]
    other_subnet = ec2.create_subnet(VpcId=other_vpc, CidrBlock="10.62.1.0/24")["Subnet"]["SubnetId"]
    foreign_sg = ec2.create_security_group(GroupName="f", Description="f", VpcId=other_vpc)["GroupId"]
    groups = [ec2.create_security_group(GroupName=f"g{i}", Description="g", VpcId=subnet["VpcId"])["GroupId"]
              for i in range(6)]

    def error(td="badweb", **cfg):
        kw = {"cluster": "bad", "taskDefinition": td}
        if cfg:
            kw["networkConfiguration"] = {"awsvpcConfiguration": cfg}
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ecs.run_task(**kw)
        return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]

    code, msg = error(subnets=["subnet-0123456789abcdef0"])
    assert code == "InvalidParameterException" and "InvalidSubnetID.NotFound" in msg and "subnet-0123456789abcdef0" in msg
    code, msg = error(subnets=[subnet["SubnetId"], other_subnet])
    assert code == "InvalidParameterException" and other_subnet in msg
    code, msg = error(subnets=[subnet["SubnetId"]], securityGroups=[foreign_sg])
    assert code == "InvalidParameterException" and foreign_sg in msg
    code, msg = error(subnets=[subnet["SubnetId"]], securityGroups=groups)
    assert (code, msg) == ("InvalidParameterException", "securityGroups can have at most 5 items.")
    code, msg = error(subnets=[subnet["SubnetId"]] * 2 + [f"subnet-{i:017x}" for i in range(16)])
    assert (code, msg) == ("InvalidParameterException", "subnets can have at most 16 items.")
    code, msg = error(subnets=[subnet["SubnetId"]], assignPublicIp="ENABLED")
    assert msg == "Assign public IP is not supported for this launch type."
    code, msg = error()
    assert msg == "Network Configuration must be provided when networkMode 'awsvpc' is specified."
    code, msg = error(td="bridgeweb", subnets=[subnet["SubnetId"]])
    assert msg == "Network Configuration is not valid for the given networkMode of this task definition."
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.create_service(cluster="bad", serviceName="s", taskDefinition="badweb", desiredCount=1,
                           networkConfiguration={"awsvpcConfiguration": {"subnets": ["subnet-0123456789abcdef0"]}})
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    # awsvpc services register task addresses: their target groups must be of type ip.
    elb = net.client("elbv2")
    instance_tg = elb.create_target_group(Name="inst", Protocol="HTTP", Port=80, VpcId=subnet["VpcId"],
                                          TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.create_service(cluster="bad", serviceName="s", taskDefinition="badweb", desiredCount=1,
                           networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]]}},
                           loadBalancers=[{"targetGroupArn": instance_tg, "containerName": "app", "containerPort": 80}])
    assert e.value.response["Error"]["Message"] == (
        f"The provided target group {instance_tg} has target type instance, which is incompatible with the "
        "awsvpc network mode specified in the task definition.")
    # A CIDR outside the VPC.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.create_subnet(VpcId=other_vpc, CidrBlock="10.63.0.0/24")
    assert e.value.response["Error"]["Code"] == "InvalidSubnet.Range"
    # Nothing was left behind.
    assert ecs.list_tasks(cluster="bad")["taskArns"] == []
    assert ecs.list_tasks(cluster="bad", desiredStatus="STOPPED")["taskArns"] == []
    assert ecs.list_services(cluster="bad")["serviceArns"] == []
    assert ec2.describe_network_interfaces()["NetworkInterfaces"] == []


def test_update_service_validates_and_records_the_network_configuration(gantry):
    # Validation and records only: no agent, so no task is placed.
    ecs, ec2 = gantry.client("ecs"), gantry.client("ec2")
    ecs.create_cluster(clusterName="upd")
    ecs.register_task_definition(**web_td("updweb", "busybox"))
    a, b = (default_subnet(gantry, z)["SubnetId"] for z in ("us-east-1a", "us-east-1b"))
    vpc = default_subnet(gantry)["VpcId"]
    sg = ec2.create_security_group(GroupName="upd", Description="u", VpcId=vpc)["GroupId"]
    other_vpc = ec2.create_vpc(CidrBlock="10.64.0.0/16")["Vpc"]["VpcId"]
    foreign_sg = ec2.create_security_group(GroupName="f", Description="f", VpcId=other_vpc)["GroupId"]
    ecs.create_service(cluster="upd", serviceName="web", taskDefinition="updweb", desiredCount=0,
                       networkConfiguration={"awsvpcConfiguration": {"subnets": [a]}})

    def network():
        s = ecs.describe_services(cluster="upd", services=["web"])["services"][0]
        return s["networkConfiguration"]["awsvpcConfiguration"], s["deployments"]

    def error(cfg):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ecs.update_service(cluster="upd", service="web",
                               networkConfiguration={"awsvpcConfiguration": cfg})
        return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]

    code, msg = error({"subnets": ["subnet-0123456789abcdef0"]})
    assert code == "InvalidParameterException" and "subnet-0123456789abcdef0" in msg
    code, msg = error({"subnets": [a], "securityGroups": [foreign_sg]})
    assert code == "InvalidParameterException" and foreign_sg in msg
    six = [sg] + [ec2.create_security_group(GroupName=f"u{i}", Description="u", VpcId=vpc)["GroupId"] for i in range(5)]
    code, msg = error({"subnets": [a], "securityGroups": six})
    assert (code, msg) == ("InvalidParameterException", "securityGroups can have at most 5 items.")
    # Refused updates changed nothing.
    cfg, deployments = network()
    assert cfg == {"subnets": [a], "securityGroups": [], "assignPublicIp": "DISABLED"}
    assert len(deployments) == 1

    ecs.update_service(cluster="upd", service="web", networkConfiguration={
        "awsvpcConfiguration": {"subnets": [b], "securityGroups": [sg]}})
    cfg, deployments = network()
    assert cfg == {"subnets": [b], "securityGroups": [sg], "assignPublicIp": "DISABLED"}
    # A new network configuration is a new deployment, which carries it.
    primary = next(d for d in deployments if d["status"] == "PRIMARY")
    assert primary["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == [b]
    ecs.delete_service(cluster="upd", service="web")

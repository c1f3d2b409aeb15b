"""An application load balancer as the target of a network load balancer, served by one
`gantry lb`: curl through the NLB's TCP listener reaches the HTTP target behind the ALB, and
DescribeTargetHealth reports the ALB target healthy (checked over HTTP through its listener)."""

import http.server
import signal
import subprocess
import threading
import uuid

from conftest import default_subnets, free_port
from test_agent_tasks import wait_until
from test_load_balancing import start_lb


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"behind the alb\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def curl(port):
    r = subprocess.run(["curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{port}/"],
                       capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


def test_network_load_balancer_forwards_to_an_application_load_balancer(gantry, tmp_path):
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    lb_proc = start_lb(gantry, tmp_path / "lb.log")
    try:
        elb = gantry.client("elbv2")
        name = f"alb-{uuid.uuid4().hex[:8]}"
        alb = elb.create_load_balancer(Name=name, Type="application",
                                       Subnets=default_subnets(gantry))["LoadBalancers"][0]
        ip_tg = elb.create_target_group(Name=name, Protocol="HTTP", Port=backend.server_address[1],
                                        VpcId="vpc-1", TargetType="ip", HealthCheckIntervalSeconds=5,
                                        HealthCheckTimeoutSeconds=2, HealthyThresholdCount=2)["TargetGroups"][0]
        elb.register_targets(TargetGroupArn=ip_tg["TargetGroupArn"],
                             Targets=[{"Id": "127.0.0.1", "Port": backend.server_address[1]}])
        alb_port, nlb_port = free_port(), free_port()
        elb.create_listener(LoadBalancerArn=alb["LoadBalancerArn"], Protocol="HTTP", Port=alb_port,
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": ip_tg["TargetGroupArn"]}])

        nlb = elb.create_load_balancer(Name=f"n{name}", Type="network",
                                       Subnets=default_subnets(gantry))["LoadBalancers"][0]
        alb_tg = elb.create_target_group(Name=f"to-{name}", Protocol="TCP", Port=alb_port, VpcId="vpc-1",
                                         TargetType="alb", HealthCheckIntervalSeconds=5,
                                         HealthCheckTimeoutSeconds=2, HealthyThresholdCount=2)["TargetGroups"][0]
        assert alb_tg["TargetType"] == "alb" and alb_tg["HealthCheckProtocol"] == "HTTP"
        elb.register_targets(TargetGroupArn=alb_tg["TargetGroupArn"], Targets=[{"Id": alb["LoadBalancerArn"]}])
        elb.create_listener(LoadBalancerArn=nlb["LoadBalancerArn"], Protocol="TCP", Port=nlb_port,
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": alb_tg["TargetGroupArn"]}])

        wait_until(lambda: curl(nlb_port) == "behind the alb\n", timeout=60, interval=0.3,
                   what="the NLB port answering from the backend behind the ALB")

        def alb_healthy():
            th = elb.describe_target_health(TargetGroupArn=alb_tg["TargetGroupArn"])["TargetHealthDescriptions"]
            return [t for t in th if t["Target"]["Id"] == alb["LoadBalancerArn"]
                    and t["Target"]["Port"] == alb_port and t["TargetHealth"]["State"] == "healthy"]
        wait_until(alb_healthy, timeout=60, interval=0.5, what="the ALB target healthy")

        # AWS's refusals: a load balancer that does not exist, a port without a listener of the
        # ALB, and a protocol other than TCP.
        def code(fn, **kw):
            try:
                fn(**kw)
            except elb.exceptions.ClientError as e:
                return e.response["Error"]["Code"]
            return None
        missing = alb["LoadBalancerArn"][:-1] + ("1" if alb["LoadBalancerArn"].endswith("0") else "0")
        assert code(elb.register_targets, TargetGroupArn=alb_tg["TargetGroupArn"],
                    Targets=[{"Id": missing}]) == "InvalidTarget"
        other_tg = elb.create_target_group(Name=f"o-{name}", Protocol="TCP", Port=free_port(),
                                           TargetType="alb")["TargetGroups"][0]
        assert code(elb.register_targets, TargetGroupArn=other_tg["TargetGroupArn"],
                    Targets=[{"Id": alb["LoadBalancerArn"]}]) == "InvalidTarget"
        assert code(elb.create_target_group, Name=f"h-{name}", Protocol="HTTP", Port=80,
                    TargetType="alb") == "ValidationError"
    finally:
        lb_proc.send_signal(signal.SIGTERM)
        try:
            lb_proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lb_proc.kill()
        backend.shutdown()

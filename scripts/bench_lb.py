"""ELBv2 side of scripts/bench-lb.sh, through boto3 (a client we did not write).

  bench_lb.py setup NAME LISTENER_PORT BACKEND_PORT [BACKEND_PORT...]
      Creates an application load balancer and an `ip` target group, both named NAME (health check GET /health
      every 5 s, deregistration delay 1 s) with 127.0.0.1:<port> for each backend registered,
      and an HTTP listener on LISTENER_PORT forwarding to it (HTTPS with the certificate and key
      in the files BENCH_TLS_CERT and BENCH_TLS_KEY, imported into ACM, when those are set).
      Prints the target group ARN.
  bench_lb.py churn TG_ARN PORT SECONDS
      Every second for SECONDS: deregisters 127.0.0.1:PORT, then re-registers it the next
      second. Prints how many changes were made.

Env: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION.
"""
import os
import sys
import time

import boto3

elb = boto3.client(
    "elbv2",
    endpoint_url=os.environ["AWS_ENDPOINT_URL"],
    region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
)


def default_network():
    """The default VPC and two of its subnets in different zones, from the EC2 API (servers
    before the EC2 API took any names: placeholders then)."""
    ec2 = boto3.client(
        "ec2",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    try:
        subnets = ec2.describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}]
        )["Subnets"]
    except Exception:  # noqa: BLE001 - no EC2 endpoint on older servers
        return "vpc-1", ["subnet-1"]
    subnets.sort(key=lambda s: s["AvailabilityZone"])
    return subnets[0]["VpcId"], [s["SubnetId"] for s in subnets[:2]]


def setup(name, listener_port, backend_ports):
    vpc, subnets = default_network()
    lb = elb.create_load_balancer(Name=name, Type="application", Subnets=subnets)
    lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elb.create_target_group(
        Name=name, Protocol="HTTP", Port=backend_ports[0], VpcId=vpc, TargetType="ip",
        HealthCheckPath="/health", HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2,
        HealthyThresholdCount=2, UnhealthyThresholdCount=2, Matcher={"HttpCode": "200"},
    )["TargetGroups"][0]
    tg_arn = tg["TargetGroupArn"]
    elb.modify_target_group_attributes(
        TargetGroupArn=tg_arn,
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "1"}],
    )
    elb.register_targets(
        TargetGroupArn=tg_arn,
        Targets=[{"Id": "127.0.0.1", "Port": p} for p in backend_ports],
    )
    tls = {"Protocol": "HTTP"}
    if os.environ.get("BENCH_TLS_CERT"):
        acm = boto3.client(
            "acm",
            endpoint_url=os.environ["AWS_ENDPOINT_URL"],
            region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        )
        with open(os.environ["BENCH_TLS_CERT"], "rb") as c, open(os.environ["BENCH_TLS_KEY"], "rb") as k:
            cert_arn = acm.import_certificate(Certificate=c.read(), PrivateKey=k.read())["CertificateArn"]
        tls = {"Protocol": "HTTPS", "Certificates": [{"CertificateArn": cert_arn}],
               "SslPolicy": "ELBSecurityPolicy-2016-08"}
    elb.create_listener(
        LoadBalancerArn=lb_arn, Port=listener_port,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}], **tls,
    )
    print(tg_arn)


def churn(tg_arn, port, seconds):
    target = [{"Id": "127.0.0.1", "Port": port}]
    changes = 0
    registered = True
    deadline = time.monotonic() + seconds
    next_tick = time.monotonic()
    while time.monotonic() < deadline:
        if registered:
            elb.deregister_targets(TargetGroupArn=tg_arn, Targets=target)
        else:
            elb.register_targets(TargetGroupArn=tg_arn, Targets=target)
        registered = not registered
        changes += 1
        next_tick += 1.0
        time.sleep(max(0.0, next_tick - time.monotonic()))
    if not registered:
        elb.register_targets(TargetGroupArn=tg_arn, Targets=target)
        changes += 1
    print(changes)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "setup":
        setup(sys.argv[2], int(sys.argv[3]), [int(p) for p in sys.argv[4:]])
    elif cmd == "churn":
        churn(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        sys.exit(f"unknown command {cmd!r}")

"""HTTPS listeners terminated by `gantry lb` with certificates imported into ACM: boto3 imports a
CA-signed certificate for each of two names, an HTTPS listener serves one as its default and the
other through AddListenerCertificates, and curl reaches the backend through each name with the
certificate of that name (chosen by SNI)."""

import datetime
import http.server
import os
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import botocore.exceptions
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conftest import default_subnets, free_port
from test_load_balancing import start_lb


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca():
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Gantry Test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_leaf(ca_cert, ca_key, host):
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


class _Backend(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"backend saw proto={self.headers.get('X-Forwarded-Proto')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def served_subject(port, host, ca_file):
    """The common name of the certificate the listener presents for SNI `host`."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            cert = tls.getpeercert()
    return dict(x[0] for x in cert["subject"])["commonName"]


def curl(port, host, ca_file):
    return subprocess.run(
        ["curl", "-sS", "--max-time", "5", "--cacert", str(ca_file),
         "--resolve", f"{host}:{port}:127.0.0.1", f"https://{host}:{port}/"],
        capture_output=True, text=True)


def test_https_listener_serves_each_name_its_certificate(gantry, tmp_path):
    pem = serialization.Encoding.PEM
    ca_cert, ca_key = make_ca()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(pem))
    leaves = {h: make_leaf(ca_cert, ca_key, h) for h in ("a.example.test", "b.example.test")}

    acm = gantry.client("acm")
    elbv2 = gantry.client("elbv2")

    # Material that does not fit is refused with ACM's error, without quoting the key.
    a_cert, a_key = leaves["a.example.test"]
    b_cert, b_key = leaves["b.example.test"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        acm.import_certificate(Certificate=a_cert.public_bytes(pem), PrivateKey=_pem_key(b_key))
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert "does not match" in e.value.response["Error"]["Message"]

    arns = {}
    for host, (cert, key) in leaves.items():
        arns[host] = acm.import_certificate(
            Certificate=cert.public_bytes(pem), PrivateKey=_pem_key(key),
            CertificateChain=ca_cert.public_bytes(pem),
            Tags=[{"Key": "site", "Value": host}])["CertificateArn"]
    a_arn, b_arn = arns["a.example.test"], arns["b.example.test"]

    d = acm.describe_certificate(CertificateArn=a_arn)["Certificate"]
    assert d["DomainName"] == "a.example.test"
    assert d["SubjectAlternativeNames"] == ["a.example.test"]
    assert (d["Type"], d["Status"], d["KeyAlgorithm"]) == ("IMPORTED", "ISSUED", "RSA_2048")
    assert d["NotBefore"] < d["NotAfter"]
    assert d["InUseBy"] == []
    assert "PrivateKey" not in str(d)
    got = acm.get_certificate(CertificateArn=a_arn)
    assert got["Certificate"].strip() == a_cert.public_bytes(pem).decode().strip()
    assert got["CertificateChain"].strip() == ca_cert.public_bytes(pem).decode().strip()
    listed = acm.list_certificates(CertificateStatuses=["ISSUED"], MaxItems=1)
    assert len(listed["CertificateSummaryList"]) == 1 and listed["NextToken"]
    rest = acm.list_certificates(CertificateStatuses=["ISSUED"], NextToken=listed["NextToken"])
    assert {c["CertificateArn"] for c in
            listed["CertificateSummaryList"] + rest["CertificateSummaryList"]} == {a_arn, b_arn}
    assert acm.list_certificates(CertificateStatuses=["EXPIRED"])["CertificateSummaryList"] == []
    assert acm.list_tags_for_certificate(CertificateArn=a_arn)["Tags"] == [
        {"Key": "site", "Value": "a.example.test"}]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        acm.request_certificate(DomainName="c.example.test")
    assert e.value.response["Error"]["Code"] == "UnsupportedOperationException"

    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    lb = None
    try:
        lb_arn = elbv2.create_load_balancer(Name="tls", Subnets=default_subnets(gantry))[
            "LoadBalancers"][0]["LoadBalancerArn"]
        tg_arn = elbv2.create_target_group(
            Name="tls", Protocol="HTTP", Port=80, TargetType="ip", HealthCheckPath="/",
            HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2,
            HealthyThresholdCount=2)["TargetGroups"][0]["TargetGroupArn"]
        elbv2.register_targets(TargetGroupArn=tg_arn, Targets=[
            {"Id": "127.0.0.1", "Port": backend.server_address[1]}])
        port = free_port()
        forward = [{"Type": "forward", "TargetGroupArn": tg_arn}]

        with pytest.raises(botocore.exceptions.ClientError) as e:
            elbv2.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTPS", Port=port,
                                  DefaultActions=forward)
        assert e.value.response["Error"]["Code"] == "ValidationError"
        missing = a_arn[:-4] + "0000"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            elbv2.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTPS", Port=port,
                                  Certificates=[{"CertificateArn": missing}],
                                  DefaultActions=forward)
        assert e.value.response["Error"]["Code"] == "CertificateNotFound"

        listener = elbv2.create_listener(
            LoadBalancerArn=lb_arn, Protocol="HTTPS", Port=port,
            Certificates=[{"CertificateArn": a_arn}], DefaultActions=forward)["Listeners"][0]
        assert listener["SslPolicy"] == "ELBSecurityPolicy-2016-08"
        assert listener["Certificates"] == [{"CertificateArn": a_arn}]
        l_arn = listener["ListenerArn"]
        elbv2.add_listener_certificates(ListenerArn=l_arn, Certificates=[{"CertificateArn": b_arn}])
        certs = elbv2.describe_listener_certificates(ListenerArn=l_arn)["Certificates"]
        assert {(c["CertificateArn"], c["IsDefault"]) for c in certs} == {
            (a_arn, True), (b_arn, False)}
        policy = elbv2.describe_ssl_policies(Names=["ELBSecurityPolicy-2016-08"])["SslPolicies"][0]
        assert policy["SslProtocols"] == ["TLSv1.2"]
        assert "ECDHE-RSA-AES128-GCM-SHA256" in [c["Name"] for c in policy["Ciphers"]]

        assert acm.describe_certificate(CertificateArn=b_arn)["Certificate"]["InUseBy"] == [l_arn]
        with pytest.raises(botocore.exceptions.ClientError) as e:
            acm.delete_certificate(CertificateArn=a_arn)
        assert e.value.response["Error"]["Code"] == "ResourceInUseException"

        lb_log = tmp_path / "lb.log"
        lb = start_lb(gantry, lb_log)
        deadline = time.monotonic() + 30
        while True:
            r = curl(port, "a.example.test", ca_file)
            if r.returncode == 0 and r.stdout.startswith("backend"):
                break
            assert time.monotonic() < deadline, f"no answer over HTTPS: {r.stderr}"
            time.sleep(0.2)

        for host in ("a.example.test", "b.example.test"):
            r = curl(port, host, ca_file)
            assert r.returncode == 0, r.stderr
            assert r.stdout == "backend saw proto=https"
            assert served_subject(port, host, ca_file) == host
        # A name no certificate covers gets the default certificate.
        assert served_subject(port, "other.example.test", ca_file) == "a.example.test"

        # The private keys are in no log and not in the store in plaintext.
        key_lines = [ln for k in (a_key, b_key)
                     for ln in _pem_key(k).decode().splitlines()[1:4]]
        logs = [lb_log, Path(gantry.log.name)]
        files = logs + [p for p in Path(gantry.data_dir).rglob("*") if p.is_file()]
        for f in files:
            data = f.read_bytes()
            assert b"PRIVATE KEY" not in data, f
            for ln in key_lines:
                assert ln.encode() not in data, f

        elbv2.remove_listener_certificates(ListenerArn=l_arn,
                                           Certificates=[{"CertificateArn": b_arn}])
        acm.delete_certificate(CertificateArn=b_arn)
        with pytest.raises(botocore.exceptions.ClientError) as e:
            acm.describe_certificate(CertificateArn=b_arn)
        assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    finally:
        if lb is not None:
            lb.terminate()
            try:
                lb.wait(timeout=10)
            except subprocess.TimeoutExpired:
                lb.kill()
        backend.shutdown()


def test_tls_listener_of_a_network_load_balancer_terminates_tls_and_forwards_tcp(gantry, tmp_path):
    """A TLS listener (network load balancer) with an imported certificate: `gantry lb` does the
    handshake with the listener's certificate and passes the plain bytes to the targets: a TCP
    echo server, and an HTTP server reached by curl through a second TLS listener."""
    from test_elb_metrics import TcpEcho, metric_total, recv_exactly, start_metered_lb, stop
    from test_agent_tasks import wait_until

    pem = serialization.Encoding.PEM
    ca_cert, ca_key = make_ca()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(pem))
    host = "nlb.example.test"
    cert, key = make_leaf(ca_cert, ca_key, host)
    acm, elbv2 = gantry.client("acm"), gantry.client("elbv2")
    cert_arn = acm.import_certificate(Certificate=cert.public_bytes(pem), PrivateKey=_pem_key(key),
                                      CertificateChain=ca_cert.public_bytes(pem))["CertificateArn"]
    echo = TcpEcho()
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    lb = None
    try:
        nlb = elbv2.create_load_balancer(Name="tls-nlb", Type="network",
                                         Subnets=default_subnets(gantry, 1))["LoadBalancers"][0]
        groups = {}
        for name, port in (("echo", echo.port), ("web", web.server_address[1])):
            tg = elbv2.create_target_group(Name=f"tls-{name}", Protocol="TCP", Port=port, VpcId=nlb["VpcId"],
                                           TargetType="ip", HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2,
                                           HealthyThresholdCount=2)["TargetGroups"][0]
            elbv2.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": "127.0.0.1", "Port": port}])
            groups[name] = tg["TargetGroupArn"]
        # A TLS listener needs a certificate, as AWS says.
        port = free_port()
        forward = [{"Type": "forward", "TargetGroupArn": groups["echo"]}]
        with pytest.raises(botocore.exceptions.ClientError) as e:
            elbv2.create_listener(LoadBalancerArn=nlb["LoadBalancerArn"], Protocol="TLS", Port=port,
                                  DefaultActions=forward)
        assert e.value.response["Error"]["Code"] == "ValidationError"
        listener = elbv2.create_listener(
            LoadBalancerArn=nlb["LoadBalancerArn"], Protocol="TLS", Port=port,
            Certificates=[{"CertificateArn": cert_arn}], SslPolicy="ELBSecurityPolicy-TLS13-1-2-2021-06",
            DefaultActions=forward)["Listeners"][0]
        assert (listener["Protocol"], listener["SslPolicy"]) == ("TLS", "ELBSecurityPolicy-TLS13-1-2-2021-06")
        assert listener["Certificates"] == [{"CertificateArn": cert_arn}]
        web_port = free_port()
        elbv2.create_listener(LoadBalancerArn=nlb["LoadBalancerArn"], Protocol="TLS", Port=web_port,
                              Certificates=[{"CertificateArn": cert_arn}],
                              DefaultActions=[{"Type": "forward", "TargetGroupArn": groups["web"]}])

        lb = start_metered_lb(gantry, tmp_path)

        def healthy():
            return all(t["TargetHealth"]["State"] == "healthy"
                       for arn in groups.values()
                       for t in elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"])
        wait_until(healthy, timeout=60, interval=0.5, what="healthy targets")

        ctx = ssl.create_default_context(cafile=str(ca_file))

        def session():
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            return ctx.wrap_socket(raw, server_hostname=host)
        tls = wait_until(lambda: _try(session), timeout=30, interval=0.2, what="the TLS listener")
        try:
            subject = dict(x[0] for x in tls.getpeercert()["subject"])
            assert subject["commonName"] == host
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            sent = 0
            for msg in (b"plain bytes to the target", bytes(range(256)) * 40):
                tls.sendall(msg)
                assert recv_exactly(tls, len(msg)) == msg
                sent += len(msg)
        finally:
            tls.close()
        # A client that does not trust the issuer fails the handshake.
        with pytest.raises(ssl.SSLCertVerificationError):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                ssl.create_default_context().wrap_socket(raw, server_hostname=host)

        # HTTP over the TLS listener: the target answers, over plain TCP behind the proxy.
        r = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", str(ca_file),
                            "--resolve", f"{host}:{web_port}:127.0.0.1", f"https://{host}:{web_port}/"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        # A network load balancer adds no header: the target sees no X-Forwarded-Proto.
        assert r.stdout == "backend saw proto=None"

        lb_dim = nlb["LoadBalancerArn"].split(":loadbalancer/")[1]
        lb_only = [("LoadBalancer", lb_dim)]
        wait_until(lambda: metric_total(gantry, "AWS/NetworkELB", "NewFlowCount_TLS", lb_only) >= 3,
                   timeout=30, interval=0.5, what="NewFlowCount_TLS published")
        # The echo session, the untrusting client and curl; then records, handshakes and headers:
        # more than the payload either way.
        wait_until(lambda: metric_total(gantry, "AWS/NetworkELB", "ProcessedBytes_TLS", lb_only) > 2 * sent,
                   timeout=30, interval=0.5, what="ProcessedBytes_TLS published")
        assert metric_total(gantry, "AWS/NetworkELB", "NewFlowCount_TCP", lb_only) == 0
    finally:
        if lb is not None:
            stop(lb)
        echo.close()
        web.shutdown()


def _try(open_session):
    try:
        return open_session()
    except (OSError, ssl.SSLError):
        return None


class _HeaderEcho(http.server.BaseHTTPRequestHandler):
    """Answers the TLS headers it received, one `name=value` a line."""

    def do_GET(self):
        names = ("X-Amzn-Tls-Version", "X-Amzn-Tls-Cipher-Suite", "X-Tls-Version")
        body = "\n".join(f"{n}={self.headers.get(n)}" for n in names).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_https_listener_tells_targets_the_tls_version_and_cipher_suite(gantry, tmp_path):
    """`routing.http.x_amzn_tls_version_and_cipher_suite.enabled` on the load balancer adds the
    `X-Amzn-Tls-Version` and `X-Amzn-Tls-Cipher-Suite` request headers, under the names the
    listener's `routing.http.request.x_amzn_tls_*.header_name` attributes give them."""
    from test_agent_tasks import wait_until

    pem = serialization.Encoding.PEM
    ca_cert, ca_key = make_ca()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(pem))
    host = "headers.example.test"
    cert, key = make_leaf(ca_cert, ca_key, host)
    acm, elbv2 = gantry.client("acm"), gantry.client("elbv2")
    cert_arn = acm.import_certificate(Certificate=cert.public_bytes(pem), PrivateKey=_pem_key(key),
                                      CertificateChain=ca_cert.public_bytes(pem))["CertificateArn"]
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HeaderEcho)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    lb = None
    try:
        lb_arn = elbv2.create_load_balancer(Name="tlshdr", Subnets=default_subnets(gantry))[
            "LoadBalancers"][0]["LoadBalancerArn"]
        tg_arn = elbv2.create_target_group(Name="tlshdr", Protocol="HTTP", Port=80, TargetType="ip",
                                           HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2,
                                           HealthyThresholdCount=2)["TargetGroups"][0]["TargetGroupArn"]
        elbv2.register_targets(TargetGroupArn=tg_arn, Targets=[{"Id": "127.0.0.1", "Port": backend.server_address[1]}])
        port = free_port()
        listener = elbv2.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTPS", Port=port,
                                         Certificates=[{"CertificateArn": cert_arn}],
                                         DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}])[
            "Listeners"][0]["ListenerArn"]
        lb = start_lb(gantry, tmp_path / "lb.log")

        def seen(*extra):
            r = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", str(ca_file), *extra,
                                "--resolve", f"{host}:{port}:127.0.0.1", f"https://{host}:{port}/"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                return None
            return dict(line.split("=", 1) for line in r.stdout.splitlines())
        first = wait_until(seen, timeout=30, interval=0.2, what="the HTTPS listener")
        # Off by default, as AWS.
        assert first == {"X-Amzn-Tls-Version": "None", "X-Amzn-Tls-Cipher-Suite": "None", "X-Tls-Version": "None"}

        elbv2.modify_load_balancer_attributes(LoadBalancerArn=lb_arn, Attributes=[
            {"Key": "routing.http.x_amzn_tls_version_and_cipher_suite.enabled", "Value": "true"}])
        elbv2.modify_listener_attributes(ListenerArn=listener, Attributes=[
            {"Key": "routing.http.request.x_amzn_tls_version.header_name", "Value": "X-Tls-Version"}])
        twelve = ("--tls-max", "1.2", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256")
        got = wait_until(lambda: (s := seen(*twelve)) and s["X-Tls-Version"] != "None" and s,
                         timeout=30, interval=0.2, what="the TLS headers")
        assert got == {"X-Amzn-Tls-Version": "None", "X-Tls-Version": "TLSv1.2",
                       "X-Amzn-Tls-Cipher-Suite": "ECDHE-RSA-AES128-GCM-SHA256"}, got
        assert seen()["X-Tls-Version"] in ("TLSv1.2", "TLSv1.3")
        # A client cannot pass its own values off as the load balancer's.
        forged = seen(*twelve, "-H", "X-Tls-Version: TLSv9")
        assert forged["X-Tls-Version"] == "TLSv1.2", forged

        # Mutual TLS headers are not sent: their names stay AWS's.
        with pytest.raises(botocore.exceptions.ClientError) as e:
            elbv2.modify_listener_attributes(ListenerArn=listener, Attributes=[
                {"Key": "routing.http.request.x_amzn_mtls_clientcert.header_name", "Value": "X-Cert"}])
        assert e.value.response["Error"]["Code"] == "InvalidConfigurationRequest"
        assert "x_amzn_mtls_clientcert" in e.value.response["Error"]["Message"]
        with pytest.raises(botocore.exceptions.ClientError) as e:
            elbv2.modify_listener_attributes(ListenerArn=listener, Attributes=[
                {"Key": "routing.http.request.x_amzn_tls_version.header_name", "Value": "Not A Name"}])
        assert e.value.response["Error"]["Code"] == "InvalidConfigurationRequest"
    finally:
        if lb is not None:
            lb.terminate()
            try:
                lb.wait(timeout=10)
            except subprocess.TimeoutExpired:
                lb.kill()
        backend.shutdown()

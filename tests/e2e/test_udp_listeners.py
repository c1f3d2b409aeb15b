"""UDP listeners of a network load balancer served by `gantry lb`: datagrams from several
clients spread over two `ip` targets (UDP echo servers of the test itself on loopback), each
client's flow stays on its target, and replies come back to the right client from the
listener's address."""

import socket
import threading

from conftest import default_subnets, free_port
from test_agent_tasks import wait_until
from test_load_balancing import start_lb


class EchoTarget:
    """A UDP server answering `<name> <datagram>`, with a TCP listener on the same port for the
    target group's TCP health checks."""

    def __init__(self, name):
        self.name = name
        while True:
            self.port = free_port()
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.tcp = socket.socket()
            try:
                self.udp.bind(("127.0.0.1", self.port))
                self.tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        self.tcp.listen(16)
        self.stopped = False
        self.clients = set()
        threading.Thread(target=self._serve_udp, daemon=True).start()
        threading.Thread(target=self._serve_tcp, daemon=True).start()

    def _serve_udp(self):
        while not self.stopped:
            try:
                data, peer = self.udp.recvfrom(2048)
            except OSError:
                return
            self.clients.add(peer)
            self.udp.sendto(self.name.encode() + b" " + data, peer)

    def _serve_tcp(self):
        while not self.stopped:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            conn.close()

    def close(self):
        self.stopped = True
        self.udp.close()
        self.tcp.close()


def round_trip(client, listener, message):
    """Sends `message` to the listener (again if a datagram is lost) and returns the reply,
    checking it comes from the listener's address."""
    client.settimeout(0.5)
    for _ in range(20):
        client.sendto(message.encode(), listener)
        try:
            data, source = client.recvfrom(2048)
        except socket.timeout:
            continue
        assert source == listener, f"reply from {source}, not the listener {listener}"
        return data.decode()
    raise AssertionError(f"no reply to {message!r} through {listener}")


def test_udp_listener_spreads_client_flows_over_two_targets(gantry, tmp_path):
    elb = gantry.client("elbv2")
    targets = [EchoTarget("one"), EchoTarget("two")]
    lb_proc = start_lb(gantry, tmp_path / "lb.log")
    clients = []
    try:
        nlb = elb.create_load_balancer(Name="udp", Subnets=default_subnets(gantry, 1),
                                       Type="network")["LoadBalancers"][0]
        tg = elb.create_target_group(Name="echo", Protocol="UDP", Port=7, VpcId=nlb["VpcId"], TargetType="ip",
                                     HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2, HealthyThresholdCount=2,
                                     UnhealthyThresholdCount=2)["TargetGroups"][0]
        assert tg["HealthCheckProtocol"] == "TCP"
        tg_arn = tg["TargetGroupArn"]
        elb.register_targets(TargetGroupArn=tg_arn,
                             Targets=[{"Id": "127.0.0.1", "Port": t.port} for t in targets])
        port = free_port()
        listener = elb.create_listener(LoadBalancerArn=nlb["LoadBalancerArn"], Protocol="UDP", Port=port,
                                       DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}])["Listeners"][0]
        assert listener["Protocol"] == "UDP"

        def healthy():
            th = elb.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
            return len([t for t in th if t["TargetHealth"]["State"] == "healthy"]) == 2
        wait_until(healthy, timeout=60, what="both UDP targets healthy")

        address = ("127.0.0.1", port)
        flows = {}
        for i in range(8):
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            client.bind(("127.0.0.1", 0))
            clients.append(client)
            name, _, echoed = round_trip(client, address, f"hello from {i}").partition(" ")
            assert echoed == f"hello from {i}", echoed
            flows[client.getsockname()] = name
        # Each client's later datagrams stay on its flow's target, interleaved with the others'.
        for k in range(3):
            for i, client in enumerate(clients):
                reply = round_trip(client, address, f"again {i}.{k}")
                assert reply == f"{flows[client.getsockname()]} again {i}.{k}", reply
        assert set(flows.values()) == {"one", "two"}, flows
        # Each target saw one flow per client sent to it: one upstream socket per flow.
        for t in targets:
            assert len(t.clients) == list(flows.values()).count(t.name), (t.name, t.clients, flows)
    finally:
        for c in clients:
            c.close()
        lb_proc.terminate()
        lb_proc.wait(timeout=10)
        for t in targets:
            t.close()

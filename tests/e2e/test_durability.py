"""`kill -9` of the server during a burst of writes loses no acknowledged write."""

import concurrent.futures
import signal
import threading
import time

import botocore.exceptions

from conftest import Gantry
from fixtures_taskdef import WEB


def test_kill_9_during_write_burst_loses_no_acknowledged_write(tmp_path):
    g = Gantry(tmp_path / "data").start()
    acked_clusters: list[str] = []
    acked_revisions: dict[str, list[int]] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int):
        ecs = g.client("ecs")
        i = 0
        while not stop.is_set():
            i += 1
            try:
                if n % 2 == 0:
                    name = f"w{n}-{i}"
                    ecs.create_cluster(clusterName=name)
                    with lock:
                        acked_clusters.append(name)
                else:
                    td = dict(WEB, family=f"fam{n}")
                    rev = ecs.register_task_definition(**td)["taskDefinition"]["revision"]
                    with lock:
                        acked_revisions.setdefault(f"fam{n}", []).append(rev)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                return  # the server is gone; this write was not acknowledged

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(writer, n) for n in range(16)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if len(acked_clusters) + sum(map(len, acked_revisions.values())) >= 300:
                    break
            time.sleep(0.01)
        g.proc.send_signal(signal.SIGKILL)
        g.proc.wait()
        stop.set()
        for f in futures:
            f.result(timeout=30)

    total = len(acked_clusters) + sum(map(len, acked_revisions.values()))
    assert total >= 100, f"burst too small to prove anything: {total}"

    g2 = Gantry(tmp_path / "data", g.access_key, g.secret_key).start()
    try:
        ecs = g2.client("ecs")
        arns = [a for p in ecs.get_paginator("list_clusters").paginate() for a in p["clusterArns"]]
        names = {a.rsplit("/", 1)[1] for a in arns}
        missing = [c for c in acked_clusters if c not in names]
        assert not missing, f"{len(missing)} acknowledged clusters lost, e.g. {missing[:5]}"
        for fam, revs in acked_revisions.items():
            listed = [a for p in ecs.get_paginator("list_task_definitions").paginate(familyPrefix=fam)
                      for a in p["taskDefinitionArns"]]
            have = {int(a.rsplit(":", 1)[1]) for a in listed}
            assert set(revs) <= have, f"{fam}: acknowledged {sorted(set(revs) - have)} lost"
            # Revisions stay dense: nothing half-applied.
            assert have == set(range(1, max(have) + 1))
        # New writes continue after the last revision.
        fam = next(iter(acked_revisions))
        nxt = ecs.register_task_definition(**dict(WEB, family=fam))["taskDefinition"]["revision"]
        assert nxt > max(acked_revisions[fam])
    finally:
        g2.stop()

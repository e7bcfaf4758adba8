"""Fault drills on a private cluster: failover, whole-cluster outage, a reload during one, cold start from snapshot,
a SIGSTOPped master (client budgets, flat worker memory). Requests must never fail."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from rulegate.connection import RedisConfig
from rulegate.keyspace import Keys
from rulegate.schema import validate_rule
from rulegate.snapshot import read_snapshot
from rulegate.store import RuleStore
from rulegate_dev.cluster import LocalCluster

from .conftest import Gateway

pytestmark = pytest.mark.integration

FAST = {"refresh_interval": 0.2, "connect_timeout": 200, "send_timeout": 300, "read_timeout": 300}


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A cluster of this module's own, so killing and stopping nodes disturbs no other test."""
    c = LocalCluster(tmp_path_factory.mktemp("fault-cluster"))
    c.start()
    yield c
    c.stop()


@pytest.fixture()
def fault_store(private_cluster: LocalCluster) -> Iterator[RuleStore]:
    """A RuleStore on the private cluster."""
    s = RuleStore.from_config(RedisConfig.from_nodes(private_cluster.startup_nodes, mode="cluster"))
    yield s
    s.close()


@pytest.fixture()
def healthy(private_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The private cluster, made whole again (resumed, restarted, ready) after the test."""
    private_cluster.wait_ready()
    yield private_cluster
    for node in private_cluster.nodes:
        if node.pid is None:
            private_cluster.start_node(node)
        else:
            private_cluster.resume(node)
    private_cluster.wait_ready(timeout=60)


def rule(upstream: str) -> dict:
    return validate_rule({
        "id": "main", "kind": "split", "route": {"host": "app.example.com", "path": "/"},
        "key": {"source": "header", "name": "X-Uid"},
        "policies": [{"type": "uid_suffix", "suffixes": ["7"], "upstream": "canary"}],
        "default": upstream,
    })


class Load:
    """Requests in a loop on a keep-alive connection; counts failures and wrong upstreams."""

    def __init__(self, gw: Gateway, expect: set[str]) -> None:
        self.gw, self.expect = gw, expect
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=5)
        while not self._stop.is_set():
            try:
                r = self.gw.get("/", conn=conn)
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=5)
                continue
            up = r.headers.get("x-echo-upstream")
            if r.status != 200 or up not in self.expect:
                self.failures.append(f"{r.status} {up}")
            else:
                self.ok += 1
        conn.close()

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def wait_state(gw: Gateway, states: set[str], timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    st = gw.status()
    while st["state"] not in states:
        assert time.monotonic() < deadline, f"state {st['state']} never became {states}: {st}"
        time.sleep(0.05)
        st = gw.status()
    return st


def test_killing_the_slot_master_never_fails_a_request(
    make_gateway: Callable[..., Gateway], healthy: LocalCluster, fault_store: RuleStore, namespace: str
) -> None:
    """SIGKILL of the namespace's master: every request routes, and a later change still arrives."""
    rev = fault_store.put_rule(namespace, rule("a"), None, "test").revision
    gw = make_gateway(namespace, healthy.startup_nodes, **FAST)
    gw.wait_revision(rev)
    slot = Keys(namespace).slot
    master = healthy.slot_owner(slot)
    with Load(gw, {"a", "b"}) as load:
        time.sleep(0.3)
        healthy.kill(master)
        healthy.wait_failover(slot, master)
        rev = fault_store.put_rule(namespace, rule("b"), None, "test").revision
        gw.wait_revision(rev, timeout=15)
        time.sleep(0.3)
    assert load.failures == []
    assert load.ok > 100
    assert gw.get("/").headers["x-echo-upstream"] == "b"


def test_whole_cluster_stopped_keeps_routing_on_stale_rules(
    make_gateway: Callable[..., Gateway], healthy: LocalCluster, fault_store: RuleStore, namespace: str
) -> None:
    """With every node SIGSTOPped requests keep routing; the outage is logged once and reported (not in sync)."""
    rev = fault_store.put_rule(namespace, rule("a"), None, "test").revision
    gw = make_gateway(namespace, healthy.startup_nodes, max_stale=1, **FAST)
    gw.wait_revision(rev)
    assert gw.status_when(lambda s: s["in_sync"], "in sync")["in_sync"] is True
    with Load(gw, {"a"}) as load:
        for node in healthy.nodes:
            healthy.pause(node)
        first = wait_state(gw, {"error"})
        time.sleep(1.5)
        st = gw.status()
        for node in healthy.nodes:
            healthy.resume(node)
        back = wait_state(gw, {"ok"}, timeout=30)
    assert (first["in_sync"], st["in_sync"], back["in_sync"]) == (False, False, True), \
        "in sync only while checks succeed"
    assert load.failures == []
    assert load.ok > 100
    assert st["revision"] == rev
    assert st["stale"] is True
    assert st["staleness"] > 1
    assert st["last_error"]
    failing = [line for line in gw.error_lines() if "failing" in line]
    assert len(failing) == 1, failing


def test_restart_with_cluster_down_routes_from_snapshot(
    make_gateway: Callable[..., Gateway], healthy: LocalCluster, fault_store: RuleStore, namespace: str,
    tmp_path: Path,
) -> None:
    """nginx restarted while the whole cluster is down routes with the snapshot's rules."""
    snap = tmp_path / "snap" / f"{namespace}.snap"
    snap.parent.mkdir()
    rev = fault_store.put_rule(namespace, rule("b"), None, "test").revision
    gw = make_gateway(namespace, healthy.startup_nodes, snapshot_path=str(snap), **FAST)
    gw.wait_revision(rev)
    deadline = time.monotonic() + 5
    while not snap.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    gw.stop()
    for node in list(healthy.nodes):
        healthy.kill(node)
    gw2 = make_gateway(namespace, healthy.startup_nodes, snapshot_path=str(snap), **FAST)
    for _ in range(50):
        r = gw2.get("/")
        assert r.status == 200
        assert r.headers["x-echo-upstream"] == "b"
        assert r.headers["x-rulegate-rev"] == str(rev)
    st = gw2.status()
    assert st["source"] == "snapshot"
    assert st["revision"] == rev


def test_paused_master_respects_client_budgets_and_memory_stays_flat(
    make_gateway: Callable[..., Gateway], healthy: LocalCluster, fault_store: RuleStore, namespace: str
) -> None:
    """Under a SIGSTOPped master no Redis call exceeds its budget and 10,000 requests leave
    worker memory flat."""
    rev = fault_store.put_rule(namespace, rule("a"), None, "test").revision
    gw = make_gateway(namespace, healthy.startup_nodes, refresh_interval=0.1, connect_timeout=100,
                      send_timeout=100, read_timeout=100, heartbeat_interval=0.1)
    gw.wait_revision(rev)
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    for _ in range(2000):
        assert gw.get("/", conn=conn).status == 200
    rss_before = sum(gw.worker_rss_kb().values())
    calls_before = sum(s["calls"] for s in gw.status()["cluster_stats"].values())
    master = healthy.slot_owner(Keys(namespace).slot)
    healthy.pause(master)
    try:
        for _ in range(10_000):
            r = gw.get("/", conn=conn)
            assert r.status == 200
            assert r.headers["x-echo-upstream"] == "a"
    finally:
        healthy.resume(master)
    conn.close()
    rss_after = sum(gw.worker_rss_kb().values())
    stats = gw.status()["cluster_stats"]
    assert stats, "no worker reported client stats"
    assert sum(s["calls"] for s in stats.values()) - calls_before >= 5
    for pid, s in stats.items():
        assert s["max_attempts_per_call"] <= 3, (pid, s)
        assert s["max_connections_per_call"] <= 2, (pid, s)
    assert rss_after - rss_before < 4096, f"workers grew by {rss_after - rss_before} KiB"
    assert gw.pid is not None and len(gw.worker_pids()) == 2


def test_a_checkpoint_during_an_outage_keeps_the_time_rules_were_confirmed(
    make_gateway: Callable[..., Gateway], healthy: LocalCluster, fault_store: RuleStore, namespace: str,
    tmp_path: Path,
) -> None:
    """A change applied just before every node stops is checkpointed into the snapshot while Redis is down; the
    file says when the rules were last confirmed current (a restart from it counts staleness from then), not when
    the checkpoint wrote it."""
    snap = tmp_path / "snap" / f"{namespace}.snap"
    snap.parent.mkdir()
    first = fault_store.put_rule(namespace, rule("a"), None, "test").revision
    gw = make_gateway(namespace, healthy.startup_nodes, snapshot_path=str(snap), checkpoint_delay=2,
                      checkpoint_max=30, **FAST)
    gw.wait_revision(first)  # the first load (its snapshot written at once) came before the change: a delta
    rev = fault_store.put_rule(namespace, rule("b"), None, "test").revision
    gw.wait_revision(rev)
    for node in healthy.nodes:
        healthy.pause(node)
    paused_at = time.time()
    try:
        deadline = time.monotonic() + 15
        while not (snap.exists() and read_snapshot(snap).revision == rev):
            assert time.monotonic() < deadline, gw.status()
            time.sleep(0.1)
        written = time.time()
    finally:
        for node in healthy.nodes:
            healthy.resume(node)
    held = read_snapshot(snap)
    assert held.written_at <= paused_at + 1 < written, (held.written_at, paused_at, written)
    wait_state(gw, {"ok"}, timeout=30)


def test_a_reload_during_a_whole_cluster_outage_routes_from_the_first_request(
    make_gateway: Callable[..., Gateway], healthy: LocalCluster, fault_store: RuleStore, namespace: str
) -> None:
    """nginx reloaded (SIGHUP) while every node is SIGSTOPped: the master compiles the rules the shared dict holds
    (no Redis call) and the new workers route with them from their first request; no request fails."""
    rev = fault_store.put_rule(namespace, rule("a"), None, "test").revision
    gw = make_gateway(namespace, healthy.startup_nodes, **FAST)
    gw.wait_revision(rev)
    before = gw.status_when(lambda st: st["worker_compiles"] >= 1, "the other worker's first set")
    for node in healthy.nodes:
        healthy.pause(node)
    wait_state(gw, {"error"})
    failures: list[str] = []
    stop = threading.Event()

    def requests_on_new_connections() -> None:  # (an old worker closes its keep-alive connections on reload)
        while not stop.is_set():
            try:
                r = gw.get("/")
            except (OSError, http.client.HTTPException) as exc:
                failures.append(repr(exc))
                continue
            if r.status != 200 or r.headers.get("x-echo-upstream") != "a":
                failures.append(f"{r.status} {r.headers.get('x-echo-upstream')}")

    thread = threading.Thread(target=requests_on_new_connections, daemon=True)
    thread.start()
    try:
        gw.reload()
        for _ in range(20):  # the new workers' first requests
            r = gw.get("/")
            assert r.headers["x-echo-upstream"] == "a" and r.headers["x-rulegate-rev"] == str(rev), r
        st = gw.status()
    finally:
        stop.set()
        thread.join(10)
        for node in healthy.nodes:
            healthy.resume(node)
    assert failures == []
    assert st["master_compiles"] == 1 and st["worker_compiles"] == before["worker_compiles"], st
    assert st["revision"] == rev
    wait_state(gw, {"ok"}, timeout=30)

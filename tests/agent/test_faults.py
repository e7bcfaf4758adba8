"""Fault tests on real clusters: every decision succeeds while Redis fails under the client."""
from __future__ import annotations

import threading
import time

import pytest

from gateway_agent import RuleClient
from gateway_agent.budget import BudgetConfig
from gateway_agent.sidecar import SidecarApp
from rulegate.connection import RedisConfig
from rulegate.keyspace import Keys
from rulegate.store import RuleStore
from rulegate_dev.cluster import LocalCluster

from .conftest import DecisionLoop, make_client, split_rule


def _write_retrying(store: RuleStore, namespace: str, upstream: str, timeout: float = 15.0):
    """Commit through the store, retrying while the cluster settles after a failover."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return store.put_rule(namespace, split_rule("checkout", upstream), None, "test")
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _health(client: RuleClient) -> dict:
    """Return the sidecar /healthz body for client (the WSGI app called in-process)."""
    app = SidecarApp(client)
    out = {}
    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/healthz"},
                        lambda status, headers: out.setdefault("status", status)))
    import json
    return {"status": out["status"], **json.loads(body)}


def test_kill_slot_master(cluster, store, namespace):
    """Killing the namespace's master: decisions never fail; the first write after failover is applied."""
    store.put_rule(namespace, split_rule("checkout", "before"), None, "test")
    slot = Keys(namespace).slot
    master = cluster.slot_owner(slot)
    with make_client(cluster, namespace) as client, DecisionLoop(client, {"before", "after"}) as loop:
        assert client.revision == 1
        cluster.kill(master)
        try:
            cluster.wait_failover(slot, master)
            w = _write_retrying(store, namespace, "after")
            assert client.wait_for_revision(w.revision, 10)
            assert client.decide({"host": "shop.example.com"}).upstream == "after"
        finally:
            cluster.start_node(master)
            cluster.wait_ready()
        stats = client.budget.stats.snapshot()
        assert stats["max_connections_in_operation"] <= 2
    loop.check()


def test_sigstop_slot_master_beyond_deadline(cluster, store, namespace):
    """A frozen shard (master and its replica SIGSTOPped past the deadline): the connection cap holds,
    stale rules are served, then the client catches up."""
    store.put_rule(namespace, split_rule("checkout", "before"), None, "test")
    slot = Keys(namespace).slot
    master = cluster.slot_owner(slot)
    frozen = [master] + cluster.replicas_of(master)
    budget = BudgetConfig(deadline=0.5, socket_timeout=0.2, connect_timeout=0.2)
    with make_client(cluster, namespace, budget=budget, max_stale=0.5) as client, \
            DecisionLoop(client, {"before", "after"}) as loop:
        before = client.budget.stats.snapshot()
        for node in frozen:
            cluster.pause(node)
        try:
            time.sleep(1.5)  # three budget deadlines
            health = client.health()
            assert health["revision"] == 1 and health["stale"] is True and health["redis"] == "down"
            during = client.budget.stats.snapshot()
            assert during["failed_operations"] > before["failed_operations"]
        finally:
            for node in frozen:
                cluster.resume(node)
        cluster.wait_ready()
        w = _write_retrying(store, namespace, "after")
        assert client.wait_for_revision(w.revision, 10)
        stats = client.budget.stats.snapshot()
        assert stats["max_connections_in_operation"] <= budget.max_connections
        failed_ops = stats["failed_operations"] - before["failed_operations"]
        assert stats["connections_opened"] - before["connections_opened"] <= 2 * (failed_ops + 5)
        assert client.health()["stale"] is False
    loop.check()


def test_single_flight_slot_refresh(cluster, namespace):
    """Concurrent refresh requests for the same stale map do one CLUSTER SLOTS round."""
    cluster.wait_ready()
    client = RuleClient(cluster.startup_nodes, namespace)
    s = client.syncer
    deadline = time.monotonic() + 10
    while s.slots.master is None or s.slots.stale:
        # an earlier fault test may leave gossip settling: a map without a master stays stale
        assert time.monotonic() < deadline, "slot map never found the namespace's master"
        s.slots.refresh(client.budget, s.pool)
        time.sleep(0.1)
    before = client.budget.stats.snapshot()["slot_refreshes"]
    version = s.slots.version
    threads = [threading.Thread(target=s.slots.refresh, args=(client.budget, s.pool, version)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.budget.stats.snapshot()["slot_refreshes"] - before == 1
    assert s.slots.master is not None
    s.pool.close()


@pytest.fixture()
def own_cluster(tmp_path):
    """A private cluster that saves on shutdown, for tests that stop every node."""
    c = LocalCluster(tmp_path / "own", extra_config={"save": "3600 1"})
    c.start()
    yield c
    c.stop()


def test_whole_cluster_down_then_snapshot_restart_then_catch_up(own_cluster, tmp_path):
    """Cluster down: last rules served, staleness shown and in_sync false (no check succeeds); a restarted
    client boots from the snapshot with the cluster still down; when the cluster returns the client catches up."""
    ns = "prod"
    snap = str(tmp_path / "agent.snap")
    cfg = RedisConfig.from_nodes(own_cluster.startup_nodes, mode="cluster")
    store = RuleStore.from_config(cfg)
    store.put_rule(ns, split_rule("checkout", "v1"), None, "test")
    store.close()
    with make_client(own_cluster, ns, snapshot_path=snap, max_stale=0.5) as client, \
            DecisionLoop(client, {"v1"}) as loop:
        assert client.revision == 1
        assert _health(client)["in_sync"] is True
        own_cluster.stop()
        time.sleep(1.2)
        health = _health(client)
        assert health["status"].startswith("200") and health["revision"] == 1
        assert health["stale"] is True and health["staleness"] >= 0.5 and health["redis"] == "down"
        assert health["in_sync"] is False, "a failed check cannot confirm the content"
    loop.check()

    with make_client(own_cluster, ns, snapshot_path=snap, max_stale=0.5) as client, \
            DecisionLoop(client, {"v1", "v2"}) as loop:
        health = _health(client)
        assert health["revision"] == 1 and health["source"] == "snapshot" and health["stale"] is True
        assert client.decide({"host": "shop.example.com"}).upstream == "v1"
        own_cluster.start()
        store = RuleStore.from_config(cfg)
        try:
            w = _write_retrying(store, ns, "v2")
        finally:
            store.close()
        assert w.revision == 2
        assert client.wait_for_revision(2, 10)
        assert client.decide({"host": "shop.example.com"}).upstream == "v2"
        health = _health(client)
        assert health["stale"] is False and health["redis"] == "ok" and health["source"] == "redis"
        assert health["in_sync"] is True
    loop.check()


def test_frozen_master_falls_back_to_replica_reads(cluster, store, namespace):
    """With only the master SIGSTOPped, revalidation succeeds on a replica and staleness stays low all along:
    a heartbeat due (every 0.5 s here) gets one attempt on the master, not the check's whole budget (before: 3
    timeouts on the frozen master, ~0.9 s stale before the check went to a replica)."""
    store.put_rule(namespace, split_rule("checkout", "before"), None, "test")
    master = cluster.slot_owner(Keys(namespace).slot)
    budget = BudgetConfig(deadline=0.8, socket_timeout=0.2, connect_timeout=0.2)
    with make_client(cluster, namespace, budget=budget, max_stale=0.8) as client, \
            DecisionLoop(client, {"before"}) as loop:
        cluster.pause(master)
        try:
            worst, end = 0.0, time.monotonic() + 1.5  # shorter than the failover threshold
            while time.monotonic() < end:
                worst = max(worst, client.syncer.staleness())
                time.sleep(0.02)
            assert worst < 0.7, f"stale for {worst:.2f} s while the master was frozen"
            health = client.health()
            assert health["stale"] is False and health["redis"] == "ok", (health["last_error"], client.syncer.slots.master, client.syncer.slots.replicas, [(n.port, n.pid) for n in cluster.nodes], master.port)
            assert client.budget.stats.snapshot()["max_connections_in_operation"] <= 2
        finally:
            cluster.resume(master)
        cluster.wait_ready()
    loop.check()

"""Content identity and loud refusal, in both runtimes: digests, a planted bad revision, a split brain."""
from __future__ import annotations

import time
from typing import Any, Callable

import msgpack
import pytest

from gateway_agent import RuleClient
from rulegate.connection import RedisConfig
from rulegate.digest import content_digest
from rulegate.keyspace import Keys
from rulegate.schema import encode_rule, validate_rule
from rulegate.store import RuleStore
from rulegate_dev.cluster import LocalCluster
from tests.agent.conftest import make_client

from .conftest import Gateway

pytestmark = pytest.mark.integration

HOST = "shop.example.com"


def rule(rule_id: str, upstream: str, path: str = "/") -> dict:
    """Return a valid split rule sending HOST+path to `upstream`."""
    return validate_rule({"id": rule_id, "kind": "split", "route": {"host": HOST, "path": path},
                          "key": {"source": "ip"}, "policies": [], "default": upstream})


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Return check()'s first truthy value, polling; fail naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, ValueError):
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_store_digest_is_the_content_digest(store: RuleStore, namespace: str) -> None:
    """After puts, replacements and deletes, meta and log digests equal the digest of the stored rules."""
    store.put_rule(namespace, rule("a", "v1"), None, "t")
    store.put_rule(namespace, rule("b", "v1", "/b"), None, "t")
    store.put_rule(namespace, rule("a", "v2"), None, "t")
    store.delete_rule(namespace, "b", None, "t")
    state = store.load(namespace)
    assert state.digest == content_digest(state.raw)
    last = store.log_range(namespace, "-", "+", count=10)[-1]
    assert last.revision == state.revision and last.digest == state.digest
    store.delete_rule(namespace, "a", None, "t")
    assert store.load(namespace).digest == "0" * 40


def test_legacy_namespace_gets_its_digest_on_the_next_commit(store: RuleStore, namespace: str) -> None:
    """A namespace written before digests existed (no meta digest) gets the full digest at its next commit."""
    store.put_rule(namespace, rule("a", "v1"), None, "t")
    store.client.hdel(Keys(namespace).meta, "digest")
    store.put_rule(namespace, rule("b", "v1", "/b"), None, "t")
    state = store.load(namespace)
    assert state.digest == content_digest(state.raw)


def test_both_runtimes_hold_the_store_digest(store: RuleStore, namespace: str, make_gateway, cluster) -> None:
    """nginx (ngx.sha1_bin) and the agent (hashlib) compute the digest the commit script keeps."""
    for i in range(5):
        w = store.put_rule(namespace, rule(f"r{i}", f"u{i}", f"/p{i}"), None, "t")
    digest = store.load(namespace).digest
    gw = make_gateway(namespace, list(cluster.startup_nodes))
    with make_client(cluster, namespace) as client:
        status = gw.wait_revision(w.revision)
        assert client.wait_for_revision(w.revision, 5)
        health = wait_until(lambda: (h := client.health())["in_sync"] and h, 5, "agent in sync")
        assert health["digest"] == health["store_digest"] == digest
        status = wait_until(lambda: (s := gw.status())["in_sync"] and s, 5, "nginx in sync")
        assert status["digest"] == status["store_digest"] == digest


def plant_unreadable_rule(store: RuleStore, namespace: str) -> int:
    """Commit a rule no gateway can decode (as a newer, buggy writer might); return its revision."""
    garbage = msgpack.packb({"id": "bad", "kind": "teleport", "route": {"host": HOST, "path": "/bad"}})
    return store.commit(namespace, [("bad", garbage)], None, "planted", op="put").revision


def test_refused_revision_is_loud_and_a_later_valid_one_applies(store, namespace, make_gateway, cluster):
    """A revision a gateway cannot apply: it keeps serving, reports refused revision, reason and stale in
    status, metrics, heartbeat and the fleet view; the next valid revision is applied and clears it."""
    good = store.put_rule(namespace, rule("checkout", "v1"), None, "t").revision
    gw = make_gateway(namespace, list(cluster.startup_nodes), heartbeat_interval=0.2)
    with make_client(cluster, namespace) as client:
        gw.wait_revision(good)
        assert client.wait_for_revision(good, 5)
        bad = plant_unreadable_rule(store, namespace)

        status = wait_until(lambda: (s := gw.status())["refused_revision"] == bad and s, 5, "nginx refusal")
        assert status["revision"] == good and status["stale"] is True and status["in_sync"] is False
        assert "refused" in status["refused_reason"] and "bad" in status["refused_reason"]
        health = wait_until(lambda: (h := client.health())["refused_revision"] == bad and h, 5, "agent refusal")
        assert health["revision"] == good and health["stale"] is True and health["in_sync"] is False
        assert "bad" in health["refused_reason"]
        assert gw.get("/", HOST).headers["x-echo-upstream"] == "v1"
        assert client.decide({"host": HOST, "path": "/", "ip": "10.0.0.1"}).upstream == "v1"

        from gateway_agent.metrics import AgentMetrics
        metrics = AgentMetrics(client).render()[0].decode()
        assert f"rulegate_agent_refused_revision {float(bad)}" in metrics
        assert "rulegate_agent_stale 1.0" in metrics and "rulegate_agent_in_sync 0.0" in metrics

        from rulegate.fleet import read_fleet
        beats = wait_until(lambda: (b := read_fleet(store.client, namespace)) and len(b) == 2
                           and all(x.refused_revision == bad for x in b.values()) and b, 5, "refusing heartbeats")
        assert all(b.stale and b.in_sync is False and "bad" in b.refused_reason for b in beats.values())

        fixed = store.commit(namespace, [("bad", b""), ("checkout", encode_rule(rule("checkout", "v2")))],
                             None, "t", op="put").revision
        status = gw.wait_revision(fixed)
        assert client.wait_for_revision(fixed, 5)
        status = wait_until(lambda: (s := gw.status())["in_sync"] and s, 5, "nginx back in sync")
        assert status["refused_revision"] is None and status["stale"] is False
        health = wait_until(lambda: (h := client.health())["in_sync"] and h, 5, "agent back in sync")
        assert health["refused_revision"] is None and health["stale"] is False
        assert gw.get("/", HOST).headers["x-echo-upstream"] == "v2"


@pytest.fixture()
def split_cluster(tmp_path):
    """A private cluster for the split-brain test (it pauses and fails over nodes)."""
    c = LocalCluster(tmp_path / "split")
    c.start()
    yield c
    c.stop()


def _put_retrying(store: RuleStore, ns: str, r: dict, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return store.put_rule(ns, r, None, "t").revision
        except Exception:  # noqa: BLE001 - the cluster is settling after a failover
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_split_brain_same_revision_other_content_converges(split_cluster, tmp_path):
    """Old master takes writes its replica never sees; the replica takes over and takes as many other
    writes (same revision, other content); both runtimes reload to the store's content and report
    out-of-sync until they hold it."""
    cluster, ns = split_cluster, "split"
    store = RuleStore.from_config(RedisConfig.from_nodes(cluster.startup_nodes, mode="cluster"), wait_replicas=0)
    base = store.put_rule(ns, rule("shared", "base"), None, "t").revision
    slot = Keys(ns).slot
    master = cluster.slot_owner(slot)
    replica = cluster.replicas_of(master)[0]
    gw = Gateway({"namespace": ns, "startup_nodes": list(cluster.startup_nodes), "refresh_interval": 0.2,
                  "gateway_id": "split-nginx", "heartbeat_interval": 0.2, "connect_timeout": 200,
                  "read_timeout": 300, "send_timeout": 300}, prefix=tmp_path / "nginx")
    gw.start()
    client: RuleClient = make_client(cluster, ns)
    try:
        gw.wait_revision(base)
        assert client.wait_for_revision(base, 5)
        cluster.pause(replica)
        with cluster.client(master, 1.0) as c:  # replication cut: what the master takes next, the replica never sees
            c.execute_command("CLIENT", "KILL", "TYPE", "replica")
        try:
            store.put_rule(ns, rule("a-only", "A", "/a"), None, "t")
            rev_a = store.put_rule(ns, rule("shared", "A"), None, "t").revision
            gw.wait_revision(rev_a)
            assert client.wait_for_revision(rev_a, 5)
            digest_a = store.load(ns).digest
            cluster.pause(master)
        finally:
            cluster.resume(replica)
        try:
            cluster.wait_failover(slot, master)
            _put_retrying(store, ns, rule("b-only", "B", "/b"))
            rev_b = _put_retrying(store, ns, rule("shared", "B"))
            assert rev_b == rev_a, "the scenario needs the same revision number on both sides"
            state = store.load(ns)
            assert state.digest != digest_a and set(state.raw) == {"shared", "b-only"}
            t0 = time.monotonic()
            samples: list[tuple[str, bool, str]] = []

            def converged() -> bool:
                st, h = gw.status(), client.health()
                samples.extend([("nginx", st["in_sync"], st["digest"]), ("agent", h["in_sync"], h["digest"])])
                return st["digest"] == state.digest and h["digest"] == state.digest and st["in_sync"] and h["in_sync"]

            wait_until(converged, 10, "both gateways to hold the store's content")
            elapsed = time.monotonic() - t0
        finally:
            cluster.resume(master)
        wrong = [(who, digest) for who, in_sync, digest in samples if in_sync and digest != state.digest]
        assert not wrong, f"in-sync while holding content that is not the store's {state.digest}: {wrong}"
        assert elapsed < 10
        print(f"\nboth gateways hold the store's content {elapsed:.2f}s after the last write on the new master")
        assert client.decide({"host": HOST, "path": "/", "ip": "10.0.0.1"}).upstream == "B"
        assert client.decide({"host": HOST, "path": "/a", "ip": "10.0.0.1"}).upstream == "B"  # a-only is gone
        assert gw.get("/a", HOST).headers["x-echo-upstream"] == "B"
        assert client.syncer.stats.snapshot()["digest_mismatches"] >= 1
        cluster.wait_ready()
    finally:
        client.stop()
        gw.stop()
        store.close()

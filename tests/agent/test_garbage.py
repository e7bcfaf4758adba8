"""Garbage in Redis never crashes the client and never replaces the good rule set."""
from __future__ import annotations

import time

import msgpack
import redis

from rulegate.keyspace import Keys

from .conftest import DecisionLoop, make_client, split_rule


def _wait(predicate, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_non_msgpack_rule_value_is_rejected(cluster, store, namespace):
    """A committed non-msgpack value is refused and reported; fixing it recovers."""
    store.put_rule(namespace, split_rule("checkout", "good"), None, "test")
    with make_client(cluster, namespace) as client, DecisionLoop(client, {"good", "fixed"}) as loop:
        store.commit(namespace, [("checkout", b"\xc1\xc1 not msgpack")], None, "vandal", op="put")
        _wait(lambda: client.syncer.stats.snapshot()["rejected"] > 0)
        assert client.revision == 1 and client.health()["redis"] == "rejected"
        assert "undecodable" in client.health()["last_error"]
        w = store.put_rule(namespace, split_rule("checkout", "fixed"), None, "test")
        assert client.wait_for_revision(w.revision, 3)
        assert client.health()["redis"] == "ok"
    loop.check()


def test_rule_failing_validation_is_rejected(cluster, store, namespace):
    """A stored rule that fails the schema is never applied; the previous set stays."""
    store.put_rule(namespace, split_rule("checkout", "good"), None, "test")
    with make_client(cluster, namespace) as client, DecisionLoop(client, {"good"}) as loop:
        bad = msgpack.packb({"id": "checkout", "kind": "split", "route": {"host": "x", "path": "no-slash"}})
        store.commit(namespace, [("checkout", bad)], None, "vandal", op="put")
        _wait(lambda: client.syncer.stats.snapshot()["rejected"] > 0)
        assert client.revision == 1
        assert "fails validation" in client.health()["last_error"]
        time.sleep(0.5)
        assert client.revision == 1
    loop.check()


def test_garbage_written_behind_the_store_is_rejected(cluster, store, namespace):
    """A value planted directly in the hash (no log entry) forces a full reload, which refuses it."""
    store.put_rule(namespace, split_rule("checkout", "good"), None, "test")
    raw = redis.RedisCluster(startup_nodes=[redis.cluster.ClusterNode(*a.split(":")) for a in cluster.startup_nodes])
    try:
        with make_client(cluster, namespace) as client, DecisionLoop(client, {"good"}) as loop:
            keys = Keys(namespace)
            raw.hset(keys.rules, "other", b"\x00garbage")
            raw.incr(keys.rev)
            _wait(lambda: client.syncer.stats.snapshot()["rejected"] > 0)
            assert client.revision == 1 and client.rules.keys() == {"checkout"}
        loop.check()
    finally:
        raw.close()


def test_revision_going_backwards_is_refused_and_new_generation_accepted(cluster, store, namespace):
    """A lower rev of the same generation is refused and reported; a new generation is accepted."""
    store.put_rule(namespace, split_rule("checkout", "v1"), None, "test")
    store.put_rule(namespace, split_rule("checkout", "v2"), None, "test")
    raw = redis.RedisCluster(startup_nodes=[redis.cluster.ClusterNode(*a.split(":")) for a in cluster.startup_nodes])
    keys = Keys(namespace)
    try:
        with make_client(cluster, namespace) as client, DecisionLoop(client, {"v2", "rebuilt"}) as loop:
            assert client.revision == 2
            raw.set(keys.rev, 1)
            _wait(lambda: client.syncer.stats.snapshot()["rollbacks_refused"] > 0)
            assert client.revision == 2 and client.decide({"host": "shop.example.com"}).upstream == "v2"
            assert "not rolling back" in client.health()["last_error"]
            old_gen = client.generation
            raw.delete(keys.rules, keys.rev, keys.log, keys.meta)
            w = store.put_rule(namespace, split_rule("checkout", "rebuilt"), None, "test")
            assert w.revision == 1 and w.generation != old_gen
            _wait(lambda: client.generation == w.generation)
            assert client.revision == 1 and client.syncer.stats.snapshot()["generation_changes"] == 1
        loop.check()
    finally:
        raw.close()


def test_corrupt_snapshot_is_ignored(cluster, store, namespace, tmp_path, caplog):
    """A truncated snapshot file is detected, logged and ignored; Redis provides the rules."""
    store.put_rule(namespace, split_rule("checkout", "good"), None, "test")
    snap = tmp_path / "snap"
    with make_client(cluster, namespace, snapshot_path=str(snap)) as client:
        assert client.revision == 1
    snap.write_bytes(snap.read_bytes()[:-3])
    with caplog.at_level("WARNING", logger="rulegate.agent.sync"):
        with make_client(cluster, namespace, snapshot_path=str(snap)) as client:
            assert client.revision == 1 and client.health()["source"] == "redis"
    assert any("ignoring snapshot" in r.message and "truncated" in r.message for r in caplog.records)

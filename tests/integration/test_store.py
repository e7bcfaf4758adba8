"""The CAS store against the real 6-node Redis Cluster."""
from __future__ import annotations

import threading

import pytest

from rulegate.errors import (
    AlreadyExistsError,
    ConflictError,
    CorruptDataError,
    NotFoundError,
    StoreError,
)
from rulegate.keyspace import Keys
from rulegate.schema import validate_rule
from rulegate.store import RuleStore, decode_changes

pytestmark = pytest.mark.integration


def make_rule(rule_id: str, upstream: str = "stable") -> dict:
    return validate_rule({"id": rule_id, "kind": "split", "route": {"host": "a.example.com", "path": "/"},
                          "key": {"source": "ip"}, "policies": [], "default": upstream})


def test_concurrent_cas_writers_lose_nothing(store, redis_config, namespace):
    """8 threads x 200 CAS writes to one namespace: every write lands once, revisions 1..N without gaps."""
    writers, per_writer = 8, 200
    done: list[list[int]] = [[] for _ in range(writers)]

    def writer(n: int) -> None:
        own = RuleStore.from_config(redis_config)
        written = 0
        while written < per_writer:
            rev = own.revision(namespace)
            try:
                result = own.put_rule(namespace, make_rule(f"w{n}", f"up-{n}-{written}"), rev, f"writer{n}")
            except ConflictError:
                continue
            done[n].append(result.revision)
            written += 1
        own.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    revisions = sorted(r for revs in done for r in revs)
    total = writers * per_writer
    assert revisions == list(range(1, total + 1))
    assert store.revision(namespace) == total
    log = store.changes_since(namespace, 0, limit=total + 10)
    assert [e.revision for e in log] == list(range(1, total + 1))
    final = store.load(namespace).rules
    for n in range(writers):
        assert final[f"w{n}"]["default"] == f"up-{n}-{per_writer - 1}"


def test_stale_revision_is_refused_with_current(store, namespace):
    """A write with a stale expected revision raises ConflictError carrying the current revision."""
    store.put_rule(namespace, make_rule("r1"), 0, "alice")
    store.put_rule(namespace, make_rule("r1", "v2"), 1, "alice")
    with pytest.raises(ConflictError) as info:
        store.put_rule(namespace, make_rule("r1", "v3"), 1, "bob")
    assert info.value.current == 2
    assert store.load(namespace).rules["r1"]["default"] == "v2"


def test_write_is_acknowledged_by_a_replica(store, namespace):
    """WAIT reports the replica that confirmed the commit."""
    result = store.put_rule(namespace, make_rule("r1"), 0, "alice")
    assert result.replicated and result.replicas_acked >= 1
    assert result.generation


def test_create_only_and_delete_missing(store, namespace):
    """create_only refuses an existing id; deleting a missing id is NotFound; neither bumps rev."""
    store.put_rule(namespace, make_rule("r1"), None, "alice", create_only=True)
    with pytest.raises(AlreadyExistsError):
        store.put_rule(namespace, make_rule("r1"), None, "alice", create_only=True)
    with pytest.raises(NotFoundError):
        store.delete_rule(namespace, "nope", 1, "alice")
    assert store.revision(namespace) == 1


def test_delete_and_log_before_after(store, namespace):
    """The log records before/after of every change, and deletes remove the rule."""
    store.put_rule(namespace, make_rule("r1"), 0, "alice")
    store.delete_rule(namespace, "r1", 1, "bob")
    entries = store.changes_since(namespace, 0)
    assert [(e.revision, e.op, e.actor) for e in entries] == [(1, "put", "alice"), (2, "delete", "bob")]
    assert entries[1].changes[0][1] is not None and entries[1].changes[0][2] is None
    assert decode_changes(entries)[-1] == (2, "r1", None)
    assert store.load(namespace).rules == {}


def test_garbage_rule_bytes_are_a_clear_error(store, namespace):
    """Garbage bytes under a rule key raise CorruptDataError naming the rule, not a crash."""
    store.put_rule(namespace, make_rule("good"), 0, "alice")
    store.client.hset(Keys(namespace).rules, "bad", b"\xc1\xff garbage")
    with pytest.raises(CorruptDataError, match="'bad'"):
        store.load(namespace)
    store.client.hset(Keys(namespace).rules, "bad", b"\x81\xa1x\x01")
    with pytest.raises(CorruptDataError, match="fails validation"):
        store.load(namespace)


def test_gap_too_old_is_detected(redis_config, namespace):
    """When the capped log no longer reaches a revision, changes_since says so (None)."""
    small = RuleStore.from_config(redis_config, log_maxlen=5)
    for rev in range(300):
        small.put_rule(namespace, make_rule("r1", f"v{rev}"), rev, "alice")
    assert small.changes_since(namespace, 300) == []
    assert [e.revision for e in small.changes_since(namespace, 299)] == [300]
    assert small.changes_since(namespace, 1) is None
    small.close()


def test_unreachable_cluster_is_a_store_error(cluster):
    """A store pointed at closed ports fails with StoreError within its budget."""
    from rulegate.connection import RedisConfig
    with pytest.raises(StoreError):
        RuleStore.from_config(RedisConfig.from_nodes(["127.0.0.1:1"], connect_timeout=0.2))

"""Namespace size limits (rules, encoded bytes) and per-rule hash conditions in the commit script (real cluster)."""
from __future__ import annotations

import threading

import pytest

from rulegate.errors import NamespaceLimitError, NotFoundError, RuleConflictError
from rulegate.history import rollback_plan
from rulegate.keyspace import Keys
from rulegate.schema import encode_rule, validate_rule
from rulegate.store import RuleStore, Usage, rule_hash

pytestmark = pytest.mark.integration


def make_rule(rule_id: str, upstream: str = "stable") -> dict:
    return validate_rule({"id": rule_id, "kind": "split", "route": {"host": "a.example.com", "path": "/"},
                          "key": {"source": "ip"}, "policies": [], "default": upstream})


def held(store: RuleStore, ns: str) -> Usage:
    """Return the count and encoded bytes of what the rules hash really holds."""
    raw = store.client.hgetall(Keys(ns).rules)
    return Usage(len(raw), sum(len(k) + len(v) for k, v in raw.items()))


def size_of(*rules: dict) -> int:
    return sum(len(r["id"]) + len(encode_rule(r)) for r in rules)


def snapshot(store: RuleStore, ns: str) -> tuple:
    keys = Keys(ns)
    return (store.client.get(keys.rev), store.client.hgetall(keys.rules), store.client.hgetall(keys.meta),
            store.client.xlen(keys.log))


@pytest.fixture()
def limited(redis_config):
    """A store whose limits are 3 rules and 3 small rules' worth of bytes (+ a little)."""
    s = RuleStore.from_config(redis_config, max_rules=3, max_bytes=size_of(*(make_rule(f"r{i}") for i in range(3))) + 5)
    yield s
    s.close()


def test_byte_limit_refuses_with_sizes_and_writes_nothing(limited, namespace):
    """A write past max_bytes raises NamespaceLimitError with current and after sizes; nothing changes."""
    for i in range(3):
        limited.put_rule(namespace, make_rule(f"r{i}"), None, "alice", create_only=True)
    current = size_of(*(make_rule(f"r{i}") for i in range(3)))
    bigger = make_rule("r0", "a-much-longer-upstream-name")
    before = snapshot(limited, namespace)
    with pytest.raises(NamespaceLimitError) as exc:
        limited.put_rule(namespace, bigger, 3, "alice")
    after = current - size_of(make_rule("r0")) + size_of(bigger)
    assert (exc.value.limit, exc.value.maximum, exc.value.current, exc.value.after) == (
        "bytes", limited.max_bytes, current, after)
    assert str(after) in str(exc.value) and str(limited.max_bytes) in str(exc.value)
    assert snapshot(limited, namespace) == before


def test_rule_count_limit_refuses_and_writes_nothing(limited, namespace):
    """A fourth rule past max_rules=3 is refused naming 3 -> 4; a replace at the limit still works."""
    for i in range(3):
        limited.put_rule(namespace, make_rule(f"r{i}"), None, "alice", create_only=True)
    before = snapshot(limited, namespace)
    with pytest.raises(NamespaceLimitError) as exc:
        limited.put_rule(namespace, make_rule("r3"), None, "alice", create_only=True)
    assert (exc.value.limit, exc.value.maximum, exc.value.current, exc.value.after) == ("rules", 3, 3, 4)
    assert snapshot(limited, namespace) == before
    assert limited.put_rule(namespace, make_rule("r1", "other"), 3, "alice").revision == 4


def test_over_limit_namespace_can_still_shrink(store, limited, namespace):
    """A namespace already past a lowered limit accepts deletes and shrinking edits, refuses growth."""
    big = [make_rule(f"r{i}", "a-long-upstream-name") for i in range(4)]
    store.commit(namespace, [(r["id"], encode_rule(r)) for r in big], None, "bulk", op="import")
    assert limited.put_rule(namespace, make_rule("r0"), 1, "alice").revision == 2
    with pytest.raises(NamespaceLimitError):
        limited.put_rule(namespace, make_rule("r9"), None, "alice", create_only=True)
    assert limited.delete_rule(namespace, "r3", 2, "alice").revision == 3
    assert limited.usage(namespace) == held(limited, namespace)


def test_totals_follow_put_delete_and_rollback(store, namespace):
    """meta rules/bytes equal the real count and size after creates, a replace, a multi-rule commit, a
    delete and a rollback."""
    store.put_rule(namespace, make_rule("a"), None, "alice", create_only=True)
    store.put_rule(namespace, make_rule("b"), None, "alice", create_only=True)
    assert store.usage(namespace) == held(store, namespace) == Usage(2, size_of(make_rule("a"), make_rule("b")))
    store.put_rule(namespace, make_rule("a", "a-longer-name"), 2, "alice")
    assert store.usage(namespace) == held(store, namespace)
    store.commit(namespace, [("b", b""), ("c", encode_rule(make_rule("c")))], 3, "alice", op="put")
    assert store.usage(namespace) == held(store, namespace) == Usage(2, size_of(make_rule("a", "a-longer-name"),
                                                                                  make_rule("c")))
    store.delete_rule(namespace, "c", 4, "alice")
    assert store.usage(namespace) == held(store, namespace)
    current, changes = rollback_plan(store, namespace, 2)
    store.commit(namespace, changes, current, "alice", op="rollback")
    assert store.usage(namespace) == held(store, namespace) == Usage(2, size_of(make_rule("a"), make_rule("b")))


def test_totals_computed_for_a_namespace_written_before_they_existed(store, limited, namespace):
    """A namespace without meta rules/bytes gets them computed from the hash: a refusal reports the true
    current size (and still writes nothing), the next write stores correct totals."""
    for i in range(3):
        store.put_rule(namespace, make_rule(f"r{i}"), None, "alice", create_only=True)
    store.client.hdel(Keys(namespace).meta, "rules", "bytes")
    assert store.usage(namespace) == held(store, namespace)
    before = snapshot(store, namespace)
    with pytest.raises(NamespaceLimitError) as exc:
        limited.put_rule(namespace, make_rule("r3"), None, "alice", create_only=True)
    assert exc.value.current == 3 and snapshot(store, namespace) == before
    store.delete_rule(namespace, "r2", 3, "alice")
    assert store.usage(namespace) == held(store, namespace) == Usage(2, size_of(make_rule("r0"), make_rule("r1")))


def test_totals_recomputed_when_the_hash_was_changed_outside_the_script(store, namespace):
    """When meta `rules` disagrees with HLEN (rules planted directly), the next commit recounts."""
    store.put_rule(namespace, make_rule("a"), None, "alice", create_only=True)
    store.client.hset(Keys(namespace).rules, "planted", encode_rule(make_rule("planted")))
    store.put_rule(namespace, make_rule("b"), None, "alice", create_only=True)
    assert store.usage(namespace) == held(store, namespace) == Usage(3, size_of(*(make_rule(i) for i in "ab"),
                                                                                make_rule("planted")))


def test_rule_hash_lets_different_rules_change_from_a_stale_revision(store, namespace):
    """Two interleaved writers, each conditioned on its own rule's hash, both commit (revisions 3 and 4)
    although the second one's namespace revision is stale; the same rule with a stale hash is refused."""
    a, b = make_rule("a"), make_rule("b")
    store.put_rule(namespace, a, None, "alice", create_only=True)
    store.put_rule(namespace, b, None, "alice", create_only=True)
    hash_a, hash_b = rule_hash(encode_rule(a)), rule_hash(encode_rule(b))
    assert store.put_rule(namespace, make_rule("a", "v2"), None, "alice", expected_hash=hash_a).revision == 3
    assert store.put_rule(namespace, make_rule("b", "v2"), None, "bob", expected_hash=hash_b).revision == 4
    before = snapshot(store, namespace)
    with pytest.raises(RuleConflictError) as exc:
        store.put_rule(namespace, make_rule("a", "v3"), None, "carol", expected_hash=hash_a)
    assert exc.value.current == 4 and exc.value.current_hash == rule_hash(encode_rule(make_rule("a", "v2")))
    with pytest.raises(RuleConflictError):
        store.delete_rule(namespace, "b", None, "carol", expected_hash=hash_b)
    assert snapshot(store, namespace) == before
    assert [e.revision for e in store.changes_since(namespace, 0)] == [1, 2, 3, 4]


def test_star_condition_requires_the_rule_to_exist(store, namespace):
    """"*" replaces or deletes an existing rule; on an absent one it is a RuleConflictError (hash None)."""
    with pytest.raises(RuleConflictError) as exc:
        store.put_rule(namespace, make_rule("a"), None, "alice", expected_hash="*")
    assert exc.value.current_hash is None and store.revision(namespace) == 0
    store.put_rule(namespace, make_rule("a"), None, "alice", create_only=True)
    assert store.put_rule(namespace, make_rule("a", "v2"), None, "alice", expected_hash="*").revision == 2
    assert store.delete_rule(namespace, "a", None, "alice", expected_hash="*").revision == 3
    with pytest.raises(NotFoundError):
        store.delete_rule(namespace, "a", None, "alice")


def test_concurrent_rule_hash_writers_never_conflict(redis_config, store, namespace):
    """8 threads x 40 writes, each to its own rule with its own hash: no refusal, revisions 1..N gap-free,
    every rule ends at its writer's last value."""
    writers, per_writer = 8, 40
    for n in range(writers):
        store.put_rule(namespace, make_rule(f"w{n}", "v-init"), None, "setup", create_only=True)
    refusals: list[int] = []
    revisions: list[int] = []

    def writer(n: int) -> None:
        own = RuleStore.from_config(redis_config)
        current = rule_hash(encode_rule(make_rule(f"w{n}", "v-init")))
        for i in range(per_writer):
            rule = make_rule(f"w{n}", f"v-{n}-{i}")
            try:
                revisions.append(own.put_rule(namespace, rule, None, f"w{n}", expected_hash=current).revision)
            except RuleConflictError:
                refusals.append(n)
                continue
            current = rule_hash(encode_rule(rule))
        own.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert refusals == []
    assert sorted(revisions) == list(range(writers + 1, writers * (per_writer + 1) + 1))
    final = store.load(namespace).rules
    assert {k: v["default"] for k, v in final.items()} == {f"w{n}": f"v-{n}-{per_writer - 1}" for n in range(writers)}
    assert store.usage(namespace) == held(store, namespace)

"""ruleadmin's listings (ruleadmin/listing.py): re-used while the content is the same, brought up to date from the log,
read whole when the content moved any other way; single-rule reads and conditional lists do not read the namespace."""
from __future__ import annotations

import random

import pytest

from ruleadmin.listing import ListingCache
from rulegate.digest import content_digest
from rulegate.keyspace import Keys
from rulegate.schema import encode_rule, validate_rule

from .conftest import split_rule

pytestmark = pytest.mark.integration


def rule(rule_id: str, weight: int = 5000) -> dict:
    return validate_rule(split_rule(rule_id, weight))


def fresh(backend, ns) -> list[dict]:
    state = backend.store.load(ns)
    return [state.rules[k] for k in sorted(state.rules)]


def test_listing_is_reused_then_follows_the_log(backend, ns):
    """Unchanged: the same listing object (no read beyond the version). Random puts and deletes: the log entries
    are applied (no whole read) and the listing equals a fresh read; its compiled set decides like one too."""
    store = backend.store
    store.commit(ns, [(f"r{i:03d}", encode_rule(rule(f"r{i:03d}"))) for i in range(60)], None, "t", op="put")
    cache = ListingCache(store)
    first = cache.get(ns)
    assert cache.loads == 1 and cache.get(ns) is first and cache.hits == 1
    assert first.ruleset().revision == first.revision
    rng = random.Random(5)
    listing = first
    for step in range(25):
        for _ in range(rng.randint(1, 3)):
            rule_id = f"r{rng.randint(0, 80):03d}"
            if rng.random() < 0.3 and rule_id in listing.by_id:
                store.delete_rule(ns, rule_id, None, "t")
            else:
                store.put_rule(ns, rule(rule_id, rng.randint(1, 10000)), None, "t")
        listing = cache.get(ns)
        assert listing.rules == fresh(backend, ns), step
        assert listing.ids == sorted(listing.by_id) and dict(listing.raw.items()) == store.load_raw(ns).raw
        assert listing.digest == content_digest(dict(listing.raw.items()))
    assert cache.loads == 1 and cache.deltas == 25
    assert first.rules == [first.by_id[i] for i in first.ids] and len(first.rules) == 60  # the first: untouched
    assert listing.ruleset() is not first.ruleset() and listing.ruleset().revision == listing.revision


def test_content_moved_without_the_log_is_read_whole(backend, ns):
    """Bytes changed under the same revision (a restore, a split brain's other side): the digest differs, so the
    listing is read whole — same revision is not same content."""
    store = backend.store
    store.put_rule(ns, rule("a"), None, "t")
    cache = ListingCache(store)
    before = cache.get(ns)
    keys = Keys(ns)
    other = encode_rule(rule("a", 1234))
    node = store.client.get_node_from_key(keys.rules)
    redis = store.client.get_redis_connection(node)
    redis.hset(keys.rules, "a", other)
    redis.hset(keys.meta, "digest", content_digest({"a": other}))
    after = cache.get(ns)
    assert after.revision == before.revision and cache.loads == 2
    assert after.by_id["a"]["policies"][0]["buckets"][0]["weight"] == 1234


def test_a_new_generation_or_a_gap_beyond_the_log_reads_whole(backend, ns, monkeypatch):
    store = backend.store
    store.put_rule(ns, rule("a"), None, "t")
    cache = ListingCache(store)
    cache.get(ns)
    monkeypatch.setattr("ruleadmin.listing.MAX_DELTA", 2)
    for weight in (1, 2, 3):
        store.put_rule(ns, rule("a", weight), None, "t")
    assert cache.get(ns).by_id["a"]["policies"][0]["buckets"][0]["weight"] == 3 and cache.loads == 2
    keys = Keys(ns)
    store.client.get_redis_connection(store.client.get_node_from_key(keys.meta)).hset(keys.meta, "gen", "other-gen")
    assert cache.get(ns).generation == "other-gen" and cache.loads == 3


def test_nothing_is_kept_past_the_rule_budget(backend, ns):
    store = backend.store
    store.put_rule(ns, rule("a"), None, "t")
    cache = ListingCache(store, max_rules=0)
    cache.get(ns)
    cache.get(ns)
    assert cache.loads == 2 and cache.hits == 0


def test_reads_through_the_api_do_not_read_the_namespace_whole(client, users, backend, ns, monkeypatch):
    """GET one rule reads that rule; GET rules with a current If-None-Match is a 304; a listed namespace followed by
    a write is brought up to date without a whole read; all answers carry what a whole read gives."""
    store = backend.store
    store.commit(ns, [(f"r{i}", encode_rule(rule(f"r{i}"))) for i in range(5)], None, "t", op="put")
    base = f"/api/v1/namespaces/{ns}"
    viewer = users["viewer"].headers
    listed = client.get(f"{base}/rules", headers=viewer)
    assert listed.status_code == 200 and [r["id"] for r in listed.get_json()["rules"]] == [f"r{i}" for i in range(5)]
    assert listed.get_json()["usage"]["rules"] == 5 and listed.headers["ETag"] == '"1"'

    expected = fresh_rule(backend, ns, "r3")

    def no_whole_read(*_args, **_kwargs):
        raise AssertionError("read the namespace whole")

    monkeypatch.setattr(store, "load_raw", no_whole_read)
    monkeypatch.setattr(store, "load", no_whole_read)
    one = client.get(f"{base}/rules/r3", headers=viewer)
    assert one.status_code == 200 and one.get_json()["rule"] == expected
    assert client.get(f"{base}/rules/nope", headers=viewer).status_code == 404
    same = client.get(f"{base}/rules", headers={**viewer, "If-None-Match": listed.headers["ETag"]})
    assert same.status_code == 304 and same.headers["ETag"] == '"1"' and same.data == b""
    store.put_rule(ns, rule("r9", 77), None, "t")
    moved = client.get(f"{base}/rules", headers={**viewer, "If-None-Match": listed.headers["ETag"]})
    assert moved.status_code == 200 and moved.headers["ETag"] == '"2"'
    assert [r["id"] for r in moved.get_json()["rules"]] == [f"r{i}" for i in range(5)] + ["r9"]
    page = client.get(f"{base}/rules?limit=2&cursor=r1", headers=viewer).get_json()
    assert [r["id"] for r in page["rules"]] == ["r2", "r3"] and page["matched"] == 6 and page["next_cursor"] == "r3"
    sim = client.post(f"{base}/simulate", headers=viewer,
                      json={"request": {"host": "shop.example.com", "path": "/", "headers": {"x-uid": "1"}}})
    assert sim.status_code == 200 and sim.get_json()["revision"] == 2
    monkeypatch.undo()
    assert moved.get_json()["rules"] == fresh(backend, ns)


def fresh_rule(backend, ns, rule_id):
    return backend.store.load(ns).rules[rule_id]


def test_fleet_view_reads_the_listing_and_survives_a_rule_that_does_not_decode(client, users, backend, ns):
    """The fleet view takes its rules from the listing (no whole read while the namespace is unchanged); with a
    rule that does not decode it still answers, from what decodes."""
    store = backend.store
    store.put_rule(ns, rule("a"), None, "t")
    url = f"/api/v1/namespaces/{ns}/fleet"
    first = client.get(url, headers=users["viewer"].headers)
    assert first.status_code == 200 and first.get_json()["revision"] == 1
    loads = backend.rules.listings.loads
    assert client.get(url, headers=users["viewer"].headers).status_code == 200
    assert backend.rules.listings.loads == loads
    keys = Keys(ns)
    redis = store.client.get_redis_connection(store.client.get_node_from_key(keys.rules))
    redis.hset(keys.rules, "broken", b"\xc1 not msgpack")
    redis.hset(keys.meta, "digest", "f" * 40)
    broken = client.get(url, headers=users["viewer"].headers)
    assert broken.status_code == 200 and broken.get_json()["digest"] == "f" * 40


def test_rules_json_follows_deltas_by_re_encoding_only_changed_rules(backend, ns, monkeypatch):
    """A listing made from deltas whose parent had its JSON encodes only the changed rules; the JSON equals the
    rules (order, content) after puts and deletes."""
    import json

    from ruleadmin import listing as listing_module

    store = backend.store
    store.commit(ns, [(f"r{i:03d}", encode_rule(rule(f"r{i:03d}"))) for i in range(50)], None, "t", op="put")
    cache = ListingCache(store)
    first = cache.get(ns)
    assert json.loads(first.rules_json()) == first.rules
    encoded = []
    real = listing_module._json

    def counting(value):
        encoded.append(value)
        return real(value)

    monkeypatch.setattr(listing_module, "_json", counting)
    store.put_rule(ns, rule("r007", 42), None, "t")
    store.delete_rule(ns, "r010", None, "t")
    store.put_rule(ns, rule("r999"), None, "t")
    second = cache.get(ns)
    assert json.loads(second.rules_json()) == second.rules == fresh(backend, ns)
    assert len(encoded) == 2  # r007 and r999; r010 dropped
    store.put_rule(ns, rule("r001", 7), None, "t")
    third = cache.get(ns)
    assert json.loads(third.rules_json()) == third.rules == fresh(backend, ns) and len(encoded) == 3


def test_concurrent_readers_of_a_changed_namespace_read_it_once(backend, ns):
    """Readers that find the same namespace out of date at once wait for the first one's whole read instead of
    each reading and decoding it (a new generation at 20,000 rules is ~0.5 s a read)."""
    import threading
    import time as time_module

    store = backend.store
    store.commit(ns, [(f"r{i:03d}", encode_rule(rule(f"r{i:03d}"))) for i in range(40)], None, "t", op="put")

    def slow_pause():
        return lambda: time_module.sleep(0.002)  # ~80 ms a whole read of 40 rules: a window for the others

    cache = ListingCache(store, pause=slow_pause)
    got, start = [], threading.Barrier(4)

    def reader():
        start.wait()
        got.append(cache.get(ns))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 4 and cache.loads == 1 and all(g is got[0] for g in got)

"""Rule writes whose If-Match pins rule bytes the instance holds (KnownRules): one round trip, same outcomes."""
from __future__ import annotations

import uuid

import pytest
import redis.connection

from ruleadmin import create_app
from ruleadmin.known_rules import ENTRY_OVERHEAD, KnownRules
from rulegate.keyspace import NAMESPACES_KEY, Keys
from rulegate.schema import encode_rule
from rulegate.store import RuleStore, rule_hash

from .conftest import split_rule

pytestmark = pytest.mark.integration


def _url(ns: str, rule_id: str) -> str:
    return f"/api/v1/namespaces/{ns}/rules/{rule_id}"


def test_held_bytes_are_pinned_by_their_revision_or_hash_within_the_byte_budget():
    """pinned() answers only for the held revision or hash; forget() drops; the least recent entry leaves first."""
    known = KnownRules(max_bytes=2 * (ENTRY_OVERHEAD + 3))
    known.remember("ns", "a", 7, b"aaa")
    assert known.pinned("ns", "a", 7, None).raw == b"aaa"
    assert known.pinned("ns", "a", None, rule_hash(b"aaa")).revision == 7
    assert known.pinned("ns", "a", 8, None) is None and known.pinned("ns", "a", None, rule_hash(b"x")) is None
    assert known.pinned("ns", "a", None, None) is None and known.pinned("other", "a", 7, None) is None
    known.remember("ns", "b", 7, b"bbb")
    known.remember("ns", "c", 7, b"ccc")
    assert known.pinned("ns", "a", 7, None) is None and known.pinned("ns", "c", 7, None) is not None
    known.forget("ns", "c")
    known.remember("ns", "b", 9, None)  # read as absent
    assert known.pinned("ns", "c", 7, None) is None and known.pinned("ns", "b", 7, None) is None


@pytest.fixture()
def quiet_app(admin_config):
    """An app whose known-upstreams cache does not expire during a test (so reads are only the write's own)."""
    application = create_app({**admin_config, "UPSTREAMS_CACHE_SECONDS": 3600})
    yield application
    application.extensions["ruleadmin"].close()


def _round_trips(monkeypatch, call) -> tuple[int, object]:
    """Return (Redis commands or pipelines sent, call's answer)."""
    sent = []
    original = redis.connection.AbstractConnection.send_packed_command
    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command",
                        lambda self, *a, **k: sent.append(1) or original(self, *a, **k))
    answer = call()
    monkeypatch.undo()
    return len(sent), answer


def test_a_put_with_a_held_etag_or_revision_is_one_round_trip(quiet_app, users, monkeypatch):
    """After the instance wrote a rule, replacing it with If-Match (its ETag, or the revision) sends only the
    commit + WAIT; the namespace check and the no-op-save read are not repeated."""
    ns = "t" + uuid.uuid4().hex[:12]
    quiet_app.extensions["ruleadmin"].rules.create_namespace(ns)
    client, headers = quiet_app.test_client(), users["editor"].headers
    created = client.put(_url(ns, "web"), json=split_rule("web"), headers=headers)
    assert created.status_code == 201
    trips, by_etag = _round_trips(monkeypatch, lambda: client.put(
        _url(ns, "web"), json=split_rule("web", 10), headers={**headers, "If-Match": created.get_json()["etag"]}))
    assert (trips, by_etag.status_code, by_etag.get_json()["revision"]) == (1, 200, 2)
    trips, by_rev = _round_trips(monkeypatch, lambda: client.put(
        _url(ns, "web"), json=split_rule("web", 20), headers={**headers, "If-Match": '"2"'}))
    assert (trips, by_rev.status_code, by_rev.get_json()["revision"]) == (1, 200, 3)


def test_held_bytes_never_hide_another_instance_write(app, admin_config, users, ns):
    """Instance A wrote the rule; instance B changed it; A still answers 412 to both stale If-Match forms."""
    client, headers = app.test_client(), users["editor"].headers
    first = client.put(_url(ns, "web"), json=split_rule("web"), headers=headers).get_json()
    other = create_app(admin_config)
    try:
        r = other.test_client().put(_url(ns, "web"), json=split_rule("web", 7), headers={**headers, "If-Match": '"1"'})
        assert r.status_code == 200
    finally:
        other.extensions["ruleadmin"].close()
    stale_rev = client.put(_url(ns, "web"), json=split_rule("web", 8), headers={**headers, "If-Match": '"1"'})
    stale_tag = client.put(_url(ns, "web"), json=split_rule("web", 9), headers={**headers, "If-Match": first["etag"]})
    assert (stale_rev.status_code, stale_rev.get_json()["current_revision"]) == (412, 2)
    assert (stale_tag.status_code, stale_tag.get_json()["current_etag"]) == (412, r.get_json()["etag"])


def test_held_bytes_unlike_the_stored_ones_fall_back_to_the_read(app, backend, users, ns):
    """Stored bytes rewritten without a new revision (damaged keys): a revision If-Match whose held bytes no longer
    match is decided by the read, as before: saving what is stored is a no-op, not a 412."""
    client, headers = app.test_client(), users["editor"].headers
    assert client.put(_url(ns, "web"), json=split_rule("web"), headers=headers).status_code == 201
    stored = backend.rules.prepare(split_rule("web", 42), "someone")
    backend.store.client.hset(Keys(ns).rules, "web", encode_rule(stored))
    r = client.put(_url(ns, "web"), json=split_rule("web", 42), headers={**headers, "If-Match": '"1"'})
    assert (r.status_code, r.get_json()["unchanged"], r.get_json()["revision"]) == (200, True, 1)


def test_a_store_registers_a_namespace_with_its_first_commit_only(admin_config, backend):
    """The first commit to a namespace adds it to rg:namespaces; later commits of that store do not repeat the
    SADD (namespaces are never removed)."""
    ns = "t" + uuid.uuid4().hex[:12]
    store = RuleStore(backend.store.client)
    store.put_rule(ns, backend.rules.prepare(split_rule("web"), "x"), None, "x", create_only=True)
    assert store.client.sismember(NAMESPACES_KEY, ns)
    store.client.srem(NAMESPACES_KEY, ns)
    store.put_rule(ns, backend.rules.prepare(split_rule("web", 1), "x"), 1, "x")
    assert not store.client.sismember(NAMESPACES_KEY, ns)
    store.client.sadd(NAMESPACES_KEY, ns)

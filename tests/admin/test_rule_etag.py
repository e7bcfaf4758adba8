"""Per-rule ETags on the REST API, and namespace size limits as 413s, on the real cluster."""
from __future__ import annotations

import hashlib

import pytest

from ruleadmin import create_app
from rulegate.keyspace import Keys

from .conftest import split_rule

pytestmark = pytest.mark.integration


def _url(ns: str, rule_id: str) -> str:
    return f"/api/v1/namespaces/{ns}/rules/{rule_id}"


def _put(client, users, ns, rule, etag=None):
    headers = dict(users["editor"].headers)
    if etag is not None:
        headers["If-Match"] = etag
    return client.put(_url(ns, rule["id"]), json=rule, headers=headers)


def _etag(client, users, ns, rule_id) -> str:
    r = client.get(_url(ns, rule_id), headers=users["viewer"].headers)
    assert r.status_code == 200, r.get_json()
    return r.headers["ETag"]


def test_get_rule_etag_is_the_sha1_of_the_stored_bytes(client, users, ns, backend):
    """GET of a rule answers ETag "r-<sha1 of the stored bytes>", also as `etag` in the body."""
    _put(client, users, ns, split_rule("web"))
    raw = backend.store.client.hget(Keys(ns).rules, "web")
    r = client.get(_url(ns, "web"), headers=users["viewer"].headers)
    assert r.headers["ETag"] == f'"r-{hashlib.sha1(raw).hexdigest()}"' == r.get_json()["etag"]
    assert r.get_json()["revision"] == 1


def test_interleaved_edits_of_different_rules_both_succeed(client, users, ns):
    """Two clients read rules a and b at revision 2, then each writes its rule with that rule's ETag: both
    succeed (revisions 3 and 4), though the second one's namespace revision is stale by then."""
    _put(client, users, ns, split_rule("a"))
    _put(client, users, ns, split_rule("b"))
    etag_a, etag_b = _etag(client, users, ns, "a"), _etag(client, users, ns, "b")
    first = _put(client, users, ns, split_rule("a", 100), etag_a)
    second = _put(client, users, ns, split_rule("b", 200), etag_b)
    assert (first.status_code, second.status_code) == (200, 200), (first.get_json(), second.get_json())
    assert (first.get_json()["revision"], second.get_json()["revision"]) == (3, 4)
    assert _put(client, users, ns, split_rule("b", 300), '"2"').status_code == 412  # the revision form still checks
    assert second.get_json()["etag"] == _etag(client, users, ns, "b")
    listed = client.get(f"/api/v1/namespaces/{ns}/rules", headers=users["viewer"].headers).get_json()["rules"]
    weights = {r["id"]: r["policies"][0]["buckets"][0]["weight"] for r in listed}
    assert weights == {"a": 100, "b": 200}


def test_same_rule_with_a_stale_etag_is_412_and_writes_nothing(client, users, ns, watch):
    """A second edit of the same rule with the ETag read before the first one gets 412 naming the current
    ETag; Redis is unchanged."""
    _put(client, users, ns, split_rule("a"))
    stale = _etag(client, users, ns, "a")
    assert _put(client, users, ns, split_rule("a", 100), stale).status_code == 200
    current = _etag(client, users, ns, "a")
    before = watch.before()
    r = _put(client, users, ns, split_rule("a", 200), stale)
    assert r.status_code == 412 and r.headers["ETag"] == current == r.get_json()["current_etag"]
    assert r.get_json()["current_revision"] == 2 and "If-Match" in r.get_json()["fields"]
    d = client.delete(_url(ns, "a"), headers={**users["editor"].headers, "If-Match": stale})
    assert d.status_code == 412
    assert watch.unchanged_since(before)


def test_delete_with_the_rule_etag(client, users, ns):
    """DELETE with the rule's current ETag deletes it; the rule is gone."""
    _put(client, users, ns, split_rule("a"))
    r = client.delete(_url(ns, "a"), headers={**users["editor"].headers, "If-Match": _etag(client, users, ns, "a")})
    assert r.status_code == 200 and r.get_json()["revision"] == 2
    assert client.get(_url(ns, "a"), headers=users["viewer"].headers).status_code == 404


def test_if_match_star_replaces_only_an_existing_rule(client, users, ns):
    """If-Match: * on an absent rule is 412 with no current ETag; on an existing one it replaces (200)."""
    r = _put(client, users, ns, split_rule("a"), "*")
    assert r.status_code == 412 and r.get_json()["current_etag"] is None
    _put(client, users, ns, split_rule("a"))
    assert _put(client, users, ns, split_rule("a", 100), "*").status_code == 200


@pytest.mark.parametrize("value", ['W/"r-' + "a" * 40 + '"', '"r-' + "a" * 39 + '"', '"r-xyz"', "r-", '"1", "2"'])
def test_malformed_if_match_is_400_naming_both_forms(client, users, ns, value):
    """A malformed rule ETag (weak, short, not hex) is a 400 on If-Match that names every accepted form."""
    r = _put(client, users, ns, split_rule("a"), value)
    assert r.status_code == 400 and "r-<40 hex digits>" in r.get_json()["fields"]["If-Match"]


@pytest.fixture(scope="module")
def small_app(admin_config):
    """An app whose namespaces hold at most 2 rules and 1024 encoded bytes."""
    application = create_app({**admin_config, "NAMESPACE_MAX_RULES": 2, "NAMESPACE_MAX_BYTES": 1024})
    yield application
    application.extensions["ruleadmin"].close()


def test_byte_limit_is_413_naming_the_sizes_and_writes_nothing(small_app, users, ns, watch, backend):
    """A rule that takes the namespace past NAMESPACE_MAX_BYTES is a 413 with limit, maximum, current and
    after; nothing is written."""
    client = small_app.test_client()
    assert _put(client, users, ns, split_rule("a")).status_code == 201
    current = sum(len(k) + len(v) for k, v in backend.store.client.hgetall(Keys(ns).rules).items())
    big = {**split_rule("b"), "description": "x" * 900}
    before = watch.before()
    r = _put(client, users, ns, big)
    body = r.get_json()
    assert r.status_code == 413, body
    assert (body["limit"], body["setting"], body["maximum"], body["current"]) == (
        "bytes", "RULEADMIN_NAMESPACE_MAX_BYTES", 1024, current)
    assert body["after"] > 1024 and "namespace" in body["fields"]
    assert watch.unchanged_since(before)


def test_rule_count_limit_is_413_and_writes_nothing(small_app, users, ns, watch):
    """A third rule past NAMESPACE_MAX_RULES=2 is a 413 naming 2 -> 3; nothing is written."""
    client = small_app.test_client()
    for rule_id in ("a", "b"):
        assert _put(client, users, ns, split_rule(rule_id)).status_code == 201
    before = watch.before()
    r = _put(client, users, ns, split_rule("c"))
    body = r.get_json()
    assert r.status_code == 413
    assert (body["limit"], body["maximum"], body["current"], body["after"]) == ("rules", 2, 2, 3)
    assert watch.unchanged_since(before)


def test_rule_list_reports_usage_against_the_limits(small_app, users, ns, backend):
    """GET rules carries usage: the rule count and encoded bytes held, and the configured maxima."""
    client = small_app.test_client()
    _put(client, users, ns, split_rule("a"))
    held = sum(len(k) + len(v) for k, v in backend.store.client.hgetall(Keys(ns).rules).items())
    usage = client.get(f"/api/v1/namespaces/{ns}/rules", headers=users["viewer"].headers).get_json()["usage"]
    assert usage == {"rules": 1, "bytes": held, "max_rules": 2, "max_bytes": 1024}

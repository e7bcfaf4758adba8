"""REST API behaviour on the real cluster through the in-process app."""
from __future__ import annotations

import pytest

from .conftest import degrade_rule, split_rule

pytestmark = pytest.mark.integration


def _put(client, users, ns, rule, etag=None, role="editor"):
    headers = dict(users[role].headers)
    if etag is not None:
        headers["If-Match"] = etag
    return client.put(f"/api/v1/namespaces/{ns}/rules/{rule['id']}", json=rule, headers=headers)


def test_create_then_get_returns_rule_and_etag(client, users, ns):
    """A created rule is readable; the write's ETag is the namespace revision, the read's the rule's own."""
    r = _put(client, users, ns, split_rule("web"))
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["revision"] == 1 and body["replicated"] is True and r.headers["ETag"] == '"1"'
    assert body["rule"]["updated_by"] == users["editor"].username
    g = client.get(f"/api/v1/namespaces/{ns}/rules/web", headers=users["viewer"].headers)
    assert g.status_code == 200 and g.headers["ETag"] == g.get_json()["etag"] == body["etag"]
    assert g.headers["ETag"].startswith('"r-')
    assert g.get_json()["revision"] == 1
    assert g.get_json()["rule"]["policies"][0]["buckets"][0]["weight"] == 5000


def test_replace_without_if_match_is_428(client, users, ns):
    """Replacing an existing rule without If-Match is refused with 428."""
    _put(client, users, ns, split_rule("web"))
    r = _put(client, users, ns, split_rule("web", 100))
    assert r.status_code == 428 and "If-Match" in r.get_json()["fields"]


def test_stale_if_match_is_412_with_current_revision(client, users, ns):
    """A write based on an old revision gets 412 and the current revision."""
    _put(client, users, ns, split_rule("web"))
    assert _put(client, users, ns, split_rule("web", 100), '"1"').status_code == 200
    r = _put(client, users, ns, split_rule("web", 200), '"1"')
    assert r.status_code == 412
    assert r.get_json()["current_revision"] == 2 and r.headers["ETag"] == '"2"'


def test_delete_requires_if_match(client, users, ns):
    """DELETE without If-Match is 428; with the right one it deletes."""
    _put(client, users, ns, degrade_rule("shed"))
    url = f"/api/v1/namespaces/{ns}/rules/shed"
    assert client.delete(url, headers=users["editor"].headers).status_code == 428
    r = client.delete(url, headers={**users["editor"].headers, "If-Match": '"1"'})
    assert r.status_code == 200 and r.get_json()["revision"] == 2
    assert client.get(url, headers=users["viewer"].headers).status_code == 404


def test_invalid_rule_lists_field_errors_and_writes_nothing(client, users, ns, backend):
    """A bad weight and an unknown field come back as field errors; the revision stays 0."""
    rule = split_rule("web", weight=0)
    rule["colour"] = "red"
    r = _put(client, users, ns, rule)
    assert r.status_code == 400
    fields = r.get_json()["fields"]
    assert fields["policies[0].buckets[0].weight"] == "must be > 0" and fields["colour"] == "unknown field"
    assert backend.store.revision(ns) == 0


def test_history_shows_actor_and_before_after(client, users, ns):
    """History lists each change newest first with actor and before/after."""
    _put(client, users, ns, split_rule("web"))
    _put(client, users, ns, split_rule("web", 100), '"1"')
    h = client.get(f"/api/v1/namespaces/{ns}/history?limit=10", headers=users["viewer"].headers).get_json()
    revs = [e["revision"] for e in h["entries"]]
    assert revs == [2, 1]
    newest = h["entries"][0]
    assert newest["actor"] == users["editor"].username and newest["op"] == "put"
    change = newest["changes"][0]
    assert change["before"]["policies"][0]["buckets"][0]["weight"] == 5000
    assert change["after"]["policies"][0]["buckets"][0]["weight"] == 100
    since = client.get(f"/api/v1/namespaces/{ns}/history?since=1", headers=users["viewer"].headers)
    assert [e["revision"] for e in since.get_json()["entries"]] == [2]


def test_rollback_restores_older_rule_set(client, users, ns):
    """Rollback to N commits a new revision whose rules equal those of N."""
    _put(client, users, ns, split_rule("web"))
    _put(client, users, ns, degrade_rule("shed"), '"1"')
    _put(client, users, ns, split_rule("web", 100), '"2"')
    r = client.post(f"/api/v1/namespaces/{ns}/rollback", json={"to_rev": 1},
                    headers={**users["editor"].headers, "If-Match": '"3"'})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["revision"] == 4 and r.get_json()["changed_rules"] == 2
    rules = client.get(f"/api/v1/namespaces/{ns}/rules", headers=users["viewer"].headers).get_json()["rules"]
    assert [x["id"] for x in rules] == ["web"]
    assert rules[0]["policies"][0]["buckets"][0]["weight"] == 5000
    h = client.get(f"/api/v1/namespaces/{ns}/history?limit=1", headers=users["viewer"].headers).get_json()
    assert h["entries"][0]["op"] == "rollback"


def test_rollback_to_a_future_revision_is_404(client, users, ns):
    """Rolling back to a non-existent revision is refused with a field error (the current one: see
    test_guarded_actions, it commits nothing)."""
    _put(client, users, ns, split_rule("web"))
    r = client.post(f"/api/v1/namespaces/{ns}/rollback", json={"to_rev": 7},
                    headers={**users["editor"].headers, "If-Match": '"1"'})
    assert r.status_code == 404 and "to_rev" in r.get_json()["fields"]


def test_rollback_refuses_when_log_was_trimmed(client, users, ns, backend):
    """When the log no longer reaches N the rollback says so instead of guessing."""
    _put(client, users, ns, split_rule("web"))
    _put(client, users, ns, split_rule("web", 100), '"1"')
    _put(client, users, ns, split_rule("web", 200), '"2"')
    from rulegate.keyspace import Keys
    backend.store.client.xtrim(Keys(ns).log, minid="3-0", approximate=False)
    r = client.post(f"/api/v1/namespaces/{ns}/rollback", json={"to_rev": 1},
                    headers={**users["editor"].headers, "If-Match": '"3"'})
    assert r.status_code == 404 and "no longer reaches" in r.get_json()["error"]


def test_simulate_returns_the_gateway_decision(client, users, ns):
    """Simulate answers what the evaluator decides at the current revision."""
    _put(client, users, ns, degrade_rule("shed"))
    r = client.post(f"/api/v1/namespaces/{ns}/simulate", headers=users["viewer"].headers,
                    json={"request": {"host": "shop.example.com", "path": "/checkout/pay"}})
    assert r.status_code == 200
    d = r.get_json()["decision"]
    assert d["action"] == "respond" and d["status"] == 503 and d["rule_id"] == "shed" and d["revision"] == 1


def test_unknown_namespace_is_404_and_bad_names_400(client, users):
    """Writes to a namespace nobody created are 404; malformed names are 400 with field errors."""
    r = _put(client, users, "nobody-made-this", split_rule("web"))
    assert r.status_code == 404 and "namespace" in r.get_json()["fields"]
    r = client.put("/api/v1/namespaces/Bad_NS/rules/UPPER", json=split_rule("x"), headers=users["editor"].headers)
    assert r.status_code == 400 and set(r.get_json()["fields"]) == {"namespace", "id"}


def test_wrong_content_type_and_huge_body(client, users, ns, backend):
    """Non-JSON bodies get 415 and bodies over the limit get 413; nothing is written."""
    url = f"/api/v1/namespaces/{ns}/rules/web"
    r = client.put(url, data="id=web", content_type="application/x-www-form-urlencoded",
                   headers=users["editor"].headers)
    assert r.status_code == 415 and r.get_json()["fields"]
    big = split_rule("web")
    big["description"] = "x" * 400_000
    assert client.put(url, json=big, headers=users["editor"].headers).status_code == 413
    assert client.put(url, data="{nope", content_type="application/json",
                      headers=users["editor"].headers).status_code == 400
    assert backend.store.revision(ns) == 0


def test_healthz_and_metrics(client):
    """healthz reports the cluster state; metrics is Prometheus text."""
    h = client.get("/healthz")
    assert h.status_code == 200 and h.get_json()["cluster_state"] == "ok"
    m = client.get("/metrics")
    assert m.status_code == 200 and b"ruleadmin_http_requests_total" in m.data


def test_redis_unreachable_is_503_json(admin_config, users):
    """With no reachable Redis, the API and healthz answer 503 JSON (no traceback) and login pages still render."""
    from ruleadmin import create_app
    app = create_app({**admin_config, "REDIS_NODES": "127.0.0.1:1", "REDIS_MODE": "single"})
    c = app.test_client()
    r = c.get("/api/v1/namespaces", headers=users["viewer"].headers)
    assert r.status_code == 503 and r.get_json()["error"] == "rule store unavailable; retry later"
    assert "127.0.0.1" not in r.get_data(as_text=True), "no internal addresses in answers"
    assert c.get("/healthz").status_code == 503
    assert c.get("/login").status_code == 200
    app.extensions["ruleadmin"].close()

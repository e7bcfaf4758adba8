"""Idempotency-Key on the mutating REST calls, on the real cluster (in-process app and real gunicorn)."""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests

from ruleadmin.openapi import document
from rulegate.errors import StoreError

from .conftest import split_rule

pytestmark = pytest.mark.integration

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
READ_ONLY_POSTS = {"api.simulate"}
# a password reset's body is the secret: not even its sha256 is kept in a replay record (docs/api.md)
SECRET_BODY = {"api.accounts.reset_password"}


def _key() -> str:
    return str(uuid.uuid4())


def _put(client, principal, ns, rule, key=None, etag=None):
    headers = dict(principal.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    if etag is not None:
        headers["If-Match"] = etag
    return client.put(f"/api/v1/namespaces/{ns}/rules/{rule['id']}", json=rule, headers=headers)


def test_retry_replays_status_etag_body_and_writes_nothing(client, users, ns, backend):
    """A retry with the same key gets the original 201, ETag and body, marked replayed; the revision stays 1."""
    key = _key()
    first = _put(client, users["editor"], ns, split_rule("web"), key)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = _put(client, users["editor"], ns, split_rule("web"), key)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["ETag"] == first.headers["ETag"] == '"1"'
    assert again.get_json() == first.get_json() and again.content_type == first.content_type
    assert backend.store.revision(ns) == 1


def test_json_key_order_does_not_change_the_fingerprint(client, users, ns, backend):
    """The same JSON with keys in another order and other spacing is the same request."""
    key = _key()
    assert _put(client, users["editor"], ns, split_rule("web"), key).status_code == 201
    body = json.dumps(dict(reversed(list(split_rule("web").items()))), indent=2)
    r = client.put(f"/api/v1/namespaces/{ns}/rules/web", data=body, content_type="application/json",
                   headers={**users["editor"].headers, "Idempotency-Key": key})
    assert r.status_code == 201 and r.headers["Idempotent-Replayed"] == "true"
    assert backend.store.revision(ns) == 1


@pytest.mark.parametrize("change", ["body", "path", "method"])
def test_same_key_different_request_is_422(client, users, ns, backend, change):
    """Reusing a key for a different body, path or method is 422 naming the header; nothing is written."""
    key = _key()
    assert _put(client, users["editor"], ns, split_rule("web"), key).status_code == 201
    if change == "body":
        r = _put(client, users["editor"], ns, split_rule("web", 100), key, etag='"1"')
    elif change == "path":
        r = _put(client, users["editor"], ns, split_rule("other"), key)
    else:
        r = client.delete(f"/api/v1/namespaces/{ns}/rules/web",
                          headers={**users["editor"].headers, "Idempotency-Key": key, "If-Match": '"1"'})
    assert r.status_code == 422, r.get_json()
    assert "Idempotency-Key" in r.get_json()["fields"]
    assert backend.store.revision(ns) == 1


def test_keys_are_per_user(client, users, ns, backend):
    """Another user's identical key is independent: a different request with it is executed, not refused."""
    key = _key()
    assert _put(client, users["editor"], ns, split_rule("web"), key).status_code == 201
    r = _put(client, users["admin"], ns, split_rule("other"), key)
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    assert backend.store.revision(ns) == 2


@pytest.mark.parametrize("value", ["", "x" * 256, "caf\xe9", "tab\there"])
def test_invalid_key_is_400(client, users, ns, backend, value):
    """A key that is empty, too long or not printable ASCII is 400 naming the header."""
    r = _put(client, users["editor"], ns, split_rule("web"), value)
    assert r.status_code == 400 and "Idempotency-Key" in r.get_json()["fields"]
    assert backend.store.revision(ns) == 0


def test_without_header_behaves_as_before(client, users, ns, backend):
    """Without the header a repeated create is executed again (428), not replayed."""
    assert _put(client, users["editor"], ns, split_rule("web")).status_code == 201
    r = _put(client, users["editor"], ns, split_rule("web"))
    assert r.status_code == 428 and "Idempotent-Replayed" not in r.headers
    assert backend.store.revision(ns) == 1


def test_a_4xx_answer_is_replayed(client, users, ns, backend):
    """A stale If-Match answered 412 stays 412 on retry, even after the revision moved again."""
    _put(client, users["editor"], ns, split_rule("web"))
    _put(client, users["editor"], ns, split_rule("web", 100), etag='"1"')
    key = _key()
    first = _put(client, users["editor"], ns, split_rule("web", 200), key, etag='"1"')
    assert first.status_code == 412
    _put(client, users["editor"], ns, split_rule("web", 300), etag='"2"')
    again = _put(client, users["editor"], ns, split_rule("web", 200), key, etag='"1"')
    assert again.status_code == 412 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json() and again.headers["ETag"] == '"2"'


def test_a_5xx_answer_releases_the_key(client, users, ns, backend, monkeypatch):
    """When the write fails with 503 the key is released: the retry executes and succeeds."""
    key = _key()

    def unavailable(*args, **kwargs):
        raise StoreError("redis: ConnectionError")

    with monkeypatch.context() as m:
        m.setattr(backend.rules, "put_rule", unavailable)
        assert _put(client, users["editor"], ns, split_rule("web"), key).status_code == 503
    r = _put(client, users["editor"], ns, split_rule("web"), key)
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    assert backend.store.revision(ns) == 1


def test_concurrent_duplicate_is_409_or_replay(client, users, ns, backend, monkeypatch):
    """A duplicate arriving while the first request runs gets 409 (retry later); only one revision is written."""
    key = _key()
    started, release = threading.Event(), threading.Event()
    real_put = backend.rules.put_rule

    def slow_put(*args, **kwargs):
        started.set()
        release.wait(5)
        return real_put(*args, **kwargs)

    monkeypatch.setattr(backend.rules, "put_rule", slow_put)
    results = {}
    first = threading.Thread(target=lambda: results.update(
        first=_put(client.application.test_client(), users["editor"], ns, split_rule("web"), key)))
    first.start()
    assert started.wait(5)
    dup = _put(client, users["editor"], ns, split_rule("web"), key)
    release.set()
    first.join(10)
    assert dup.status_code == 409 and dup.headers["Retry-After"] == "1"
    assert "Idempotency-Key" in dup.get_json()["fields"]
    assert results["first"].status_code == 201
    monkeypatch.undo()
    again = _put(client, users["editor"], ns, split_rule("web"), key)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert backend.store.revision(ns) == 1


def test_racing_duplicates_on_two_instances_write_once(servers, users, ns, backend):
    """Identical requests with one key raced on both gunicorn instances: one revision; the rest 409 or replay."""
    key, url = _key(), f"/api/v1/namespaces/{ns}/rules/web"
    barrier = threading.Barrier(6)
    answers: list[requests.Response] = []

    def send(server):
        barrier.wait()
        answers.append(requests.put(server.url + url, json=split_rule("web"), timeout=10,
                                    headers={**users["editor"].headers, "Idempotency-Key": key}))

    threads = [threading.Thread(target=send, args=(servers[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    executed = [r for r in answers if r.status_code == 201 and "Idempotent-Replayed" not in r.headers]
    assert len(executed) == 1
    assert all(r.status_code == 409 or r.headers.get("Idempotent-Replayed") == "true" for r in answers
               if r is not executed[0])
    assert backend.store.revision(ns) == 1


def test_dropped_first_reply_retry_gets_original_answer(servers, users, ns, backend):
    """A PUT whose reply is never read (connection closed) then retried with the same key: one revision, original 201."""
    key = _key()
    body = json.dumps(split_rule("web")).encode()
    target = urlsplit(servers[0].url)
    head = (f"PUT /api/v1/namespaces/{ns}/rules/web HTTP/1.1\r\nHost: {target.netloc}\r\n"
            f"Authorization: Bearer {users['editor'].token}\r\nContent-Type: application/json\r\n"
            f"Idempotency-Key: {key}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((target.hostname, target.port), timeout=5) as sock:
        sock.sendall(head + body)
    deadline = time.monotonic() + 10
    while backend.store.revision(ns) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.store.revision(ns) == 1
    while True:
        retry = requests.put(f"{servers[1].url}/api/v1/namespaces/{ns}/rules/web", json=split_rule("web"),
                             headers={**users["editor"].headers, "Idempotency-Key": key}, timeout=5)
        if retry.status_code != 409 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.headers["ETag"] == '"1"' and retry.json()["revision"] == 1
    assert retry.json()["rule"]["updated_by"] == users["editor"].username
    assert backend.store.revision(ns) == 1


def test_create_namespace_replay_keeps_201(client, users):
    """Replaying a namespace creation answers the original 201 (created), not 200 (already existed)."""
    key, name = _key(), "t" + uuid.uuid4().hex[:12]
    headers = {**users["admin"].headers, "Idempotency-Key": key}
    assert client.post("/api/v1/namespaces", json={"name": name}, headers=headers).status_code == 201
    r = client.post("/api/v1/namespaces", json={"name": name}, headers=headers)
    assert r.status_code == 201 and r.get_json() == {"name": name, "created": True}
    assert r.headers["Idempotent-Replayed"] == "true"


def test_rollback_replay_writes_one_revision(client, users, ns, backend):
    """A replayed rollback returns the same new revision and commits nothing more."""
    _put(client, users["editor"], ns, split_rule("web"))
    _put(client, users["editor"], ns, split_rule("web", 100), etag='"1"')
    headers = {**users["editor"].headers, "Idempotency-Key": _key(), "If-Match": '"2"'}
    first = client.post(f"/api/v1/namespaces/{ns}/rollback", json={"to_rev": 1}, headers=headers)
    again = client.post(f"/api/v1/namespaces/{ns}/rollback", json={"to_rev": 1}, headers=headers)
    assert first.status_code == again.status_code == 200 and again.get_json() == first.get_json()
    assert backend.store.revision(ns) == 3


def test_token_replay_creates_one_token_and_never_stores_the_secret(client, users, backend):
    """A replayed token creation has the same id and token: null; only one token exists."""
    admin = users["admin"]
    headers = {**admin.headers, "Idempotency-Key": _key()}
    before = set(backend.accounts.list_tokens(users["viewer"].username))
    first = client.post("/api/v1/tokens", json={"username": users["viewer"].username}, headers=headers)
    again = client.post("/api/v1/tokens", json={"username": users["viewer"].username}, headers=headers)
    assert first.status_code == again.status_code == 201 and first.get_json()["token"].startswith("rgt_")
    assert again.get_json() == {"id": first.get_json()["id"], "token": None}
    assert set(backend.accounts.list_tokens(users["viewer"].username)) - before == {first.get_json()["id"]}
    client.delete(f"/api/v1/tokens/{first.get_json()['id']}", headers=admin.headers)


def test_every_mutating_view_is_idempotent(app):
    """Every POST/PUT/PATCH/DELETE under /api/v1 (except read-only simulate) honours the header."""
    for rule in app.url_map.iter_rules():
        if (rule.rule.startswith("/api/v1/") and rule.methods & MUTATING
                and rule.endpoint not in READ_ONLY_POSTS | SECRET_BODY):
            assert getattr(app.view_functions[rule.endpoint], "idempotent", False), rule.rule


def test_openapi_documents_the_header_on_every_mutating_operation():
    """The OpenAPI document lists Idempotency-Key, 409 and 422 on every mutating operation but simulate."""
    for path, ops in document()["paths"].items():
        for method, op in ops.items():
            if method.upper() in MUTATING and op["operationId"] not in ("simulate", "resetPassword"):
                assert "Idempotency-Key" in [p["name"] for p in op.get("parameters", [])], (method, path)
                assert {"409", "422"} <= set(op["responses"]), (method, path)

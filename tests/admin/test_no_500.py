"""Inputs that used to answer 5xx: each is now a 4xx (the API's names the field) and writes nothing."""
from __future__ import annotations

import socket
import uuid
from urllib.parse import urlsplit

import pytest

from .conftest import csrf_of, logged_in, split_rule

pytestmark = pytest.mark.integration
UNICODE_DIGITS = ["²", "¹²", "٣"]  # str.isdigit() says yes, int() says no (or reads a different number)


@pytest.fixture()
def seeded(backend, ns) -> str:
    """A namespace holding rule `web` at revision 1."""
    backend.rules.put_rule(ns, split_rule("web"), None, "seed")
    return ns


@pytest.fixture(scope="module")
def editor(app, users):
    """A test client logged in as the editor (one login for the module)."""
    return logged_in(app, users["editor"].username)


@pytest.mark.parametrize("value", UNICODE_DIGITS + ['"²"', 'W/"³"'])
def test_unicode_digits_in_if_match(client, users, seeded, keyspace, value):
    """If-Match with Unicode digits is a 400 naming If-Match, not a 500."""
    before = keyspace()
    r = client.put(f"/api/v1/namespaces/{seeded}/rules/web", json=split_rule("web", 7),
                   headers={**users["editor"].headers, "If-Match": value})
    assert r.status_code == 400 and "If-Match" in r.get_json()["fields"]
    assert keyspace() == before


@pytest.mark.parametrize("query", [f"{p}={d}" for p in ("since", "before", "limit") for d in UNICODE_DIGITS])
def test_unicode_digits_in_history_paging(client, users, seeded, query):
    """History paging parameters with Unicode digits are a 400 naming the parameter."""
    r = client.get(f"/api/v1/namespaces/{seeded}/history?{query}", headers=users["viewer"].headers)
    assert r.status_code == 400 and query.split("=")[0] in r.get_json()["fields"]


@pytest.mark.parametrize("digit", UNICODE_DIGITS)
def test_unicode_digits_in_audit_paging(client, users, digit):
    """The audit's limit with Unicode digits is a 400 naming limit."""
    r = client.get(f"/api/v1/audit?limit={digit}", headers=users["admin"].headers)
    assert r.status_code == 400 and "limit" in r.get_json()["fields"]


@pytest.mark.parametrize("body", ["[" * 5000 + "]" * 5000, '{"a":' * 5000 + "1" + "}" * 5000, "[" * 40 + "]" * 40],
                         ids=["array-5000", "object-5000", "array-40"])
@pytest.mark.parametrize("endpoint", ["rules/web", "rollback", "simulate"])
def test_deeply_nested_json(client, users, seeded, keyspace, body, endpoint):
    """Deeply nested JSON is a 400 naming the body (no RecursionError), also with an Idempotency-Key."""
    before = keyspace()
    method = client.put if endpoint == "rules/web" else client.post
    for headers in (users["editor"].headers, {**users["editor"].headers, "Idempotency-Key": uuid.uuid4().hex}):
        r = method(f"/api/v1/namespaces/{seeded}/{endpoint}", data=body, content_type="application/json",
                   headers=headers)
        assert r.status_code == 400 and "<body>" in r.get_json()["fields"], r.data[:200]
    assert keyspace(also_skip=(b"rg:idem:",)) == before


@pytest.mark.parametrize("path", [("kind",), ("policies", 0, "type"), ("key", "source"), ("policies", 0)])
@pytest.mark.parametrize("value", [[], {}, ["split"], {"a": 1}, 1.5, True, None])
def test_wrong_json_types(client, users, ns, keyspace, path, value):
    """A list, object, number, boolean or null where a string is expected is a 400 naming a field."""
    rule = split_rule("web")
    node = rule
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    before = keyspace()
    r = client.put(f"/api/v1/namespaces/{ns}/rules/web", json=rule, headers=users["editor"].headers)
    assert r.status_code == 400 and r.get_json()["fields"], r.data[:300]
    assert keyspace() == before


@pytest.mark.parametrize("rev", UNICODE_DIGITS + ["9" * 26, "-1", ""])
@pytest.mark.parametrize("form", ["toggle", "delete", "edit", "rollback"])
def test_bad_expected_revision_in_web_forms(editor, seeded, keyspace, rev, form):
    """A hidden expected revision that is not 0-10**15 in ASCII digits is a 400 page, never a 500 or 503."""
    url = {"toggle": f"/ns/{seeded}/rules/web/toggle", "delete": f"/ns/{seeded}/rules/web/delete",
           "edit": f"/ns/{seeded}/rules/web/edit", "rollback": f"/ns/{seeded}/rollback/1"}[form]
    page = editor.get(f"/ns/{seeded}/rules/web/edit")
    data = {"csrf_token": csrf_of(page.data), "expected_rev": rev}
    if form == "edit":
        data.update({"id": "web", "host": "shop.example.com", "path": "/", "key_source": "header",
                     "key_name": "x-uid", "default": "stable", "policies-0-type": "percent",
                     "policies-0-buckets": "canary 7", "action": "save"})
    before = keyspace()
    r = editor.post(url, data=data)
    assert r.status_code == 400, r.data[:300]
    assert keyspace() == before


@pytest.mark.parametrize("action", [f"{verb}-{d}" for verb in ("remove", "up", "down") for d in UNICODE_DIGITS]
                         + ["remove-" + "9" * 30, "up--1"])
def test_bad_policy_index_in_split_form(editor, ns, action):
    """The split form's add/remove/move buttons with a non-ASCII or huge index re-render the form."""
    page = editor.get(f"/ns/{ns}/rules/new?kind=split")
    r = editor.post(f"/ns/{ns}/rules/new?kind=split", data={
        "csrf_token": csrf_of(page.data), "id": "web", "policies-0-type": "percent", "action": action})
    assert r.status_code == 200 and b'id="policy-0"' in r.data


@pytest.mark.parametrize("before", UNICODE_DIGITS + ["9" * 26])
def test_bad_history_page_in_web(editor, seeded, before):
    """The web history's ?before= with Unicode digits or a huge number shows the newest page."""
    r = editor.get(f"/ns/{seeded}/history?before={before}")
    assert r.status_code == 200 and b'id="rev-1"' in r.data


def test_huge_rollback_target_in_web(editor, seeded):
    """A rollback target beyond any revision (26 digits) is a 404, not a 503 from Redis."""
    assert editor.get(f"/ns/{seeded}/rollback/{'9' * 26}").status_code == 404


def test_huge_rollback_target_in_api(client, users, seeded):
    """A to_rev beyond any revision is a 400 naming to_rev."""
    r = client.post(f"/api/v1/namespaces/{seeded}/rollback", json={"to_rev": 10**26}, headers=users["editor"].headers)
    assert r.status_code == 400 and "to_rev" in r.get_json()["fields"]


def _raw(server, request: bytes) -> bytes:
    target = urlsplit(server.url)
    with socket.create_connection((target.hostname, target.port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize("chunks", [b"zz\r\n{}\r\n0\r\n\r\n", b"5\r\n{}\r\n0\r\n\r\n", b"ffffffffffffffffff\r\n",
                                    b"4\r\n{\"a\"", b"2\r\n{}XX0\r\n\r\n"])
def test_broken_chunked_body_is_400(servers, users, ns, backend, chunks):
    """A body with broken chunked encoding is a 400 JSON error through gunicorn, and nothing is written."""
    host = urlsplit(servers[0].url).netloc
    head = (f"PUT /api/v1/namespaces/{ns}/rules/web HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {users['editor'].token}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    reply = _raw(servers[0], head + chunks)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:300]
    if b"\r\n\r\n{" in reply:
        assert b'"fields"' in reply
    assert backend.store.revision(ns) == 0


def test_broken_chunked_form_is_400(servers):
    """A login form POST with broken chunked encoding is a 400, not a 500 from the CSRF check reading it."""
    host = urlsplit(servers[0].url).netloc
    head = (f"POST /login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    reply = _raw(servers[0], head + b"zz\r\nusername=x\r\n0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400"), reply[:300]

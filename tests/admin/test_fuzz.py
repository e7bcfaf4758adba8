"""API fuzzing: schemathesis (positive and negative data, every phase) against /api/v1/openapi.json plus
targeted hypothesis properties for headers, query parameters and bodies. Every answer is < 500, every
4xx is a JSON error naming a field, and a refused request writes nothing to Redis.

CI runs a few hundred examples per property in well under a minute; RULEGATE_FUZZ_LONG=1 runs
20 times more with fresh random seeds (nightly).
"""
from __future__ import annotations

import json
import os
import uuid
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from ruleadmin.openapi import document

from .conftest import PASSWORD, KeyspaceWatch, Principal, split_rule

pytestmark = pytest.mark.integration

LONG = os.environ.get("RULEGATE_FUZZ_LONG") == "1"


def fuzz_settings(examples: int) -> settings:
    """Return hypothesis settings: `examples` per property in CI (derandomized), 20x and random in long mode."""
    return settings(max_examples=examples * 20 if LONG else examples, deadline=None, derandomize=not LONG,
                    database=None, suppress_health_check=list(HealthCheck))


def assert_api_error(status: int, text: str, before: dict | None = None, watch: KeyspaceWatch | None = None) -> None:
    """Assert the answer is not a 5xx; a 4xx is {"error", "fields": {non-empty}}; a refusal wrote nothing."""
    assert status < 500, text[:500]
    if status >= 400:
        body = json.loads(text)
        assert isinstance(body["error"], str) and isinstance(body["fields"], dict)
        assert body["fields"], f"{status} without a field: {body}"
    if watch is not None:
        unchanged = watch.unchanged_since(before)
        assert status < 400 or unchanged, "a refused request changed Redis"


def check(r, before: dict | None = None, watch: KeyspaceWatch | None = None) -> None:
    """assert_api_error for a Flask test response."""
    assert_api_error(r.status_code, r.get_data(as_text=True), before, watch)


@pytest.fixture(scope="module")
def fuzz_admin(backend) -> Principal:
    """An admin of its own (the fuzzers may disable or delete users and revoke tokens by name)."""
    name = "fuzz-" + uuid.uuid4().hex[:8]
    backend.accounts.create_user(name, "admin", PASSWORD)
    token_id, token = backend.accounts.create_token(name, "fuzz")
    return Principal(name, "admin", token, token_id)


@pytest.fixture(scope="module")
def ns_fixed(backend) -> str:
    """One created, never-written namespace for the properties in this module."""
    name = "fz" + uuid.uuid4().hex[:10]
    backend.rules.create_namespace(name)
    return name


@pytest.fixture(scope="session")
def api_schema(app):
    """The served OpenAPI document, loaded by schemathesis over WSGI: positive and negative data, every phase."""
    loaded = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    loaded.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    loaded.config.phases.update(phases=["examples", "coverage", "fuzzing"])
    return loaded


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@fuzz_settings(20)
def test_no_server_errors(case, fuzz_admin, watch):
    """Every generated request (admin token) gets a non-5xx answer; a 4xx names a field and writes nothing."""
    before = watch.before()
    response = case.call(headers={**(case.headers or {}), **fuzz_admin.headers})
    assert_api_error(response.status_code, response.text, before, watch)


def test_openapi_lists_every_api_route(app):
    """Every method of every /api/v1 route is in the OpenAPI document (the fuzzer only tests what is listed)."""
    paths = document()["paths"]
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint == "api.openapi":
            continue
        path = rule.rule.removeprefix("/api/v1").replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths.get(path, {}), f"{method} {path} is missing from the OpenAPI document"


# ---- hostile text for numbers, headers and redirect targets -----------------------------------
UNICODE_NUMERALS = st.characters(categories=("Nd", "No", "Nl"))
numeric_text = st.one_of(
    st.integers(min_value=-10, max_value=10**30).map(str),
    st.text(alphabet=st.one_of(UNICODE_NUMERALS, st.sampled_from('0123456789"W/ -+.eE_')), max_size=30),
    st.sampled_from(["²", "¹²", "٣", "1²", '"²"', 'W/"³"', "9" * 26, '"' + "9" * 26 + '"', "", " ", "-1",
                     "0x10", "1e3", "١٢", "𝟗"]),
)


@given(value=numeric_text, target=st.sampled_from(["put", "delete", "rollback"]))
@fuzz_settings(100)
def test_if_match_values(client, fuzz_admin, ns_fixed, watch, value, target):
    """Any If-Match value is a 2xx/4xx, a 400 names If-Match, and a refused request writes nothing."""
    h = {**fuzz_admin.headers, "If-Match": value}
    before = watch.before()
    url = f"/api/v1/namespaces/{ns_fixed}"
    r = {"put": lambda: client.put(f"{url}/rules/web", json=split_rule("web"), headers=h),
         "delete": lambda: client.delete(f"{url}/rules/web", headers=h),
         "rollback": lambda: client.post(f"{url}/rollback", json={"to_rev": 1}, headers=h)}[target]()
    check(r, before, watch)
    if r.status_code == 400:
        assert "If-Match" in r.get_json()["fields"], r.get_json()


@given(value=numeric_text, name=st.sampled_from(["since", "before", "limit", "audit-limit"]))
@fuzz_settings(100)
def test_paging_parameters(client, fuzz_admin, ns_fixed, value, name):
    """History and audit paging parameters are 200 or a 400 naming the parameter, whatever their text."""
    if name == "audit-limit":
        r = client.get(f"/api/v1/audit?limit={quote(value)}", headers=fuzz_admin.headers)
        name = "limit"
    else:
        r = client.get(f"/api/v1/namespaces/{ns_fixed}/history?{name}={quote(value)}", headers=fuzz_admin.headers)
    check(r)
    assert r.status_code in (200, 400)
    if r.status_code == 400:
        assert name in r.get_json()["fields"]


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=20)


@given(depth=st.integers(min_value=33, max_value=200_000), opener=st.sampled_from(['[', '{"a":']),
       endpoint=st.sampled_from(["rules/web", "rollback", "simulate"]))
@fuzz_settings(30)
def test_deeply_nested_json_is_400(client, fuzz_admin, ns_fixed, watch, depth, opener, endpoint):
    """JSON nested deeper than 32 levels is a 400 naming the body (never a RecursionError) and writes nothing."""
    closer = "]" if opener == "[" else "}"
    body = opener * depth + "1" + closer * depth
    before = watch.before()
    method = client.put if endpoint == "rules/web" else client.post
    r = method(f"/api/v1/namespaces/{ns_fixed}/{endpoint}", data=body, content_type="application/json",
               headers={**fuzz_admin.headers, "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code in (400, 413), r.get_data()[:300]
    check(r, before, watch)


TYPE_FIELDS = [("kind",), ("policies", 0, "type"), ("action", "type"), ("key", "source"), ("route", "methods", 0),
               ("route", "host"), ("policies", 0, "buckets", 0, "weight"), ("default",), ("id",)]


def _with(rule: dict, path: tuple, value) -> dict:
    rule = json.loads(json.dumps(rule))
    node = rule
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return rule


@given(path=st.sampled_from(TYPE_FIELDS), value=json_values, kind=st.sampled_from(["split", "degrade"]))
@fuzz_settings(150)
def test_wrong_json_types_are_field_errors(client, fuzz_admin, ns_fixed, watch, path, value, kind):
    """Any JSON value in place of kind, type, source, method, host, weight... is a 400 naming a field, or valid."""
    base = split_rule("web") if kind == "split" else {
        "id": "web", "kind": "degrade", "route": {"host": "shop.example.com", "path": "/", "methods": ["GET"]},
        "action": {"type": "reject", "status": 503}}
    if kind == "split":
        base["route"]["methods"] = ["GET"]
    if path[0] not in base:
        path = ("kind",)
    before = watch.before()
    r = client.put(f"/api/v1/namespaces/{ns_fixed}/rules/web", json=_with(base, path, value),
                   headers=fuzz_admin.headers)
    check(r, before, watch)
    if r.status_code == 201:
        client.delete(f"/api/v1/namespaces/{ns_fixed}/rules/web",
                      headers={**fuzz_admin.headers, "If-Match": r.headers["ETag"]})
    watch.reset()


ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_.-"
bad_ids = st.one_of(
    st.text(min_size=1, max_size=80).filter(lambda s: not (0 < len(s) <= 64 and s[0] in ID_CHARS[:36]
                                                          and all(c in ID_CHARS for c in s))),
    st.text(alphabet=ID_CHARS, min_size=65, max_size=90),
    st.sampled_from(["UPPER", "-lead", "_lead", ".lead", "with space", "a/b", "ä"]),
).filter(lambda s: "/" not in s and s not in (".", "..") and "\x00" not in s)


@given(rule_id=bad_ids)
@fuzz_settings(40)
def test_bad_rule_ids_are_400_and_write_nothing(client, fuzz_admin, ns_fixed, watch, rule_id):
    """Ids outside [a-z0-9][a-z0-9_.-]{0,63} get 400 with an id field error; nothing is written."""
    before = watch.before()
    r = client.put(f"/api/v1/namespaces/{ns_fixed}/rules/{quote(rule_id, safe='')}",
                   json=split_rule("x"), headers=fuzz_admin.headers)
    assert r.status_code in (400, 404, 405), r.data
    check(r, before, watch)
    if r.status_code == 400:
        assert "id" in r.get_json()["fields"]


@given(name=bad_ids)
@fuzz_settings(40)
def test_bad_namespaces_are_400_and_write_nothing(client, fuzz_admin, watch, name):
    """Namespace names outside the pattern get 400 with a namespace field error."""
    before = watch.before()
    r = client.put(f"/api/v1/namespaces/{quote(name, safe='')}/rules/web", json=split_rule("web"),
                   headers=fuzz_admin.headers)
    assert r.status_code in (400, 404, 405), r.data
    check(r, before, watch)
    if r.status_code == 400:
        assert "namespace" in r.get_json()["fields"]


@given(extra=st.dictionaries(st.text(min_size=1, max_size=12).filter(
    lambda k: k not in ("id", "kind", "route", "enabled", "description", "updated_by", "updated_at",
                        "key", "policies", "default")), json_values, min_size=1, max_size=3))
@fuzz_settings(40)
def test_unknown_fields_are_field_errors(client, fuzz_admin, ns_fixed, watch, extra):
    """Any unknown top-level field is named in `fields` and nothing is written."""
    before = watch.before()
    r = client.put(f"/api/v1/namespaces/{ns_fixed}/rules/web", json={**split_rule("web"), **extra},
                   headers=fuzz_admin.headers)
    assert r.status_code == 400
    assert set(extra) <= set(r.get_json()["fields"])
    check(r, before, watch)


@given(body=json_values, endpoint=st.sampled_from(["rules/web", "rollback", "simulate", "/namespaces", "/tokens"]))
@fuzz_settings(100)
def test_arbitrary_json_bodies_never_500(client, fuzz_admin, ns_fixed, watch, body, endpoint):
    """Arbitrary JSON to every write endpoint gets a 4xx JSON error naming a field and writes nothing
    (except a valid token request for yourself)."""
    url = f"/api/v1{endpoint}" if endpoint.startswith("/") else f"/api/v1/namespaces/{ns_fixed}/{endpoint}"
    method = client.put if endpoint == "rules/web" else client.post
    before = watch.before()
    r = method(url, json=body, headers=fuzz_admin.headers)
    if r.status_code == 201 and endpoint == "/tokens":  # {} and {"name": "..."} are valid: a token for yourself
        client.delete(f"/api/v1/tokens/{r.get_json()['id']}", headers=fuzz_admin.headers)
        watch.reset()
        return
    assert 400 <= r.status_code < 500, (url, r.data)
    check(r, before, watch)


@given(content_type=st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                     "multipart/form-data; boundary=x", ""]),
       data=st.binary(max_size=200))
@fuzz_settings(30)
def test_wrong_content_types_are_415(client, fuzz_admin, ns_fixed, watch, content_type, data):
    """Non-JSON content types are refused with 415 (or 400) and a field error."""
    before = watch.before()
    r = client.put(f"/api/v1/namespaces/{ns_fixed}/rules/web", data=data, content_type=content_type or None,
                   headers=fuzz_admin.headers)
    assert r.status_code in (400, 415)
    check(r, before, watch)


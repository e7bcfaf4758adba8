"""API fuzzing: schemathesis against /api/v1/openapi.json plus targeted hypothesis properties."""
from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import split_rule

pytestmark = pytest.mark.integration

FUZZ_SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                         suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="session")
def api_schema(app):
    """The served OpenAPI document, loaded by schemathesis over WSGI."""
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@FUZZ_SETTINGS
def test_no_server_errors(case, users):
    """Every generated request (editor token) gets a non-5xx answer, and every 4xx is a JSON error with fields."""
    response = case.call(headers={**(case.headers or {}), **users["editor"].headers})
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = json.loads(response.text)
        assert isinstance(body["error"], str) and isinstance(body["fields"], dict)


ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_.-"
bad_ids = st.one_of(
    st.text(min_size=1, max_size=80).filter(lambda s: not (0 < len(s) <= 64 and s[0] in ID_CHARS[:36]
                                                          and all(c in ID_CHARS for c in s))),
    st.text(alphabet=ID_CHARS, min_size=65, max_size=90),
    st.sampled_from(["UPPER", "-lead", "_lead", ".lead", "with space", "a/b", "ä"]),
).filter(lambda s: "/" not in s and s not in (".", "..") and "\x00" not in s)


@given(rule_id=bad_ids)
@FUZZ_SETTINGS
def test_bad_rule_ids_are_400_and_write_nothing(client, users, ns_fixed, backend, rule_id):
    """Ids outside [a-z0-9][a-z0-9_.-]{0,63} get 400 with an id field error; the revision does not move."""
    from urllib.parse import quote
    r = client.put(f"/api/v1/namespaces/{ns_fixed}/rules/{quote(rule_id, safe='')}",
                   json=split_rule("x"), headers=users["editor"].headers)
    assert r.status_code in (400, 404, 405), r.data
    if r.status_code == 400:
        assert "id" in r.get_json()["fields"]
    assert backend.store.revision(ns_fixed) == 0


@given(name=bad_ids)
@FUZZ_SETTINGS
def test_bad_namespaces_are_400_and_write_nothing(client, users, backend, name):
    """Namespace names outside the pattern get 400 with a namespace field error."""
    from urllib.parse import quote
    before = backend.store.namespaces()
    r = client.put(f"/api/v1/namespaces/{quote(name, safe='')}/rules/web", json=split_rule("web"),
                   headers=users["editor"].headers)
    assert r.status_code in (400, 404, 405), r.data
    if r.status_code == 400:
        assert "namespace" in r.get_json()["fields"]
    assert backend.store.namespaces() == before


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=20)


@given(extra=st.dictionaries(st.text(min_size=1, max_size=12).filter(
    lambda k: k not in ("id", "kind", "route", "enabled", "description", "updated_by", "updated_at",
                        "key", "policies", "default")), json_values, min_size=1, max_size=3))
@FUZZ_SETTINGS
def test_unknown_fields_are_field_errors(client, users, ns_fixed, backend, extra):
    """Any unknown top-level field is named in `fields` and nothing is written."""
    r = client.put(f"/api/v1/namespaces/{ns_fixed}/rules/web", json={**split_rule("web"), **extra},
                   headers=users["editor"].headers)
    assert r.status_code == 400
    assert set(extra) <= set(r.get_json()["fields"])
    assert backend.store.revision(ns_fixed) == 0


@given(body=json_values)
@FUZZ_SETTINGS
def test_arbitrary_json_bodies_never_500(client, users, ns_fixed, backend, body):
    """Arbitrary JSON to every write endpoint gets a 4xx JSON error and writes nothing."""
    h = users["editor"].headers
    for method, url in (("put", f"/api/v1/namespaces/{ns_fixed}/rules/web"),
                        ("post", f"/api/v1/namespaces/{ns_fixed}/rollback"),
                        ("post", f"/api/v1/namespaces/{ns_fixed}/simulate")):
        r = getattr(client, method)(url, json=body, headers=h)
        assert 400 <= r.status_code < 500, (url, r.data)
        assert "fields" in r.get_json()
    assert backend.store.revision(ns_fixed) == 0


@given(content_type=st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                     "multipart/form-data; boundary=x", ""]),
       data=st.binary(max_size=200))
@FUZZ_SETTINGS
def test_wrong_content_types_are_415(client, users, ns_fixed, backend, content_type, data):
    """Non-JSON content types are refused with 415 and a field error."""
    r = client.put(f"/api/v1/namespaces/{ns_fixed}/rules/web", data=data, content_type=content_type or None,
                   headers=users["editor"].headers)
    assert r.status_code in (400, 415)
    assert r.get_json()["fields"]
    assert backend.store.revision(ns_fixed) == 0


@pytest.fixture(scope="module")
def ns_fixed(backend) -> str:
    """One created, never-written namespace for the properties in this module."""
    import uuid
    name = "fz" + uuid.uuid4().hex[:10]
    backend.rules.create_namespace(name)
    return name

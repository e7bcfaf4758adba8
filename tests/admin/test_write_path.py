"""What the trimmed REST write path must keep: security headers and Vary on every answer, the request and write
metrics, no-op saves of held rules, and the JSON depth bound (ruleadmin/__init__, metrics, auth, rules, inputs)."""
from __future__ import annotations

import pytest
from flask import Response

from ruleadmin import SECURITY_HEADERS, _security_headers
from ruleadmin.inputs import MAX_JSON_DEPTH, BoundedJSONProvider
from ruleadmin.metrics import REGISTRY

from .conftest import degrade_rule, split_rule

pytestmark = pytest.mark.integration
HEADERS = {name: value for _lower, name, value in SECURITY_HEADERS}


def _url(ns: str, rule_id: str) -> str:
    return f"/api/v1/namespaces/{ns}/rules/{rule_id}"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_api_and_web_answers_carry_the_security_headers_and_vary_cookie(client, users, ns):
    """A created rule, a refused write, an unknown API path and the login page all carry the four security headers
    once; API answers (no session cookie sent) still say Vary: Cookie and set no cookie."""
    h = users["editor"].headers
    answers = [client.put(_url(ns, "web"), json=split_rule("web"), headers=h),
               client.put(_url(ns, "bad"), json={"id": "bad"}, headers=h),
               client.get("/api/v1/nothing-here", headers=h)]
    assert [r.status_code for r in answers] == [201, 400, 404]
    for r in answers:
        assert all(r.headers.getlist(name) == [value] for name, value in HEADERS.items())
        assert r.headers["Vary"] == "Cookie" and "Set-Cookie" not in r.headers
    page = client.get("/login")
    assert page.status_code == 200 and all(page.headers.getlist(n) == [v] for n, v in HEADERS.items())


def test_a_header_the_response_sets_itself_is_kept():
    """A response that sets one of the headers (in any case) keeps its value; the others are added once."""
    resp = _security_headers(Response("x", headers={"x-frame-options": "SAMEORIGIN"}))
    assert resp.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert all(resp.headers.getlist(n) == [v] for n, v in HEADERS.items() if n != "X-Frame-Options")


def test_requests_and_write_outcomes_are_counted(client, users, ns):
    """Each PUT counts once by method, endpoint and status, is timed, and counts its write outcome."""
    h = users["editor"].headers
    before = {"ok": _sample("ruleadmin_rule_writes_total", outcome="ok"),
              "invalid": _sample("ruleadmin_rule_writes_total", outcome="invalid"),
              "unchanged": _sample("ruleadmin_rule_writes_total", outcome="unchanged"),
              201: _sample("ruleadmin_http_requests_total", method="PUT", endpoint="api.put_rule", status="201"),
              400: _sample("ruleadmin_http_requests_total", method="PUT", endpoint="api.put_rule", status="400"),
              "timed": _sample("ruleadmin_http_request_seconds_count", endpoint="api.put_rule")}
    created = client.put(_url(ns, "web"), json=split_rule("web"), headers=h)
    invalid = client.put(_url(ns, "web"), json={**split_rule("web"), "default": 7}, headers=h)
    same = client.put(_url(ns, "web"), json=split_rule("web"), headers={**h, "If-Match": created.get_json()["etag"]})
    assert [created.status_code, invalid.status_code, same.status_code] == [201, 400, 200]
    assert _sample("ruleadmin_rule_writes_total", outcome="ok") == before["ok"] + 1
    assert _sample("ruleadmin_rule_writes_total", outcome="invalid") == before["invalid"] + 1
    assert _sample("ruleadmin_rule_writes_total", outcome="unchanged") == before["unchanged"] + 1
    assert _sample("ruleadmin_http_requests_total", method="PUT", endpoint="api.put_rule",
                   status="201") == before[201] + 1
    assert _sample("ruleadmin_http_requests_total", method="PUT", endpoint="api.put_rule",
                   status="400") == before[400] + 1
    assert _sample("ruleadmin_http_request_seconds_count", endpoint="api.put_rule") == before["timed"] + 3


@pytest.mark.parametrize("rule", [
    split_rule("web"),
    {**degrade_rule("shed"), "percent": "12.5%"},  # defaults filled in, a float percent
    {"id": "st", "kind": "degrade", "route": {"host": "Shop.Example.com.", "path": "/x"},
     "action": {"type": "static", "status": 503, "headers": {"Retry-After": "5"}, "body": "later"}},
], ids=["split", "degrade-percent", "static-defaults"])
def test_saving_the_held_rule_again_is_unchanged(client, users, ns, rule):
    """The instance holds the bytes it wrote: the same input saved again (by either If-Match form) commits nothing;
    a changed one commits."""
    h = users["editor"].headers
    created = client.put(_url(ns, rule["id"]), json=rule, headers=h)
    assert created.status_code == 201, created.get_json()
    etag = created.get_json()["etag"]
    for tag in (etag, '"1"'):
        again = client.put(_url(ns, rule["id"]), json=rule, headers={**h, "If-Match": tag}).get_json()
        assert (again["unchanged"], again["revision"], again["etag"]) == (True, 1, etag)
    changed = client.put(_url(ns, rule["id"]), json={**rule, "enabled": False}, headers={**h, "If-Match": etag})
    assert (changed.status_code, changed.get_json()["unchanged"], changed.get_json()["revision"]) == (200, False, 2)


def test_the_json_depth_bound_counts_levels_not_brackets(app):
    """32 levels parse and 33 do not, as text or UTF-16 bytes; brackets inside strings are not levels."""
    provider = BoundedJSONProvider(app)
    deep = "[" * MAX_JSON_DEPTH + "1" + "]" * MAX_JSON_DEPTH
    assert provider.loads(deep) == provider.loads(deep.encode("utf-16"))
    assert provider.loads('{"a": "' + "[{" * 100 + '"}') == {"a": "[{" * 100}
    for text in ("[" + deep + "]", '{"a": ' + deep.replace("1", '{"b": 1}') + "}"):
        for body in (text, text.encode(), text.encode("utf-16")):
            with pytest.raises(ValueError, match="nested deeper"):
                provider.loads(body)

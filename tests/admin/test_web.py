"""Web forms through the Flask test client: create/edit, field errors, policy editing, conflicts."""
from __future__ import annotations

import re

import pytest

from .conftest import PASSWORD, split_rule

pytestmark = pytest.mark.integration


def _csrf(html: bytes) -> str:
    return re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1).decode()


@pytest.fixture()
def editor(client, users):
    """A test client logged in as the editor."""
    page = client.get("/login")
    r = client.post("/login", data={"username": users["editor"].username, "password": PASSWORD,
                                     "csrf_token": _csrf(page.data)})
    assert r.status_code == 302
    return client


def _split_form(csrf: str, **over) -> dict:
    data = {"csrf_token": csrf, "id": "web", "host": "shop.example.com", "path": "/", "enabled": "y",
            "key_source": "header", "key_name": "x-uid", "default": "stable",
            "policies-0-type": "percent", "policies-0-buckets": "canary 10%\nbeta 5", "action": "save"}
    data.update(over)
    return data


def test_create_split_rule_via_form(editor, ns, backend):
    """Posting the split form creates the rule with its buckets (shares in percent, stored in 0.01 % units)."""
    page = editor.get(f"/ns/{ns}/rules/new?kind=split")
    r = editor.post(f"/ns/{ns}/rules/new?kind=split", data=_split_form(_csrf(page.data)))
    assert r.status_code == 302, r.data
    _rev, rule = backend.rules.get_rule(ns, "web")
    assert rule["policies"][0]["buckets"] == [{"upstream": "canary", "weight": 1000}, {"upstream": "beta", "weight": 500}]


def test_bad_weight_shows_field_error(editor, ns, backend):
    """A zero weight is reported next to the buckets field and nothing is written."""
    page = editor.get(f"/ns/{ns}/rules/new?kind=split")
    r = editor.post(f"/ns/{ns}/rules/new?kind=split",
                    data=_split_form(_csrf(page.data), **{"policies-0-buckets": "canary 0"}))
    assert r.status_code == 400
    assert re.search(rb'data-field="policies-0-buckets" id="[^"]+">line 1: the share must be more than 0%', r.data)
    assert backend.store.revision(ns) == 0


def test_add_remove_reorder_policies(editor, ns):
    """The add/up/remove buttons re-render the form without saving."""
    page = editor.get(f"/ns/{ns}/rules/new?kind=split")
    data = _split_form(_csrf(page.data), action="add")
    r = editor.post(f"/ns/{ns}/rules/new?kind=split", data=data)
    assert b'id="policy-1"' in r.data
    data.update({"policies-1-type": "header", "policies-1-name": "x-beta", "policies-1-values": "1",
                 "policies-1-upstream": "beta", "action": "up-1"})
    r = editor.post(f"/ns/{ns}/rules/new?kind=split", data=data)
    first = r.data.index(b'id="policy-0"')
    assert r.data.index(b'x-beta') < r.data.index(b'id="policy-1"') and first < r.data.index(b'x-beta')
    data["action"] = "remove-0"
    r = editor.post(f"/ns/{ns}/rules/new?kind=split", data=data)
    assert b'id="policy-1"' not in r.data


def test_create_degrade_rule_via_form(editor, ns, backend):
    """The degrade form builds a static action with headers, percent and window."""
    page = editor.get(f"/ns/{ns}/rules/new?kind=degrade")
    r = editor.post(f"/ns/{ns}/rules/new?kind=degrade", data={
        "csrf_token": _csrf(page.data), "id": "maint", "host": "shop.example.com", "path": "/checkout",
        "enabled": "y", "action_type": "static", "status": "503", "headers": "Cache-Control: no-store",
        "body": "back soon", "percent": "12.5", "window_start": "2030-01-01T00:00", "window_end": "2030-01-02T00:00"})
    assert r.status_code == 302, r.data
    _rev, rule = backend.rules.get_rule(ns, "maint")
    assert rule["action"]["headers"] == {"Cache-Control": "no-store"} and rule["percent"] == 12.5
    assert rule["window"] == {"start": 1893456000, "end": 1893542400}


def test_stale_edit_shows_conflict_page(editor, ns, backend, users):
    """Saving an edit after someone else changed the same rule shows both versions and saves nothing."""
    backend.rules.put_rule(ns, split_rule("web"), None, "someone-else")
    page = editor.get(f"/ns/{ns}/rules/web/edit")
    assert b'name="expected_rev" type="hidden" value="1"' in page.data
    backend.rules.put_rule(ns, split_rule("web", 42), 1, "someone-else")
    r = editor.post(f"/ns/{ns}/rules/web/edit", data=_split_form(_csrf(page.data), expected_rev="1"))
    assert r.status_code == 409 and b'id="conflict"' in r.data and b"someone-else" in r.data
    assert b'&#34;weight&#34;: 42' in r.data and b'&#34;weight&#34;: 1000' in r.data
    assert backend.store.revision(ns) == 2


def test_edit_after_other_rule_changed_is_rebased(editor, ns, backend):
    """A change to a different rule in between does not block saving this one."""
    backend.rules.put_rule(ns, split_rule("web"), None, "x")
    page = editor.get(f"/ns/{ns}/rules/web/edit")
    backend.rules.put_rule(ns, split_rule("other"), None, "x")
    r = editor.post(f"/ns/{ns}/rules/web/edit", data=_split_form(_csrf(page.data), expected_rev="1"))
    assert r.status_code == 302
    assert backend.rules.get_rule(ns, "web")[1]["policies"][0]["buckets"][0]["weight"] == 1000


def test_toggle_search_history_and_rollback(editor, ns, backend):
    """Toggle disables a rule; search filters; history shows it; rollback restores revision 1."""
    backend.rules.put_rule(ns, split_rule("web"), None, "x")
    backend.rules.put_rule(ns, split_rule("api"), None, "x")
    page = editor.get(f"/ns/{ns}/?q=web")
    assert b'id="rule-web"' in page.data and b'id="rule-api"' not in page.data
    r = editor.post(f"/ns/{ns}/rules/web/toggle", data={"csrf_token": _csrf(page.data), "expected_rev": "2"})
    assert r.status_code == 302 and backend.rules.get_rule(ns, "web")[1]["enabled"] is False
    hist = editor.get(f"/ns/{ns}/history")
    assert b'id="rev-3"' in hist.data and b"diff-add" in hist.data
    confirm = editor.get(f"/ns/{ns}/rollback/1")
    assert b"confirm-rollback" in confirm.data
    r = editor.post(f"/ns/{ns}/rollback/1", data={"csrf_token": _csrf(confirm.data), "expected_rev": "3"})
    assert r.status_code == 302
    rev, rules = backend.rules.list_rules(ns)
    assert rev == 4 and [x["id"] for x in rules] == ["web"] and rules[0]["enabled"] is True


def test_simulate_panel(editor, ns, backend):
    """The simulate panel shows the decision for a request."""
    backend.rules.put_rule(ns, split_rule("web", 10000), None, "x")
    page = editor.get(f"/ns/{ns}/simulate")
    r = editor.post(f"/ns/{ns}/simulate", data={"csrf_token": _csrf(page.data), "host": "shop.example.com",
                                                "path": "/x", "method": "GET", "headers": "x-uid: 7"})
    assert r.status_code == 200 and b"\"upstream\": \"canary\"" in r.data


def test_editing_a_breaker_rule_in_the_form_keeps_its_breaker(editor, ns, backend):
    """The degrade form does not show `breaker` (an API-only field): saving the form keeps the stored breaker."""
    breaker = {"window": 10, "min_requests": 5, "error_ratio": 0.5, "open_seconds": 30, "probes": 2}
    backend.rules.put_rule(ns, {"id": "cb", "kind": "degrade", "route": {"host": "shop.example.com", "path": "/api"},
                                "action": {"type": "reject", "status": 503}, "breaker": breaker}, None, "api")
    page = editor.get(f"/ns/{ns}/rules/cb/edit")
    r = editor.post(f"/ns/{ns}/rules/cb/edit", data={
        "csrf_token": _csrf(page.data), "expected_rev": "1", "host": "shop.example.com", "path": "/api",
        "enabled": "y", "description": "edited in the form", "action_type": "reject", "status": "503",
        "percent": "100%", "action": "save"})
    assert r.status_code == 302, r.data
    _rev, rule = backend.rules.get_rule(ns, "cb")
    assert rule["description"] == "edited in the form" and rule["breaker"]["min_requests"] == 5


def test_editing_a_namespace_scope_rule_in_the_form_keeps_its_scope(editor, ns, backend):
    """The degrade form does not offer `scope` (API-only): it opens a rule of scope namespace (host *, path /),
    saving keeps its scope, and moving it to another route is a 400 naming the host field, writing nothing."""
    backend.rules.put_rule(ns, {"id": "ns-shed", "kind": "degrade", "route": {"host": "*", "path": "/"},
                                "scope": "namespace", "action": {"type": "reject", "status": 503}}, None, "api")
    page = editor.get(f"/ns/{ns}/rules/ns-shed/edit")
    assert page.status_code == 200 and b'name="host" type="text" value="*"' in page.data
    assert b'name="scope"' not in page.data
    form = {"csrf_token": _csrf(page.data), "expected_rev": "1", "host": "*", "path": "/", "enabled": "y",
            "description": "edited in the form", "action_type": "reject", "status": "429", "percent": "100%",
            "action": "save"}
    moved = editor.post(f"/ns/{ns}/rules/ns-shed/edit", data={**form, "host": "shop.example.com"})
    assert moved.status_code == 400 and b"must be * with scope namespace" in moved.data
    assert backend.store.revision(ns) == 1
    r = editor.post(f"/ns/{ns}/rules/ns-shed/edit", data=form)
    assert r.status_code == 302, r.data
    _rev, rule = backend.rules.get_rule(ns, "ns-shed")
    assert rule["scope"] == "namespace" and rule["description"] == "edited in the form"
    assert rule["action"]["status"] == 429 and rule["route"] == {"host": "*", "path": "/"}
    assert backend.rules.simulate(ns, {"host": "a.example", "path": "/x"})[1].rule_id == "ns-shed"

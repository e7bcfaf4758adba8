"""Web UI: the read-only rule page, the paged and filtered rule list (web and API), forms that fit the chosen
type, percent units, known upstreams and accessibility (labels, unique ids, viewport)."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from rulegate.fleet import Heartbeat
from rulegate.keyspace import Keys
from rulegate.schema import encode_rule, validate_rule

from .conftest import PASSWORD, degrade_rule, split_rule

pytestmark = pytest.mark.integration


def _csrf(html: bytes) -> str:
    return re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1).decode()


def _login(client, user) -> None:
    page = client.get("/login")
    r = client.post("/login", data={"username": user.username, "password": PASSWORD, "csrf_token": _csrf(page.data)})
    assert r.status_code == 302


@pytest.fixture()
def viewer(app, users):
    """A test client logged in as the viewer."""
    c = app.test_client()
    _login(c, users["viewer"])
    return c


@pytest.fixture()
def editor(app, users):
    """A test client logged in as the editor."""
    c = app.test_client()
    _login(c, users["editor"])
    return c


def _seed(backend, ns: str, count: int) -> None:
    """Write `count` rules in one commit: r000.. alternating split (upstream up-<i%3>) and degrade."""
    rules = []
    for i in range(count):
        rule = split_rule(f"r{i:03d}", upstream=f"up-{i % 3}") if i % 2 == 0 else degrade_rule(f"r{i:03d}")
        rule["route"] = {"host": f"h{i % 5}.example.com", "path": f"/p{i}"}
        rules.append(validate_rule({**rule, "updated_by": "seed", "updated_at": 1}))
    backend.store.commit(ns, [(r["id"], encode_rule(r)) for r in rules], None, "seed", op="put")


# ---- rule page -------------------------------------------------------------------------------
def test_viewer_sees_a_rule_in_plain_language(viewer, ns, backend):
    """A viewer opens a rule: what it matches, shares in percent, its history, a prefilled simulate box, no Edit."""
    rule = split_rule("web", weight=1250)
    rule["route"]["path"] = "/shop"
    backend.rules.put_rule(ns, rule, None, "alice")
    backend.rules.put_rule(ns, split_rule("other"), None, "bob")
    r = viewer.get(f"/ns/{ns}/rules/web/")
    assert r.status_code == 200
    text = r.data.decode()
    assert "host shop.example.com whose path starts with /shop" in text
    assert "12.5% of users → canary" in text and "Everything else → stable" in text
    assert 'id="rev-1"' in text and 'id="rev-2"' not in text and "alice" in text
    assert 'name="host" type="text" value="shop.example.com"' in text and 'value="/shop"' in text
    assert 'id="edit-rule"' not in text and 'id="delete-rule"' not in text


def test_editor_sees_edit_and_delete_on_rule_page(editor, ns, backend):
    """Editors get Edit and Delete links on the rule page."""
    backend.rules.put_rule(ns, degrade_rule("shed"), None, "x")
    r = editor.get(f"/ns/{ns}/rules/shed/")
    assert b'id="edit-rule"' in r.data and b'id="delete-rule"' in r.data
    assert b"reject it with status 503, Retry-After 30 s" in r.data


def test_rule_page_describes_a_namespace_scope_rule(viewer, ns, backend):
    """A degrade rule of scope namespace is described as covering every request of the namespace before routing
    (not host * and path /), on its page and in the rule list."""
    backend.rules.put_rule(ns, {"id": "ns-shed", "kind": "degrade", "route": {"host": "*", "path": "/",
                                                                           "methods": ["POST"]},
                                "scope": "namespace", "action": {"type": "reject", "status": 503}}, None, "api")
    text = viewer.get(f"/ns/{ns}/rules/ns-shed/").data.decode()
    assert "POST request of the namespace, whatever its host and path" in text
    assert "tried before routing, ahead of every route&#39;s rules" in text and "whose path starts with" not in text
    listed = viewer.get(f"/ns/{ns}/").data.decode()
    assert "(scope namespace: every request, before routing)" in listed


def test_rule_page_of_missing_rule_is_404(viewer, ns):
    """An unknown rule id is a 404 page."""
    assert viewer.get(f"/ns/{ns}/rules/nope/").status_code == 404


def test_viewer_list_is_read_only_with_links(viewer, ns, backend):
    """A viewer sees the list with links to rule pages and shares in percent, but no toggle or delete buttons."""
    backend.rules.put_rule(ns, split_rule("web", weight=1250), None, "x")
    r = viewer.get(f"/ns/{ns}/")
    assert r.status_code == 200
    assert f'href="/ns/{ns}/rules/web/"'.encode() in r.data and b"canary 12.5%" in r.data
    assert b'class="toggle"' not in r.data and b"delete" not in r.data


# ---- paging and filters -----------------------------------------------------------------------
def test_web_list_pages_by_50(viewer, ns, backend):
    """505 rules: 50 on a page with a next link; the last page has 5; the page stays small."""
    _seed(backend, ns, 505)
    r = viewer.get(f"/ns/{ns}/")
    ids = re.findall(rb'<tr id="rule-(r\d+)"', r.data)
    assert len(ids) == 50 and ids[0] == b"r000" and len(r.data) < 60_000
    cursor = re.search(rb'id="next-page" rel="next"', r.data) and re.search(rb'cursor=(r\d+)', r.data).group(1)
    assert cursor == b"r049"
    seen = 50
    url = f"/ns/{ns}/?cursor=r049"
    while url:
        page = viewer.get(url)
        found = re.findall(rb'<tr id="rule-(r\d+)"', page.data)
        seen += len(found)
        nxt = re.search(rb'href="([^"]+)" id="next-page"', page.data)
        url = nxt.group(1).decode().replace("&amp;", "&") if nxt else None
    assert seen == 505 and found[-1] == b"r504" and len(found) == 5


def test_web_list_filters(viewer, ns, backend):
    """Filtering by type, upstream, route text and free text narrows the list."""
    _seed(backend, ns, 30)
    def ids(query):
        return re.findall(rb'<tr id="rule-(r\d+)"', viewer.get(f"/ns/{ns}/?{query}").data)
    assert all(int(i[1:]) % 2 == 1 for i in ids("kind=degrade")) and len(ids("kind=degrade")) == 15
    assert ids("upstream=up-1") == [b"r004", b"r010", b"r016", b"r022", b"r028"]
    assert ids("route=h2.example.com/p1") == [b"r012", b"r017"]
    assert ids("q=r02&kind=split") == [b"r020", b"r022", b"r024", b"r026", b"r028"]
    assert viewer.get(f"/ns/{ns}/?kind=bogus").status_code == 400


def test_api_list_pages_and_filters(client, users, ns, backend):
    """limit/cursor page the API list; kind/upstream/q filter it; without parameters it is unchanged."""
    _seed(backend, ns, 30)
    h = users["viewer"].headers
    plain = client.get(f"/api/v1/namespaces/{ns}/rules", headers=h).get_json()
    assert len(plain["rules"]) == 30 and "next_cursor" not in plain
    first = client.get(f"/api/v1/namespaces/{ns}/rules?limit=12", headers=h).get_json()
    assert len(first["rules"]) == 12 and first["next_cursor"] == "r011" and first["matched"] == 30
    rest = client.get(f"/api/v1/namespaces/{ns}/rules?limit=100&cursor=r011", headers=h).get_json()
    assert [r["id"] for r in rest["rules"]][0] == "r012" and len(rest["rules"]) == 18 and rest["next_cursor"] is None
    ups = client.get(f"/api/v1/namespaces/{ns}/rules?upstream=up-2&kind=split", headers=h).get_json()
    assert [r["id"] for r in ups["rules"]] == ["r002", "r008", "r014", "r020", "r026"]
    assert len(client.get(f"/api/v1/namespaces/{ns}/rules?q=h4.example", headers=h).get_json()["rules"]) == 6


@pytest.mark.parametrize("query,field", [("limit=0", "limit"), ("limit=501", "limit"), ("kind=x", "kind"),
                                         ("cursor=..", "cursor"), ("q=%01", "q")])
def test_api_list_bad_parameters_are_400(client, users, ns, query, field):
    """Bad paging or filter parameters name the parameter."""
    r = client.get(f"/api/v1/namespaces/{ns}/rules?{query}", headers=users["viewer"].headers)
    assert r.status_code == 400 and field in r.get_json()["fields"]


# ---- forms that fit the choice ----------------------------------------------------------------
def _field_hidden(html: bytes, field_id: str) -> bool:
    m = re.search(rb'<div class="field[^"]*"([^>]*)>\s*<label for="' + field_id.encode() + rb'"', html)
    assert m, field_id
    return b" hidden" in m.group(1)


def test_split_form_shows_only_the_policy_types_fields(editor, ns):
    """A percent policy shows shares and salt; choosing header (posted back, no JavaScript) shows name/values/upstream."""
    page = editor.get(f"/ns/{ns}/rules/new?kind=split")
    assert not _field_hidden(page.data, "policies-0-buckets") and _field_hidden(page.data, "policies-0-upstream")
    assert _field_hidden(page.data, "policies-0-name")
    r = editor.post(f"/ns/{ns}/rules/new?kind=split", data={
        "csrf_token": _csrf(page.data), "id": "web", "host": "a.example", "path": "/", "policies-0-type": "header",
        "action": "refresh"})
    assert r.status_code == 200
    assert _field_hidden(r.data, "policies-0-buckets") and not _field_hidden(r.data, "policies-0-upstream")
    assert not _field_hidden(r.data, "policies-0-name") and b'value="web"' in r.data
    assert b'src="/static/rule_form.js"' in r.data


def test_degrade_form_shows_only_the_actions_fields(editor, ns):
    """A redirect action shows status and location only; posting back 'reject' shows Retry-After."""
    page = editor.get(f"/ns/{ns}/rules/new?kind=degrade")
    r = editor.post(f"/ns/{ns}/rules/new?kind=degrade", data={
        "csrf_token": _csrf(page.data), "action_type": "redirect", "action": "refresh"})
    assert not _field_hidden(r.data, "location") and _field_hidden(r.data, "body")
    assert _field_hidden(r.data, "retry_after") and _field_hidden(r.data, "upstream")
    r = editor.post(f"/ns/{ns}/rules/new?kind=degrade", data={
        "csrf_token": _csrf(page.data), "action_type": "reject", "action": "refresh"})
    assert not _field_hidden(r.data, "retry_after") and _field_hidden(r.data, "location")


def test_switching_to_percent_keeps_the_upstream(editor, ns, backend):
    """A policy switched to percent keeps its upstream visible and saving asks for its share instead of dropping it."""
    page = editor.get(f"/ns/{ns}/rules/new?kind=split")
    data = {"csrf_token": _csrf(page.data), "id": "web", "host": "a.example", "path": "/", "key_source": "header",
            "key_name": "x-uid", "default": "stable", "policies-0-type": "percent", "policies-0-upstream": "beta",
            "action": "refresh"}
    r = editor.post(f"/ns/{ns}/rules/new?kind=split", data=data)
    assert not _field_hidden(r.data, "policies-0-upstream") and b'value="beta"' in r.data
    r = editor.post(f"/ns/{ns}/rules/new?kind=split", data={**data, "action": "save"})
    assert r.status_code == 400 and b"add a line &#39;beta 10%&#39;" in r.data
    assert backend.store.revision(ns) == 0
    r = editor.post(f"/ns/{ns}/rules/new?kind=split", data={**data, "action": "save", "policies-0-buckets": "beta 10%"})
    assert r.status_code == 302
    assert backend.rules.get_rule(ns, "web")[1]["policies"][0]["buckets"] == [{"upstream": "beta", "weight": 1000}]


def test_errors_are_plain_language(editor, ns):
    """Shares over 100% and a bad share read as words next to the field, without schema paths."""
    page = editor.get(f"/ns/{ns}/rules/new?kind=split")
    r = editor.post(f"/ns/{ns}/rules/new?kind=split", data={
        "csrf_token": _csrf(page.data), "id": "web", "host": "a.example", "path": "/", "key_source": "header",
        "key_name": "x-uid", "default": "stable", "policies-0-type": "percent",
        "policies-0-buckets": "a 60%\nb 45%", "action": "save"})
    assert r.status_code == 400
    assert b"the shares add up to 105%; they must add up to at most 100%" in r.data
    assert b"policies[0]" not in r.data and b"10500" not in r.data


# ---- units ------------------------------------------------------------------------------------
def test_edit_form_and_simulate_show_percent(editor, ns, backend):
    """Stored 1250 shows as 12.5% in the edit form; the simulator's rule summary shows the share in percent."""
    backend.rules.put_rule(ns, split_rule("web", weight=1250), None, "x")
    backend.rules.put_rule(ns, {**degrade_rule("shed"), "percent": 0.5}, None, "x")
    form = editor.get(f"/ns/{ns}/rules/web/edit")
    assert b"canary 12.5%</textarea>" in form.data
    assert b'value="0.5%"' in editor.get(f"/ns/{ns}/rules/shed/edit").data
    r = editor.post(f"/ns/{ns}/simulate", data={"csrf_token": _csrf(form.data), "host": "shop.example.com",
                                                "path": "/", "method": "GET", "headers": "x-uid: 7"})
    assert r.status_code == 200 and b"12.5% of users \xe2\x86\x92 canary" in r.data


# ---- known upstreams in the form --------------------------------------------------------------
def test_form_refuses_unknown_upstream_then_saves_when_confirmed(editor, ns, backend):
    """With gateways reporting names, a typo is refused next to the field with a confirm box; ticking it saves."""
    import time
    now = time.time()
    backend.store.client.hset(Keys(ns).fleet, "gw-1", Heartbeat("agent", 0, "", now, now, 0.0,
                                                                upstreams=("canary", "stable")).encode())
    page = editor.get(f"/ns/{ns}/rules/new?kind=split")
    assert b'<option value="canary">' in page.data and b'list="known-upstreams"' in page.data
    data = {"csrf_token": _csrf(page.data), "id": "web", "host": "a.example", "path": "/", "key_source": "header",
            "key_name": "x-uid", "default": "stabel", "policies-0-type": "percent",
            "policies-0-buckets": "canary 5%", "action": "save"}
    r = editor.post(f"/ns/{ns}/rules/new?kind=split", data=data)
    assert r.status_code == 400 and b'id="unknown-upstreams"' in r.data and b'id="force"' in r.data
    assert re.search(rb'data-field="default"[^>]*>upstream &#39;stabel&#39; is not known', r.data)
    assert backend.store.revision(ns) == 0
    r = editor.post(f"/ns/{ns}/rules/new?kind=split", data={**data, "force": "y"})
    assert r.status_code == 302 and backend.rules.get_rule(ns, "web")[1]["default"] == "stabel"


def test_form_says_when_names_are_not_checked(editor, ns):
    """With no reporting gateway and no declaration the form says names are not checked."""
    assert b'id="upstreams-unchecked"' in editor.get(f"/ns/{ns}/rules/new?kind=degrade").data


def test_upstreams_page_admin_declares_viewer_reads(app, users, ns, viewer):
    """An admin declares names on the upstreams page; a viewer sees them but gets 403 posting."""
    admin = app.test_client()
    _login(admin, users["admin"])
    page = admin.get(f"/ns/{ns}/upstreams")
    r = admin.post(f"/ns/{ns}/upstreams", data={"csrf_token": _csrf(page.data), "names": "stable\ncanary\n"})
    assert r.status_code == 302
    seen = viewer.get(f"/ns/{ns}/upstreams")
    assert b"canary, stable" in seen.data and b'id="declare-upstreams"' not in seen.data
    assert viewer.post(f"/ns/{ns}/upstreams", data={"csrf_token": _csrf(seen.data), "names": "x"}).status_code == 403
    bad = admin.post(f"/ns/{ns}/upstreams", data={"csrf_token": _csrf(page.data), "names": "a b"})
    assert bad.status_code == 400 and b"line 1:" in bad.data


# ---- accessibility ----------------------------------------------------------------------------
class _Audit(HTMLParser):
    """Collects ids, label targets, form controls that need a label, and the viewport meta."""

    def __init__(self):
        super().__init__()
        self.ids: list[str] = []
        self.label_for: set[str] = set()
        self.controls: list[tuple[str, dict]] = []
        self.viewport = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "label" and a.get("for"):
            self.label_for.add(a["for"])
        if tag == "meta" and a.get("name") == "viewport":
            self.viewport = True
        if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit", "button"):
            self.controls.append((tag, a))


def _audit(html: bytes) -> list[str]:
    p = _Audit()
    p.feed(html.decode())
    problems = [] if p.viewport else ["no viewport meta"]
    problems += [f"duplicate id {i}" for i in sorted({i for i in p.ids if p.ids.count(i) > 1})]
    problems += [f"unlabeled {tag} {a.get('name')}" for tag, a in p.controls
                 if not a.get("aria-label") and a.get("id") not in p.label_for]
    return problems


def test_pages_have_labels_unique_ids_and_viewport(app, users, ns, backend):
    """Every page an editor or admin uses: a viewport meta, unique ids, a <label for> for every input."""
    backend.rules.put_rule(ns, split_rule("web"), None, "x")
    backend.rules.put_rule(ns, degrade_rule("shed"), None, "x")
    admin = app.test_client()
    _login(admin, users["admin"])
    pages = ["/", f"/ns/{ns}/", f"/ns/{ns}/rules/web/", f"/ns/{ns}/rules/new?kind=split",
             f"/ns/{ns}/rules/new?kind=degrade", f"/ns/{ns}/rules/web/edit", f"/ns/{ns}/rules/shed/edit",
             f"/ns/{ns}/simulate", f"/ns/{ns}/upstreams", f"/ns/{ns}/history", f"/ns/{ns}/fleet"]
    problems = {url: _audit(admin.get(url).data) for url in pages}
    problems["/login"] = _audit(app.test_client().get("/login").data)
    assert {u: p for u, p in problems.items() if p} == {}

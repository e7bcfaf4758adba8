"""Kill switches (ruleadmin.killswitch) through the REST API, the web UI and the CLI: engage degrades a whole
namespace (one rule of scope namespace, tried before routing) or one route in one revision, undo removes exactly
its rules and checks the digest against the content before it."""
from __future__ import annotations

import io
import json
import re
import sys

import pytest

from gateway_agent import RuleClient
from gateway_agent.budget import BudgetConfig
from ruleadmin import create_app
from ruleadmin.cli import main
from ruleadmin.config import ConfigError
from ruleadmin import killswitch
from ruleadmin.killswitch import KILL_HEADROOM, KILL_PREFIX, OP_ENGAGE
from ruleadmin.upstreams import UpstreamRegistry
from rulegate.errors import NamespaceLimitError
from rulegate.keyspace import Keys
from rulegate.schema import encode_rule, validate_rule

from .conftest import PASSWORD, degrade_rule, server_env, split_rule

pytestmark = pytest.mark.integration

PRESET = {"status": 503, "headers": {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "30"},
          "body": "service temporarily unavailable\n"}
API = "/api/v1/namespaces"


def _put(client, user, ns, rule, etag=None):
    headers = {**user.headers, **({"If-Match": etag} if etag else {})}
    return client.put(f"{API}/{ns}/rules/{rule['id']}", json=rule, headers=headers)


def _engage(client, user, ns, body, **headers):
    return client.post(f"{API}/{ns}/kill-switches", json=body, headers={**user.headers, **headers})


def _decide(backend, ns, host, path="/", method="GET") -> dict:
    return backend.rules.simulate(ns, {"host": host, "path": path, "method": method})[1].to_dict()


def _csrf(html: bytes) -> str:
    return re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1).decode()


@pytest.fixture()
def shop(client, users, ns) -> str:
    """A namespace at revision 3 with three routes: a split on shop/, a degrade on shop/checkout (50 %), a split
    on api.example.com/v1 for POST only."""
    ed = users["editor"]
    assert _put(client, ed, ns, split_rule("web")).status_code == 201
    assert _put(client, ed, ns, {**degrade_rule("shed"), "percent": 50}).status_code == 201
    api = {**split_rule("api"), "route": {"host": "api.example.com", "path": "/v1", "methods": ["POST"]}}
    assert _put(client, ed, ns, api).status_code == 201
    return ns


def test_namespace_switch_degrades_every_route_and_unknown_hosts(client, users, shop, backend):
    """Engaging namespace-wide commits one revision with one kill rule of scope namespace (route * /): every
    existing route (the degrade on /checkout included), every method and an unknown host answer the preset; the
    record names who, when and the content before."""
    before = backend.store.load_raw(shop)
    r = _engage(client, users["editor"], shop, {"scope": "namespace"})
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    record = body["kill_switch"]
    assert body["revision"] == 4 and record["revision"] == 4 and record["revision_before"] == 3
    assert record["digest_before"] == before.digest and record["engaged_by"] == users["editor"].username
    assert record["rule_ids"] == [f"{KILL_PREFIX}{record['id']}.0"] and record["scope"] == "namespace"
    _rev, kill = backend.rules.get_rule(shop, record["rule_ids"][0])
    assert kill["scope"] == "namespace" and kill["route"] == {"host": "*", "path": "/"} and kill["percent"] == 100
    assert kill["kind"] == "degrade" and kill["updated_by"] == users["editor"].username
    for host, path, method in (("shop.example.com", "/", "GET"), ("shop.example.com", "/checkout/pay", "GET"),
                               ("api.example.com", "/v1/x", "POST"), ("api.example.com", "/v1/x", "DELETE"),
                               ("nobody.example.org", "/anything", "PUT")):
        d = _decide(backend, shop, host, path, method)
        assert d["action"] == "respond" and {k: d[k] for k in PRESET} == PRESET, (host, path, d)
        assert d["rule_id"] in record["rule_ids"]
    entry = backend.store.history(shop, None, 1)[0]
    assert entry.op == "kill-switch" and entry.actor == users["editor"].username and len(entry.changes) == 1
    listed = client.get(f"{API}/{shop}/kill-switches", headers=users["viewer"].headers).get_json()
    assert [s["id"] for s in listed["kill_switches"]] == [record["id"]]
    assert listed["kill_switches"][0]["rules_present"] == 1


def test_engage_reads_nothing_of_the_namespace_before_its_commit(client, users, shop, backend, monkeypatch):
    """The brake costs the same whatever the namespace holds: no whole read before the commit (a write of another
    client between two engages is not a reason to retry); the content before it comes from the commit (revision
    less one, the log entry's digest less the kill rule). When the rules cannot be read after the commit the
    switch stays engaged and a warning says its shadows were not checked."""
    from rulegate.errors import StoreError

    before = backend.store.load_raw(shop)

    def no_whole_read(*_a, **_k):
        raise AssertionError("the engage read the whole namespace")

    def unreadable(*_a, **_k):
        raise StoreError("the listing could not be read")

    monkeypatch.setattr(type(backend.store), "load", no_whole_read)
    monkeypatch.setattr(type(backend.store), "load_raw", no_whole_read)
    monkeypatch.setattr(type(backend.rules), "listing", no_whole_read)
    r = _engage(client, users["editor"], shop, {"scope": "namespace"})  # its shadows: read by id, not listed
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    record = body["kill_switch"]
    assert record["revision"] == 4 and record["revision_before"] == 3 and record["digest_before"] == before.digest
    assert body["shadowed_by"] == [] and body["warnings"] == [], body
    monkeypatch.setattr(killswitch, "_sorting_first", unreadable)
    second = _engage(client, users["editor"], shop, {"scope": "namespace"}).get_json()
    assert second["shadowed_by"] == [] and second["kill_switch"]["revision_before"] == 4
    assert any("were not checked" in w for w in second["warnings"]), second["warnings"]
    monkeypatch.setattr(type(backend.rules), "listing", unreadable)
    route = _engage(client, users["editor"], shop, {"scope": "route", "route": {"host": "shop.example.com",
                                                                                 "path": "/"}}).get_json()
    assert route["kill_switch"]["revision_before"] == 5
    assert any("were not checked" in w for w in route["warnings"]), route["warnings"]
    monkeypatch.undo()
    _rev, kill = backend.rules.get_rule(shop, record["rule_ids"][0])
    assert kill["scope"] == "namespace"
    for done in (route["kill_switch"], second["kill_switch"], record):
        undone = client.delete(f"{API}/{shop}/kill-switches/{done['id']}", headers=users["editor"].headers)
        assert undone.status_code == 200, undone.get_json()
    assert undone.get_json()["exact"] is True and backend.store.load_raw(shop).digest == before.digest


def test_undo_restores_byte_identical_rules_and_digest(client, users, shop, backend):
    """Undo deletes exactly the switch's rules in one revision: the digest equals the one before (exact) and every
    stored rule is byte-identical; the record is gone and the history shows both ops."""
    before = backend.store.load_raw(shop)
    sid = _engage(client, users["editor"], shop, {"scope": "namespace"}).get_json()["kill_switch"]["id"]
    r = client.delete(f"{API}/{shop}/kill-switches/{sid}", headers=users["editor"].headers)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["exact"] is True and body["differences"] == [] and body["revision"] == 5
    after = backend.store.load_raw(shop)
    assert after.raw == before.raw and after.digest == before.digest == body["digest"]
    assert backend.store.client.hget(Keys(shop).killswitch, sid) is None
    assert [e.op for e in backend.store.history(shop, None, 2)] == ["kill-switch-undo", "kill-switch"]
    assert client.delete(f"{API}/{shop}/kill-switches/{sid}", headers=users["editor"].headers).status_code == 404


def test_undo_after_an_unrelated_edit_keeps_it_and_names_it(client, users, shop, backend):
    """An edit made while the switch is engaged survives the undo, which then says exact: false naming that rule."""
    sid = _engage(client, users["editor"], shop, {"scope": "namespace"}).get_json()["kill_switch"]["id"]
    assert _put(client, users["editor"], shop, split_rule("web", 100), '"4"').status_code == 200
    body = client.delete(f"{API}/{shop}/kill-switches/{sid}", headers=users["editor"].headers).get_json()
    assert body["exact"] is False and body["differences"] == [{"id": "web", "change": "changed"}], body
    assert backend.rules.get_rule(shop, "web")[1]["policies"][0]["buckets"][0]["weight"] == 100
    assert not [i for i in backend.store.load_raw(shop).raw if i.startswith(KILL_PREFIX)]


def test_route_switch_covers_only_that_route(client, users, shop, backend):
    """A route switch adds one rule for that (host, path), canonicalized; other routes keep their decisions."""
    r = _engage(client, users["editor"], shop, {"scope": "route", "route": {"host": "API.Example.com.",
                                                                                "path": "/v1"},
                                                "action": {"type": "upstream", "upstream": "fallback"}})
    assert r.status_code == 201, r.get_json()
    record = r.get_json()["kill_switch"]
    assert record["route"] == {"host": "api.example.com", "path": "/v1"} and len(record["rule_ids"]) == 1
    assert _decide(backend, shop, "api.example.com", "/v1/x", "GET") == {
        "action": "proxy", "upstream": "fallback", "rule_id": record["rule_ids"][0], "revision": 4}
    assert _decide(backend, shop, "shop.example.com", "/")["action"] == "proxy"
    assert _decide(backend, shop, "shop.example.com", "/")["upstream"] in ("stable", "canary")


def _namespace_rule(rule_id: str, methods: list[str] | None = None, enabled: bool = True, status: int = 429) -> dict:
    """Return a degrade rule of scope namespace (100 %), for the given methods only when given."""
    route = {"host": "*", "path": "/", **({"methods": methods} if methods else {})}
    return {**degrade_rule(rule_id, status), "route": route, "scope": "namespace", "enabled": enabled}


def test_namespace_switch_is_shadowed_only_by_namespace_scope_rules_sorting_first(client, users, ns, backend):
    """For a namespace switch only enabled degrade rules of scope namespace whose id sorts before the kill rule
    decide first (named in shadowed_by and warnings); a route's degrade rule sorting first does not any more (the
    kill rule is tried before routing), nor a later or disabled namespace-scope rule."""
    ed = users["editor"]
    assert _put(client, ed, ns, {**degrade_rule("0"), "percent": 100}).status_code == 201  # route /checkout
    assert _put(client, ed, ns, _namespace_rule("0-", ["POST"], enabled=False)).status_code == 201
    assert _put(client, ed, ns, _namespace_rule("zz-late")).status_code == 201
    body = _engage(client, ed, ns, {"scope": "namespace"}).get_json()
    assert body["shadowed_by"] == [] and body["warnings"] == [], body
    kill_id = body["kill_switch"]["rule_ids"][0]
    assert _decide(backend, ns, "shop.example.com", "/checkout", "GET")["rule_id"] == kill_id  # not "0"
    sid = body["kill_switch"]["id"]
    assert client.delete(f"{API}/{ns}/kill-switches/{sid}", headers=ed.headers).get_json()["exact"] is True
    assert _put(client, ed, ns, _namespace_rule("0-", ["POST"]), "*").status_code == 200  # enabled now
    body = _engage(client, ed, ns, {"scope": "namespace"}).get_json()
    kill_id = body["kill_switch"]["rule_ids"][0]
    assert body["shadowed_by"] == [{"id": "0-", "route": "*/", "kill_rule": kill_id, "scope": "namespace"}], body
    assert len(body["warnings"]) == 1 and "rule 0- (scope namespace)" in body["warnings"][0]
    assert _decide(backend, ns, "shop.example.com", "/checkout", "POST")["rule_id"] == "0-"  # it does decide first
    assert _decide(backend, ns, "nobody.example.org", "/x", "GET")["rule_id"] == kill_id


def test_route_switch_is_shadowed_by_its_route_and_every_namespace_scope_rule(client, users, ns, backend):
    """For a route switch the enabled degrade rules of its route sorting first and every enabled degrade rule of
    scope namespace, whatever its id (step 0 runs before routing), are named; other routes' and disabled rules are
    not. The warning says a namespace-scope rule decides before every route's rules."""
    ed = users["editor"]
    assert _put(client, ed, ns, {**degrade_rule("0"), "percent": 1}).status_code == 201  # shop/checkout
    other = {**degrade_rule("0-"), "route": {"host": "shop.example.com", "path": "/other"}}
    assert _put(client, ed, ns, other).status_code == 201
    assert _put(client, ed, ns, _namespace_rule("zz-ns", ["POST"])).status_code == 201
    assert _put(client, ed, ns, _namespace_rule("zz-off", enabled=False)).status_code == 201
    body = _engage(client, ed, ns, {"scope": "route", "route": {"host": "shop.example.com",
                                                                 "path": "/checkout"}}).get_json()
    kill_id = body["kill_switch"]["rule_ids"][0]
    assert body["shadowed_by"] == [
        {"id": "0", "route": "shop.example.com/checkout", "kill_rule": kill_id, "scope": "route"},
        {"id": "zz-ns", "route": "*/", "kill_rule": kill_id, "scope": "namespace"}], body
    assert "rule 0 on shop.example.com/checkout" in body["warnings"][0]
    assert body["warnings"][1] == "rule zz-ns (scope namespace) decides before every route's rules while it applies"
    assert _decide(backend, ns, "shop.example.com", "/checkout", "POST")["rule_id"] == "zz-ns"
    assert "scope" not in backend.rules.get_rule(ns, kill_id)[1]


def test_route_switch_after_a_namespace_switch_names_its_kill_rule(client, users, ns, backend):
    """A route switch engaged while a namespace switch is on names that switch's kill rule (it decides first)."""
    first = _engage(client, users["editor"], ns, {"scope": "namespace"}).get_json()["kill_switch"]
    body = _engage(client, users["editor"], ns, {"scope": "route", "route": {"host": "a.example",
                                                                              "path": "/"}}).get_json()
    assert [(s["id"], s["scope"]) for s in body["shadowed_by"]] == [(first["rule_ids"][0], "namespace")], body


def test_namespace_switches_shadow_each_other_by_id(client, users, ns, backend):
    """Namespace kill rules are tried in id order: each new namespace switch names the earlier ones whose kill rule
    sorts first (found by id among the reserved ids, with the rules "0" and "0-"), and no other."""
    assert _put(client, users["editor"], ns, {**degrade_rule("0"), "scope": "namespace",
                                              "route": {"host": "*", "path": "/"}}).status_code == 201
    assert _put(client, users["editor"], ns, degrade_rule("zz")).status_code == 201  # a route's: never first
    kills = []
    for _ in range(6):
        body = _engage(client, users["editor"], ns, {"scope": "namespace"}).get_json()
        kill = body["kill_switch"]["rule_ids"][0]
        assert [s["id"] for s in body["shadowed_by"]] == ["0", *sorted(k for k in kills if k < kill)], body
        kills.append(kill)


@pytest.mark.parametrize("body, field", [
    ({"scope": "everything"}, "scope"),
    ({}, "scope"),
    ({"scope": "route"}, "route"),
    ({"scope": "namespace", "route": {"host": "a.example", "path": "/"}}, "route"),
    ({"scope": "route", "route": {"host": "bad host", "path": "/"}}, "route.host"),
    ({"scope": "route", "route": {"host": "a.example", "path": "no-slash"}}, "route.path"),
    ({"scope": "namespace", "action": {"type": "static", "status": 99}}, "action.status"),
    ({"scope": "namespace", "action": {"type": "teleport"}}, "action.type"),
    ({"scope": "namespace", "colour": "red"}, "colour"),
])
def test_bad_input_is_400_naming_the_field_and_writes_nothing(client, users, ns, backend, body, field):
    """Bad scope, route or action is a 400 naming the field; nothing is committed."""
    r = _engage(client, users["editor"], ns, body)
    assert r.status_code == 400 and field in r.get_json()["fields"], r.get_json()
    assert backend.store.revision(ns) == 0 and not backend.store.client.exists(Keys(ns).killswitch)


def test_unknown_fallback_upstream_is_refused_unless_forced(client, users, ns, backend):
    """With declared upstreams, an upstream action naming another one is a 400 naming action.upstream (CLI: exit
    2) unless forced."""
    UpstreamRegistry(backend.store.client).declare(ns, ["stable", "fallback"])
    backend.upstreams_cache.pop(ns, None)
    body = {"scope": "namespace", "action": {"type": "upstream", "upstream": "fallbak"}}
    r = _engage(client, users["editor"], ns, body)
    assert r.status_code == 400 and "action.upstream" in r.get_json()["fields"], r.get_json()
    assert backend.store.revision(ns) == 0
    r = client.post(f"{API}/{ns}/kill-switches?force=true", json=body, headers=users["editor"].headers)
    assert r.status_code == 201, r.get_json()


def test_viewer_cannot_engage_or_undo(client, users, shop, backend):
    """Engage and undo need the editor role (403); viewers may list."""
    assert _engage(client, users["viewer"], shop, {"scope": "namespace"}).status_code == 403
    assert client.delete(f"{API}/{shop}/kill-switches/abc", headers=users["viewer"].headers).status_code == 403
    assert client.get(f"{API}/{shop}/kill-switches", headers=users["viewer"].headers).status_code == 200
    assert backend.store.revision(shop) == 3


def test_reserved_ids_are_refused_on_normal_writes(client, users, ns, backend):
    """Rule ids in the kill switches' reserved space are refused by the rule API (400 naming id)."""
    r = _put(client, users["editor"], ns, {**degrade_rule("0--kill.abc.0")})
    assert r.status_code == 400 and "reserved" in r.get_json()["fields"]["id"], r.get_json()
    assert backend.store.revision(ns) == 0


def test_idempotency_key_replays_the_engage(client, users, ns, backend):
    """A retried engage with the same Idempotency-Key replays the first answer and engages nothing more."""
    first = _engage(client, users["editor"], ns, {"scope": "namespace"}, **{"Idempotency-Key": "ks-1"})
    again = _engage(client, users["editor"], ns, {"scope": "namespace"}, **{"Idempotency-Key": "ks-1"})
    assert first.status_code == again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json() and backend.store.revision(ns) == 1


def test_undo_without_the_record_still_finds_the_content_before(client, users, shop, backend):
    """The kill rules carry the switch id: with its record lost, undo still removes them and checks the digest
    against the revision before the engage commit (found in the log)."""
    before = backend.store.load_raw(shop)
    sid = _engage(client, users["editor"], shop, {"scope": "namespace"}).get_json()["kill_switch"]["id"]
    backend.store.client.hdel(Keys(shop).killswitch, sid)
    listed = client.get(f"{API}/{shop}/kill-switches", headers=users["viewer"].headers).get_json()["kill_switches"]
    assert listed[0]["id"] == sid and listed[0]["record"] is False and listed[0]["rules_present"] == 1
    assert listed[0]["scope"] == "namespace"  # told by its rule's scope
    body = client.delete(f"{API}/{shop}/kill-switches/{sid}", headers=users["editor"].headers).get_json()
    assert body["exact"] is True and body["revision_before"] == 3 and body["digest_before"] == before.digest


def test_preset_is_configurable_and_checked_at_start(admin_config):
    """RULEADMIN_KILL_SWITCH_PRESET must be a valid degrade action, else the app refuses to start."""
    with pytest.raises(ConfigError, match="RULEADMIN_KILL_SWITCH_PRESET"):
        create_app({**admin_config, "KILL_SWITCH_PRESET": '{"type": "static", "status": 99}'})
    with pytest.raises(ConfigError, match="RULEADMIN_KILL_SWITCH_PRESET"):
        create_app({**admin_config, "KILL_SWITCH_PRESET": "not json"})
    app = create_app({**admin_config, "KILL_SWITCH_PRESET": {"type": "reject", "status": 429}})
    app.extensions["ruleadmin"].close()


# ---- web -----------------------------------------------------------------------------------------------------
def _login(client, user):
    page = client.get("/login")
    r = client.post("/login", data={"username": user.username, "password": PASSWORD, "csrf_token": _csrf(page.data)})
    assert r.status_code == 302
    return client


def test_web_engage_banner_and_undo(app, users, shop, backend):
    """Button -> confirmation form -> banner on the namespace pages -> undo confirmation -> exact undo; every POST
    needs the CSRF token; a viewer sees the banner without buttons."""
    editor = _login(app.test_client(), users["editor"])
    page = editor.get(f"/ns/{shop}/")
    assert b'id="kill-switch"' in page.data and b"killswitch-" not in page.data
    form = editor.get(f"/ns/{shop}/kill-switch")
    assert form.status_code == 200 and b'id="namespace-scope-help"' in form.data
    assert b"<strong>one rule</strong> of scope namespace" in form.data and b"every request" in form.data
    assert b"shop.example.com/checkout" not in form.data  # the routes are no longer listed (nor read)
    assert editor.post(f"/ns/{shop}/kill-switch", data={"scope": "namespace"}).status_code == 400  # no CSRF
    bad = editor.post(f"/ns/{shop}/kill-switch", data={"csrf_token": _csrf(form.data), "scope": "route",
                                                      "host": "bad host", "path": "/", "response": "preset"})
    assert bad.status_code == 400 and b'data-field="host"' in bad.data and backend.store.revision(shop) == 3
    r = editor.post(f"/ns/{shop}/kill-switch", data={"csrf_token": _csrf(form.data), "scope": "namespace",
                                                    "response": "static", "status": "503", "body": "down"})
    assert r.status_code == 302, r.data
    sid = json.loads(backend.store.client.hvals(Keys(shop).killswitch)[0])["id"]
    assert _decide(backend, shop, "x.example", "/")["body"] == "down"
    for url in (f"/ns/{shop}/", f"/ns/{shop}/history", f"/ns/{shop}/fleet"):
        shown = editor.get(url)
        assert f'id="killswitch-{sid}"'.encode() in shown.data and f'id="undo-{sid}"'.encode() in shown.data, url
    assert b"kill-switch by " in editor.get(f"/ns/{shop}/history").data
    viewer = _login(app.test_client(), users["viewer"])
    seen = viewer.get(f"/ns/{shop}/")
    assert f'id="killswitch-{sid}"'.encode() in seen.data and b'id="undo-' not in seen.data
    assert viewer.get(f"/ns/{shop}/kill-switch").status_code == 403
    confirm = editor.get(f"/ns/{shop}/kill-switch/{sid}/undo")
    assert confirm.status_code == 200 and b'id="confirm-undo"' in confirm.data
    assert editor.post(f"/ns/{shop}/kill-switch/{sid}/undo", data={}).status_code == 400  # no CSRF
    done = editor.post(f"/ns/{shop}/kill-switch/{sid}/undo", data={"csrf_token": _csrf(confirm.data)},
                       follow_redirects=True)
    assert b"the rules equal the content before it" in done.data and f"killswitch-{sid}".encode() not in done.data
    assert b"1 rule(s) removed" in done.data and backend.store.revision(shop) == 5


def test_web_refuses_reserved_ids_in_the_rule_form(app, users, ns, backend):
    """The degrade form refuses an id in the reserved space next to the id field."""
    editor = _login(app.test_client(), users["editor"])
    page = editor.get(f"/ns/{ns}/rules/new?kind=degrade")
    r = editor.post(f"/ns/{ns}/rules/new?kind=degrade", data={
        "csrf_token": _csrf(page.data), "id": "0--kill.x.0", "host": "shop.example.com", "path": "/",
        "enabled": "y", "action_type": "reject", "percent": "100"})
    assert r.status_code == 400 and b"reserved for kill switches" in r.data and backend.store.revision(ns) == 0


# ---- CLI -----------------------------------------------------------------------------------------------------
@pytest.fixture()
def cli(monkeypatch, capsys, admin_config):
    """`ruleadmin *args` in-process with the test config: returns (status, stdout, stderr)."""
    for key, value in server_env(admin_config).items():
        if key.startswith("RULEADMIN_"):
            monkeypatch.setenv(key, value)

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        status = main(list(args))
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


def test_cli_engage_list_undo(cli, shop, backend):
    """kill-switch engage (route, custom status/body), list and undo; bad input exits 2 naming the option."""
    status, out, err = cli("kill-switch", "engage", "--namespace", shop, "--host", "shop.example.com",
                           "--path", "/checkout", "--status", "502", "--body", "gone")
    assert status == 0, err
    sid = json.loads(out)["kill_switch"]["id"]
    assert _decide(backend, shop, "shop.example.com", "/checkout")["status"] == 502
    assert backend.store.history(shop, None, 1)[0].actor.startswith("cli")
    status, out, _err = cli("kill-switch", "list", "--namespace", shop)
    assert status == 0 and json.loads(out.splitlines()[0])["id"] == sid
    status, out, err = cli("kill-switch", "undo", "--namespace", shop, "--id", sid)
    assert status == 0 and json.loads(out)["exact"] is True, err
    status, _out, err = cli("kill-switch", "engage", "--namespace", shop, "--host", "bad host")
    assert status == 2 and "--host" in err and "Traceback" not in err
    status, _out, err = cli("kill-switch", "engage", "--namespace", shop, "--upstream", "x", "--status", "503")
    assert status == 2 and "--upstream" in err
    status, _out, err = cli("kill-switch", "undo", "--namespace", shop, "--id", sid)
    assert status == 1 and sid in err
    UpstreamRegistry(backend.store.client).declare(shop, ["stable", "canary"])
    status, _out, err = cli("kill-switch", "engage", "--namespace", shop, "--upstream", "fallbak")
    assert status == 2 and "--upstream" in err and "--force" in err and backend.store.revision(shop) == 5


# ---- a real gateway ------------------------------------------------------------------------------------------
def test_agent_applies_the_kill_switch_and_its_undo(cluster, client, users, shop):
    """A running gateway agent serves the preset once the switch is committed, and the split again after undo."""
    agent = RuleClient(cluster.startup_nodes, shop, refresh_interval=0.2, heartbeat_interval=0.5,
                       budget=BudgetConfig(deadline=1.0, socket_timeout=0.3, connect_timeout=0.2)).start()
    try:
        req = {"host": "shop.example.com", "path": "/", "ip": "10.0.0.1"}
        assert agent.decide(req).action == "proxy"
        body = _engage(client, users["editor"], shop, {"scope": "namespace"}).get_json()
        assert agent.wait_for_revision(body["revision"], 5.0)
        d = agent.decide(req)
        assert d.action == "respond" and d.status == 503 and d.body == PRESET["body"]
        undone = client.delete(f"{API}/{shop}/kill-switches/{body['kill_switch']['id']}",
                               headers=users["editor"].headers).get_json()
        assert agent.wait_for_revision(undone["revision"], 5.0)
        assert agent.decide(req).action == "proxy"
    finally:
        agent.stop()


def test_a_full_namespace_still_takes_a_kill_switch(admin_config, users, monkeypatch):
    """At its rule limit a namespace refuses a new rule (413) but takes a kill switch: the emergency brake has
    KILL_HEADROOM past the limits; past the headroom (here 1 rule, taken by the route switch) it is refused too,
    naming the limit."""
    from ruleadmin import killswitch

    app = create_app({**admin_config, "NAMESPACE_MAX_RULES": 3})
    try:
        backend = app.extensions["ruleadmin"]
        ns = "full" + re.sub(r"[^a-z0-9]", "", users["admin"].username)[-6:]
        backend.rules.create_namespace(ns)
        client = app.test_client()
        headers = users["admin"].headers
        for i in range(3):
            rule = {**split_rule(f"r{i}"), "route": {"host": f"h{i}.example.com", "path": "/"}}
            assert client.put(f"/api/v1/namespaces/{ns}/rules/r{i}", json=rule, headers=headers).status_code == 201
        extra = {**split_rule("r9"), "route": {"host": "h9.example.com", "path": "/"}}
        assert client.put(f"/api/v1/namespaces/{ns}/rules/r9", json=extra, headers=headers).status_code == 413
        r = client.post(f"/api/v1/namespaces/{ns}/kill-switches", headers=headers,
                        json={"scope": "route", "route": {"host": "h1.example.com", "path": "/"}})
        assert r.status_code == 201, r.get_json()
        assert len(backend.store.load(ns).rules) == 4
        monkeypatch.setattr(killswitch, "KILL_HEADROOM", (1, 1 << 20))
        r = client.post(f"/api/v1/namespaces/{ns}/kill-switches", headers=headers, json={"scope": "namespace"})
        assert r.status_code == 413 and r.get_json()["limit"] == "rules", r.get_json()
    finally:
        app.extensions["ruleadmin"].close()


def test_namespace_switch_on_many_routes_is_one_rule_where_per_route_rules_got_413(admin_config, users):
    """A full namespace of 300 distinct routes (RULEADMIN_NAMESPACE_MAX_RULES 300): one kill rule per route plus
    * / (what a namespace switch used to commit) passes the limit and KILL_HEADROOM and is refused, but the
    namespace switch commits one rule of scope namespace that answers every route; its undo is exact."""
    routes = 300
    app = create_app({**admin_config, "NAMESPACE_MAX_RULES": routes})
    try:
        backend = app.extensions["ruleadmin"]
        ns = "many" + re.sub(r"[^a-z0-9]", "", users["admin"].username)[-6:]
        backend.rules.create_namespace(ns)
        seeded = [validate_rule({**split_rule(f"r{i:03d}"), "route": {"host": f"h{i % 7}.example.com",
                                                                        "path": f"/p{i}"},
                                 "updated_by": "seed", "updated_at": 1}) for i in range(routes)]
        backend.store.commit(ns, [(r["id"], encode_rule(r)) for r in seeded], None, "seed", op="put")
        before = backend.store.load_raw(ns)
        per_route = [validate_rule({"id": f"{KILL_PREFIX}old.{n}", "kind": "degrade", "route": route,
                                    "action": {"type": "reject", "status": 503}, "percent": 100})
                     for n, route in enumerate([r["route"] for r in seeded] + [{"host": "*", "path": "/"}])]
        with pytest.raises(NamespaceLimitError):  # the former namespace switch: 301 rules, past 300 + 256
            backend.store.commit(ns, [(r["id"], encode_rule(r)) for r in per_route], before.revision, "old",
                                 op=OP_ENGAGE, create_only=True, headroom=KILL_HEADROOM)
        client = app.test_client()
        r = client.post(f"{API}/{ns}/kill-switches", headers=users["admin"].headers, json={"scope": "namespace"})
        assert r.status_code == 201, r.get_json()
        record = r.get_json()["kill_switch"]
        assert record["rule_ids"] == [f"{KILL_PREFIX}{record['id']}.0"] and record["revision_before"] == 1
        _rev, kill = backend.rules.get_rule(ns, record["rule_ids"][0])
        assert kill["scope"] == "namespace" and kill["route"] == {"host": "*", "path": "/"}
        assert len(backend.store.load_raw(ns).raw) == routes + 1
        for i in (0, 1, 150, 299):
            d = _decide(backend, ns, f"h{i % 7}.example.com", f"/p{i}/x", "POST")
            assert d["action"] == "respond" and d["rule_id"] == kill["id"], (i, d)
        body = client.delete(f"{API}/{ns}/kill-switches/{record['id']}", headers=users["admin"].headers).get_json()
        assert body["exact"] is True and body["removed_rules"] == [kill["id"]], body
        assert backend.store.load_raw(ns).raw == before.raw
        assert _decide(backend, ns, "h0.example.com", "/p0/x")["action"] == "proxy"
    finally:
        app.extensions["ruleadmin"].close()


def test_a_switch_engaged_by_an_older_ruleadmin_still_lists_and_undoes(client, users, shop, backend):
    """A namespace switch as an older ruleadmin engaged it (one kill rule per route plus * /, op kill-switch, its
    record naming them) is listed with all its rules and undone exactly: every one of them is removed."""
    before = backend.store.load_raw(shop)
    sid = "0ld5w1tc"
    places = sorted({(r["route"]["host"], r["route"]["path"]) for r in backend.store.load(shop).rules.values()}
                    | {("*", "/")})
    kill = [validate_rule({"id": f"{KILL_PREFIX}{sid}.{n}", "kind": "degrade", "route": {"host": h, "path": p},
                           "action": {"type": "reject", "status": 503}, "percent": 100, "updated_by": "old",
                           "updated_at": 1_700_000_000}) for n, (h, p) in enumerate(places)]
    result = backend.store.commit(shop, [(r["id"], encode_rule(r)) for r in kill], before.revision, "old",
                                  op=OP_ENGAGE, create_only=True, headroom=KILL_HEADROOM)
    record = {"id": sid, "namespace": shop, "scope": "namespace", "route": None, "action": kill[0]["action"],
              "engaged_by": "old", "engaged_at": 1_700_000_000, "engaged_at_iso": "2023-11-14T22:13:20Z",
              "revision_before": before.revision, "digest_before": before.digest,
              "rule_ids": [r["id"] for r in kill], "revision": result.revision}
    backend.store.client.hset(Keys(shop).killswitch, sid, json.dumps(record, sort_keys=True))
    assert len(kill) == 4
    listed = client.get(f"{API}/{shop}/kill-switches", headers=users["viewer"].headers).get_json()["kill_switches"]
    assert [(s["id"], s["rules_present"], s["scope"]) for s in listed] == [(sid, 4, "namespace")]
    body = client.delete(f"{API}/{shop}/kill-switches/{sid}", headers=users["editor"].headers).get_json()
    assert body["exact"] is True and sorted(body["removed_rules"]) == sorted(r["id"] for r in kill), body
    assert backend.store.load_raw(shop).raw == before.raw
    assert client.get(f"{API}/{shop}/kill-switches", headers=users["viewer"].headers).get_json()["kill_switches"] == []

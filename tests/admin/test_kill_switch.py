"""Kill switches (ruleadmin.killswitch) through the REST API, the web UI and the CLI: engage degrades every route
(or one) in one revision, undo removes exactly its rules and checks the digest against the content before it."""
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
from ruleadmin.killswitch import KILL_PREFIX
from ruleadmin.upstreams import UpstreamRegistry
from rulegate.keyspace import Keys

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
    """Engaging namespace-wide commits one revision with a kill rule per route plus * /: every existing route,
    every method and an unknown host answer the preset; the record names who, when and the content before."""
    before = backend.store.load_raw(shop)
    r = _engage(client, users["editor"], shop, {"scope": "namespace"})
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    record = body["kill_switch"]
    assert body["revision"] == 4 and record["revision"] == 4 and record["revision_before"] == 3
    assert record["digest_before"] == before.digest and record["engaged_by"] == users["editor"].username
    assert len(record["rule_ids"]) == 4 and all(i.startswith(KILL_PREFIX + record["id"] + ".")
                                                for i in record["rule_ids"])
    for host, path, method in (("shop.example.com", "/", "GET"), ("shop.example.com", "/checkout/pay", "GET"),
                               ("api.example.com", "/v1/x", "POST"), ("api.example.com", "/v1/x", "DELETE"),
                               ("nobody.example.org", "/anything", "PUT")):
        d = _decide(backend, shop, host, path, method)
        assert d["action"] == "respond" and {k: d[k] for k in PRESET} == PRESET, (host, path, d)
        assert d["rule_id"] in record["rule_ids"]
    entry = backend.store.history(shop, None, 1)[0]
    assert entry.op == "kill-switch" and entry.actor == users["editor"].username and len(entry.changes) == 4
    listed = client.get(f"{API}/{shop}/kill-switches", headers=users["viewer"].headers).get_json()
    assert [s["id"] for s in listed["kill_switches"]] == [record["id"]]
    assert listed["kill_switches"][0]["rules_present"] == 4


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


def test_engage_reports_a_degrade_rule_that_sorts_first(client, users, ns, backend):
    """An enabled degrade rule whose id sorts before the kill rule on a covered route is named in the answer."""
    assert _put(client, users["editor"], ns, {**degrade_rule("0"), "percent": 1}).status_code == 201
    body = _engage(client, users["editor"], ns, {"scope": "namespace"}).get_json()
    assert [s["id"] for s in body["shadowed_by"]] == ["0"] and "0" in body["warnings"][0]


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
    assert listed[0]["id"] == sid and listed[0]["record"] is False and listed[0]["rules_present"] == 4
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
    assert form.status_code == 200 and b"shop.example.com/checkout" in form.data
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
    assert backend.store.revision(shop) == 5


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
    KILL_HEADROOM past the limits; past the headroom it is refused too, naming the limit."""
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
        monkeypatch.setattr(killswitch, "KILL_HEADROOM", (2, 1 << 20))
        r = client.post(f"/api/v1/namespaces/{ns}/kill-switches", headers=headers, json={"scope": "namespace"})
        assert r.status_code == 413 and r.get_json()["limit"] == "rules", r.get_json()
    finally:
        app.extensions["ruleadmin"].close()

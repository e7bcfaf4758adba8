"""Fleet exposure: requests/min per rule and upstream summed over the live gateways, last match, idle rules."""
from __future__ import annotations

import re
import time

import pytest

from rulegate.fleet import Exposure, Heartbeat
from rulegate.keyspace import Keys
from rulegate.schema import validate_rule

from .conftest import PASSWORD, split_rule

pytestmark = pytest.mark.integration


def _old_rule(rule_id: str, path: str, updated_at: int) -> dict:
    return validate_rule({**split_rule(rule_id), "route": {"host": "app.example.com", "path": path},
                          "updated_by": "x", "updated_at": updated_at})


def _login(client, users) -> None:
    page = client.get("/login")
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data).group(1).decode()
    client.post("/login", data={"username": users["viewer"].username, "password": PASSWORD, "csrf_token": token})


def test_fleet_sums_live_gateways_and_flags_idle_rules(client, users, ns, backend):
    """Two live gateways' windows are summed as requests/min per rule and upstream; a silent one and an old-format
    one are left out; an old rule nobody matched is idle, a rule younger than the threshold is not."""
    now = time.time()
    old = int(now - 7200)
    backend.store.put_rule(ns, _old_rule("web", "/", old), None, "x")
    backend.store.put_rule(ns, _old_rule("idle", "/idle", old), None, "x")
    backend.rules.put_rule(ns, {**split_rule("fresh"), "route": {"host": "app.example.com", "path": "/fresh"}},
                           None, "x")
    gen = backend.store.load(ns).generation
    a = Exposure(since=now - 7200, window=10.0, counts=(("web", "v1", 100), ("", "@pass", 20)),
                 last_match={"web": now - 5})
    b = Exposure(since=now - 100, window=5.0, counts=(("web", "v1", 50), ("web", "v2", 10)),
                 last_match={"web": now - 2})
    silent = Exposure(since=now - 9000, window=5.0, counts=(("idle", "v1", 1000),), last_match={"idle": now - 900})
    beats = {"gw-a": Heartbeat("agent", 3, gen, now, now, 0.1, exposure=a).encode(),
             "gw-b": Heartbeat("nginx", 3, gen, now, now, 0.1, exposure=b).encode(),
             "gw-c": Heartbeat("agent", 3, gen, now - 900, now - 900, 900.0, exposure=silent).encode(),
             "gw-d": Heartbeat("nginx", 3, gen, now, now, 0.1).encode()}
    backend.store.client.hset(Keys(ns).fleet, mapping=beats)
    data = client.get(f"/api/v1/namespaces/{ns}/fleet", headers=users["viewer"].headers).get_json()
    ex = data["exposure"]
    assert ex["gateways"] == 2 and ex["idle_after"] == 3600
    assert ex["rules"]["web"]["per_minute"] == 1320.0  # 100/10 s + 50/5 s + 10/5 s, per minute
    assert ex["rules"]["web"]["targets"] == {"v1": 1200.0, "v2": 120.0}
    assert ex["rules"]["web"]["last_match_at"] == pytest.approx(now - 2)
    assert ex["targets"] == {"@pass": 120.0, "v1": 1200.0, "v2": 120.0} and ex["pass_per_minute"] == 120.0
    assert ex["idle"] == ["idle"] and ex["rules"]["idle"]["last_match_at"] is None
    assert not ex["rules"]["fresh"]["idle"]
    rows = {g["id"]: g for g in data["gateways"]}
    assert rows["gw-a"]["exposure"]["per_minute"] == 720.0 and rows["gw-d"]["exposure"] is None
    _login(client, users)
    fleet_page = client.get(f"/ns/{ns}/fleet").data.decode()
    assert 'id="idle-rules"' in fleet_page and 'id="exposure-idle" class="idle"' in fleet_page
    assert re.search(r'id="exposure-web".*?<td>1320\.0</td>', fleet_page, re.S)
    rules_page = client.get(f"/ns/{ns}/").data.decode()
    assert re.search(r'id="rule-idle".*?idle-rule', rules_page, re.S)
    assert "idle-rule" not in re.search(r'id="rule-fresh".*?</tr>', rules_page, re.S).group(0)
    rule_page = client.get(f"/ns/{ns}/rules/web/").data.decode()
    assert "1320.0 requests/min over 2 reporting gateway(s): v1 1200.0/min, v2 120.0/min" in rule_page


def test_idle_needs_a_gateway_that_counted_long_enough(client, users, ns, backend):
    """A rule is not flagged while every reporting gateway started counting less than the threshold ago."""
    now = time.time()
    backend.store.put_rule(ns, _old_rule("idle", "/idle", int(now - 7200)), None, "x")
    beat = Heartbeat("agent", 1, backend.store.load(ns).generation, now, now, 0.1,
                     exposure=Exposure(since=now - 60, window=5.0))
    backend.store.client.hset(Keys(ns).fleet, "gw-new", beat.encode())
    ex = client.get(f"/api/v1/namespaces/{ns}/fleet", headers=users["viewer"].headers).get_json()["exposure"]
    assert ex["gateways"] == 1 and ex["idle"] == [] and ex["per_minute"] == 0.0

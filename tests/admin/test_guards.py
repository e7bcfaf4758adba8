"""The guard watcher against the real cluster: gateways' heartbeats (written here as a gateway would) feed the
fleet's windows; a breached guard halts its ramp with one revision attributed to the guard; the pages show why."""
from __future__ import annotations

import re
import time

import msgpack
import pytest

from ruleadmin.guards import GuardWatcher, guards_key, outcomes_key, read_guards
from rulegate.fleet import Heartbeat
from rulegate.keyspace import Keys
from rulegate.outcomes import N_LATENCY, OutcomeCounts, Outcomes, latency_bucket, status_class
from rulegate.schema import ramp_share, validate_rule

from .conftest import PASSWORD

pytestmark = pytest.mark.integration


def oc(ok: int, err: int = 0, ms: float = 3.0) -> OutcomeCounts:
    classes, latency = [0] * 6, [0] * N_LATENCY
    classes[status_class(200)] += ok
    classes[status_class(502)] += err
    latency[latency_bucket(ms)] += ok + err
    return OutcomeCounts(tuple(classes), tuple(latency))


def guarded_rule(now: int, on_breach: str = "revert") -> dict:
    return validate_rule({
        "id": "search", "kind": "split", "route": {"host": "shop.example.com", "path": "/search"},
        "key": {"source": "header", "name": "x-uid"}, "default": "stable",
        "policies": [{"type": "percent", "buckets": [{"upstream": "canary", "weight": 1}],
                      "ramp": {"start": now - 600, "end": now + 3000, "from": 0, "to": 10000, "mode": "linear",
                               "guard": {"control": "stable", "min_requests": 50, "window": 30,
                                         "max_error_increase": 0.05, "on_breach": on_breach}}}]})


class Gateway:
    """Writes heartbeats with cumulative outcome counts for one rule, like an agent would."""

    def __init__(self, client, ns: str, gateway_id: str, since: float):
        self.client, self.ns, self.id, self.since = client, ns, gateway_id, since
        self.counts: dict[tuple[str, str], OutcomeCounts] = {}

    def serve(self, at: float, **per_upstream: OutcomeCounts) -> None:
        for upstream, gained in per_upstream.items():
            key = ("search", upstream)
            self.counts[key] = self.counts.get(key, OutcomeCounts()).plus(gained)
        beat = Heartbeat(kind="agent", revision=1, generation="", applied_at=at, heartbeat_at=at, staleness=0.0,
                         outcomes=Outcomes(self.since, dict(self.counts)))
        self.client.hset(Keys(self.ns).fleet, self.id, beat.encode())


def test_a_breached_guard_halts_the_ramp_once_attributed_to_the_guard(backend, ns, app, users):
    store, now = backend.store, time.time()
    clock = [now]
    rule = guarded_rule(int(now))
    store.put_rule(ns, rule, None, "alice")
    watcher = GuardWatcher(store, namespaces=[ns], clock=lambda: clock[0], watcher_id="w-test")
    standby = GuardWatcher(store, namespaces=[ns], clock=lambda: clock[0], watcher_id="w-standby")
    g1, g2 = Gateway(store.client, ns, "agent-1", now - 5), Gateway(store.client, ns, "nginx-1", now - 5)

    g1.serve(now, canary=oc(20), stable=oc(100))
    assert watcher.run_once() == [] and standby.run_once() == []
    assert watcher.leading == {ns} and standby.leading == set()
    first = read_guards(store.client, ns, clock[0])
    assert first["watcher"]["id"] == "w-test" and first["watcher"]["live"]
    verdict = first["rules"]["search"]["verdicts"][0]
    assert verdict["state"] == "insufficient" and "canary: 20 of 50" in verdict["reason"]

    # a second gateway's canary requests fail: together 60 canary requests, 33% errors vs 2% on stable
    clock[0] = now + 1
    g1.serve(now + 1, canary=oc(20), stable=oc(50, err=3))
    g2.serve(now + 1, canary=oc(0, err=20), stable=oc(100))
    halts = watcher.run_once()
    assert [(h.rule_id, h.error) for h in halts] == [("search", "")]
    halted_rev = halts[0].revision
    assert store.revision(ns) == halted_rev
    stored = store.load(ns).rules["search"]
    ramp = stored["policies"][0]["ramp"]
    assert (ramp["from"], ramp["to"]) == (0, 0) and ramp["guard"] == rule["policies"][0]["ramp"]["guard"]
    assert ramp_share(ramp, clock[0]) == 0 and stored["updated_by"] == "guard"
    entry = store.history(ns, limit=1)[0]
    assert (entry.revision, entry.op, entry.actor) == (halted_rev, "guard-halt", "guard")
    record = read_guards(store.client, ns, clock[0])["rules"]["search"]
    assert record["halted"]["revision"] == halted_rev and "error ratio" in record["halted"]["reasons"][0]

    # the flat ramp is not judged again, and the halt record stays for the pages
    clock[0] = now + 2
    g2.serve(now + 2, canary=oc(0, err=20))
    assert watcher.run_once() == [] and store.revision(ns) == halted_rev
    assert read_guards(store.client, ns, clock[0])["rules"]["search"]["halted"]["revision"] == halted_rev

    # the fleet's outcome summary and the pages
    summary = msgpack.unpackb(store.client.get(outcomes_key(ns)), raw=False)
    assert {(c[0], c[1]) for c in summary["counts"]} == {("search", "canary"), ("search", "stable")}
    c = app.test_client()
    page = c.get("/login")
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data).group(1).decode()
    c.post("/login", data={"username": users["viewer"].username, "password": PASSWORD, "csrf_token": token})
    html = c.get(f"/ns/{ns}/rules/search/").get_data(as_text=True)
    assert 'id="guard-halted"' in html and f"revision {halted_rev}" in html and 'id="guard-unwatched"' not in html
    fleet = c.get(f"/ns/{ns}/fleet").get_data(as_text=True)
    assert 'id="outcome-search-canary"' in fleet and "halted" in fleet
    api = app.test_client().get(f"/api/v1/namespaces/{ns}/fleet", headers=users["viewer"].headers).get_json()
    assert api["outcomes"]["rules"]["search"]["canary"]["errors"] == 40
    assert api["guards"]["rules"]["search"]["halted"]["revision"] == halted_rev

    # the halt record stays while its rule exists, and goes with it
    store.delete_rule(ns, "search", None, "alice")
    clock[0] = now + 3
    watcher.run_once()
    assert "search" not in read_guards(store.client, ns, clock[0])["rules"]


def test_freeze_keeps_the_share_and_an_edit_in_between_wins(backend, ns):
    store, now = backend.store, time.time()
    clock = [now]
    store.put_rule(ns, guarded_rule(int(now), on_breach="freeze"), None, "alice")
    watcher = GuardWatcher(store, namespaces=[ns], clock=lambda: clock[0], watcher_id="w-freeze")
    gw = Gateway(store.client, ns, "agent-1", now)
    gw.serve(now, canary=oc(10, err=60), stable=oc(200))
    halts = watcher.run_once()
    assert len(halts) == 1 and halts[0].revision is not None
    ramp = store.load(ns).rules["search"]["policies"][0]["ramp"]
    expected = ramp_share(guarded_rule(int(now))["policies"][0]["ramp"], now)
    assert ramp["from"] == ramp["to"] == expected > 0

    # an operator writes a new ramp between the watcher's reading and its write: the write is refused by the
    # rule's ETag condition and the operator's content stays
    ns2_rule = guarded_rule(int(now))
    store.put_rule(ns, ns2_rule, None, "alice")
    rev = store.revision(ns)
    original_hget = store.client.hget
    stale = original_hget(Keys(ns).rules, "search")
    store.put_rule(ns, {**ns2_rule, "description": "edited"}, None, "bob")
    store.client.hget = lambda *a, **k: stale  # the watcher read the rule before bob's edit
    try:
        clock[0] = now + 1
        gw.serve(now + 1, canary=oc(0, err=100))
        halts = watcher.run_once()
    finally:
        del store.client.hget
    assert len(halts) == 1 and halts[0].revision is None and halts[0].error
    assert store.revision(ns) == rev + 1 and store.load(ns).rules["search"]["description"] == "edited"


def test_the_pages_say_when_no_watcher_judges_a_guarded_ramp(backend, ns, app, users):
    store = backend.store
    store.put_rule(ns, guarded_rule(int(time.time())), None, "alice")
    store.client.delete(guards_key(ns))
    c = app.test_client()
    page = c.get("/login")
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data).group(1).decode()
    c.post("/login", data={"username": users["viewer"].username, "password": PASSWORD, "csrf_token": token})
    assert 'id="guard-unwatched"' in c.get(f"/ns/{ns}/rules/search/").get_data(as_text=True)

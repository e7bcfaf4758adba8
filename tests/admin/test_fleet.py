"""Fleet view: gateways' heartbeats from {rg:<ns>}:fleet with laggards flagged."""
from __future__ import annotations

import time

import pytest

from rulegate.fleet import Heartbeat
from rulegate.keyspace import Keys

from .conftest import split_rule

pytestmark = pytest.mark.integration


def test_fleet_flags_laggards_and_silent_gateways(client, users, ns, backend):
    """A current, a lagging, a silent and an undecodable gateway are each reported as such."""
    backend.rules.put_rule(ns, split_rule("web"), None, "x")
    backend.rules.put_rule(ns, split_rule("web", 7), 1, "x")
    gen = backend.store.load(ns).generation
    now = time.time()
    beats = {"gw-a": Heartbeat("agent", 2, gen, now, now, 0.5).encode(),
             "gw-b": Heartbeat("nginx", 1, gen, now, now, 0.5).encode(),
             "gw-c": Heartbeat("agent", 2, gen, now - 900, now - 900, 900.0, "redis down").encode(),
             "gw-d": b"\xc1garbage"}
    backend.store.client.hset(Keys(ns).fleet, mapping=beats)
    r = client.get(f"/api/v1/namespaces/{ns}/fleet", headers=users["viewer"].headers)
    assert r.status_code == 200
    status = {g["id"]: g["status"] for g in r.get_json()["gateways"]}
    assert status == {"gw-a": "current", "gw-b": "lagging", "gw-c": "silent", "gw-d": "undecodable"}
    assert r.get_json()["revision"] == 2


def test_fleet_page_renders(client, users, ns, backend):
    """The web fleet page lists gateways for a logged-in viewer."""
    import re

    from .conftest import PASSWORD
    now = time.time()
    backend.store.client.hset(Keys(ns).fleet, "gw-x", Heartbeat("agent", 0, "", now, now, 0.0).encode())
    page = client.get("/login")
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data).group(1).decode()
    client.post("/login", data={"username": users["viewer"].username, "password": PASSWORD, "csrf_token": token})
    r = client.get(f"/ns/{ns}/fleet")
    assert r.status_code == 200 and b'id="gw-gw-x"' in r.data


def test_fleet_compares_content_not_revision_numbers(client, users, ns, backend):
    """Same revision but another digest is `diverged`, a refusing gateway is `refused`; both raise alarms
    shown in red on the fleet and rules pages, with the refusal's reason."""
    import re

    from .conftest import PASSWORD
    backend.rules.put_rule(ns, split_rule("web"), None, "x")
    state = backend.store.load(ns)
    now = time.time()
    beats = {"gw-same": Heartbeat("agent", 1, state.generation, now, now, 0.1, digest=state.digest).encode(),
             "gw-other": Heartbeat("nginx", 1, state.generation, now, now, 0.1, digest="f" * 40).encode(),
             "gw-refusing": Heartbeat("nginx", 1, state.generation, now, now, 0.1, digest=state.digest, stale=True,
                                      refused_revision=2, refused_reason="rule 'x': unknown kind").encode()}
    backend.store.client.hset(Keys(ns).fleet, mapping=beats)
    data = client.get(f"/api/v1/namespaces/{ns}/fleet", headers=users["viewer"].headers).get_json()
    status = {g["id"]: g["status"] for g in data["gateways"]}
    assert status == {"gw-same": "current", "gw-other": "diverged", "gw-refusing": "refused"}
    assert data["digest"] == state.digest and data["alarms"] == 2
    page = client.get("/login")
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data).group(1).decode()
    client.post("/login", data={"username": users["viewer"].username, "password": PASSWORD, "csrf_token": token})
    fleet_page = client.get(f"/ns/{ns}/fleet").data.decode()
    assert 'id="fleet-alarm"' in fleet_page and "cannot apply revision 2: rule &#39;x&#39;: unknown kind" in fleet_page
    assert 'class="status-diverged"' in fleet_page
    rules_page = client.get(f"/ns/{ns}/").data.decode()
    assert 'id="fleet-alarm"' in rules_page and "gw-refusing: refused" in rules_page

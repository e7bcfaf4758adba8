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

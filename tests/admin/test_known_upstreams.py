"""Known upstreams: reported by live gateways, declared by an admin; unknown names refused unless forced."""
from __future__ import annotations

import time

import pytest

from ruleadmin.upstreams import UpstreamRegistry, named_upstreams
from rulegate.fleet import Heartbeat
from rulegate.keyspace import Keys

from .conftest import degrade_rule, split_rule

pytestmark = pytest.mark.integration


def _beat(upstreams: tuple[str, ...], age: float = 0.0) -> bytes:
    now = time.time() - age
    return Heartbeat("agent", 0, "", now, now, 0.0, upstreams=upstreams).encode()


def _put(client, users, ns, rule, query=""):
    return client.put(f"/api/v1/namespaces/{ns}/rules/{rule['id']}{query}", json=rule,
                      headers=users["editor"].headers)


def test_named_upstreams_covers_every_field():
    """Every place a rule names an upstream is found with its field path."""
    rule = {"default": "d", "policies": [{"type": "header", "upstream": "p"},
                                         {"type": "percent", "buckets": [{"upstream": "b", "weight": 1}]}]}
    assert named_upstreams(rule) == {"default": "d", "policies[0].upstream": "p",
                                     "policies[1].buckets[0].upstream": "b"}
    assert named_upstreams({"action": {"type": "upstream", "upstream": "u"}}) == {"action.upstream": "u"}
    guarded = {"policies": [{"type": "percent", "buckets": [{"upstream": "b", "weight": 1}],
                             "ramp": {"guard": {"control": "c"}}}]}
    assert named_upstreams(guarded) == {"policies[0].buckets[0].upstream": "b", "policies[0].ramp.guard.control": "c"}


def test_unknown_bucket_upstream_refused_then_forced(client, users, ns, backend, watch):
    """With a live gateway reporting names, a typo is a 400 naming the field and writes nothing; force saves."""
    backend.store.client.hset(Keys(ns).fleet, "gw-1", _beat(("canary", "stable")))
    before = watch.before()
    r = _put(client, users, ns, split_rule("web", upstream="canarry"))
    assert r.status_code == 400
    assert "canarry" in r.get_json()["fields"]["policies[0].buckets[0].upstream"]
    assert watch.unchanged_since(before)
    assert _put(client, users, ns, split_rule("web")).status_code == 201
    forced = _put(client, users, ns, split_rule("web2", upstream="canarry"), "?force=true")
    assert forced.status_code == 201 and backend.store.revision(ns) == 2


def test_declared_upstreams_check_degrade_action(client, users, ns):
    """Declared names alone enable the check: a degrade action's unknown upstream is refused."""
    r = client.put(f"/api/v1/namespaces/{ns}/upstreams", json={"upstreams": ["stable", "fallback"]},
                   headers=users["admin"].headers)
    assert r.status_code == 200 and r.get_json()["known"] == ["fallback", "stable"]
    rule = {**degrade_rule("shed"), "action": {"type": "upstream", "upstream": "falback"}}
    r = _put(client, users, ns, rule)
    assert r.status_code == 400 and "action.upstream" in r.get_json()["fields"]
    rule["action"]["upstream"] = "fallback"
    assert _put(client, users, ns, rule).status_code == 201


def test_silent_gateways_names_expire(client, users, ns, app, backend):
    """A gateway that stopped reporting no longer makes names known: nothing is checked."""
    silent = float(app.config["FLEET_SILENT_SECONDS"])
    backend.store.client.hset(Keys(ns).fleet, "gw-old", _beat(("only-old",), age=silent + 30))
    assert UpstreamRegistry(backend.store.client).known(ns, silent).names == ()
    assert _put(client, users, ns, split_rule("web", upstream="anything")).status_code == 201
    body = client.get(f"/api/v1/namespaces/{ns}/upstreams", headers=users["viewer"].headers).get_json()
    assert body["checked"] is False and body["reported"] == {}


def test_no_known_names_means_no_refusal(client, users, ns):
    """With no gateway reporting and none declared, any well-formed upstream is accepted."""
    assert _put(client, users, ns, split_rule("web", upstream="typo-ok")).status_code == 201


@pytest.mark.parametrize("body,field", [({"upstreams": "a"}, "upstreams"), ({"upstreams": ["a b"]}, "upstreams[0]"),
                                        ({"names": []}, "names")])
def test_bad_declarations_are_400(client, users, ns, body, field, watch):
    """Malformed declarations name the field and write nothing."""
    before = watch.before()
    r = client.put(f"/api/v1/namespaces/{ns}/upstreams", json=body, headers=users["admin"].headers)
    assert r.status_code == 400 and field in r.get_json()["fields"]
    assert watch.unchanged_since(before)


def test_declaring_needs_admin(client, users, ns):
    """An editor may read the known names but not declare them."""
    r = client.put(f"/api/v1/namespaces/{ns}/upstreams", json={"upstreams": ["a"]}, headers=users["editor"].headers)
    assert r.status_code == 403
    assert client.get(f"/api/v1/namespaces/{ns}/upstreams", headers=users["viewer"].headers).status_code == 200


def test_bad_force_value_is_400(client, users, ns):
    """force must be a boolean word."""
    r = _put(client, users, ns, split_rule("web"), "?force=maybe")
    assert r.status_code == 400 and "force" in r.get_json()["fields"]

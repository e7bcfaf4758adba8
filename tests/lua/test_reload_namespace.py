"""A SIGHUP whose config names another namespace: nothing of the previous namespace is served or reported.

nginx keeps the shared dict across a reload. Before, the new workers compiled the previous namespace's rules from
it and routed by them until the first sync (forever, when the new namespace did not exist), and the first sync
reported the switch as "the store was rebuilt" (a new generation of the same namespace).
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from rulegate.store import RuleStore

from .conftest import Gateway, wait_for
from .test_gateway_sync import split_rule

pytestmark = pytest.mark.integration


def test_a_reload_onto_another_namespace_serves_none_of_the_previous_rules(
    make_gateway: Callable[..., Gateway], cluster: Any, store: RuleStore, namespace: str
) -> None:
    rev = store.put_rule(namespace, split_rule("r1", "b"), None, "test").revision
    other = namespace + "-b"
    other_rev = store.put_rule(other, split_rule("r2", "c", path="/other"), None, "test").revision
    gw = make_gateway(namespace, cluster.startup_nodes)
    gw.wait_revision(rev)
    assert gw.get("/").headers["x-echo-upstream"] == "b"

    gw.options["namespace"] = other
    gw.reload()
    r = gw.get("/")  # the first request to the new workers: not namespace's rule r1
    assert r.headers["x-echo-upstream"] != "b", r
    wait_for(lambda: gw.get("/other").headers["x-echo-upstream"] == "c",  # each worker picks up the new set
             "the other namespace's rules")
    st = gw.wait_revision(other_rev)
    assert st["namespace"] == other and st["in_sync"] is True, st
    for _ in range(10):  # every worker
        assert gw.get("/other").headers["x-echo-upstream"] == "c"
        assert gw.get("/").headers["x-echo-upstream"] == "default"  # r1 is not a rule of the other namespace
    lines = gw.log_lines()
    assert not [line for line in lines if "new generation" in line], lines  # not a "rebuilt store"
    assert any(f"held the rules of namespace {namespace}; emptied" in line for line in lines), lines


def test_a_reload_onto_a_missing_namespace_stops_serving_the_previous_one(
    make_gateway: Callable[..., Gateway], cluster: Any, store: RuleStore, namespace: str
) -> None:
    rev = store.put_rule(namespace, split_rule("r1", "b"), None, "test").revision
    gw = make_gateway(namespace, cluster.startup_nodes)
    held = gw.wait_revision(rev)
    gw.options["namespace"] = namespace + "-typo"
    gw.reload()
    st = gw.status_when(lambda st: st["state"] == "unknown_namespace", "state unknown_namespace")
    assert not st["revision"] and st["rules"] == 0 and st["generation"] != held["generation"], st  # nothing held
    for _ in range(10):  # every worker
        assert gw.get("/").headers["x-echo-upstream"] == "default"

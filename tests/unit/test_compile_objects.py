"""compile_rule builds its frozen objects without their dataclass __init__: they are exactly what __init__ makes."""
from __future__ import annotations

import dataclasses

import pytest

from rulegate.evaluator import CompiledRule, Decision, Request, RuleSet, compile_rule, decide, find_route
from rulegate.rule_items import _proxy
from rulegate.schema import validate_rule
from tests.unit.test_schema_fast import vector_rules


def test_proxy_decisions_are_the_constructors():
    """_proxy gives a Decision equal (fields, repr) to Decision("proxy", ...), and as frozen."""
    got = _proxy("canary", "r1", 7)
    want = Decision("proxy", upstream="canary", rule_id="r1", revision=7)
    assert type(got) is Decision and got == want and repr(got) == repr(want)
    assert dataclasses.replace(got, revision=8) == dataclasses.replace(want, revision=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.upstream = "other"  # type: ignore[misc]


@pytest.mark.parametrize("rule", vector_rules(), ids=lambda r: r["id"])
def test_compiled_rules_are_the_constructors(rule):
    """compile_rule's CompiledRule equals the constructor's with the same fields, and is frozen."""
    got = compile_rule(validate_rule(rule), 3)
    want = CompiledRule(got.rule_id, got.place, got.item, got.breaker)
    assert type(got) is CompiledRule and got == want and repr(got) == repr(want)
    assert got.place == (got.place[0], got.place[1]) and got.rule_id == rule["id"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.item = None  # type: ignore[misc]


def _split(rule_id: str, **more) -> dict:
    return validate_rule({"id": rule_id, "kind": "split", "route": {"host": "a.example.com", "path": "/p"},
                          "key": {"source": "header", "name": "x-uid"},
                          "policies": [{"type": "uid_suffix", "suffixes": ["7"], "upstream": "canary"}],
                          "default": "stable", **more})


def test_one_policy_splits_and_fast_routes_hold_no_one_tuples():
    """A one-policy split holds its policy, a route with one plain split holds it in `fast` only (48 B a rule
    each, issue 14); routes changing from fast to not and back decide as fresh compiles."""
    reqs = [Request(host="a.example.com", path="/p/x", method=m, headers={"x-uid": u})
            for m in ("GET", "POST") for u in ("17", "18")]
    rs = RuleSet([_split("r1")], 1)
    route = find_route(rs, reqs[0])
    assert route.fast is not None and route.splits == () and not isinstance(route.fast.checks, tuple)
    steps = [({"r0": _split("r0", route={"host": "a.example.com", "path": "/p", "methods": ["POST"]},
                            default="blue")}, set()),
             ({}, {"r0"}),
             ({"r1": _split("r1", enabled=False)}, set()),
             ({"r1": _split("r1", default="green")}, set())]
    held = {"r1": _split("r1")}
    for revision, (changed, removed) in enumerate(steps, 2):
        rs = rs.with_changes(changed, removed, revision, "")
        held = {i: r for i, r in {**held, **changed}.items() if i not in removed}
        fresh = RuleSet(held.values(), revision)
        assert [decide(rs, q) for q in reqs] == [decide(fresh, q) for q in reqs]
        route = find_route(rs, reqs[0])
        if route is not None and route.fast is not None:
            assert route.splits == ()

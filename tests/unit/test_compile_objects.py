"""compile_rule builds its frozen objects without their dataclass __init__: they are exactly what __init__ makes."""
from __future__ import annotations

import dataclasses

import pytest

from rulegate.evaluator import CompiledRule, Decision, _proxy, compile_rule
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

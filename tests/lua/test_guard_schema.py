"""lua/rulegate/schema.lua on tests/vectors/ramps.json "guards": nginx accepts every canonical guard and refuses,
naming the field, every guard Python refuses and every non-canonical one (Python runs the same file)."""
from __future__ import annotations

import copy
import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rulegate.schema import validate_rule
from tests.conftest import VECTORS
from tests.strategies import guards

from .decide_harness import DecideHarness

GUARDS = json.loads((VECTORS / "ramps.json").read_text())["guards"]


def with_guard(guard: object) -> dict:
    """Return the vectors' rule, stored as written (no Python validation), with guard at policies[0].ramp.guard."""
    rule = copy.deepcopy(GUARDS["rule"])
    rule["policies"][0]["ramp"]["guard"] = guard
    return rule


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DecideHarness]:
    """An nginx checking rules with lua/rulegate/schema.lua."""
    with DecideHarness(tmp_path_factory.mktemp("guards")) as h:
        yield h
        assert h.error_lines() == []


@pytest.fixture(scope="module")
def verdicts(harness: DecideHarness) -> dict[tuple[str, str], str | None]:
    """(kind, case name) -> the Lua schema's error (None: accepted), all vectors checked in one batch."""
    keys, rules = [], []
    for case in GUARDS["accepted"]:
        keys += [("canonical", case["name"]), ("input", case["name"])]
        rules += [with_guard(case["canonical"]), with_guard(case["guard"])]
    for case in GUARDS["refused"]:
        keys.append(("refused", case["name"]))
        rules.append(with_guard(case["guard"]))
    return dict(zip(keys, harness.check(rules)))


@pytest.mark.parametrize("case", GUARDS["accepted"], ids=[c["name"] for c in GUARDS["accepted"]])
def test_canonical_guards_are_accepted_and_other_spellings_refused(verdicts: dict, case: dict) -> None:
    """nginx takes the stored (canonical) guard; the input as written only when it holds the same values."""
    assert verdicts[("canonical", case["name"])] is None
    want = None if case["lua"] is None else f"{case['lua']} is invalid"
    assert verdicts[("input", case["name"])] == want


@pytest.mark.parametrize("case", GUARDS["refused"], ids=[c["name"] for c in GUARDS["refused"]])
def test_guards_python_refuses_are_refused(verdicts: dict, case: dict) -> None:
    """A guard ruleadmin would refuse, found in a stored rule, makes nginx refuse the rule naming the field Python
    names: its schema check by the same path, or the stored-form check (which runs first: a float where an integer
    goes, in a field known or not) by its key."""
    field = next(iter(case["errors"]))
    got = verdicts[("refused", case["name"])]
    if got.startswith("stored form the Python gateways refuse ("):
        assert f" in {field.rsplit('.', 1)[-1]}" in got, got
    else:
        assert got == f"{field} is invalid"


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(guards({"canary", "canary-b"}), min_size=40, max_size=40))
def test_every_canonical_guard_is_accepted(harness: DecideHarness, drawn: list[dict]) -> None:
    """120 random guards as written (hypothesis): nginx accepts each one Python stores."""
    canon = [validate_rule(with_guard(g)) for g in drawn]
    assert harness.check(canon) == [None] * len(canon)

"""lua/rulegate/schema.lua on tests/vectors/ramps.json "guards": nginx accepts every canonical guard and refuses,
naming the field, every guard Python refuses and every non-canonical one (Python runs the same file)."""
from __future__ import annotations

import copy
import json
from collections.abc import Iterator

import pytest

from tests.conftest import VECTORS

from .decide_harness import DecideHarness

GUARDS = json.loads((VECTORS / "ramps.json").read_text())["guards"]


def with_guard(guard: object) -> dict:
    """Return the vectors' rule, stored as written (no Python validation), with guard at policies[0].ramp.guard."""
    rule = copy.deepcopy(GUARDS["rule"])
    rule["policies"][0]["ramp"]["guard"] = guard
    return rule


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], str | None]]:
    """(kind, case name) -> the Lua schema's error (None: accepted), all vectors checked in one batch."""
    keys, rules = [], []
    for case in GUARDS["accepted"]:
        keys += [("canonical", case["name"]), ("input", case["name"])]
        rules += [with_guard(case["canonical"]), with_guard(case["guard"])]
    for case in GUARDS["refused"]:
        keys.append(("refused", case["name"]))
        rules.append(with_guard(case["guard"]))
    with DecideHarness(tmp_path_factory.mktemp("guards")) as h:
        yield dict(zip(keys, h.check(rules)))
        assert h.error_lines() == []


@pytest.mark.parametrize("case", GUARDS["accepted"], ids=[c["name"] for c in GUARDS["accepted"]])
def test_canonical_guards_are_accepted_and_other_spellings_refused(verdicts: dict, case: dict) -> None:
    """nginx takes the stored (canonical) guard; the input as written only when it holds the same values."""
    assert verdicts[("canonical", case["name"])] is None
    want = None if case["lua"] is None else f"{case['lua']} is invalid"
    assert verdicts[("input", case["name"])] == want


@pytest.mark.parametrize("case", GUARDS["refused"], ids=[c["name"] for c in GUARDS["refused"]])
def test_guards_python_refuses_are_refused(verdicts: dict, case: dict) -> None:
    """A guard ruleadmin would refuse, found in a stored rule, makes nginx refuse the rule naming the field."""
    assert verdicts[("refused", case["name"])] == f"{case['lua']} is invalid"

"""The Python evaluator passes every shared decision vector (the Lua router runs the same files)."""
from __future__ import annotations

import pytest

from rulegate.evaluator import Request, RuleSet, decide
from rulegate.schema import validate_rule
from tests.conftest import load_vectors, placed_ruleset

CASES = load_vectors()


def test_there_are_enough_vectors():
    """The vector files hold at least 60 cases."""
    assert len(CASES) >= 60


@pytest.mark.parametrize("build", ["compiled", "placed"])
@pytest.mark.parametrize("file,data,case", CASES, ids=[f"{f}:{c['name']}" for f, _, c in CASES])
def test_vector(file, data, case, build):
    """Every vector case gives exactly the expected decision fields, from a set compiled from the rules and from
    one placed by a full load (its rules compiled by the request: `place_rule`)."""
    rules = [validate_rule(r) for r in data["rules"]]
    rs = RuleSet(rules, data["revision"]) if build == "compiled" else placed_ruleset(rules, data["revision"])
    decision = decide(rs, Request.from_dict(case["request"])).to_dict()
    expect = dict(case["expect"])
    expect.setdefault("revision", data["revision"])
    got = {k: decision.get(k) for k in expect}
    assert got == expect

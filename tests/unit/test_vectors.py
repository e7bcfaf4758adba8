"""The Python evaluator passes every shared decision vector (the Lua router runs the same files)."""
from __future__ import annotations

import pytest

from rulegate.evaluator import Request, RuleSet, decide
from rulegate.schema import validate_rule
from tests.conftest import load_vectors

CASES = load_vectors()


def test_there_are_enough_vectors():
    """The vector files hold at least 60 cases."""
    assert len(CASES) >= 60


@pytest.mark.parametrize("file,data,case", CASES, ids=[f"{f}:{c['name']}" for f, _, c in CASES])
def test_vector(file, data, case):
    """Every vector case gives exactly the expected decision fields."""
    rules = [validate_rule(r) for r in data["rules"]]
    decision = decide(RuleSet(rules, data["revision"]), Request.from_dict(case["request"])).to_dict()
    expect = dict(case["expect"])
    expect.setdefault("revision", data["revision"])
    got = {k: decision.get(k) for k in expect}
    assert got == expect

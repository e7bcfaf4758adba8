"""RuleSet.with_changes (the agent's incremental compile) decides exactly as a full compile."""
from __future__ import annotations

import random

import pytest

from rulegate.evaluator import place_of, Request, RuleSet, decide
from rulegate.schema import validate_rule
from tests.conftest import load_vectors

CASES = load_vectors()
FILES = sorted({f for f, _, _ in CASES})
REQUESTS = [Request.from_dict(c["request"]) for _, _, c in CASES]


def rules_of(file: str) -> list[dict]:
    data = next(d for f, d, _ in CASES if f == file)
    return [validate_rule(r) for r in data["rules"]]


def decisions(rs: RuleSet) -> list[dict]:
    return [decide(rs, req).to_dict() for req in REQUESTS]


@pytest.mark.parametrize("file", FILES)
def test_rules_added_one_by_one_decide_like_a_full_compile(file: str) -> None:
    """A set built by one with_changes per rule gives the full compile's decisions for every request."""
    rules = rules_of(file)
    rs = RuleSet([], 0)
    for rev, rule in enumerate(rules, 1):
        rs = rs.with_changes({rule["id"]: rule}, (), rev, "g")
        assert decisions(rs) == decisions(RuleSet(rules[:rev], rev, "g"))


def test_random_puts_and_deletes_decide_like_a_full_compile() -> None:
    """Random puts, route moves, disables and deletes across all vector rules match a full compile."""
    pool = [r for f in FILES for r in rules_of(f)]
    rng = random.Random(7)
    held: dict[str, dict] = {}
    rs = RuleSet([], 0)
    for rev in range(1, 120):
        changed: dict[str, dict] = {}
        removed: list[str] = []
        for _ in range(rng.randint(1, 3)):
            rule = dict(rng.choice(pool))
            rule["id"] = f"r{rng.randint(0, 15)}"
            if rng.random() < 0.2:
                rule["enabled"] = False
            if rule["id"] in held and rng.random() < 0.3:
                removed.append(rule["id"])
                changed.pop(rule["id"], None)
            else:
                changed[rule["id"]] = rule
                if rule["id"] in removed:
                    removed.remove(rule["id"])
        before = decisions(rs)
        old = rs
        rs = rs.with_changes(changed, removed, rev, "g")
        for rule_id in removed:
            held.pop(rule_id, None)
        held.update(changed)
        assert decisions(old) == before  # copy-on-write: the old set is untouched
        assert decisions(rs) == decisions(RuleSet(held.values(), rev, "g")), f"revision {rev}"
        assert rs.placement == {i: place_of(r) for i, r in held.items()}


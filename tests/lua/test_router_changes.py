"""router.with_changes (nginx's incremental apply of log deltas) decides exactly as a full compile in Python."""
from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from rulegate.evaluator import RuleSet, decide
from rulegate.schema import validate_rule
from tests.conftest import load_vectors

from .decide_harness import DecideHarness, RawRequest

CASES = load_vectors()
REQUESTS = [RawRequest.from_case(c["request"]) for _, _, c in CASES]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DecideHarness]:
    h = DecideHarness(tmp_path_factory.mktemp("changes-harness"))
    h.start()
    yield h
    h.stop()


def test_random_puts_moves_disables_and_deletes_match_a_full_compile(harness: DecideHarness) -> None:
    """120 revisions of random puts (route moves, disables) and deletes over the vector rules: after every step
    the Lua set built by with_changes decides every vector request as Python's full compile of the same rules."""
    pool = [validate_rule(r) for _, data, _ in {(f, id(d), 0): (f, d, 0) for f, d, _ in CASES}.values()
            for r in data["rules"]]
    rng = random.Random(11)
    held: dict[str, dict] = {}
    steps: list[tuple[int, dict[str, dict | None]]] = []
    expected: list[list[dict]] = []
    for rev in range(1, 121):
        changes: dict[str, dict | None] = {}
        for _ in range(rng.randint(1, 3)):
            rule_id = f"r{rng.randint(0, 15)}"
            if rule_id in held and rng.random() < 0.3:
                changes[rule_id] = None
            else:
                rule = dict(rng.choice(pool), id=rule_id)
                if rng.random() < 0.2:
                    rule["enabled"] = False
                changes[rule_id] = rule
        for rule_id, rule in changes.items():
            if rule is None:
                held.pop(rule_id, None)
            else:
                held[rule_id] = rule
        steps.append((rev, changes))
        rs = RuleSet(list(held.values()), rev)
        expected.append([decide(rs, r.python_request()).to_dict() for r in REQUESTS])
    got = harness.changes(steps, REQUESTS)
    for rev, (want, have) in enumerate(zip(expected, got), 1):
        assert have == want, f"revision {rev}: " + str(next((w, h) for w, h in zip(want, have) if w != h))

"""ruleadmin.rulelist paging: without a criterion a page is found by bisection, with the same pages as matching
every rule gives."""
from __future__ import annotations

import random

from ruleadmin import rulelist
from ruleadmin.rulelist import RuleFilter


def every_rule_matched(rules, cursor, limit):
    """The paging of a filter that matches everything, written out (what page() did for every filter)."""
    after = [r for r in rules if r["id"] > cursor] if cursor else list(rules)
    shown = after[:limit]
    return rulelist.Page(shown, len(rules), shown[-1]["id"] if len(after) > limit and shown else None)


def test_pages_without_a_criterion_equal_matching_every_rule():
    rng = random.Random(11)
    for _ in range(300):
        ids = sorted({f"r{rng.randint(0, 500):03d}" for _ in range(rng.randint(0, 60))})
        rules = [{"id": i, "kind": "split", "route": {"host": "h", "path": "/"}} for i in ids]
        cursor = rng.choice(["", "r000", "r250", "r999", "a", "s"] + ids[:3])
        limit = rng.randint(1, 20)
        got = rulelist.page(rules, RuleFilter(), cursor, limit)
        assert got == every_rule_matched(rules, cursor, limit), (ids, cursor, limit)
        assert rulelist.offset_of(rules, RuleFilter(), cursor) == sum(1 for r in rules if cursor and r["id"] <= cursor)


def test_walking_every_page_lists_every_rule_once():
    rules = [{"id": f"r{i:05d}", "kind": "split", "route": {"host": "h", "path": "/"}} for i in range(1234)]
    seen, cursor = [], ""
    while True:
        got = rulelist.page(rules, RuleFilter(), cursor, 100)
        seen += [r["id"] for r in got.rules]
        assert got.matched == 1234
        if got.next_cursor is None:
            break
        cursor = got.next_cursor
    assert seen == [r["id"] for r in rules]


def test_a_criterion_still_matches_every_rule():
    rules = [{"id": f"r{i}", "kind": "split" if i % 2 else "degrade", "route": {"host": "h", "path": "/"}}
             for i in range(10)]
    got = rulelist.page(rules, RuleFilter(kind="degrade"), "", 3)
    assert [r["id"] for r in got.rules] == ["r0", "r2", "r4"] and got.matched == 5 and got.next_cursor == "r4"
    assert rulelist.offset_of(rules, RuleFilter(kind="degrade"), "r4") == 3

"""The breaker state machine passes tests/vectors/breaker.json's sequences (the Lua spec runs the same file)."""
from __future__ import annotations

import json
import threading

import pytest

from rulegate.breaker import Breaker, Breakers
from rulegate.evaluator import Request, RuleSet, decide
from rulegate.schema import validate_rule
from tests.conftest import VECTORS

DATA = json.loads((VECTORS / "breaker.json").read_text())
SEQUENCES = DATA["sequences"]


def run(config: dict, events: list[dict]) -> list[tuple[int, object, object]]:
    """Return (index, expected, got) for every decide/snapshot event of a sequence."""
    breaker = Breaker(config)
    out = []
    for i, event in enumerate(events):
        t = event["t"]
        if "report" in event:
            breaker.record(t, *event["report"])
        elif "decide" in event:
            out.append((i, event["decide"], breaker.admit(t)))
        else:
            out.append((i, event["snapshot"], breaker.snapshot(t)))
    return out


@pytest.mark.parametrize("seq", SEQUENCES, ids=[s["name"] for s in SEQUENCES])
def test_sequence(seq):
    """Every decision point of a vector sequence gives the expected state and applies-or-not."""
    validate_rule({"id": "b", "kind": "degrade", "route": {"host": "a.example", "path": "/"},
                   "action": {"type": "reject"}, "breaker": seq["breaker"]})
    for i, expected, got in run(seq["breaker"], seq["events"]):
        assert (i, got) == (i, expected)


def _ruleset() -> RuleSet:
    return RuleSet([validate_rule(r) for r in DATA["rules"]], DATA["revision"])


def _request(now: float) -> Request:
    return Request.from_dict({"host": "api.example.com", "path": "/api/x", "method": "GET", "ip": "192.0.2.1",
                              "now": now})


def test_decide_marks_the_breaker_passed_and_applies_when_open():
    """A closed breaker lets the request through marked with its rule id; open, its action answers."""
    rs, breakers = _ruleset(), Breakers()
    first = decide(rs, _request(100), breakers)
    assert (first.action, first.rule_id, first.breaker) == ("proxy", "api-split", "api-breaker")
    config = rs.breakers["api-breaker"]
    for _ in range(3):
        breakers.record("api-breaker", config, 100.5, 500, 5)
    opened = decide(rs, _request(101), breakers)
    assert (opened.action, opened.status, opened.rule_id, opened.breaker) == ("respond", 503, "api-breaker", None)
    assert breakers.snapshot(101)["api-breaker"]["state"] == "open"


def test_decide_without_breakers_never_applies_a_breaker_rule():
    """decide() given no breaker state treats every breaker as closed."""
    assert decide(_ruleset(), _request(100)).rule_id == "api-split"


def test_breakers_reset_when_the_config_changes():
    """A changed breaker object starts a new, closed breaker."""
    breakers = Breakers()
    config = {"window": 5, "min_requests": 1, "error_ratio": 1, "open_seconds": 60, "probes": 1}
    breakers.record("r", config, 0, 500, 1)
    assert breakers.admit("r", config, 1)
    assert not breakers.admit("r", dict(config, probes=2), 1)


def test_breakers_are_thread_safe():
    """Concurrent reports from many threads all count."""
    breakers = Breakers()
    config = {"window": 600, "min_requests": 1_000_000, "error_ratio": 1, "open_seconds": 60, "probes": 1}

    def work() -> None:
        for _ in range(1000):
            breakers.record("r", config, 10, 200, 1)
    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert breakers.snapshot(10)["r"]["requests"] == 8000

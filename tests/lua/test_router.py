"""rulegate.request + rulegate.router inside nginx give the Python evaluator's decision for every vector."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rulegate.evaluator import Request, RuleSet, decide
from rulegate.schema import validate_rule
from tests.conftest import load_vectors

from .decide_harness import DecideHarness, RawRequest

CASES = load_vectors()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DecideHarness]:
    """An nginx deciding batches with the Lua modules."""
    with DecideHarness(tmp_path_factory.mktemp("decide")) as h:
        yield h


@pytest.fixture(scope="module")
def lua_decisions(harness: DecideHarness) -> Callable[[str, dict], dict[str, dict]]:
    """Per vector file (one batch): case name -> the Lua decision."""
    done: dict[str, dict[str, dict]] = {}

    def get(file: str, data: dict) -> dict[str, dict]:
        if file not in done:
            rules = [validate_rule(r) for r in data["rules"]]
            raw = [RawRequest.from_case(c["request"]) for c in data["cases"]]
            decisions = harness.batch(rules, data["revision"], raw)
            done[file] = {c["name"]: d for c, d in zip(data["cases"], decisions)}
        return done[file]

    return get


@pytest.mark.parametrize("file,data,case", CASES, ids=[f"{f}:{c['name']}" for f, _, c in CASES])
def test_router_matches_evaluator(lua_decisions: Any, harness: DecideHarness, file: str, data: dict,
                                  case: dict) -> None:
    """The Lua router, building the request from its raw form, decides as the Python evaluator."""
    rules = [validate_rule(r) for r in data["rules"]]
    want = decide(RuleSet(rules, data["revision"]), Request.from_dict(case["request"])).to_dict()
    assert lua_decisions(file, data)[case["name"]] == want
    assert harness.error_lines() == []

"""Ramps and split windows: validation with field paths, canonical form, and the effective share formula."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rulegate.errors import ValidationError
from rulegate.evaluator import Request, RuleSet, decide
from rulegate.schema import MAX_RAMP_SPAN, ramp_share, validate_rule
from tests.strategies import ramps

T0 = 1_800_000_000
RAMP = {"start": T0, "end": T0 + 3600, "from": 100, "to": 2000, "mode": "linear"}


def split(ramp: object = RAMP, **kw) -> dict:
    rule = {"id": "r", "kind": "split", "route": {"host": "a.example", "path": "/"}, "key": {"source": "ip"},
            "default": "stable", "policies": [{"type": "percent", "buckets": [{"upstream": "c", "weight": 1}],
                                               "ramp": ramp}]}
    rule.update(kw)
    return rule


def errors_of(rule: dict) -> dict[str, str]:
    with pytest.raises(ValidationError) as exc:
        validate_rule(rule)
    return exc.value.errors


def test_a_ramp_and_a_split_window_are_stored_canonical() -> None:
    rule = validate_rule(split(dict(RAMP, mode="step", steps=4), window={"end": T0, "start": T0 - 60}))
    assert rule["policies"][0]["ramp"] == {"end": T0 + 3600, "from": 100, "mode": "step", "start": T0, "steps": 4,
                                           "to": 2000}
    assert list(rule["policies"][0]["ramp"]) == sorted(rule["policies"][0]["ramp"])
    assert rule["window"] == {"end": T0, "start": T0 - 60}


@pytest.mark.parametrize("ramp,path,message", [
    ("soon", "policies[0].ramp", "must be an object"),
    ({k: v for k, v in RAMP.items() if k != "to"}, "policies[0].ramp.to", "is required"),
    (dict(RAMP, speed=1), "policies[0].ramp.speed", "unknown field"),
    (dict(RAMP, end=T0), "policies[0].ramp.end", "must be after policies[0].ramp.start"),
    (dict(RAMP, end=T0 + MAX_RAMP_SPAN + 1), "policies[0].ramp.end",
     "must be at most 31622400 seconds (366 days) after policies[0].ramp.start"),
    (dict(RAMP, start=1.5), "policies[0].ramp.start", "must be an integer"),
    (dict(RAMP, start=-1), "policies[0].ramp.start", "must be between 0 and 1099511627776"),
    (dict(RAMP, **{"from": 10_001}), "policies[0].ramp.from", "must be between 0 and 10000"),
    (dict(RAMP, to=True), "policies[0].ramp.to", "must be an integer"),
    (dict(RAMP, to="12.5%"), "policies[0].ramp.to", "must be an integer"),
    (dict(RAMP, mode="smooth"), "policies[0].ramp.mode", "must be one of linear, step"),
    (dict(RAMP, steps=3), "policies[0].ramp.steps", "is only used with mode 'step'"),
    (dict(RAMP, mode="step"), "policies[0].ramp.steps", "is required with mode 'step'"),
    (dict(RAMP, mode="step", steps=0), "policies[0].ramp.steps", "must be between 1 and 1000"),
    (dict(RAMP, mode="step", steps=1001), "policies[0].ramp.steps", "must be between 1 and 1000"),
])
def test_bad_ramps_name_the_field(ramp: object, path: str, message: str) -> None:
    assert errors_of(split(ramp)).get(path) == message


@pytest.mark.parametrize("window,path,message", [
    ({}, "window", "needs a start, an end or both"),
    ({"start": T0, "end": T0}, "window.end", "must be after window.start"),
    ({"start": "now"}, "window.start", "must be an integer"),
    ({"until": T0}, "window.until", "unknown field"),
])
def test_bad_split_windows_name_the_field(window: dict, path: str, message: str) -> None:
    assert errors_of(split(window=window)).get(path) == message


def reference_share(ramp: dict, now: float) -> int:
    """The documented formula in exact rational arithmetic (floor of a true quotient)."""
    if now >= ramp["end"]:
        return ramp["to"]
    if now < ramp["start"]:
        return ramp["from"]
    t, span, d = math.floor(now) - ramp["start"], ramp["end"] - ramp["start"], ramp["to"] - ramp["from"]
    if ramp["mode"] == "step":
        return ramp["from"] + math.floor(Fraction(d * math.floor(Fraction(t * ramp["steps"], span)), ramp["steps"]))
    return ramp["from"] + math.floor(Fraction(d * t, span))


@given(ramps(), st.integers(-10, 10**6), st.sampled_from([0, 0.25, 0.999]))
def test_effective_share_is_the_documented_formula(ramp: dict, offset: int, fraction: float) -> None:
    """ramp_share equals the formula in exact arithmetic, stays between from and to, and never needs a float."""
    now = ramp["start"] + offset * max(1, (ramp["end"] - ramp["start"]) // 10**5) + fraction
    share = ramp_share(ramp, now)
    assert share == reference_share(ramp, now)
    assert min(ramp["from"], ramp["to"]) <= share <= max(ramp["from"], ramp["to"])


def test_effective_share_at_the_documented_points() -> None:
    step = dict(RAMP, mode="step", steps=5, start=1798761600, end=1799107200)
    assert [ramp_share(step, 1798761600 + k * 69120) for k in range(-1, 6)] == [100, 100, 480, 860, 1240, 1620, 2000]
    down = dict(RAMP, **{"from": 3000, "to": 1000})
    assert [ramp_share(down, T0 + t) for t in (0, 1, 1800, 3599, 3600)] == [3000, 2999, 2000, 1000, 1000]
    assert ramp_share(down, float("nan")) == 3000 and ramp_share(down, float("inf")) == 1000


def test_buckets_are_proportions_of_the_effective_share() -> None:
    """Two equal buckets split E = 1000 (after the end) at 500: the rest of the traffic goes on."""
    rule = validate_rule(split(dict(RAMP, to=1000), policies=[{
        "type": "percent", "salt": "", "ramp": dict(RAMP, to=1000),
        "buckets": [{"upstream": "a", "weight": 2500}, {"upstream": "b", "weight": 2500}]}]))
    rs = RuleSet([rule], 1)
    seen = {}
    for n in range(4000):
        d = decide(rs, Request(host="a.example", path="/", method="GET", ip=f"10.0.{n // 250}.{n % 250}",
                               now=T0 + 3600))
        seen.setdefault(d.upstream, set()).add(n)
    share = {u: len(v) / 4000 for u, v in seen.items()}
    assert abs(share["a"] - 0.05) < 0.02 and abs(share["b"] - 0.05) < 0.02 and share["stable"] > 0.85

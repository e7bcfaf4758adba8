"""Ramp guards: tests/vectors/ramps.json "guards" in Python (nginx runs the same file), canonical form, and the
watcher's helpers halted_ramp / guarded_policies."""
from __future__ import annotations

import copy
import json

import msgpack
import pytest

from rulegate.errors import ValidationError
from rulegate.ramps import guarded_policies, halted_ramp
from rulegate.schema import decode_rule, encode_rule, ramp_share, validate_rule
from tests.conftest import VECTORS

GUARDS = json.loads((VECTORS / "ramps.json").read_text())["guards"]
T0 = 1_800_000_000
RAMP = {"start": T0, "end": T0 + 3600, "from": 100, "to": 2100, "mode": "step", "steps": 4,
        "guard": {"control": "stable", "min_requests": 10, "window": 60, "max_error_increase": 0.05,
                  "on_breach": "revert"}}


def with_guard(guard: object) -> dict:
    """Return the vectors' rule with guard at policies[0].ramp.guard."""
    rule = copy.deepcopy(GUARDS["rule"])
    rule["policies"][0]["ramp"]["guard"] = guard
    return rule


def exact(value: object) -> bytes:
    """Return msgpack bytes: equal only when values and int/float types are equal."""
    return msgpack.packb(value, use_bin_type=True)


@pytest.mark.parametrize("case", GUARDS["accepted"], ids=[c["name"] for c in GUARDS["accepted"]])
def test_accepted_guards_are_stored_canonical(case: dict) -> None:
    """The stored guard is exactly the vector's canonical one (int/float kinds included), and it is a fixpoint."""
    rule = validate_rule(with_guard(case["guard"]))
    assert exact(rule["policies"][0]["ramp"]["guard"]) == exact(case["canonical"])
    assert encode_rule(validate_rule(rule)) == encode_rule(rule)
    assert decode_rule(encode_rule(rule)) == rule


@pytest.mark.parametrize("case", GUARDS["refused"], ids=[c["name"] for c in GUARDS["refused"]])
def test_refused_guards_name_the_field(case: dict) -> None:
    """A bad guard is a validation error naming exactly the field (and nothing else)."""
    with pytest.raises(ValidationError) as exc:
        validate_rule(with_guard(case["guard"]))
    assert exc.value.errors == case["errors"]


def test_a_control_among_any_bucket_names_the_policy() -> None:
    """The control is compared with the buckets of its own policy: policies[1] is named, policies[0] is fine."""
    rule = with_guard({"control": "stable", "min_requests": 5, "max_p95_ratio": 2})
    second = copy.deepcopy(rule["policies"][0])
    second["ramp"]["guard"]["control"] = "canary"
    rule["policies"].append(second)
    with pytest.raises(ValidationError) as exc:
        validate_rule(rule)
    assert list(exc.value.errors) == ["policies[1].ramp.guard.control"]


def test_the_percent_helper_is_shared_by_degrade_percent() -> None:
    """degrade percent keeps its canonical form and messages (the same helper as the guard limits)."""
    base = {"id": "d", "kind": "degrade", "route": {"host": "a.example", "path": "/"}, "action": {"type": "reject"}}
    assert exact(validate_rule(dict(base, percent=12.5))["percent"]) == exact(12.5)
    assert exact(validate_rule(dict(base, percent=50.0))["percent"]) == exact(50)
    assert exact(validate_rule(dict(base, percent=0.1 + 0.2))["percent"]) == exact(0.3)
    for bad, message in ((12.345, "must have at most two decimals"), (101, "must be between 0 and 100"),
                         ("5%", "must be a number")):
        with pytest.raises(ValidationError) as exc:
            validate_rule(dict(base, percent=bad))
        assert exc.value.errors == {"percent": message}


@pytest.mark.parametrize("now,want", [(T0 - 1, 100), (T0, 100), (T0 + 900, 600), (T0 + 1799.5, 600),
                                      (T0 + 2700, 1600), (T0 + 3600, 2100)])
def test_freeze_keeps_the_effective_share_at_the_halt(now: float, want: int) -> None:
    """freeze: from = to = E(now) (the documented step formula); everything else of the ramp is kept."""
    flat = halted_ramp(RAMP, now, "freeze")
    assert flat == {**RAMP, "from": want, "to": want} and want == ramp_share(RAMP, now)
    assert RAMP["from"] == 100 and RAMP["to"] == 2100  # the argument is not changed


def test_revert_sends_the_share_to_zero_and_the_result_is_a_valid_unjudged_ramp() -> None:
    """revert: from = to = 0; the halted rule validates unchanged, E is 0 at any time and it is no longer judged."""
    rule = validate_rule(with_guard(RAMP["guard"]))
    assert [i for i, _ in guarded_policies(rule)] == [0]
    rule["policies"][0]["ramp"] = halted_ramp(rule["policies"][0]["ramp"], T0 + 1800, "revert")
    assert validate_rule(rule) == rule
    ramp = rule["policies"][0]["ramp"]
    assert ramp["from"] == ramp["to"] == 0 and ramp["guard"] == RAMP["guard"]
    assert {ramp_share(ramp, t) for t in (0, T0, T0 + 1800, T0 + 3600, 2**40)} == {0}
    assert guarded_policies(rule) == []


def test_halting_with_an_unknown_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="revert, freeze"):
        halted_ramp(RAMP, T0, "pause")


def test_guarded_policies_are_the_moving_guarded_percent_ramps() -> None:
    """Only percent policies whose ramp has a guard and from != to, with their index; degrade rules have none."""
    guarded = {"type": "percent", "buckets": [{"upstream": "c", "weight": 1}], "ramp": RAMP}
    policies = [{"type": "header", "name": "x", "values": ["1"], "upstream": "h"},
                guarded,
                {"type": "percent", "buckets": [{"upstream": "c", "weight": 1}],
                 "ramp": {k: v for k, v in RAMP.items() if k != "guard"}},
                {"type": "percent", "buckets": [{"upstream": "c", "weight": 1}]},
                {"type": "percent", "buckets": [{"upstream": "d", "weight": 1}], "ramp": dict(RAMP, to=100)},
                dict(guarded, salt="down", ramp=dict(RAMP, **{"from": 3000, "to": 0}))]
    rule = validate_rule({"id": "s", "kind": "split", "route": {"host": "a.example", "path": "/"},
                          "key": {"source": "ip"}, "default": "stable", "policies": policies})
    assert guarded_policies(rule) == [(1, rule["policies"][1]), (5, rule["policies"][5])]
    degrade = validate_rule({"id": "d", "kind": "degrade", "route": {"host": "a.example", "path": "/"},
                             "action": {"type": "reject"}})
    assert guarded_policies(degrade) == []

"""Ramp math: a percent policy's effective share E(now), and what ruleadmin's guard watcher needs — which
policies a guard judges and the flat ramp that halts one (docs/rules.md "Ramps", "Guards", "Halting").

Validation lives in rulegate/schema.py, which re-exports these functions.
"""
from __future__ import annotations

import math

HALT_MODES = ("revert", "freeze")  # a guard's on_breach


def _floor_time(now: float) -> int:
    return now if isinstance(now, int) else math.floor(now)


def ramp_share(ramp: dict, now: float) -> int:
    """Return a valid ramp's effective total share (units of 0.01 %) at epoch time now (docs/rules.md "Ramps").

    Integer arithmetic with floor division only: lua/rulegate/router.lua computes the same value.
    """
    if now >= ramp["end"]:
        return ramp["to"]
    if not now >= ramp["start"]:  # before the start (or NaN)
        return ramp["from"]
    start, span, low = ramp["start"], ramp["end"] - ramp["start"], ramp["from"]
    elapsed = _floor_time(now) - start
    if ramp["mode"] == "step":
        steps = ramp["steps"]
        return low + (ramp["to"] - low) * (elapsed * steps // span) // steps
    return low + (ramp["to"] - low) * elapsed // span


def halted_ramp(ramp: dict, now: int, mode: str) -> dict:
    """Return the flat ramp that halts `ramp` at epoch time now: from = to = 0 (mode "revert") or the effective
    share E(now) ("freeze"); start, end, mode, steps and guard are kept. Raise ValueError for another mode."""
    if mode not in HALT_MODES:
        raise ValueError(f"mode must be one of {', '.join(HALT_MODES)}, not {mode!r}")
    share = ramp_share(ramp, now) if mode == "freeze" else 0
    return {**ramp, "from": share, "to": share}


def has_guard(rule: dict) -> bool:
    """Return True when a valid rule is a split with a percent policy whose ramp has a guard (moving or not: its
    outcomes count, docs/rules.md "Outcome counts")."""
    if rule.get("kind") != "split":
        return False
    for policy in rule["policies"]:
        ramp = policy.get("ramp")
        if ramp is not None and "guard" in ramp:
            return True
    return False


def guarded_policies(rule: dict) -> list[tuple[int, dict]]:
    """Return (policy index, policy) for each percent policy of a valid split rule whose ramp has a guard and
    still moves (from != to; a flat ramp, e.g. one already halted, is not judged)."""
    if rule.get("kind") != "split":
        return []
    return [(i, p) for i, p in enumerate(rule["policies"])
            if p["type"] == "percent" and "guard" in p.get("ramp", {}) and p["ramp"]["from"] != p["ramp"]["to"]]

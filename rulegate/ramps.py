"""Ramp guards for ruleadmin's watcher: which policies a guard judges, and the flat ramp that halts one.

docs/rules.md "Guards" and "Halting". Validation and the effective share live in rulegate/schema.py.
"""
from __future__ import annotations

from .schema import GUARD_BREACH, ramp_share


def halted_ramp(ramp: dict, now: int, mode: str) -> dict:
    """Return the flat ramp that halts `ramp` at epoch time now: from = to = 0 (mode "revert") or the effective
    share E(now) ("freeze"); start, end, mode, steps and guard are kept. Raise ValueError for another mode."""
    if mode not in GUARD_BREACH:
        raise ValueError(f"mode must be one of {', '.join(GUARD_BREACH)}, not {mode!r}")
    share = ramp_share(ramp, now) if mode == "freeze" else 0
    return {**ramp, "from": share, "to": share}


def guarded_policies(rule: dict) -> list[tuple[int, dict]]:
    """Return (policy index, policy) for each percent policy of a valid split rule whose ramp has a guard and
    still moves (from != to; a flat ramp, e.g. one already halted, is not judged)."""
    if rule.get("kind") != "split":
        return []
    return [(i, p) for i, p in enumerate(rule["policies"])
            if p["type"] == "percent" and "guard" in p.get("ramp", {}) and p["ramp"]["from"] != p["ramp"]["to"]]

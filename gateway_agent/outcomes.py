"""Outcome counts of the agent (docs/rules.md "Outcome counts"): what `RuleClient.report` records.

Only guarded split rules (a percent policy whose `ramp` has a `guard`) and requests a breaker rule let through are
counted, per (rule id, upstream) by status class and latency bucket (rulegate/outcomes.py). Like exposure.py, every
OS thread increments its own dict without a lock; the sync thread sums them into the cumulative `Outcomes` each
heartbeat carries. `breaker_states` gives the heartbeat's `breakers` map.
"""
from __future__ import annotations

import time
from bisect import bisect_right
from typing import Any, Callable, Iterable, Mapping

from rulegate.breaker import Breakers
from rulegate.fleet import BREAKER_STATES
from rulegate.outcomes import LAT_BOUNDS_MS, N_CLASSES, N_LATENCY, OutcomeCounts, Outcomes
from rulegate.ramps import has_guard

from .exposure import ThreadCounts

PASS_UPSTREAM = "@pass"  # the upstream of a `pass` decision: the agent knows no default upstream
_BOUNDS = tuple(float(b) for b in LAT_BOUNDS_MS)  # float-float comparisons: bisect ~25 % cheaper


def guarded_ids(rules: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """Return the ids of the guarded rules among rules."""
    return frozenset(rule["id"] for rule in rules if has_guard(rule))


def guarded_after(guarded: frozenset[str], changed: Mapping[str, Mapping[str, Any]],
                  removed: Iterable[str]) -> frozenset[str]:
    """Return the guarded ids once `changed` rules are put and `removed` ids dropped."""
    gone = set(changed) | set(removed)
    return frozenset(rule_id for rule_id in guarded if rule_id not in gone) | guarded_ids(changed.values())


class OutcomeCounter(ThreadCounts):
    """Per-thread outcome counts (record() on the report path) and their cumulative sum (outcomes())."""

    def __init__(self, wall: Callable[[], float] = time.time):
        super().__init__()
        self.since = wall()

    def record(self, rule_id: str, upstream: str, status: int, latency_ms: float) -> None:
        """Count one outcome (a dict increment in this thread's own dict)."""
        try:
            counts = self._local.counts
        except AttributeError:
            counts = self._register()
        # rulegate.outcomes status_class() and latency_bucket(), inlined
        key = (rule_id, upstream, status // 100 if 100 <= status <= 599 else 0,
               bisect_right(_BOUNDS, latency_ms) if latency_ms > 0 else 0)
        counts[key] = counts.get(key, 0) + 1

    def outcomes(self) -> Outcomes:
        """Return the outcomes counted since `since`, summed over threads."""
        per: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
        for (rule_id, upstream, cls, bucket), n in self.raw_totals().items():
            entry = per.get((rule_id, upstream))
            if entry is None:
                entry = per[(rule_id, upstream)] = ([0] * N_CLASSES, [0] * N_LATENCY)
            entry[0][cls] += n
            entry[1][bucket] += n
        return Outcomes(self.since, {key: OutcomeCounts(tuple(c), tuple(h)) for key, (c, h) in per.items()})


def breaker_states(breakers: Breakers, rule_ids: Iterable[str], t: float) -> dict[str, dict[str, int]]:
    """Return rule id -> {"closed", "open", "half_open": 0 or 1} for this client's breakers of rule_ids at t."""
    wanted = set(rule_ids)
    out: dict[str, dict[str, int]] = {}
    for rule_id, snap in breakers.snapshot(t).items():
        if rule_id in wanted:
            out[rule_id] = {state: int(snap["state"] == state) for state in BREAKER_STATES}
    return out

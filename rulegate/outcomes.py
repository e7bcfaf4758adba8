"""Outcome counts: what happened to the requests a gateway routed, per (rule id, upstream).

Gateways count outcomes only for rules that need them (a ramp with a `guard`, a degrade rule with a `breaker`): the
status class and a latency histogram of each request, as **cumulative** counters since `since` (the gateway's counter
epoch; a restart or a reset gives a new `since`). They send them with every heartbeat (rulegate/fleet.py, field
"outcomes"); a reader that polls computes windows from the differences between two readings of one gateway
(`OutcomeCounts.minus`), so a heartbeat it missed loses nothing.

Wire form (msgpack map, the same from Python and nginx)::

    {"since": <float epoch seconds>,
     "counts": [[rule_id, upstream, [c0, c1, c2, c3, c4, c5], [h0, ..., h11]], ...]}

`c<k>` counts statuses k00..k99 for k in 1..5 and `c0` transport failures (status 0, or anything outside 100..599).
`h<i>` counts latencies below LAT_BOUNDS_MS[i] (and at least the bound before it); `h11` counts the rest (≥ 10 s).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

LAT_BOUNDS_MS: tuple[int, ...] = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
N_CLASSES = 6
N_LATENCY = len(LAT_BOUNDS_MS) + 1
MAX_OUTCOME_KEYS = 1000  # (rule, upstream) entries kept in one heartbeat: the busiest


def status_class(status: int) -> int:
    """Return the class index of an HTTP status: 1..5 for 100..599, 0 for a transport failure (0) or nonsense."""
    return status // 100 if 100 <= status <= 599 else 0


def latency_bucket(latency_ms: float) -> int:
    """Return the histogram index of a latency in milliseconds (negative counts as 0)."""
    return bisect.bisect_right(LAT_BOUNDS_MS, latency_ms if latency_ms > 0 else 0)


@dataclass(frozen=True, slots=True)
class OutcomeCounts:
    """Counts for one (rule, upstream): by status class and by latency bucket."""

    classes: tuple[int, ...] = (0,) * N_CLASSES
    latency: tuple[int, ...] = (0,) * N_LATENCY

    @property
    def requests(self) -> int:
        return sum(self.classes)

    @property
    def errors(self) -> int:
        """Responses with a status ≥ 500 and transport failures."""
        return self.classes[5] + self.classes[0]

    def error_ratio(self) -> float | None:
        """Return errors / requests, None without requests."""
        n = self.requests
        return self.errors / n if n else None

    def quantile_ms(self, q: float) -> float | None:
        """Return the upper bound (ms) of the latency bucket holding the q-quantile; None without requests.

        The last bucket has no upper bound: its quantile is reported as twice the largest bound."""
        n = sum(self.latency)
        if not n:
            return None
        rank = q * n
        seen = 0
        for i, count in enumerate(self.latency):
            seen += count
            if seen >= rank and count:
                return float(LAT_BOUNDS_MS[i]) if i < len(LAT_BOUNDS_MS) else float(LAT_BOUNDS_MS[-1] * 2)
        return float(LAT_BOUNDS_MS[-1] * 2)

    def plus(self, other: "OutcomeCounts") -> "OutcomeCounts":
        return OutcomeCounts(tuple(a + b for a, b in zip(self.classes, other.classes)),
                             tuple(a + b for a, b in zip(self.latency, other.latency)))

    def minus(self, earlier: "OutcomeCounts") -> "OutcomeCounts":
        """Return what was counted since `earlier` (a counter that went down is taken as reset: self whole)."""
        classes = tuple(a - b for a, b in zip(self.classes, earlier.classes))
        latency = tuple(a - b for a, b in zip(self.latency, earlier.latency))
        if min(classes, default=0) < 0 or min(latency, default=0) < 0:
            return self
        return OutcomeCounts(classes, latency)

    def as_wire(self) -> tuple[list[int], list[int]]:
        return list(self.classes), list(self.latency)


EMPTY = OutcomeCounts()


@dataclass(frozen=True)
class Outcomes:
    """One gateway's cumulative outcome counts since `since`."""

    since: float
    counts: Mapping[tuple[str, str], OutcomeCounts]

    def to_wire(self) -> dict:
        """Return the heartbeat map (at most MAX_OUTCOME_KEYS entries, the busiest)."""
        items = sorted(self.counts.items(), key=lambda kv: (-kv[1].requests, kv[0]))[:MAX_OUTCOME_KEYS]
        return {"since": self.since,
                "counts": [[rule, upstream, *c.as_wire()] for (rule, upstream), c in items]}


def _ints(value: Any, n: int) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise ValueError("wrong length")
    out = tuple(int(v) for v in value)
    if min(out) < 0:
        raise ValueError("negative count")
    return out


def decode_outcomes(value: Any) -> Outcomes | None:
    """Return the Outcomes of a heartbeat's "outcomes" map; None when absent (older gateways) or malformed."""
    if not isinstance(value, dict):
        return None
    try:
        since = float(value.get("since") or 0.0)
        raw = value.get("counts") or ()
        counts: dict[tuple[str, str], OutcomeCounts] = {}
        for item in (raw if isinstance(raw, (list, tuple)) else ())[:MAX_OUTCOME_KEYS]:
            rule, upstream, classes, latency = item
            counts[(str(rule), str(upstream))] = OutcomeCounts(_ints(classes, N_CLASSES), _ints(latency, N_LATENCY))
        return Outcomes(since, counts)
    except (TypeError, ValueError, AttributeError):
        return None


def total(counts: Iterable[OutcomeCounts]) -> OutcomeCounts:
    """Return the sum of counts."""
    out = EMPTY
    for c in counts:
        out = out.plus(c)
    return out

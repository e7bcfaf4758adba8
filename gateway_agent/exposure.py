"""Exposure counts: decisions per (rule id, target), counted on the decide() path without a lock.

Every OS thread increments its own plain dict (a thread-local registered once per thread), so no two threads
ever write the same dict and an increment needs no lock. The sync thread reads the dicts with `dict.copy()`
(one C call, atomic under CPython's GIL), sums them and rolls the difference from its previous reading into
one bucket per heartbeat (`roll`). Under gevent (the sidecar) the thread-local is the original OS-thread one,
so all greenlets of a thread share one dict: greenlets only switch at I/O, never inside an increment.

Keys: (rule id, target) with rule id "" for `pass` and target = the upstream of a proxy decision, else
"@" + the action (rulegate/fleet.py `Exposure`).
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable

from rulegate.evaluator import Decision
from rulegate.fleet import MAX_EXPOSURE_KEYS, Exposure

Key = tuple[str, str]
RawKey = tuple  # (rule_id | None, upstream | None, action): what count() stores, cheapest to build and hash


def _originals() -> tuple[type, Callable[[], int]]:
    """Return the OS-thread local class and get_ident, unpatched even when gevent monkey-patched threads."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        return monkey.get_original("_thread", "_local"), monkey.get_original("_thread", "get_ident")
    import _thread
    return _thread._local, _thread.get_ident


class ThreadCounts:
    """Counts kept in one plain dict per OS thread (`self._local.counts`, registered by `_register`), summed by
    `raw_totals` (the counts of threads that ended are kept). Subclasses increment on their hot path."""

    def __init__(self) -> None:
        local_class, self._get_ident = _originals()
        self._local = local_class()
        self._lock = threading.Lock()  # registration, retiring and reading; never taken by an increment
        self._threads: list[tuple[int, dict]] = []  # (OS thread ident, that thread's raw counts)
        self._retired: dict[tuple, int] = {}  # final counts of threads that ended

    def _register(self) -> dict:
        counts: dict[tuple, int] = {}
        self._local.counts = counts
        with self._lock:
            self._threads.append((self._get_ident(), counts))
        return counts

    def raw_totals(self) -> dict[tuple, int]:
        """Return the raw counts since start, summed over threads."""
        with self._lock:
            alive = set(sys._current_frames())
            out = dict(self._retired)
            keep = []
            for ident, counts in self._threads:
                snap = counts.copy()  # atomic under the GIL; the owner thread may be incrementing
                for key, n in snap.items():
                    out[key] = out.get(key, 0) + n
                if ident in alive:
                    keep.append((ident, counts))
                else:  # the thread ended: its counts are final
                    for key, n in snap.items():
                        self._retired[key] = self._retired.get(key, 0) + n
            self._threads = keep
        return out


class ExposureCounter(ThreadCounts):
    """Per-thread decision counts (count() on the hot path) and their per-heartbeat buckets (roll())."""

    def __init__(self, wall: Callable[[], float] = time.time):
        super().__init__()
        self._wall = wall
        self._reported: dict[Key, int] = {}  # totals at the previous roll
        self._last_match: dict[str, float] = {}
        self.since = wall()
        self._rolled_at = self.since

    def count(self, decision: Decision) -> None:
        """Count one decision (a dict increment in this thread's own dict)."""
        try:
            counts = self._local.counts
        except AttributeError:
            counts = self._register()
        key = (decision.rule_id, decision.upstream, decision.action)  # named by _named() when read
        counts[key] = counts.get(key, 0) + 1

    def totals(self) -> dict[Key, int]:
        """Return the decisions counted since start by (rule id, target), summed over threads."""
        return _named(self.raw_totals())

    def roll(self) -> Exposure:
        """Return the decisions since the previous roll (the heartbeat's bucket) and every rule's last match;
        at most MAX_EXPOSURE_KEYS of each, the largest counts and the newest matches."""
        totals = self.totals()
        with self._lock:
            now = self._wall()
            window, self._rolled_at = max(now - self._rolled_at, 0.0), now
            deltas = [(rule, target, n - self._reported.get((rule, target), 0))
                      for (rule, target), n in totals.items()]
            self._reported = totals
            counts = sorted((d for d in deltas if d[2] > 0), key=lambda d: (-d[2], d[0], d[1]))
            for rule, _target, _n in counts:
                if rule:
                    self._last_match[rule] = now
            if len(self._last_match) > MAX_EXPOSURE_KEYS:
                newest = sorted(self._last_match.items(), key=lambda kv: -kv[1])[:MAX_EXPOSURE_KEYS]
                self._last_match = dict(newest)
            return Exposure(since=self.since, window=window, counts=tuple(counts[:MAX_EXPOSURE_KEYS]),
                            other=sum(d[2] for d in counts[MAX_EXPOSURE_KEYS:]), last_match=dict(self._last_match))


def _named(raw: dict[RawKey, int]) -> dict[Key, int]:
    """Return raw (rule_id, upstream, action) counts as (rule id or "", upstream or "@" + action) counts."""
    out: dict[Key, int] = {}
    for (rule_id, upstream, action), n in raw.items():
        key = (rule_id or "", upstream if action == "proxy" else "@" + action)
        out[key] = out.get(key, 0) + n
    return out

"""Circuit breakers of degrade rules: the pure state machine (docs/rules.md, "Breakers") and a registry.

Mirrored by lua/rulegate/breaker.lua and pinned by tests/vectors/breaker.json.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any, Mapping

__all__ = ["Breaker", "Breakers", "CLOSED", "OPEN", "HALF_OPEN"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class Breaker:
    """One rule's breaker state; not thread-safe on its own (Breakers guards it)."""

    def __init__(self, config: Mapping[str, Any]):
        self.config = dict(config)
        self.window = config["window"]
        self.min_requests = config["min_requests"]
        self.error_ratio = config.get("error_ratio")
        self.slow_ms = config.get("slow_ms")
        self.slow_ratio = config.get("slow_ratio")
        self.open_seconds = config["open_seconds"]
        self.probes = config["probes"]
        self.state = CLOSED
        self.since = 0.0  # opened_at (open) or half_at (half-open)
        self.admitted = 0
        self.good = 0
        self._clear()

    def _clear(self) -> None:
        self.buckets: deque[list[int]] = deque()  # [second, requests, errors, slow]
        self.requests = self.errors = self.slow = 0

    def _advance(self, t: float) -> None:
        if self.state == OPEN and t >= self.since + self.open_seconds:
            self.state, self.since, self.admitted, self.good = HALF_OPEN, t, 0, 0
        elif self.state == HALF_OPEN and t >= self.since + self.open_seconds:
            self.since, self.admitted, self.good = t, 0, 0

    def _evict(self, second: int) -> None:
        buckets = self.buckets
        while buckets and buckets[0][0] <= second - self.window:
            _, r, e, s = buckets.popleft()
            self.requests -= r
            self.errors -= e
            self.slow -= s

    def _open(self, t: float) -> None:
        self.state, self.since = OPEN, t
        self._clear()

    def admit(self, t: float) -> bool:
        """Return True when the rule applies to a request decided at t (open, or half-open beyond the probes)."""
        self._advance(t)
        if self.state == CLOSED:
            return False
        if self.state == HALF_OPEN and self.admitted < self.probes:
            self.admitted += 1
            return False
        return True

    def record(self, t: float, status: int, latency_ms: float) -> None:
        """Count the outcome of a request the breaker let through (status 0: a transport failure)."""
        self._advance(t)
        error = self.error_ratio is not None and (status >= 500 or status == 0)
        slow = self.slow_ratio is not None and latency_ms >= self.slow_ms
        if self.state == HALF_OPEN:
            if error or slow:
                self._open(t)
            else:
                self.good += 1
                if self.good >= self.probes:
                    self.state = CLOSED
                    self._clear()
            return
        if self.state == OPEN:
            return
        second = math.floor(t)
        self._evict(second)
        if self.buckets and self.buckets[-1][0] == second:
            bucket = self.buckets[-1]
        else:
            bucket = [second, 0, 0, 0]
            self.buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += error
        bucket[3] += slow
        self.requests += 1
        self.errors += error
        self.slow += slow
        if self.requests >= self.min_requests and (
                (self.error_ratio is not None and self.errors / self.requests >= self.error_ratio)
                or (self.slow_ratio is not None and self.slow / self.requests >= self.slow_ratio)):
            self._open(t)

    def snapshot(self, t: float) -> dict[str, Any]:
        """Return the JSON-ready state at t (the window's counts as of t)."""
        self._advance(t)
        self._evict(math.floor(t))
        return {"state": self.state, "requests": self.requests, "errors": self.errors, "slow": self.slow}


class Breakers:
    """The breakers of one gateway by rule id, behind one lock; a rule's breaker resets when its config changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_rule: dict[str, Breaker] = {}

    def _get(self, rule_id: str, config: Mapping[str, Any]) -> Breaker:
        breaker = self._by_rule.get(rule_id)
        if breaker is None or breaker.config != config:
            breaker = self._by_rule[rule_id] = Breaker(config)
        return breaker

    def admit(self, rule_id: str, config: Mapping[str, Any], t: float) -> bool:
        """Return True when the rule applies to a request decided at t."""
        with self._lock:
            return self._get(rule_id, config).admit(t)

    def record(self, rule_id: str, config: Mapping[str, Any], t: float, status: int, latency_ms: float) -> None:
        """Count one outcome of rule_id's breaker at t."""
        with self._lock:
            self._get(rule_id, config).record(t, status, latency_ms)

    def snapshot(self, t: float) -> dict[str, dict[str, Any]]:
        """Return every breaker's state at t by rule id."""
        with self._lock:
            return {rule_id: b.snapshot(t) for rule_id, b in sorted(self._by_rule.items())}

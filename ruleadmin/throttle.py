"""Login throttling per (account, client address) with exponential backoff, a per-address cap and a global cap.

Failures from one address never slow down the same account's logins from another address, so
nobody can lock a user out by guessing wrong on purpose. State lives in Redis (rg:login:*), shared
by every instance; the keys expire on their own.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

from rulegate.connection import redis_call
from rulegate.schema import is_valid_id

PREFIX = "rg:login:"
GLOBAL_KEY = PREFIX + "fail:all"


@dataclass(frozen=True)
class ThrottleConfig:
    """Login throttling settings (RULEADMIN_LOGIN_*)."""

    free_failures: int = 5         # failures per (account, address) before the backoff starts
    backoff_base_seconds: int = 1  # the first wait; each further failure doubles it
    backoff_max_seconds: int = 900
    window_seconds: int = 300      # failures are forgotten this long after the last one (plus the wait)
    max_failures_per_address: int = 50   # per address over all accounts, per window
    global_max_failures: int = 1000      # over all addresses per window; above it only clean addresses may try

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "ThrottleConfig":
        """Return the settings found in a Flask config."""
        return cls(free_failures=int(config["LOGIN_MAX_FAILURES"]),
                   backoff_base_seconds=int(config["LOGIN_BACKOFF_BASE_SECONDS"]),
                   backoff_max_seconds=int(config["LOGIN_BACKOFF_MAX_SECONDS"]),
                   window_seconds=int(config["LOGIN_WINDOW_SECONDS"]),
                   max_failures_per_address=int(config["LOGIN_MAX_FAILURES_PER_IP"]),
                   global_max_failures=int(config["LOGIN_GLOBAL_MAX_FAILURES"]))


@dataclass(frozen=True)
class ExponentialBackoff:
    """Wait after the n-th consecutive failure: 0 for the first `free` ones, then base * 2**k, capped."""

    free: int
    base: int
    cap: int

    def compute(self, failures: int) -> int:
        """Return the seconds to wait after `failures` failures in a row."""
        if failures < self.free:
            return 0
        return min(self.cap, self.base * 2 ** min(failures - self.free, 32))


class Throttled(Exception):
    """Too many failed logins from this address (for this account, or in general); `retry_after` seconds."""

    def __init__(self, retry_after: int, scope: str):
        super().__init__(f"too many failed logins ({scope}); retry in {retry_after}s")
        self.retry_after = retry_after
        self.scope = scope


class LoginThrottle:
    """Checks and records login attempts for one (account, address) pair; raise StoreError when Redis fails."""

    def __init__(self, client, config: ThrottleConfig):
        self.client = client
        self.config = config
        self.backoff = ExponentialBackoff(config.free_failures, config.backoff_base_seconds,
                                          config.backoff_max_seconds)

    _call = staticmethod(redis_call)

    @staticmethod
    def _pair(username: str, address: str) -> str:
        name = username if is_valid_id(username) else "_invalid"
        return hashlib.sha256(f"{name}\n{address}".encode()).hexdigest()[:32]

    @staticmethod
    def _address(address: str) -> str:
        return hashlib.sha256(address.encode()).hexdigest()[:32]

    def check(self, username: str, address: str) -> None:
        """Return None when this address may try this account now; raise Throttled with the wait."""
        wait = self._call(self.client.ttl, PREFIX + "wait:" + self._pair(username, address))
        if wait and wait > 0:
            raise Throttled(wait, "account+address")
        addr_key = PREFIX + "fail:addr:" + self._address(address)
        addr_failures = int(self._call(self.client.get, addr_key) or 0)
        if addr_failures >= self.config.max_failures_per_address:
            raise Throttled(max(int(self._call(self.client.ttl, addr_key) or 1), 1), "address")
        if addr_failures and int(self._call(self.client.get, GLOBAL_KEY) or 0) >= self.config.global_max_failures:
            raise Throttled(max(int(self._call(self.client.ttl, GLOBAL_KEY) or 1), 1), "global")

    def failed(self, username: str, address: str) -> tuple[int, int]:
        """Record a failure; return (consecutive failures of this pair, seconds it must now wait)."""
        cfg = self.config
        pair = self._pair(username, address)
        failures = int(self._call(self.client.incr, PREFIX + "fail:pair:" + pair))
        wait = self.backoff.compute(failures)
        self._call(self.client.expire, PREFIX + "fail:pair:" + pair, cfg.window_seconds + wait)
        if wait:
            self._call(self.client.set, PREFIX + "wait:" + pair, failures, ex=wait)
        addr_key = PREFIX + "fail:addr:" + self._address(address)
        if self._call(self.client.incr, addr_key) == 1:
            self._call(self.client.expire, addr_key, cfg.window_seconds)
        if self._call(self.client.incr, GLOBAL_KEY) == 1:
            self._call(self.client.expire, GLOBAL_KEY, cfg.window_seconds)
        return failures, wait

    def succeeded(self, username: str, address: str) -> None:
        """Forget this pair's failures (the address and global counters run out on their own)."""
        pair = self._pair(username, address)
        self._call(self.client.delete, PREFIX + "fail:pair:" + pair)

"""What the agent's last sync found, told apart by cause: the health states and the error kinds.

`state` is one of STATES. `unknown_namespace` and `auth_failed` are configuration mistakes that
no retry fixes; `unreachable` is Redis down or out of reach; `error` is anything else
(inconsistent reads, unexpected replies); `rejected` is a store revision the agent refuses.
"""
from __future__ import annotations

import logging
import re

import redis
from redis.connection import Connection
from redis.exceptions import AuthenticationError, AuthenticationWrongNumberOfArgsError, NoPermissionError

from rulegate.errors import StoreError

from .budget import BudgetExhausted, NodePool, Operation

log = logging.getLogger("rulegate.agent.sync")

STATES = ("starting", "ok", "unknown_namespace", "auth_failed", "unreachable", "rejected", "error")
CONFIG_ERRORS = ("unknown_namespace", "auth_failed")  # retrying does not help: an operator must act
AUTH_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM")


class UnknownNamespace(StoreError):
    """The namespace has no rev key and no generation in its meta key (a misspelled name, or never written)."""


class AuthFailed(redis.RedisError):
    """Redis refused the agent's credentials; final for this operation (not a retryable connection error)."""


class SyncHealth:
    """Owns what the last check found (state, last_error, the Redis summary); logs each change of state once."""

    def __init__(self, namespace: str):
        self.namespace = namespace
        self.state = "starting"
        self.redis = "unknown"  # ok | down | rejected | unknown: the older summary, kept in health()
        self.last_error = ""
        self._reported: tuple[str, str] | None = None

    def failed(self, state: str, message: str, revision: int | None, staleness: float) -> None:
        """Record a failed check in `state`; log when the state changed (or a new revision was refused)."""
        previous = self.state
        self.redis = "rejected" if state == "rejected" else "down"
        self.state, self.last_error = state, message
        key = (state, re.sub(r"\d+(\.\d+)?", "#", message) if state == "rejected" else "")
        if self._reported == key:
            return
        self._reported = key
        level = logging.ERROR if state in CONFIG_ERRORS or state == "rejected" else logging.WARNING
        log.log(level, "namespace %s: sync state %s -> %s: %s (serving revision %s, stale %.1fs)", self.namespace,
                previous, state, message, revision, staleness,
                extra={"namespace": self.namespace, "state": state, "previous_state": previous, "revision": revision})

    def ok(self, revision: int | None) -> None:
        """Record a check that confirmed the applied set; log the recovery from a failed state."""
        previous = self.state
        if previous not in ("ok", "starting"):
            log.info("namespace %s: sync state %s -> ok: in sync at revision %s", self.namespace, previous, revision,
                     extra={"namespace": self.namespace, "state": "ok", "previous_state": previous,
                            "revision": revision})
        self.redis, self.state, self.last_error, self._reported = "ok", "ok", "", None


def error_kind(exc: BaseException) -> str:
    """Return the health state a sync failure puts the agent in: one of STATES."""
    if isinstance(exc, UnknownNamespace):
        return "unknown_namespace"
    if isinstance(exc, (AuthFailed, AuthenticationError, AuthenticationWrongNumberOfArgsError, NoPermissionError)):
        return "auth_failed"
    if isinstance(exc, redis.ResponseError) and str(exc).startswith(AUTH_REPLIES):
        return "auth_failed"
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, BudgetExhausted, OSError)):
        return "unreachable"
    return "error"


def auth_failure(address: str, exc: Exception) -> AuthFailed:
    """Return the AuthFailed for exc at address (the server's reason, never the credentials)."""
    reason = str(exc).splitlines()[0][:200] if str(exc) else ""
    return AuthFailed(f"Redis {address} refused the credentials ({exc.__class__.__name__}: {reason})")


class AuthCheckingPool(NodePool):
    """A NodePool whose authentication failures end the operation as AuthFailed.

    redis-py's AuthenticationError is a ConnectionError, which the budget retries on every node
    until the deadline; a wrong password is the same on the next node, and the cause would be
    lost in the budget's summary.
    """

    def get(self, address: str, op: Operation) -> Connection:
        """Return a connected connection to address; raise AuthFailed when AUTH or the first command is refused."""
        try:
            return super().get(address, op)
        except (AuthenticationError, AuthenticationWrongNumberOfArgsError) as exc:
            self.drop(address)
            raise auth_failure(address, exc) from exc

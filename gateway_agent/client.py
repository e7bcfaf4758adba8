"""`RuleClient`: the embeddable gateway agent. decide() is pure in-memory; a background loop syncs."""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from rulegate.breaker import Breakers
from rulegate.connection import RedisAuth, parse_node
from rulegate.evaluator import Decision, Request, decide
from rulegate.fleet import MAX_UPSTREAMS, default_gateway_id
from rulegate.keyspace import Keys
from rulegate.schema import is_valid_id

from .budget import Budget, BudgetConfig, SlotMap
from .exposure import ExposureCounter
from .health import CONFIG_ERRORS, AuthCheckingPool
from .outcomes import PASS_UPSTREAM, OutcomeCounter
from .sync import SyncConfig, Syncer, slicer

PASS = Decision("pass")
UPSTREAMS_ENV = "RULEGATE_UPSTREAMS"
# the upstream names a rule may use (rulegate/schema.py: 1-128 of A-Z a-z 0-9 _ . : -)
UPSTREAM_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def parse_upstreams(value: str | Iterable[str], source: str = "upstreams") -> tuple[str, ...]:
    """Return the sorted, distinct upstream names of "a,b" or ["a", "b"]; raise ValueError naming a bad one."""
    names = [n.strip() for n in value.split(",") if n.strip()] if isinstance(value, str) else list(value)
    for name in names:
        if not isinstance(name, str) or not UPSTREAM_NAME.fullmatch(name):
            raise ValueError(f"{source}: bad upstream name {name!r} (1-128 characters of A-Z a-z 0-9 _ . : -)")
    out = tuple(sorted(set(names)))
    if len(out) > MAX_UPSTREAMS:
        raise ValueError(f"{source}: {len(out)} upstream names, at most {MAX_UPSTREAMS}")
    return out


@dataclass(frozen=True)
class AgentConfig(RedisAuth):
    """Everything a RuleClient needs: where Redis is (and its credentials), which namespace,
    how often, which limits."""

    nodes: tuple[str, ...]
    namespace: str
    refresh_interval: float = 1.0
    max_stale: float = 30.0
    snapshot_path: str | None = None
    gateway_id: str | None = None
    heartbeat_interval: float = 5.0
    notifications: bool = True
    upstreams: tuple[str, ...] = ()
    read_replica: bool = False
    exposure: bool = True  # count decisions per rule and upstream for the heartbeat and /metrics
    gc_freeze: bool = True  # gc.freeze() after each full reload (process-wide; docs/agent.md "Limits")
    checkpoint_delay: float = 1.0  # the snapshot after deltas: this long after the last change (docs/agent.md)
    checkpoint_max: float = 10.0  # ... or this long into a burst of changes
    budget: BudgetConfig = field(default_factory=BudgetConfig)


class RuleClient:
    """Keeps one namespace's compiled rules in memory and answers decide() without Redis.

    `upstreams` (names, or "a,b"; default: the RULEGATE_UPSTREAMS environment variable) are the
    upstream names this gateway can route to, reported in every fleet heartbeat."""

    def __init__(self, nodes: str | list[str] | tuple[str, ...], namespace: str, **options: Any):
        if isinstance(nodes, str):
            nodes = [n.strip() for n in nodes.split(",") if n.strip()]
        upstreams = options.pop("upstreams", None)
        if upstreams is None:
            upstreams = parse_upstreams(os.environ.get(UPSTREAMS_ENV, ""), UPSTREAMS_ENV)
        self.config = AgentConfig(nodes=tuple(nodes), namespace=namespace, upstreams=parse_upstreams(upstreams),
                                  **options)
        if not self.config.nodes:
            raise ValueError("at least one Redis node is required")
        for address in self.config.nodes:
            parse_node(address)
        if not is_valid_id(namespace):
            raise ValueError(f"bad namespace {namespace!r}")
        cfg = self.config
        self.budget = Budget(cfg.budget)
        self.syncer = Syncer(
            SyncConfig(namespace=namespace, refresh_interval=cfg.refresh_interval, max_stale=cfg.max_stale,
                       snapshot_path=cfg.snapshot_path, gateway_id=cfg.gateway_id or default_gateway_id(),
                       heartbeat_interval=cfg.heartbeat_interval, notifications=cfg.notifications,
                       upstreams=cfg.upstreams, read_replica=cfg.read_replica, gc_freeze=cfg.gc_freeze,
                       checkpoint_delay=cfg.checkpoint_delay, checkpoint_max=cfg.checkpoint_max),
            self.budget, AuthCheckingPool(cfg.credentials(), cfg.budget), SlotMap(list(cfg.nodes), Keys(namespace).slot))
        self.exposure = ExposureCounter() if cfg.exposure else None
        self.syncer.exposure = self.exposure  # rolled into each heartbeat by the sync thread
        self.breakers = Breakers()  # degrade rules with a breaker: this client's own state, fed by report()
        self.outcomes = OutcomeCounter()  # guarded rules' and breaker passes' outcomes, recorded by report()
        self.syncer.outcomes, self.syncer.breakers = self.outcomes, self.breakers  # both go into each heartbeat
        self._started = False

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, wait: float | None = None) -> "RuleClient":
        """Load the snapshot, start syncing; wait up to `wait` s (default: one budget deadline) for Redis."""
        if not self._started:
            self._started = True
            self.syncer.start(self.config.budget.deadline + 0.5 if wait is None else wait)
        return self

    def stop(self) -> None:
        """Stop the sync loop and close every Redis connection."""
        if self._started:
            self._started = False
            self.syncer.stop()

    def __enter__(self) -> "RuleClient":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the hot path ----------------------------------------------------------------------
    def decide(self, request: Request | Mapping[str, Any]) -> Decision:
        """Return the Decision for a request from the applied rules; `pass` when none are loaded."""
        applied = self.syncer.current
        if applied is None:
            return PASS
        if not isinstance(request, Request):
            request = Request.from_dict(request)
        decision = decide(applied.ruleset, request, self.breakers)
        counter = self.exposure
        if counter is not None:
            counter.count(decision)
        return decision

    def report(self, rule: str | Decision, status: int, latency_ms: float, now: float | None = None) -> bool:
        """Record the outcome of a request decide() answered (status 0: a transport failure).

        `rule` is the Decision decide() returned: its outcome feeds the breaker rule it passed (`breaker`) and
        counts for the heartbeat when a breaker passed it or its rule is guarded (docs/rules.md "Outcome
        counts"). A rule id feeds only that breaker rule. Returns False when there was nothing to record."""
        if isinstance(rule, Decision):
            return self.report_outcome(rule.rule_id, rule.upstream, rule.breaker, status, latency_ms, now)
        return self.report_outcome(None, None, rule, status, latency_ms, now, count=False)

    def report_outcome(self, rule_id: str | None, upstream: str | None, breaker: str | None, status: int,
                       latency_ms: float, now: float | None = None, *, count: bool = True) -> bool:
        """Record an outcome given a decision's fields (the sidecar's /v1/report); see report()."""
        applied = self.syncer.current
        if applied is None:
            return False
        fed = False
        if breaker is not None:
            config = applied.ruleset.breakers.get(breaker)
            if config is not None:
                self.breakers.record(breaker, config, time.time() if now is None else now, status, latency_ms)
                fed = True
        if count and (fed or (upstream is not None and rule_id in applied.guarded)):
            self.outcomes.record(rule_id or "", upstream or PASS_UPSTREAM, status, latency_ms)
            return True
        return fed

    # ---- state -----------------------------------------------------------------------------
    @property
    def rules(self) -> dict[str, dict]:
        """Return the applied rules by id (empty when nothing is loaded).

        Decoded from the applied raw bytes on every call (the agent keeps no rule dicts), yielding
        between ~2 ms slices like a full reload: new dicts the caller may keep or change.
        """
        applied = self.syncer.current
        return applied.rules(slicer()) if applied else {}

    @property
    def revision(self) -> int | None:
        """Return the applied revision, or None when nothing is loaded."""
        applied = self.syncer.current
        return applied.revision if applied else None

    @property
    def generation(self) -> str | None:
        """Return the applied generation id, or None when nothing is loaded."""
        applied = self.syncer.current
        return applied.generation if applied else None

    def staleness(self) -> float:
        """Return seconds since the rules were last confirmed current (inf when never)."""
        return self.syncer.staleness()

    def wait_for_revision(self, revision: int, timeout: float = 5.0) -> bool:
        """Return True once revision (or newer) is applied, False after timeout."""
        return self.syncer.wait_for_revision(revision, timeout)

    def refresh(self) -> None:
        """Ask the sync loop to revalidate now (it normally wakes on notifications)."""
        self.syncer.wake()

    def health(self) -> dict[str, Any]:
        """Return a JSON-ready health report: ready, state (health.STATES), revision, staleness, counters.

        `ready` is True once decide() answers from a rule set, even a stale one (stale-if-error): an
        unknown namespace or refused credentials never load one, a snapshot or an earlier sync does."""
        s = self.syncer
        applied = s.current
        staleness = s.staleness()
        state = s.health.state
        return {
            "ready": applied is not None,
            "state": state,
            "message": _message(state, s.health.last_error, applied is not None),
            "loaded": applied is not None,
            "namespace": self.config.namespace,
            "revision": applied.revision if applied else None,
            "generation": applied.generation if applied else None,
            "rules": len(applied.raw) if applied else 0,
            "source": applied.source if applied else None,
            "staleness": None if staleness == float("inf") else round(staleness, 3),
            "stale": s.is_stale(),
            "max_stale": self.config.max_stale,
            "digest": applied.digest if applied else None,
            "store_revision": s.store_revision,
            "store_digest": s.store_digest or None,
            "in_sync": s.in_sync(),
            "refused_revision": s.refused.revision if s.refused else None,
            "refused_reason": s.refused.reason if s.refused else None,
            "redis": s.health.redis,
            "last_error": s.health.last_error,
            "gateway_id": s.config.gateway_id,
            "upstreams": list(self.config.upstreams),
            "budget": self.budget.stats.snapshot(),
            "sync": s.stats.snapshot(),
            "breakers": self.breakers.snapshot(time.time()),
        }


def _message(state: str, last_error: str, loaded: bool) -> str:
    """Return one sentence on the agent's state for people (health's `message`)."""
    if state == "ok":
        return "in sync"
    if state == "starting":
        return "waiting for the first sync" + ("" if loaded else "; no rule set loaded")
    if not loaded:
        return f"{last_error}; no rule set loaded" + ("" if state in CONFIG_ERRORS else " yet")
    return f"{last_error}; serving the last good rule set"

"""`RuleClient`: the embeddable gateway agent. decide() is pure in-memory; a background loop syncs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from rulegate.connection import RedisAuth, parse_node
from rulegate.evaluator import Decision, Request, decide
from rulegate.fleet import default_gateway_id
from rulegate.keyspace import Keys
from rulegate.schema import is_valid_id

from .budget import Budget, BudgetConfig, NodePool, SlotMap
from .sync import SyncConfig, Syncer

PASS = Decision("pass")


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
    budget: BudgetConfig = field(default_factory=BudgetConfig)


class RuleClient:
    """Keeps one namespace's compiled rules in memory and answers decide() without Redis."""

    def __init__(self, nodes: str | list[str] | tuple[str, ...], namespace: str, **options: Any):
        if isinstance(nodes, str):
            nodes = [n.strip() for n in nodes.split(",") if n.strip()]
        self.config = AgentConfig(nodes=tuple(nodes), namespace=namespace, **options)
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
                       heartbeat_interval=cfg.heartbeat_interval, notifications=cfg.notifications),
            self.budget, NodePool(cfg.credentials(), cfg.budget), SlotMap(list(cfg.nodes), Keys(namespace).slot))
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
        return decide(applied.ruleset, request)

    # ---- state -----------------------------------------------------------------------------
    @property
    def rules(self) -> dict[str, dict]:
        """Return a copy of the applied rules by id (empty when nothing is loaded)."""
        applied = self.syncer.current
        return dict(applied.ruleset.rules) if applied else {}

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
        """Return a JSON-ready health report: loaded, revision, staleness, Redis state, counters."""
        s = self.syncer
        applied = s.current
        staleness = s.staleness()
        return {
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
            "redis": s.redis_state,
            "last_error": s.last_error,
            "gateway_id": s.config.gateway_id,
            "budget": self.budget.stats.snapshot(),
            "sync": s.stats.snapshot(),
        }

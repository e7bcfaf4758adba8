"""Prometheus metrics of the agent: read from the client's counters at scrape time."""
from __future__ import annotations

import time
from typing import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from rulegate.breaker import CLOSED, HALF_OPEN, OPEN
from rulegate.fleet import MAX_EXPOSURE_KEYS
from rulegate.outcomes import MAX_OUTCOME_KEYS, N_CLASSES, Outcomes

from .client import RuleClient
from .exposure import ThreadCounts
from .health import STATES

ACTIONS = ("proxy", "respond", "redirect", "pass")
CLASS_LABELS = ("failed",) + tuple(f"{k}xx" for k in range(1, N_CLASSES))  # status class index -> label
BREAKER_STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}

_SYNC_COUNTERS = {
    "full_reloads": "Full reloads of the namespace applied",
    "deltas_applied": "Log entries applied as deltas",
    "rejected": "Rule sets refused because they failed decoding or validation",
    "rollbacks_refused": "Revisions lower than the applied one that were refused",
    "generation_changes": "New namespace generations accepted",
    "digest_mismatches": "Full reloads forced because the applied content differed from the store (digest)",
    "reloads_skipped": "New generations of the applied rules (same digest) taken without a full reload",
    "large_deltas": "Log deltas of more than a quarter of the rules (and 64) read whole instead",
    "notifications": "Pub/sub notifications received",
    "snapshot_writes": "Disk snapshots written",
    "snapshot_errors": "Disk snapshot writes that failed",
}
_BUDGET_COUNTERS = {
    "attempts": "Redis attempts made by budgeted operations",
    "redirects": "MOVED/ASK redirects seen",
    "connections_opened": "Redis connections opened",
    "slot_refreshes": "Slot-map refreshes",
}


class AgentCollector:
    """Exposes a RuleClient's state and counters (no work on the decide() path)."""

    def __init__(self, client: RuleClient):
        self.client = client

    def collect(self) -> Iterator[Metric]:
        c = self.client
        sync = c.syncer.stats.snapshot()
        budget = c.budget.stats.snapshot()
        staleness = c.staleness()
        yield _gauge("rulegate_agent_revision", "Applied namespace revision", c.revision or 0)
        yield _gauge("rulegate_agent_rules", "Rules in the applied set", len(c.syncer.current.raw)
                     if c.syncer.current else 0)
        yield _gauge("rulegate_agent_loaded", "1 when a rule set is loaded", int(c.revision is not None))
        yield _gauge("rulegate_agent_staleness_seconds", "Seconds since the rules were last confirmed current",
                     staleness if staleness != float("inf") else -1)
        refused = c.syncer.refused
        yield _gauge("rulegate_agent_stale", "1 when staleness exceeds max_stale or a store revision was refused",
                     int(c.syncer.is_stale()))
        yield _gauge("rulegate_agent_in_sync", "1 when the applied content's digest equals the store's",
                     int(c.syncer.in_sync()))
        yield _gauge("rulegate_agent_refused_revision", "Store revision this agent could not apply (0 = none)",
                     refused.revision if refused else 0)
        yield _gauge("rulegate_agent_propagation_lag_seconds",
                     "Commit-to-apply lag of the last applied delta (commit ts has 1 s resolution)",
                     sync["propagation_lag"])
        yield _gauge("rulegate_agent_snapshot_pending", "Deltas applied since the snapshot file was last written "
                     "(written once changes settle)", sync["snapshot_pending"])
        state = GaugeMetricFamily("rulegate_agent_sync_state", "1 for the state of the last sync (starting, ok, "
                                  "unknown_namespace, auth_failed, unreachable, rejected, error), 0 for the others",
                                  labels=["state"])
        for name in STATES:
            state.add_metric([name], int(c.syncer.health.state == name))
        yield state
        syncs = CounterMetricFamily("rulegate_agent_syncs", "Revalidations by result", labels=["result"])
        syncs.add_metric(["ok"], sync["syncs_ok"])
        syncs.add_metric(["failed"], sync["syncs_failed"])
        yield syncs
        beats = CounterMetricFamily("rulegate_agent_heartbeats", "Fleet heartbeats by result", labels=["result"])
        beats.add_metric(["ok"], sync["heartbeats_ok"])
        beats.add_metric(["failed"], sync["heartbeats_failed"])
        yield beats
        for name, doc in _SYNC_COUNTERS.items():
            yield CounterMetricFamily(f"rulegate_agent_{name}", doc, value=sync[name])
        ops = CounterMetricFamily("rulegate_agent_redis_operations", "Budgeted Redis operations by result",
                                  labels=["result"])
        ops.add_metric(["ok"], budget["operations"] - budget["failed_operations"])
        ops.add_metric(["failed"], budget["failed_operations"])
        yield ops
        for name, doc in _BUDGET_COUNTERS.items():
            yield CounterMetricFamily(f"rulegate_agent_redis_{name}", doc, value=budget[name])
        yield _gauge("rulegate_agent_redis_max_connections_per_operation",
                     "Most connections any one operation opened (cap: budget max_connections)",
                     budget["max_connections_in_operation"])
        if c.exposure is not None:
            yield _exposure(c.exposure.totals())
        yield _breakers(c)
        yield _outcomes(c.outcomes.outcomes())


def _exposure(totals: dict[tuple[str, str], int]) -> CounterMetricFamily:
    """Return decisions by rule and target summed over threads: the MAX_EXPOSURE_KEYS largest series, the rest
    under rule="(other)"."""
    family = CounterMetricFamily("rulegate_agent_rule_decisions", "Decisions by rule (\"\" = pass) and target "
                                 "(the upstream, or @respond/@redirect/@pass)", labels=["rule", "target"])
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    for (rule, target), n in ranked[:MAX_EXPOSURE_KEYS]:
        family.add_metric([rule, target], n)
    if len(ranked) > MAX_EXPOSURE_KEYS:
        family.add_metric(["(other)", "(other)"], sum(n for _key, n in ranked[MAX_EXPOSURE_KEYS:]))
    return family


def _breakers(client: RuleClient) -> GaugeMetricFamily:
    """Return each applied breaker rule's state in this client: 0 closed, 1 half-open, 2 open."""
    family = GaugeMetricFamily("rulegate_agent_breaker_state", "State of this agent's breaker of a degrade rule "
                               "(0 closed, 1 half-open, 2 open)", labels=["rule"])
    applied = client.syncer.current
    if applied is not None and applied.ruleset.breakers:
        for rule_id, snap in client.breakers.snapshot(time.time()).items():
            if rule_id in applied.ruleset.breakers:
                family.add_metric([rule_id], BREAKER_STATE_VALUES[snap["state"]])
    return family


def _outcomes(outcomes: Outcomes) -> CounterMetricFamily:
    """Return outcomes by rule, upstream and status class (failed, 1xx..5xx): the MAX_OUTCOME_KEYS busiest pairs."""
    family = CounterMetricFamily("rulegate_agent_outcomes", "Outcomes reported for guarded rules and breaker passes "
                                 "by rule (\"\" = pass), upstream and status class (failed = transport failure)",
                                 labels=["rule", "upstream", "class"])
    ranked = sorted(outcomes.counts.items(), key=lambda kv: (-kv[1].requests, kv[0]))
    for (rule, upstream), counts in ranked[:MAX_OUTCOME_KEYS]:
        for label, n in zip(CLASS_LABELS, counts.classes):
            if n:
                family.add_metric([rule, upstream, label], n)
    return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class DecisionCounts(ThreadCounts):
    """Decisions served by action: a plain dict increment per decision in the serving thread's own dict (no
    lock, no prometheus child), summed into `rulegate_agent_decisions_total{action}` at scrape time."""

    def __init__(self) -> None:
        super().__init__()
        self.created = time.time()

    def collect(self) -> Iterator[Metric]:
        totals = self.raw_totals()
        family = CounterMetricFamily("rulegate_agent_decisions", "Decisions served by action", labels=["action"])
        for action in ACTIONS:
            family.add_metric([action], totals.get(action, 0), created=self.created)
        yield family


class ActionCounter:
    """`inc()` counts one decision of one action in DecisionCounts (what a prometheus child's inc() did)."""

    __slots__ = ("_action", "_local", "_register")

    def __init__(self, counts: DecisionCounts, action: str):
        self._action, self._local, self._register = action, counts._local, counts._register

    def inc(self) -> None:
        try:
            counts = self._local.counts
        except AttributeError:
            counts = self._register()
        action = self._action
        counts[action] = counts.get(action, 0) + 1


class AgentMetrics:
    """The registry a sidecar serves: the client collector plus decisions by action (`decisions[action].inc()`)."""

    def __init__(self, client: RuleClient):
        self.registry = CollectorRegistry()
        self.registry.register(AgentCollector(client))
        counts = DecisionCounts()
        self.registry.register(counts)
        self.decisions = {a: ActionCounter(counts, a) for a in ACTIONS}

    def render(self) -> tuple[bytes, str]:
        """Return (body, content type) of the Prometheus text exposition."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

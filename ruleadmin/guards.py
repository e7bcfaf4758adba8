"""Guarded rollouts: judge every moving ramp's `guard` on the fleet's outcomes and halt a ramp that regresses.

The gateways count the outcomes of a guarded rule's requests per upstream (rulegate/outcomes.py: cumulative counters,
sent with every heartbeat). `FleetOutcomes` turns successive readings of a namespace's heartbeats into sliding
windows; `judge` compares each canary upstream of a guarded percent policy with its control upstream over the guard's
window (docs/rules.md "Guards"); `GuardWatcher` runs both on a timer for every namespace and, when a guard is
breached, writes one revision (op `guard-halt`, actor `guard`) that replaces the ramp with a flat one — conditioned on
the rule's stored bytes, so an operator's concurrent edit wins and the guard judges the new content next round.

State for the pages, in the namespace's slot: `{rg:<ns>}:guards` (hash: rule id -> the last verdicts and the last
halt; "@watcher" -> the watcher's liveness) and `{rg:<ns>}:outcomes` (the fleet's outcomes over the last
SUMMARY_WINDOW seconds, in the heartbeat wire form, expiring when no watcher runs).

Several watchers may run (one per ruleadmin host, say): every one of them reads the heartbeats, so its windows are
warm, and the one holding a namespace's short lease in Redis (`{rg:<ns>}:guards:lease`) judges and writes it.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping

import msgpack
import redis

from rulegate.errors import CorruptDataError, RulegateError
from rulegate.fleet import Heartbeat, read_fleet
from rulegate.keyspace import Keys
from rulegate.namespace import as_text
from rulegate.outcomes import EMPTY, OutcomeCounts, Outcomes, decode_outcomes, total
from rulegate.schema import decode_rule, encode_rule, guarded_policies, halted_ramp, ramp_share, validate_rule
from rulegate.store import RuleStore, rule_hash

log = logging.getLogger("ruleadmin.guards")

SUMMARY_WINDOW = 60  # seconds of fleet outcomes shown on the pages
HORIZON = 3600  # the longest guard window
WATCHER_FIELD = "@watcher"
ACTOR = "guard"
OP = "guard-halt"
_RENEW = ("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end "
          "return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0")


def guards_key(ns: str) -> str:
    return Keys(ns).tag + ":guards"


def outcomes_key(ns: str) -> str:
    return Keys(ns).tag + ":outcomes"


def lease_key(ns: str) -> str:
    return Keys(ns).tag + ":guards:lease"


class FleetOutcomes:
    """Sliding windows of one namespace's fleet outcomes, from successive readings of its heartbeats.

    Each reading of a gateway adds what its cumulative counters gained since the previous reading (a new `since`
    or a counter that went down is a restart: the reading counts whole) to the bucket of the second it was read
    in. The first reading of a gateway only sets its baseline, unless its counters started less than `fresh`
    seconds ago. Buckets older than `horizon` are dropped."""

    def __init__(self, horizon: float = HORIZON, fresh: float = SUMMARY_WINDOW):
        self.horizon, self.fresh = horizon, fresh
        self._last: dict[str, tuple[float, float, Mapping[tuple[str, str], OutcomeCounts]]] = {}
        self._buckets: deque[tuple[int, dict[tuple[str, str], OutcomeCounts]]] = deque()

    def observe(self, beats: Mapping[str, Heartbeat | None], now: float) -> None:
        """Add one reading of the fleet hash (gateway id -> heartbeat) taken at `now`."""
        gained: dict[tuple[str, str], OutcomeCounts] = {}
        for gateway, beat in beats.items():
            outcomes = getattr(beat, "outcomes", None) if beat is not None else None
            if not isinstance(outcomes, Outcomes):
                continue
            last = self._last.get(gateway)
            if last is not None and last[1] >= beat.heartbeat_at:
                continue  # the same heartbeat again
            self._last[gateway] = (outcomes.since, beat.heartbeat_at, outcomes.counts)
            if last is None and outcomes.since < now - self.fresh:
                continue  # baseline only: these counts are older than any window we show
            before = last[2] if last is not None and last[0] == outcomes.since else {}
            for key, counts in outcomes.counts.items():
                delta = counts.minus(before.get(key, EMPTY))
                if delta.requests:
                    gained[key] = gained.get(key, EMPTY).plus(delta)
        second = int(now)
        if gained:
            if self._buckets and self._buckets[-1][0] == second:
                bucket = self._buckets[-1][1]
                for key, counts in gained.items():
                    bucket[key] = bucket.get(key, EMPTY).plus(counts)
            else:
                self._buckets.append((second, gained))
        while self._buckets and self._buckets[0][0] <= second - self.horizon:
            self._buckets.popleft()
        for gateway in [g for g, last in self._last.items() if last[1] < now - self.horizon]:
            del self._last[gateway]

    def window(self, seconds: float, now: float, keys: Iterable[tuple[str, str]] | None = None
               ) -> dict[tuple[str, str], OutcomeCounts]:
        """Return the outcomes read in the last `seconds` before `now` by (rule, upstream) (only `keys` if given)."""
        wanted = None if keys is None else set(keys)
        first = int(now) - seconds
        out: dict[tuple[str, str], OutcomeCounts] = {}
        for second, bucket in reversed(self._buckets):
            if second <= first:
                break
            for key, counts in bucket.items():
                if wanted is None or key in wanted:
                    out[key] = out.get(key, EMPTY).plus(counts)
        return out


@dataclass(frozen=True)
class Side:
    """One upstream's outcomes in a guard's window."""

    upstream: str
    requests: int
    errors: int
    error_ratio: float | None
    p95_ms: float | None

    @classmethod
    def of(cls, upstream: str, counts: OutcomeCounts) -> "Side":
        return cls(upstream, counts.requests, counts.errors, counts.error_ratio(), counts.quantile_ms(0.95))


@dataclass(frozen=True)
class Verdict:
    """A guard's judgement of one percent policy: ok, insufficient (too few samples) or breach, and why."""

    rule_id: str
    policy: int
    state: str
    reason: str
    control: Side
    canary: Side  # the policy's bucket upstreams together
    share: int  # the ramp's effective share when judged (basis points)
    window: int


def judge(rule_id: str, index: int, policy: dict, outcomes: FleetOutcomes, now: float) -> Verdict:
    """Judge one guarded percent policy of rule_id over its guard's window (docs/rules.md "Guards"): the canary is
    all the policy's bucket upstreams together, compared with the control upstream."""
    guard = policy["ramp"]["guard"]
    window, minimum = guard["window"], guard["min_requests"]
    names = sorted({bucket["upstream"] for bucket in policy["buckets"]})
    counts = outcomes.window(window, now, [(rule_id, name) for name in [guard["control"], *names]])
    control = Side.of(guard["control"], counts.get((rule_id, guard["control"]), EMPTY))
    canary_counts = total(counts.get((rule_id, name), EMPTY) for name in names)
    canary = Side.of("+".join(names), canary_counts)
    share = ramp_share(policy["ramp"], now)

    def verdict(state: str, reason: str) -> Verdict:
        return Verdict(rule_id, index, state, reason, control, canary, share, window)

    short = [f"{side.upstream}: {side.requests} of {minimum} requests in {window}s"
             for side in (canary, control) if side.requests < minimum]
    if short:
        return verdict("insufficient", "; ".join(short))
    over = f"over {canary.requests} / {control.requests} requests in {window}s"
    limit = guard.get("max_error_increase")
    if limit is not None and canary.error_ratio - control.error_ratio > limit:
        return verdict("breach", f"{canary.upstream} error ratio {canary.error_ratio:.2%} vs {control.upstream} "
                                 f"{control.error_ratio:.2%} (+{canary.error_ratio - control.error_ratio:.2%} > "
                                 f"+{limit:.2%}) {over}")
    ratio = guard.get("max_p95_ratio")
    if ratio is not None and canary.p95_ms is not None and control.p95_ms is not None \
            and canary.p95_ms > control.p95_ms * ratio:
        return verdict("breach", f"{canary.upstream} p95 {canary.p95_ms:g} ms vs {control.upstream} "
                                 f"{control.p95_ms:g} ms (> x{ratio:g}) {over}")
    return verdict("ok", f"within the guard {over}")


@dataclass
class Halt:
    """A halt the watcher wrote (or tried to)."""

    namespace: str
    rule_id: str
    revision: int | None
    reasons: list[str]
    error: str = ""


@dataclass
class _Namespace:
    revision: int = -1
    guarded: dict[str, list[tuple[int, dict]]] = field(default_factory=dict)  # rule id -> guarded moving policies
    outcomes: FleetOutcomes = field(default_factory=FleetOutcomes)


class GuardWatcher:
    """Reads every namespace's heartbeats each `interval` seconds; the lease holder judges guards and halts ramps."""

    def __init__(self, store: RuleStore, *, interval: float = 1.0, namespaces: Iterable[str] | None = None,
                 watcher_id: str | None = None, clock: Callable[[], float] = time.time):
        self.store, self.interval, self.clock = store, interval, clock
        self.only = None if namespaces is None else list(namespaces)
        self.watcher_id = watcher_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._state: dict[str, _Namespace] = {}
        self._renew = store.client.register_script(_RENEW)
        self.leading: set[str] = set()  # namespaces whose lease this watcher held at its last round

    # ---- one round -------------------------------------------------------------------------
    def run_once(self) -> list[Halt]:
        """Read, and when holding the lease judge and write; return the halts written this round."""
        now = self.clock()
        halts: list[Halt] = []
        for ns in self.only if self.only is not None else self.store.namespaces():
            try:
                halts += self._round(ns, now)
            except (RulegateError, redis.RedisError) as exc:
                log.warning("guard round failed", extra={"namespace": ns, "error": str(exc)})
        return halts

    def _round(self, ns: str, now: float) -> list[Halt]:
        state = self._state.setdefault(ns, _Namespace())
        self._refresh_rules(ns, state)
        beats = self.store._call(read_fleet, self.store.client, ns)
        state.outcomes.observe(beats, now)
        lease_ms = int(max(self.interval * 5, 3) * 1000)
        if not self.store._call(self._renew, keys=[lease_key(ns)], args=[self.watcher_id, lease_ms]):
            self.leading.discard(ns)
            return []
        self.leading.add(ns)
        summary = Outcomes(now, state.outcomes.window(SUMMARY_WINDOW, now))
        records: dict[str, bytes] = {WATCHER_FIELD: msgpack.packb(
            {"id": self.watcher_id, "at": now, "interval": self.interval}, use_bin_type=True)}
        halts = []
        previous = self._records(ns)
        for rule_id, policies in sorted(state.guarded.items()):
            verdicts = [judge(rule_id, i, p, state.outcomes, now) for i, p in policies
                        if now < p["ramp"]["end"]]
            record = {"checked_at": now, "verdicts": [_verdict_record(v) for v in verdicts],
                      "halted": (previous.get(rule_id) or {}).get("halted")}
            breached = [v for v in verdicts if v.state == "breach"]
            if breached:
                halt = self._halt(ns, rule_id, breached, now)
                halts.append(halt)
                if halt.revision is not None:
                    record["halted"] = {"at": now, "revision": halt.revision, "reasons": halt.reasons,
                                        "policies": [v.policy for v in breached]}
            records[rule_id] = msgpack.packb(record, use_bin_type=True)
        key = guards_key(ns)
        stale = [f for f in previous if f not in records and f != WATCHER_FIELD
                 and not ((previous[f] or {}).get("halted") and self._exists(ns, f))]  # a halt stays with its rule

        def write(pipe) -> None:
            pipe.hset(key, mapping=records)
            if stale:
                pipe.hdel(key, *stale)
            pipe.set(outcomes_key(ns), msgpack.packb(summary.to_wire(), use_bin_type=True),
                     px=int(max(self.interval * 10, 10) * 1000))

        self.store._call(_pipeline, self.store.client, write)
        return halts

    def _exists(self, ns: str, rule_id: str) -> bool:
        return bool(self.store._call(self.store.client.hexists, Keys(ns).rules, rule_id))

    def _records(self, ns: str) -> dict[str, Any]:
        raw = self.store._call(self.store.client.hgetall, guards_key(ns))
        out = {}
        for f, v in raw.items():
            try:
                out[as_text(f)] = msgpack.unpackb(v, raw=False)
            except (ValueError, msgpack.UnpackException):
                out[as_text(f)] = None
        return out

    def _refresh_rules(self, ns: str, state: _Namespace) -> None:
        rev = self.store.revision(ns)
        if rev == state.revision:
            return
        entries = self.store.changes_since(ns, state.revision) if state.revision >= 0 else None
        if entries is None:
            read = self.store.load(ns)
            state.guarded = {rid: g for rid, rule in read.rules.items() if (g := guarded_policies(rule))}
            state.revision = read.revision
            return
        for entry in entries:
            for rule_id, _before, after in entry.changes:
                guarded = guarded_policies(decode_rule(after, where=f"rule {rule_id!r}")) if after else []
                if guarded:
                    state.guarded[rule_id] = guarded
                else:
                    state.guarded.pop(rule_id, None)
            state.revision = entry.revision

    def _halt(self, ns: str, rule_id: str, breached: list[Verdict], now: float) -> Halt:
        reasons = [f"policies[{v.policy}]: {v.reason}" for v in breached]
        keys = Keys(ns)
        raw = self.store._call(self.store.client.hget, keys.rules, rule_id)
        if not raw:
            return Halt(ns, rule_id, None, reasons, "the rule is gone")
        try:
            rule = decode_rule(raw, where=f"rule {rule_id!r}")
            for v in breached:
                policy = rule["policies"][v.policy]
                policy["ramp"] = halted_ramp(policy["ramp"], int(now), policy["ramp"]["guard"]["on_breach"])
            rule.update(updated_by=ACTOR, updated_at=int(now))
            rule = validate_rule(rule)
            result = self.store.commit(ns, [(rule_id, encode_rule(rule))], None, ACTOR, op=OP,
                                       expected_hashes={rule_id: rule_hash(raw)})
        except (RulegateError, CorruptDataError, KeyError, IndexError) as exc:
            log.warning("guard halt not written", extra={"namespace": ns, "rule": rule_id, "error": str(exc)})
            return Halt(ns, rule_id, None, reasons, str(exc))
        log.warning("guard halted a ramp", extra={"namespace": ns, "rule": rule_id, "revision": result.revision,
                                                  "reasons": reasons})
        return Halt(ns, rule_id, result.revision, reasons)

    # ---- the loop --------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Run rounds every `interval` seconds until stop is set (errors are logged, never fatal)."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.run_once()
            except (RulegateError, redis.RedisError) as exc:
                log.warning("guard watcher round failed", extra={"error": str(exc)})
            stop.wait(max(self.interval - (time.monotonic() - started), 0.05))


def _pipeline(client, fill: Callable) -> list:
    pipe = client.pipeline(transaction=False)
    fill(pipe)
    return pipe.execute()


def _verdict_record(v: Verdict) -> dict:
    return asdict(v)


# ---- reading for the pages -----------------------------------------------------------------------------
def read_guards(client, ns: str, now: float, stale_after: float = 10.0) -> dict:
    """Return {"watcher": {id, at, live}|None, "rules": {rule id: record}} from the namespace's guard hash."""
    raw = client.hgetall(guards_key(ns))
    rules, watcher = {}, None
    for f, v in raw.items():
        try:
            record = msgpack.unpackb(v, raw=False)
        except (ValueError, msgpack.UnpackException):
            continue
        if as_text(f) == WATCHER_FIELD and isinstance(record, dict):
            at = float(record.get("at") or 0)
            watcher = {**record, "live": now - at <= max(stale_after, 3 * float(record.get("interval") or 1))}
        elif isinstance(record, dict):
            rules[as_text(f)] = record
    return {"watcher": watcher, "rules": rules}


def read_outcomes(client, ns: str) -> Outcomes | None:
    """Return the fleet's outcomes over the last SUMMARY_WINDOW seconds (None when no watcher wrote them lately)."""
    raw = client.get(outcomes_key(ns))
    if not raw:
        return None
    try:
        return decode_outcomes(msgpack.unpackb(raw, raw=False))
    except (ValueError, msgpack.UnpackException):
        return None

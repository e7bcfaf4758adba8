"""The sync loop: bootstrap (snapshot, then Redis), then revalidate on notification or TTL.

One `Syncer` owns the applied rule set. It is replaced, never mutated: readers take
`syncer.current` (one attribute read) and evaluate against it. Every Redis access runs under
the `Budget`. Pub/sub is a hint that shortens the wait; the revision check is the truth.
Works with plain threads and under gevent (monkey-patched threading).
"""
from __future__ import annotations

import logging
import os
import random
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

from redis.exceptions import AskError, AuthenticationError, MovedError, NoPermissionError

from rulegate.connection import REDIS_ERRORS
from rulegate.digest import EMPTY as EMPTY_DIGEST
from rulegate.digest import apply_change
from rulegate.errors import CorruptDataError, SnapshotError, StoreError
from rulegate.evaluator import RuleSet
from rulegate.fleet import Heartbeat
from rulegate.gc_hold import collector_held
from rulegate.keyspace import Keys
from rulegate.layered import derive
from rulegate.namespace import (
    NamespaceRead,
    Slicer,
    as_text,
    chunked_read,
    consistent_read,
    contiguous,
    pairs,
)
from rulegate.schema_fast import decode_rule
from rulegate.snapshot import make_snapshot, read_snapshot, write_snapshot
from rulegate.store import LogEntry, decode_entry

from .budget import RETRYABLE, Budget, NodePool, Operation, SlotMap, execute
from .compiled import CompileCache
from .counters import LockedCounters
from .health import SyncHealth, UnknownNamespace, auth_failure, error_kind
from .outcomes import breaker_states, guarded_after

log = logging.getLogger("rulegate.agent.sync")


@dataclass(frozen=True)
class Applied:
    """An applied, compiled rule set and the raw bytes it came from (never mutated).

    The decoded rules are not kept (they took ~7x the bytes): `rules()` decodes them again.
    """

    ruleset: RuleSet
    raw: Mapping[str, bytes]
    revision: int
    generation: str
    source: str
    applied_at: float
    digest: str = EMPTY_DIGEST
    guarded: frozenset[str] = frozenset()  # ids of the guarded rules: their outcomes count (gateway_agent/outcomes.py)

    def rules(self, pause: Callable[[], None] | None = None) -> dict[str, dict]:
        """Return the applied rules by id, decoded from `raw` (new dicts on every call).

        `pause`, when given, is called between rules (a cooperative yield). The bytes were validated
        when applied, so this does not raise.
        """
        return dict(self.each_rule(pause))

    def each_rule(self, pause: Callable[[], None] | None = None) -> Iterator[tuple[str, dict]]:
        """Yield (id, rule) for the applied rules, decoded one at a time from `raw` (pause() before each)."""
        for rule_id, value in self.raw.items():
            if pause is not None:
                pause()
            yield rule_id, decode_rule(value, where=f"applied rule {rule_id!r}")


@dataclass
class SyncConfig:
    """What the sync loop does and how often."""

    namespace: str
    refresh_interval: float = 1.0
    jitter: float = 0.2
    max_stale: float = 30.0
    snapshot_path: str | None = None
    gateway_id: str = ""
    heartbeat_interval: float = 5.0
    log_batch: int = 1000
    scan_count: int = 500
    notifications: bool = True
    upstreams: tuple[str, ...] = ()
    read_replica: bool = False  # revision checks on a replica of the slot while it is current (docs/agent.md)
    gc_freeze: bool = True  # gc.freeze() after each full reload (see rulegate.gc_hold)
    # the snapshot after deltas: written checkpoint_delay s after the last change, after CHECKPOINT_EVERY
    # deltas, or checkpoint_max s into a burst (nginx's policy, lua/rulegate/sync.lua); full reloads at once
    checkpoint_delay: float = 1.0
    checkpoint_max: float = 10.0


CHECKPOINT_EVERY = 256  # deltas after which the snapshot is written even during a burst
# A log delta of more changed rules than this, and than a quarter of the rules applied, is read whole instead: a
# full reload decodes and compiles in slices that yield, a delta in one block (nginx's rule, lua/rulegate/sync.lua)
DELTA_FULL_MIN = 64


@dataclass
class SyncStats(LockedCounters):
    """Counters of the sync loop (read under `lock`)."""

    syncs_ok: int = 0
    syncs_failed: int = 0
    full_reloads: int = 0
    deltas_applied: int = 0
    rejected: int = 0
    rollbacks_refused: int = 0
    generation_changes: int = 0
    digest_mismatches: int = 0
    reloads_skipped: int = 0  # new generations of the applied rules (same digest) taken without a full reload
    large_deltas: int = 0  # log deltas of more than a quarter of the rules (DELTA_FULL_MIN) read whole instead
    notifications: int = 0
    snapshot_writes: int = 0
    snapshot_errors: int = 0
    snapshot_pending: int = 0  # deltas applied since the snapshot file was last written
    heartbeats_ok: int = 0
    heartbeats_failed: int = 0
    replica_reads: int = 0
    replica_lagging: int = 0
    replica_errors: int = 0
    propagation_lag: float = 0.0


def _parts(applied: Applied | None) -> list:
    """Return what holds most of an applied set's objects (its raw map, then its routes and indexes)."""
    return [] if applied is None else [applied.raw, *applied.ruleset.parts()]


def _green() -> bool:
    """Return True when threads are gevent's (monkey-patched): the sync loop is then a greenlet of the hub's
    OS thread, which serves the sidecar's requests between its slices."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


def _off_loop(fn: Callable[..., None], *args: object) -> None:
    """Run fn(*args) (blocking file I/O) in gevent's thread pool when threads are monkey-patched (the
    sync loop is then a greenlet, and an fsync in it would stop every request), else right here."""
    if _green():
        from gevent import get_hub
        get_hub().threadpool.apply(fn, args)
    else:
        fn(*args)


IDLE_WAIT_MAX = 0.003  # the longest a slice's yield waits for gevent's loop to be idle: on a server kept busy the
# reload still gets one 1 ms slice in ~4 (with 20 ms, a same-bytes reload under wrk -c8 took up to 2 s, not 0.3)
GREEN_SLICE = 0.001  # a slice in a greenlet: its yield (`until_idle`) costs ~7 µs of CPU


def until_idle() -> None:
    """Wait until gevent's loop has nothing else to do, at most IDLE_WAIT_MAX s (a Slicer's `rest` in a greenlet).

    A 10 µs sleep gives the hub one loop iteration, and libev runs the sleeper's expired timer first: a
    request ready then waited a second slice, and one needing more than one turn more. An idle watcher
    fires only once no socket, timer or callback of its priority is pending, so every greenlet ready
    when the slice ended (and any that became ready meanwhile) runs before the next slice. The bound
    keeps a reload going on a server that is never idle: one slice every IDLE_WAIT_MAX at worst.
    """
    from gevent import get_hub
    from gevent.hub import Waiter

    hub = get_hub()
    waiter = Waiter(hub)
    idle, timer = hub.loop.idle(), hub.loop.timer(IDLE_WAIT_MAX)
    idle.start(waiter.switch, None)
    timer.start(waiter.switch, None)
    try:
        waiter.get()
    finally:
        idle.close()
        timer.close()


def slicer() -> Slicer:
    """Return a pause() for the sync thread's long loops (Slicer): under gevent, 1 ms slices that yield with
    `until_idle`; with OS threads, 2 ms slices and a 10 µs sleep (a real one: ~60 µs with the timer slack)."""
    return Slicer(GREEN_SLICE, rest=until_idle) if _green() else Slicer()


class ReplicaUnusable(StoreError):
    """The replica did not answer a revision check (the check goes to the master instead)."""


class Rejected(StoreError):
    """Redis holds a rule set the agent refuses to apply (garbage, invalid, or older)."""


class ContentMismatch(Exception):
    """What the agent holds has another digest than the store's at the same revision."""


@dataclass(frozen=True)
class Refusal:
    """A store revision this agent could not apply, and why."""

    revision: int
    reason: str


class Syncer:
    """Owns the applied rule set of one namespace and the loop that keeps it current."""

    def __init__(self, config: SyncConfig, budget: Budget, pool: NodePool, slots: SlotMap, *,
                 wall: Callable[[], float] = time.time):
        self.config = config
        self.keys = Keys(config.namespace)
        self.budget = budget
        self.pool = pool
        self.slots = slots
        self.wall = wall
        self.stats = SyncStats()
        self.current: Applied | None = None
        self.confirmed_at: float | None = None
        self.health = SyncHealth(config.namespace)
        self.refused: Refusal | None = None
        self.store_revision: int | None = None
        self.store_digest: str | None = None
        self._changed = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._first_cycle = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_heartbeat = 0.0
        self._beat_pending = False
        self._cycles = threading.Condition()  # guards _next_heartbeat's take and the cycle counts
        self._cycles_started = 0
        self._cycles_done = 0
        self.announced = 0  # highest revision announced on the events channel (or read from the master)
        self._scan = True  # HSCAN granted (else one HGETALL per full reload)
        self.notifier = Notifier(self) if config.notifications else None
        self.compiled = CompileCache()  # the compiled rules of the bytes held (the applied set's; the sync thread's)
        self._pending_since: float | None = None  # monotonic time of the first delta not in the snapshot file
        self._pending_last = 0.0  # ... and of the last one

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, wait: float | None = None) -> None:
        """Bootstrap from the snapshot, start the loop; wait up to `wait` s for the first Redis sync."""
        self.bootstrap_from_snapshot()
        self._thread = threading.Thread(target=self._run, name=f"rulegate-sync-{self.config.namespace}",
                                        daemon=True)
        self._thread.start()
        if self.notifier is not None:
            self.notifier.start()
        if wait:
            self._first_cycle.wait(wait)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and the notifier and close connections."""
        self._stop.set()
        self._wake.set()
        if self.notifier is not None:
            self.notifier.stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        self.pool.close()

    def wake(self) -> None:
        """Ask the loop to revalidate now."""
        self._wake.set()

    def heartbeat_now(self, timeout: float = 5.0) -> bool:
        """Have this gateway's heartbeat written now, from any thread: the running sync thread sends one taken
        after this call with its next revision check (the node connections are that thread's own: a write from
        another thread beside it could read the other's reply). Return True once it was attempted (read the
        fleet hash for the result), False when the loop did not get to it within `timeout` s. Without a running
        loop the heartbeat is written here."""
        if self._thread is None or not self._thread.is_alive():
            self._heartbeat()
            return True
        with self._cycles:
            self._next_heartbeat = 0.0
            want = self._cycles_started + 1
        self._wake.set()
        with self._cycles:
            return self._cycles.wait_for(lambda: self._cycles_done >= want, timeout)

    def wait_for_revision(self, revision: int, timeout: float) -> bool:
        """Return True once a rule set with at least `revision` is applied, False on timeout."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self.current is not None and self.current.revision >= revision, timeout)

    def in_sync(self) -> bool:
        """Return True when the last check succeeded and found the applied content to be the store's (digest-equal).

        A store without a digest (written before digests existed) compares revisions instead. After a failed
        check (the store unreachable, a master paused or failing over) the agent cannot tell, so it is not in sync.
        """
        cur = self.current
        if cur is None or self.store_revision is None or self.refused is not None or self.health.state != "ok":
            return False
        if self.store_digest:
            return cur.digest == self.store_digest
        return cur.revision == self.store_revision

    def is_stale(self) -> bool:
        """Return True when the rules are older than max_stale or a store revision was refused."""
        return self.staleness() > self.config.max_stale or self.refused is not None

    def staleness(self) -> float:
        """Return seconds since the applied rule set was last confirmed current (inf if never)."""
        confirmed = self.confirmed_at
        return float("inf") if confirmed is None else max(0.0, self.wall() - confirmed)

    # ---- the loop --------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.cycle()
                self.checkpoint()
            except Exception:  # noqa: BLE001 - the loop outlives any bug in one cycle; stale rules keep serving
                log.exception("sync cycle failed unexpectedly; keeping the current rule set")
            self._first_cycle.set()
            interval = self.config.refresh_interval * (1 + self.config.jitter * (2 * random.random() - 1))
            due = self._checkpoint_due()
            if due is not None:
                interval = min(interval, max(0.0, due - time.monotonic()))
            self._wake.wait(interval)
        try:
            self.checkpoint(now=True)  # a clean stop leaves the served set on disk
        except Exception:  # noqa: BLE001 - stopping must not raise for a snapshot
            log.exception("final snapshot checkpoint failed")

    def cycle(self) -> None:
        """Run one revalidation and, when due, the heartbeat; never raises on Redis trouble.

        Once a rule set is applied, a due heartbeat rides in the revision check's round trip to the
        master (one Redis round trip per gateway per interval); before that it is written after the sync.
        """
        beat, after = None, False
        with self._cycles:
            self._cycles_started += 1
            cycle_no = self._cycles_started
            due = time.monotonic() >= self._next_heartbeat
            if due:
                self._next_heartbeat = time.monotonic() + self.config.heartbeat_interval
        try:
            if due:
                beat = self._heartbeat_command() if self.current is not None else None
                after = beat is None
            self._cycle(beat, after)
        finally:
            with self._cycles:
                self._cycles_done = cycle_no
                self._cycles.notify_all()

    def _cycle(self, beat: tuple | None, after: bool) -> None:
        self._beat_pending = beat is not None  # cleared by _poll, which sends it
        try:
            if self.slots.stale:
                self.slots.refresh(self.budget, self.pool, self.slots.version)
            self.sync_once(beat)
            self.stats.add("syncs_ok")
        except Rejected as exc:
            self.stats.add("syncs_failed")
            self._failed("rejected", str(exc))
        except (StoreError, *REDIS_ERRORS) as exc:
            self.stats.add("syncs_failed")
            kind = error_kind(exc)
            self._failed(kind, str(exc) if kind == "unknown_namespace" else f"{exc.__class__.__name__}: {exc}")
        if beat is not None and self._beat_pending:
            self._beat_pending = False
            self.stats.add("heartbeats_failed")
        if after:
            self._heartbeat()

    def _failed(self, state: str, message: str) -> None:
        self.health.failed(state, message, self.current.revision if self.current else None, self.staleness())

    def _confirm(self) -> None:
        self.confirmed_at = self.wall()
        self.health.ok(self.current.revision if self.current else None)

    # ---- one revalidation ------------------------------------------------------------------
    def sync_once(self, beat: tuple | None = None) -> bool:
        """Compare revisions and apply deltas or a full reload; return True when a new set was applied.

        `beat` (an HSET of the fleet hash) is sent in the same round trip, to the master.
        """
        step = self._revalidate(beat)
        if isinstance(step, bool):
            return step
        # a full reload runs once _revalidate's frame is gone: nothing may hold the replaced set, which
        # full_reload frees a slice at a time (held here, it went in one block when sync_once returned)
        return self.full_reload() if step is None else self._content_mismatch(step)

    def _revalidate(self, beat: tuple | None) -> bool | str | None:
        """sync_once's check and deltas: True/False (applied a delta or not), else a full reload is due:
        None, or the content mismatch that calls for it."""
        cur = self.current
        k = self.keys
        cmds: list[tuple] = [("GET", k.rev), ("HGET", k.meta, "gen"), ("HGET", k.meta, "digest")]
        if cur is not None and cur.source == "redis":
            cmds.append(("XRANGE", k.log, f"{cur.revision + 1}-0", "+", "COUNT", self.config.log_batch))
        replies = self._poll(cmds, cur, beat)
        if replies[0] is None and replies[1] is None:  # no rev, no generation (the meta key's first field)
            raise UnknownNamespace(f"namespace {self.config.namespace!r} does not exist in the store (no {k.rev} "
                                   f"or {k.meta} key): a misspelled namespace, or no rule was ever written to it")
        rev, gen = int(replies[0] or 0), as_text(replies[1] or b"")
        self.store_revision, self.store_digest = rev, as_text(replies[2] or b"")
        if cur is None:
            return None
        if gen and gen != cur.generation:
            return self._adopt(cur, rev, gen)
        if rev == cur.revision:
            if self.store_digest and self.store_digest != cur.digest:
                return f"revision {rev}: store digest {self.store_digest[:12]} but applied {cur.digest[:12]}"
            self._confirm()
            return False
        if rev < cur.revision:
            self.stats.add("rollbacks_refused")
            raise Rejected(f"store revision {rev} is lower than applied revision {cur.revision} of "
                           f"generation {gen or '(none)'}; not rolling back")
        entries = self._entries(replies[3]) if len(replies) > 3 else None
        if entries is None or not contiguous(entries, cur.revision, rev, self.config.log_batch):
            return None
        # rules changed, not changes: a burst of commits to a few rules is a small delta however many revisions
        changed = len({change[0] for entry in entries for change in entry.changes})
        if changed > max(DELTA_FULL_MIN, len(cur.raw) / 4):
            self.stats.add("large_deltas")
            log.info("namespace %s: revisions %d-%d change %d rules, more than a quarter of the %d applied; reading "
                     "them whole", self.config.namespace, cur.revision + 1, rev, changed, len(cur.raw))
            return None
        try:
            self._apply_delta(cur, entries, gen)
        except CorruptDataError as exc:
            log.warning("namespace %s: log delta rejected (%s); trying a full reload",
                        self.config.namespace, str(exc))  # str: a record keeping exc would keep cur
            return None
        except ContentMismatch as exc:
            return str(exc)
        if entries[-1].revision < rev:
            self.wake()
        return True

    def _poll(self, cmds: list[tuple], cur: Applied | None, beat: tuple | None) -> list:
        """Return the replies of the revision check: with the heartbeat on the master, else from a current
        replica (`read_replica`), else from the master (then the replicas when it fails)."""
        if beat is not None:
            # One attempt, and none while the master is suspect (it failed moments ago): the heartbeat can
            # only go to the master, and retrying it there would spend the check's budget on a frozen
            # master before the check itself could go to a replica (the rules went stale meanwhile).
            self._beat_pending = False
            master = self.slots.master
            if master is not None and self.slots.is_suspect(master):
                self.stats.add("heartbeats_failed")
                log.debug("heartbeat not sent: the master %s failed moments ago; checking without it", master)
            else:
                try:
                    replies = self._read("revision check", [beat, *cmds], writes=True, attempts=1)[1:]
                    self.stats.add("heartbeats_ok")
                    self._master_read(replies)
                    return replies
                except (StoreError, *REDIS_ERRORS) as exc:
                    self.stats.add("heartbeats_failed")
                    log.debug("heartbeat with the revision check failed (%s); checking without it", exc)
        if self.config.read_replica and cur is not None and cur.source == "redis":
            replies = self._replica_poll(cmds, cur)
            if replies is not None:
                return replies
        replies = self._read("revision check", cmds)
        self._master_read(replies)
        return replies

    def _master_read(self, replies: list) -> None:
        if replies[0] is not None:
            self.announced = max(self.announced, int(replies[0]))

    def announce(self, revision: int) -> None:
        """Note a revision announced on the events channel (replica reads below it go to the master)."""
        self.announced = max(self.announced, revision)

    def _replica(self) -> str | None:
        """Return the replica this gateway reads from (spread by gateway id), None when there is none usable."""
        replicas = [r for r in self.slots.replicas if r != self.slots.master]
        if not replicas or self.slots.stale:
            return None
        chosen = replicas[zlib.crc32(self.config.gateway_id.encode()) % len(replicas)]
        return None if self.slots.is_suspect(chosen) else chosen

    def _replica_poll(self, cmds: list[tuple], cur: Applied) -> list | None:
        """Return the replica's replies when it holds at least the applied and the announced revision of the
        applied generation; None (the master answers) when it lags, fails or has no usable replica."""
        address = self._replica()
        if address is None:
            return None

        def attempt(op: Operation) -> list:
            try:
                replies = execute(self.pool.get(address, op), *cmds, raise_on_error=False)
            except RETRYABLE as exc:
                self.pool.drop(address)
                raise ReplicaUnusable(f"replica {address}: {exc.__class__.__name__}: {exc}") from None
            for reply in replies:
                if isinstance(reply, Exception):
                    raise ReplicaUnusable(f"replica {address}: {reply.__class__.__name__}: {reply}")
            return replies

        try:
            replies = self.budget.run("replica revision check", attempt)
        except (StoreError, *REDIS_ERRORS) as exc:
            self.stats.add("replica_errors")
            self.slots.suspect(address)
            log.debug("namespace %s: %s; checking on the master", self.config.namespace, exc)
            return None
        held = max(cur.revision, self.announced)
        if replies[0] is None or int(replies[0]) < held or as_text(replies[1] or b"") != cur.generation:
            self.stats.add("replica_lagging")
            return None
        self.stats.add("replica_reads")
        return replies

    def _entries(self, raw: list) -> list[LogEntry] | None:
        try:
            return [decode_entry(self.config.namespace, eid, pairs(fields)) for eid, fields in raw]
        except CorruptDataError as exc:
            log.warning("namespace %s: %s; falling back to a full reload", self.config.namespace, exc)
            return None

    def _adopt(self, cur: Applied, rev: int, gen: str) -> bool | None:
        """A new generation (a store rebuilt or restored): when the store's digest is the applied content's, the
        applied rules become the store's revision and generation without reading them (True); else None (a full
        reload). A restored store of the same rules then costs a gateway one round trip, not the namespace's
        bytes (docs/design.md "A new generation of the same rules")."""
        if not self.store_digest or self.store_digest != cur.digest:
            return None
        self.stats.add("generation_changes")
        log.warning("namespace %s: NEW GENERATION %s replaces %s (revision %s -> %s) with the same rules (digest "
                    "%s); accepting the new lineage without reloading", self.config.namespace, gen, cur.generation,
                    cur.revision, rev, cur.digest[:12])
        self.announced = rev  # announcements of an older lineage say nothing about this one
        ruleset = cur.ruleset.with_changes({}, (), rev, gen)
        self._install(Applied(ruleset, cur.raw, rev, gen, "redis", self.wall(), cur.digest, cur.guarded), deltas=1)
        self.stats.add("reloads_skipped")
        return True

    def _content_mismatch(self, why: str) -> bool:
        self.stats.add("digest_mismatches")
        log.warning("namespace %s: content differs from the store (%s); reloading fully", self.config.namespace, why)
        return self.full_reload(force=True)

    def _apply_delta(self, cur: Applied, entries: list[LogEntry], gen: str) -> None:
        """Apply log entries on top of cur; raise ContentMismatch when a digest disagrees (nothing applied).

        Only the changed rules are decoded and compiled (`RuleSet.with_changes`); cur is not modified. A delta of
        many rules is decoded and compiled in slices that yield (`slicer`), as a full reload is.
        """
        raw = derive(cur.raw)  # O(changes), not a copy of every rule's bytes (rulegate/layered.py)
        changed: dict[str, dict] = {}
        removed: set[str] = set()
        digest = cur.digest
        pause = slicer()
        for entry in entries:
            for rule_id, _before, after in entry.changes:
                pause()
                digest = apply_change(digest, rule_id, raw.get(rule_id), after)
                if after:
                    changed[rule_id] = decode_rule(after, where=f"log rev {entry.revision} rule {rule_id!r}")
                    removed.discard(rule_id)
                    raw[rule_id] = after
                else:
                    changed.pop(rule_id, None)
                    removed.add(rule_id)
                    raw.pop(rule_id, None)
            if entry.digest and entry.digest != digest:
                raise ContentMismatch(f"after log revision {entry.revision} the store has digest "
                                      f"{entry.digest[:12]}, the delta gives {digest[:12]}")
        last = entries[-1]
        ruleset = cur.ruleset.with_changes(changed, removed, last.revision, gen, pause)
        self._install(Applied(ruleset, raw, last.revision, gen, "redis", self.wall(), digest,
                              guarded_after(cur.guarded, changed, removed)), deltas=len(entries))
        with self.stats.lock:
            self.stats.deltas_applied += len(entries)
            self.stats.propagation_lag = max(0.0, self.wall() - last.ts)

    def full_reload(self, force: bool = False) -> bool:
        """Read the whole namespace and apply it if valid and not older; return True when applied.

        With `force`, the read content replaces an applied set of the same revision (digest mismatch).
        Reads in HSCAN chunks and decodes, digests and compiles in slices of ~2 ms that yield, with
        the cyclic GC held off (see `rulegate.gc_hold`), so a sidecar's requests keep being answered;
        rules whose stored bytes the applied set holds are not decoded again (`CompileCache`), and
        the replaced set is freed in slices as well.
        """
        pause = slicer()
        retired = _parts(self.current)
        with collector_held(self.config.gc_freeze):
            applied = self._full_reload(force, pause, retired)
        while retired:  # the replaced set and the load's leftovers, freed a slice at a time
            retired.pop()
            pause()
        return applied

    def _full_reload(self, force: bool, pause: Slicer, retired: list) -> bool:
        """full_reload's read, load and install; what the load leaves behind goes to `retired`."""
        read = self._full_read(pause)
        rev, gen, raw = read.revision, read.generation, read.raw
        self.store_revision, self.store_digest = rev, read.digest
        cur = self.current
        if cur is not None and gen == cur.generation and rev < cur.revision:
            self.stats.add("rollbacks_refused")
            raise Rejected(f"store revision {rev} is lower than applied revision {cur.revision}; "
                           "not rolling back")
        if (not force and cur is not None and gen == cur.generation and rev == cur.revision
                and cur.source == "redis" and (not read.digest or read.digest == cur.digest)):
            self._confirm()
            return False
        try:
            loaded = self.compiled.load(raw, where=f"namespace {self.config.namespace!r}", pause=pause)
        except CorruptDataError as exc:
            self.stats.add("rejected")
            self.refused = Refusal(rev, str(exc))
            raise Rejected(f"revision {rev} not applied: {exc}") from None
        if cur is not None and cur.generation and gen != cur.generation:
            self.stats.add("generation_changes")
            log.warning("namespace %s: NEW GENERATION %s replaces %s (revision %s -> %s); accepting "
                        "the new lineage", self.config.namespace, gen, cur.generation, cur.revision, rev)
        self.stats.add("full_reloads")
        if read.digest and read.digest != loaded.digest:
            raise StoreError(f"revision {rev}: the rules read do not match the store's digest {read.digest[:12]} "
                             f"(a slot migration in progress, or damaged keys); keeping revision "
                             f"{cur.revision if cur else None}")
        ruleset = loaded.ruleset(rev, gen, pause)  # from the applied set, copy-on-write, when it held rules
        if cur is None or gen != cur.generation:
            self.announced = rev  # announcements of an older lineage say nothing about this one
        self._install(Applied(ruleset, loaded.raw, rev, gen, "redis", self.wall(), loaded.digest, loaded.guarded),
                      pause)
        # the bytes read (those equal to the held ones are not kept) and the compiled rules the set does not hold
        retired += (raw, *loaded.release())
        return True

    def _full_read(self, pause: Slicer) -> NamespaceRead:
        """Read the namespace with HSCAN in chunks; one HGETALL when the ACL does not grant HSCAN."""
        run = lambda cmds: self._read("full reload", cmds)  # noqa: E731
        if self._scan:
            try:
                return chunked_read(self.config.namespace, run, count=self.config.scan_count, pause=pause)
            except NoPermissionError as exc:
                self._scan = False
                log.warning("namespace %s: %s; full reloads use one HGETALL (grant +hscan to chunk them)",
                            self.config.namespace, exc)
        return consistent_read(self.config.namespace, run)

    def _read(self, name: str, cmds: list[tuple], writes: bool = False, attempts: int | None = None) -> list:
        """Return the replies of cmds from one node of the slot (master first; only the master with
        `writes`), under the budget (at most `attempts` attempts when given).

        During a slot migration the master answers ASK for the keys already moved: those commands are
        sent again to the importing node, each behind ASKING, and their replies merged in (commits
        cannot run while a namespace's keys are split, so the merged view is one revision).
        """
        tried: list[str] = []  # this operation's addresses so far: each attempt takes one not tried yet

        def attempt(op: Operation) -> list:
            # candidates() puts a node that just failed last, so an index into it would skip the next node
            # (master, replica -> replica, master: attempt 2 went to the failed master again)
            candidates = self.slots.candidates(writes=writes)
            fresh = [a for a in candidates if a not in tried]
            address = fresh[0] if fresh else candidates[len(tried) % len(candidates)]
            tried.append(address)
            try:
                replies = execute(self.pool.get(address, op), *cmds, raise_on_error=False)
                asked = [i for i, r in enumerate(replies) if isinstance(r, AskError)]
                if asked:
                    replies = self._follow_ask(op, cmds, replies, asked)
                for reply in replies:
                    if isinstance(reply, Exception):
                        raise reply
                return replies
            except AuthenticationError as exc:  # a refused AUTH on a reused connection: final, like the pool's
                self.pool.drop(address)
                raise auth_failure(address, exc) from exc
            except MovedError as exc:
                self.slots.moved(exc)
                tried.clear()  # the new owner first
                raise
            except RETRYABLE:
                self.pool.drop(address)
                self.slots.suspect(address)
                self.slots.stale = True
                raise

        return self.budget.run(name, attempt, max_attempts=attempts)

    def _follow_ask(self, op: Operation, cmds: list[tuple], replies: list, asked: list[int]) -> list:
        ask = replies[asked[0]]
        target = f"{ask.host}:{ask.port}"
        sent = [c for i in asked for c in (("ASKING",), cmds[i])]
        more = execute(self.pool.get(target, op), *sent)
        with self.budget.stats.lock:
            self.budget.stats.redirects += 1
        merged = list(replies)
        for j, i in enumerate(asked):
            merged[i] = more[2 * j + 1]
        return merged

    def _install(self, applied: Applied, pause: Slicer | None = None, deltas: int = 0) -> None:
        """Make applied the current set, then write its snapshot (pausing with `pause`, the reload's own: a new
        Slicer would first run a whole slice of its own) — or, when applied is `deltas` log entries over the
        current set, leave that to `checkpoint()`: rewriting the whole file costs O(rules) (~10–30 ms of CPU
        at 10,000 rules), paid once per burst of changes instead of once per change."""
        self.compiled.hold(applied.raw, applied.ruleset, applied.guarded, applied.digest)
        with self._changed:
            self.current = applied
            if self.refused is not None and applied.revision >= self.refused.revision:
                self.refused = None
            self._confirm()
            self._changed.notify_all()
        log.info("namespace %s: applied revision %s (%d rules, generation %s, from %s)",
                 self.config.namespace, applied.revision, len(applied.raw), applied.generation, applied.source)
        if applied.source == "redis" and self.config.snapshot_path:
            if deltas:
                now = time.monotonic()
                if self._pending_since is None:
                    self._pending_since = now
                self._pending_last = now
                with self.stats.lock:
                    self.stats.snapshot_pending += deltas
                if self.stats.snapshot_pending >= CHECKPOINT_EVERY:
                    self.checkpoint(now=True)
            else:
                self._write_snapshot(applied, pause or slicer())

    def _checkpoint_due(self) -> float | None:
        """Return the monotonic time at which the pending deltas' snapshot is due (None: nothing pending)."""
        since = self._pending_since
        if since is None:
            return None
        return min(self._pending_last + self.config.checkpoint_delay, since + self.config.checkpoint_max)

    def checkpoint(self, now: bool = False) -> bool:
        """Write the snapshot of the current set when deltas are pending and due (or `now`); True when written.

        Called by the sync thread after each cycle: changes settle `checkpoint_delay` s after the last one,
        a burst is written every `checkpoint_max` s and every CHECKPOINT_EVERY deltas. The file lags the
        served set by at most about that; Redis, not the file, holds every acknowledged change."""
        due = self._checkpoint_due()
        cur = self.current
        if due is None or cur is None or (not now and time.monotonic() < due):
            return False
        self._write_snapshot(cur, slicer())
        return True

    # ---- snapshot and heartbeat ------------------------------------------------------------
    def bootstrap_from_snapshot(self) -> bool:
        """Apply the disk snapshot when present and valid; return True when applied."""
        path = self.config.snapshot_path
        if not path or self.current is not None:
            return False
        if not os.path.exists(path):
            log.info("no snapshot at %s yet; starting from Redis", path)
            return False
        try:
            snap = read_snapshot(path)
            if snap.namespace != self.config.namespace:
                raise SnapshotError(f"snapshot is for namespace {snap.namespace!r}")
            loaded = self.compiled.load(snap.raw_rules, where="snapshot")
        except (SnapshotError, CorruptDataError) as exc:
            log.warning("ignoring snapshot %s: %s", path, exc)
            return False
        with self._changed:
            self.current = Applied(loaded.ruleset(snap.revision, snap.generation),
                                   loaded.raw, snap.revision, snap.generation, "snapshot", self.wall(),
                                   loaded.digest, loaded.guarded)
            cur = self.current
            self.compiled.hold(cur.raw, cur.ruleset, cur.guarded, cur.digest)
            self.confirmed_at = float(snap.written_at)
            self._changed.notify_all()
        log.info("namespace %s: loaded revision %s from snapshot %s (written %.0fs ago)",
                 self.config.namespace, snap.revision, path, self.staleness())
        return True

    def _write_snapshot(self, applied: Applied, pause: Slicer) -> None:
        self._pending_since = None  # a failed write waits for the next change or reload (as before checkpoints)
        with self.stats.lock:
            self.stats.snapshot_pending = 0
        try:
            # stamped when the set was last confirmed current (a checkpoint may come seconds after, Redis down
            # meanwhile): a start from the file counts its staleness from then
            write_snapshot(self.config.snapshot_path, make_snapshot(
                self.config.namespace, applied.generation, applied.revision, applied.raw,
                written_at=self.confirmed_at), pause=pause, run_io=_off_loop)
            self.stats.add("snapshot_writes")
        except OSError as exc:
            self.stats.add("snapshot_errors")
            log.error("cannot write snapshot %s: %s", self.config.snapshot_path, exc)

    def _heartbeat_command(self) -> tuple:
        """Return the HSET writing this gateway's heartbeat (what it runs now) into the fleet hash."""
        cur = self.current
        refused = self.refused
        exposure = getattr(self, "exposure", None)  # the ExposureCounter RuleClient attaches (None: not counting)
        outcomes = getattr(self, "outcomes", None)  # its OutcomeCounter and Breakers (gateway_agent/outcomes.py)
        breakers = getattr(self, "breakers", None)
        beat = Heartbeat("agent", cur.revision if cur else 0, cur.generation if cur else "",
                         cur.applied_at if cur else 0.0, self.wall(), min(self.staleness(), 1e9),
                         self.health.last_error, digest=cur.digest if cur else "", in_sync=self.in_sync(),
                         stale=self.is_stale(), refused_revision=refused.revision if refused else 0,
                         refused_reason=refused.reason if refused else "", upstreams=self.config.upstreams,
                         exposure=exposure.roll() if exposure is not None else None,
                         outcomes=outcomes.outcomes() if outcomes is not None else None,
                         breakers=breaker_states(breakers, cur.ruleset.breakers, self.wall())
                         if breakers is not None and cur is not None else {})
        return ("HSET", self.keys.fleet, self.config.gateway_id, beat.encode())

    def _heartbeat(self) -> None:
        """Write this gateway's heartbeat into the fleet hash in its own round trip (best effort, under the
        budget; on the sync thread: `heartbeat_now` from any other); `cycle` normally sends it with the revision
        check instead."""
        beat = self._heartbeat_command()

        def attempt(op: Operation) -> None:
            address = self.slots.candidates(writes=True)[0]
            try:
                execute(self.pool.get(address, op), beat)
            except MovedError as exc:
                self.slots.moved(exc)
                raise
            except RETRYABLE:
                self.pool.drop(address)
                self.slots.stale = True
                raise

        try:
            self.budget.run("heartbeat", attempt)
            self.stats.add("heartbeats_ok")
        except (StoreError, *REDIS_ERRORS) as exc:
            self.stats.add("heartbeats_failed")
            log.debug("heartbeat failed: %s", exc)


class Notifier:
    """Listens on the sharded channel {rg:<ns>}:events and wakes the sync loop (a hint only)."""

    def __init__(self, syncer: Syncer):
        self.syncer = syncer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn = None
        self.subscribed_to: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rulegate-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._conn is not None:
            self._conn.disconnect()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._subscribe()
                failures = 0
                self.syncer.wake()  # changes committed before the subscription took effect
                self._listen()
            except (StoreError, *REDIS_ERRORS, OSError) as exc:
                failures += 1
                log.debug("notification channel: %s", exc)
            if self._conn is not None:
                self._conn.disconnect()
                self._conn = None
            self.subscribed_to = None
            self.syncer.wake()  # messages may have been lost: revalidate now
            self._stop.wait(self.syncer.budget.backoff.compute(min(failures, 5)) + 0.05)

    def _subscribe(self) -> None:
        s = self.syncer
        if s.slots.master is None or s.slots.stale:
            s.slots.refresh(s.budget, s.pool, s.slots.version)
        address = s.slots.candidates(writes=True)[0]

        def attempt(op: Operation):
            op.open_connection()
            conn = s.pool._new(address)
            try:
                conn.connect()
                conn.send_command("SSUBSCRIBE", s.keys.events)
                conn.read_response()
            except (*REDIS_ERRORS, OSError):
                conn.disconnect()
                raise
            return conn

        self._conn = s.budget.run("subscribe", attempt)
        self._conn._sock.settimeout(None)
        self.subscribed_to = address

    def _listen(self) -> None:
        s = self.syncer
        while not self._stop.is_set():
            if s.slots.master != self.subscribed_to:
                return  # the slot moved: resubscribe on its new master
            if not self._conn.can_read(timeout=0.5):
                continue
            message = self._conn.read_response()
            if isinstance(message, list) and message and message[0] in (b"smessage", "smessage"):
                s.stats.add("notifications")
                s.announce(_announced_revision(message))
                s.wake()
            elif isinstance(message, list) and message and message[0] in (b"sunsubscribe", "sunsubscribe"):
                s.slots.stale = True
                return



def _announced_revision(message: list) -> int:
    """Return N of an smessage "rev N" on the events channel (0 when the payload is not that)."""
    payload = message[2] if len(message) > 2 else b""
    word, _, number = as_text(payload).partition(" ")
    return int(number) if word == "rev" and number.isdigit() else 0

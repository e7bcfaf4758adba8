"""Admin writes and gateway reads while the namespace's slot migrates between masters (ASK, TRYAGAIN, MOVED)."""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest

from gateway_agent import RuleClient
from rulegate.errors import RulegateError, StoreError
from rulegate.keyspace import Keys
from rulegate.schema import validate_rule
from rulegate.store import RuleStore
from rulegate_dev.cluster import LocalCluster, Node
from tests.agent.conftest import make_client
from tests.lua.conftest import Gateway, wait_for

pytestmark = pytest.mark.integration

UPSTREAMS = ("a", "b", "c")


def rule(n: int) -> dict:
    """Return rule r<n>: its own path on app.example.com, upstream a, b or c."""
    return validate_rule({"id": f"r{n}", "kind": "split", "route": {"host": "app.example.com", "path": f"/r{n}"},
                          "key": {"source": "ip"}, "policies": [], "default": UPSTREAMS[n % len(UPSTREAMS)]})


class SlotMover:
    """Moves one slot between masters as `redis-cli --cluster reshard` does: IMPORTING/MIGRATING, MIGRATE, NODE."""

    def __init__(self, cluster: LocalCluster, slot: int):
        self.cluster = cluster
        self.slot = slot
        self.src: Node | None = None
        self.dst: Node | None = None

    def _on(self, node: Node, *args: object) -> object:
        with self.cluster.client(node) as c:
            return c.execute_command(*args)

    def _id(self, node: Node) -> str:
        return self._on(node, "CLUSTER", "MYID")

    def masters(self) -> list[Node]:
        return [n for n in self.cluster.live_nodes() if self.cluster.role_of(n) == "master"]

    def other_master(self, *exclude: Node) -> Node:
        """Return a master that neither owns the slot now nor is excluded."""
        owner = self.cluster.slot_owner(self.slot)
        return next(n for n in self.masters() if n is not owner and n not in exclude)

    def begin(self, dst: Node) -> None:
        """Open the migration of the slot from its current owner to dst."""
        src = self.cluster.slot_owner(self.slot)
        assert src is not dst
        self._on(dst, "CLUSTER", "SETSLOT", self.slot, "IMPORTING", self._id(src))
        self._on(src, "CLUSTER", "SETSLOT", self.slot, "MIGRATING", self._id(dst))
        self.src, self.dst = src, dst

    def move_keys(self, limit: int | None = None, pause: float = 0.0) -> int:
        """MIGRATE up to `limit` keys one at a time, sleeping `pause` after each; return how many moved."""
        auth = ("AUTH2", self.cluster.username, self.cluster.password) if self.cluster.password else ()
        moved = 0
        while limit is None or moved < limit:
            keys = self._on(self.src, "CLUSTER", "GETKEYSINSLOT", self.slot, 1)
            if not keys:
                break
            self._on(self.src, "MIGRATE", "127.0.0.1", self.dst.port, "", 0, 5000, *auth, "KEYS", *keys)
            moved += 1
            time.sleep(pause)
        return moved

    def _owner_seen_by(self, node: Node) -> Node | None:
        """Return the master `node`'s own CLUSTER SLOTS names for the slot (None: none)."""
        for lo, hi, master, *_ in self._on(node, "CLUSTER", "SLOTS"):
            if lo <= self.slot <= hi:
                return self.cluster.node_at(int(master[1]))
        return None

    def finish(self) -> None:
        """Assign the slot to dst on dst, then on the source, then on every other master; return once every live
        node names dst (the replicas learn it by gossip: `slot_owner`, which asks the first live node, could
        otherwise still name the source, and the next migration would start from the wrong node)."""
        dst, dst_id = self.dst, self._id(self.dst)
        others = [n for n in self.masters() if n not in (self.dst, self.src)]
        for node in (self.dst, self.src, *others):
            self._on(node, "CLUSTER", "SETSLOT", self.slot, "NODE", dst_id)
        self.src = self.dst = None
        deadline = time.monotonic() + 10
        while any(self._owner_seen_by(n) is not dst for n in self.cluster.live_nodes()):
            assert time.monotonic() < deadline, "the nodes did not agree on the slot's new owner in 10 s"
            time.sleep(0.02)

    def close(self) -> None:
        """Complete a migration a failed test left open, so the session cluster's slot is stable again."""
        if self.src is not None:
            self.move_keys()
            self.finish()


@pytest.fixture()
def mover(cluster, namespace) -> SlotMover:
    """A SlotMover for the namespace's slot on the session cluster (an open migration is completed at teardown)."""
    m = SlotMover(cluster, Keys(namespace).slot)
    yield m
    m.close()


@pytest.fixture()
def new_store(redis_config) -> Callable[[], RuleStore]:
    """A factory of RuleStores, each with its own slot cache; all closed at teardown."""
    stores: list[RuleStore] = []

    def make() -> RuleStore:
        stores.append(RuleStore.from_config(redis_config))
        return stores[-1]

    yield make
    for s in stores:
        s.close()


@pytest.fixture()
def failed_attempts(caplog) -> Callable[[], list[str]]:
    """Return a callable giving the error class of every failed commit attempt logged so far, in order."""
    caplog.set_level(logging.DEBUG, logger="rulegate.store")
    return lambda: [r.error for r in caplog.records if r.getMessage() == "commit attempt failed"]


class OnError(logging.Handler):
    """Calls `action` once, synchronously, when the store logs a failed attempt with error `error`."""

    def __init__(self, error: str, action: Callable[[], object]):
        super().__init__(logging.DEBUG)
        self.error, self.action, self.fired = error, action, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.fired and getattr(record, "error", None) == self.error:
            self.fired = True
            self.action()


def test_write_follows_ask_to_the_target_then_moved(new_store, mover, namespace, failed_attempts):
    """With every key already on the target a write follows ASK (2 attempts); after SETSLOT NODE, MOVED."""
    store = new_store()
    store.put_rule(namespace, rule(1), 0, "t")
    mover.begin(mover.other_master())
    assert mover.move_keys() >= 4  # rules, rev, log, meta
    assert store.put_rule(namespace, rule(2), 1, "t").revision == 2
    assert failed_attempts() == ["AskError"]
    mover.finish()
    result = store.put_rule(namespace, rule(3), 2, "t")
    assert (result.revision, result.replicated) == (3, True)
    assert failed_attempts() == ["AskError", "MovedError"]
    assert [e.revision for e in store.changes_since(namespace, 0)] == [1, 2, 3]
    assert set(store.load(namespace).rules) == {"r1", "r2", "r3"}


def test_write_waits_out_keys_split_between_source_and_target(new_store, mover, namespace, failed_attempts):
    """Keys split across the two nodes answer TRYAGAIN; once all moved, the retry follows ASK and commits once."""
    store = new_store()
    store.put_rule(namespace, rule(1), 0, "t")
    mover.begin(mover.other_master())
    assert mover.move_keys(limit=1) == 1
    rest = OnError("TryAgainError", mover.move_keys)  # the other keys move during the store's backoff
    logging.getLogger("rulegate.store").addHandler(rest)
    try:
        assert store.put_rule(namespace, rule(2), 1, "t").revision == 2
    finally:
        logging.getLogger("rulegate.store").removeHandler(rest)
    mover.finish()
    assert failed_attempts() == ["TryAgainError", "AskError"]
    assert [e.revision for e in store.changes_since(namespace, 0)] == [1, 2]


def test_a_commit_never_touches_a_third_node(new_store, mover, namespace, failed_attempts):
    """A stale slot cache that needs MOVED and then ASK to a third node fails without writing; the next write works."""
    store = new_store()
    store.put_rule(namespace, rule(1), 0, "t")
    first = mover.cluster.slot_owner(mover.slot)
    mover.begin(mover.other_master())
    mover.move_keys()
    mover.finish()
    mover.begin(mover.other_master(first))
    mover.move_keys()
    with pytest.raises(StoreError, match="third node"):
        store.put_rule(namespace, rule(2), 1, "t")
    assert failed_attempts() == ["MovedError", "AskError"]
    assert store.put_rule(namespace, rule(2), 1, "t").revision == 2
    mover.finish()
    assert [e.revision for e in store.changes_since(namespace, 0)] == [1, 2]


class Writer(threading.Thread):
    """Adds rule r<n> at a steady rate with CAS on the revision it just read; records revisions and failures."""

    def __init__(self, store: RuleStore, ns: str, interval: float):
        super().__init__(daemon=True)
        self.store, self.ns, self.interval = store, ns, interval
        self.revisions: list[int] = []
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                rev = self.store.revision(self.ns)
                self.revisions.append(self.store.put_rule(self.ns, rule(n), rev, "load").revision)
                n += 1
            except RulegateError as exc:
                self.failures.append(f"write {n}: {exc.__class__.__name__}: {exc}")
            time.sleep(self.interval)


def served(client: RuleClient) -> tuple[int | None, int]:
    """The agent's applied revision and rule count, taken from one applied set (two reads could straddle a swap)."""
    applied = client.syncer.current
    return (applied.revision, len(applied.ruleset)) if applied else (None, 0)


class Watcher(threading.Thread):
    """Samples what each gateway serves; every write adds one rule, so a served set holds `revision` rules."""

    def __init__(self, sources: dict[str, Callable[[], tuple[int | None, int]]]):
        super().__init__(daemon=True)
        self.sources = sources
        self.samples = 0
        self.violations: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        held = dict.fromkeys(self.sources, 0)
        while not self.stop.is_set():
            for name, read in self.sources.items():
                rev, rules = read()
                if rev is not None and (rev < held[name] or rules != rev):
                    self.violations.append(f"{name}: revision {rev} with {rules} rules after revision {held[name]}")
                held[name] = max(held[name], rev or 0)
            self.samples += 1
            time.sleep(0.01)


def migrate_twice_under_load(mover: SlotMover, writer: Writer, watcher: Watcher) -> float:
    """Run the writer and the watcher while the slot moves twice, key by key; return the migrations' duration."""
    watcher.start()
    writer.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        for _ in range(2):
            mover.begin(mover.other_master())
            time.sleep(0.3)  # MIGRATING, every key still on the source
            assert mover.move_keys(pause=0.02) >= 4  # rules, rev, log, meta (+ fleet): split for ~60-80 ms
            time.sleep(0.3)  # every key on the target: the source answers ASK
            mover.finish()
        migrating = time.monotonic() - started
        time.sleep(0.5)
        return migrating
    finally:
        writer.stop.set()
        writer.join(10)
        watcher.stop.set()
        watcher.join(10)


def test_steady_writes_and_gateways_follow_two_migrations(cluster, new_store, mover, namespace, failed_attempts,
                                                          tmp_path: Path):
    """~35 writes/s while the slot moves twice, key by key: no write fails, revisions have no gap, gateways converge."""
    store = new_store()
    store.put_rule(namespace, rule(10_000), 0, "seed")
    client = make_client(cluster, namespace)
    gateway = Gateway({"namespace": namespace, "startup_nodes": cluster.startup_nodes, "refresh_interval": 0.2,
                       "response_headers": "vars", "gateway_id": f"migration-{namespace}"},
                      upstreams=UPSTREAMS, prefix=tmp_path / "nginx")
    writer = Writer(new_store(), namespace, interval=0.025)
    watcher = Watcher({"agent": lambda: served(client),
                       "nginx": lambda: (lambda st: (st["revision"], st["rules"]))(gateway.status())})
    try:
        gateway.start().wait_revision(1)
        migrating = migrate_twice_under_load(mover, writer, watcher)
        final = len(writer.revisions) + 1
        assert writer.failures == [], writer.failures[:5]
        assert writer.revisions == list(range(2, final + 1))
        assert [e.revision for e in store.changes_since(namespace, 0, limit=final + 10)] == list(range(1, final + 1))
        expected = {r["id"]: r for r in [rule(10_000)] + [rule(n) for n in range(final - 1)]}
        assert store.load(namespace).rules == expected
        assert client.wait_for_revision(final, 5), client.health()
        assert client.rules == expected
        assert gateway.wait_revision(final, 5)["rules"] == len(expected)
        assert gateway.get(f"/r{final - 2}").headers["x-echo-upstream"] == UPSTREAMS[(final - 2) % 3]
        assert watcher.violations == [], watcher.violations[:5]
        seen = Counter(failed_attempts())
        assert seen["AskError"] >= 1
        sync = client.syncer.stats.snapshot()
        print(f"\n{final - 1} writes, 0 failed, {migrating:.2f}s of migration; failed attempts {dict(seen)}; agent "
              f"syncs_failed={sync['syncs_failed']} rollbacks_refused={sync['rollbacks_refused']}; "
              f"nginx [error] lines={len(gateway.error_lines())}")
        # both read paths follow the migration (ASKING per command at the target), so neither logs a failure
        assert sync["syncs_failed"] == 0 and sync["rollbacks_refused"] == 0, client.health()
        assert gateway.error_lines() == []
        # nginx's notification listener followed the slot each time (sunsubscribe, then MOVED to a stale
        # map's node) by subscribing again at once on the new owner: no failure, no back-off
        st = wait_for(lambda: (lambda s: s if s["listener_subscriptions"] >= 3 else None)(gateway.status()),
                      "the listener's third subscription")
        assert st["listener_failures"] == 0 and st["listener_error"] is None, st
    finally:
        client.stop()
        gateway.stop()

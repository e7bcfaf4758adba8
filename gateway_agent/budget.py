"""The Redis operation budget of the sync loop, and the node access it governs.

Every Redis operation the agent makes runs through `Budget.run`: at most `max_attempts`
attempts, capped exponential backoff with jitter between them (redis-py's
`ExponentialWithJitterBackoff`), an overall deadline, and a hard cap on how many connections
one operation may open. `NodePool` owns the raw connections (one per node), `SlotMap` owns the
namespace slot's node list and refreshes it single-flight. Rationale: docs/agent.md.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.connection import Connection, SSLConnection
from redis.exceptions import AskError, MovedError
from redis.retry import Retry

from rulegate.connection import REDIS_ERRORS, RedisAuth
from rulegate.errors import StoreError

from .counters import LockedCounters

T = TypeVar("T")

# Failures worth another attempt (possibly on another node). Everything else is final.
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError,
             redis.exceptions.TryAgainError, redis.exceptions.MasterDownError,
             redis.exceptions.BusyLoadingError, redis.exceptions.ReadOnlyError, MovedError, AskError)


class BudgetExhausted(StoreError):
    """An operation used up its attempts, its deadline or its connection cap."""


@dataclass(frozen=True)
class BudgetConfig:
    """Limits of one Redis operation (attempts, backoff, deadline, connections, timeouts)."""

    max_attempts: int = 3
    backoff_base: float = 0.05
    backoff_cap: float = 0.5
    deadline: float = 2.0
    max_connections: int = 2
    connect_timeout: float = 0.3
    socket_timeout: float = 0.5


class JitterBackoff(ExponentialWithJitterBackoff):
    """redis-py's capped exponential backoff with jitter, with an injectable random source."""

    def __init__(self, cap: float, base: float, rand: Callable[[], float] = random.random):
        super().__init__(cap=cap, base=base)
        self._rand = rand

    def compute(self, failures: int) -> float:
        """Return min(cap, rand() * base * 2**failures)."""
        return min(self._cap, self._rand() * self._base * 2 ** failures)


@dataclass
class BudgetStats(LockedCounters):
    """Counters of every budgeted operation (read under `lock`)."""

    operations: int = 0
    failed_operations: int = 0
    attempts: int = 0
    redirects: int = 0
    connections_opened: int = 0
    max_connections_in_operation: int = 0
    slot_refreshes: int = 0


class Operation:
    """One budgeted operation in progress: its deadline and the connections it opened."""

    def __init__(self, budget: "Budget", name: str):
        self.budget = budget
        self.name = name
        self.started = budget.clock()
        self.deadline = self.started + budget.config.deadline
        self.connections = 0
        self.attempt = 0

    def remaining(self) -> float:
        """Return the seconds left before the deadline (may be negative)."""
        return self.deadline - self.budget.clock()

    def open_connection(self) -> None:
        """Account for one new connection; raise BudgetExhausted when the cap is reached."""
        cap = self.budget.config.max_connections
        if self.connections >= cap:
            raise BudgetExhausted(f"{self.name}: connection cap of {cap} reached")
        self.connections += 1
        stats = self.budget.stats
        with stats.lock:
            stats.connections_opened += 1
            stats.max_connections_in_operation = max(stats.max_connections_in_operation, self.connections)

    def timeout(self, configured: float) -> float:
        """Return a socket timeout that does not run past the deadline (at least 10 ms)."""
        return max(0.01, min(configured, self.remaining()))


class Budget:
    """Runs callables under the attempt/backoff/deadline/connection budget."""

    def __init__(self, config: BudgetConfig | None = None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, rand: Callable[[], float] = random.random):
        self.config = config or BudgetConfig()
        self.clock = clock
        self.sleep = sleep
        self.backoff = JitterBackoff(self.config.backoff_cap, self.config.backoff_base, rand)
        self.stats = BudgetStats()

    def run(self, name: str, fn: Callable[[Operation], T],
            on_failure: Callable[[Exception], None] | None = None, max_attempts: int | None = None) -> T:
        """Return fn(op), retried within the budget (at most `max_attempts` attempts when given, never more
        than the configured ones); raise BudgetExhausted or a non-retryable error."""
        op = Operation(self, name)
        last: Exception | None = None
        with self.stats.lock:
            self.stats.operations += 1
        attempts = self.config.max_attempts if max_attempts is None else min(max_attempts, self.config.max_attempts)
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                delay = self.backoff.compute(attempt - 1)
                if op.remaining() <= delay:
                    break
                self.sleep(delay)
            if op.remaining() <= 0:
                break
            op.attempt = attempt
            with self.stats.lock:
                self.stats.attempts += 1
            try:
                return fn(op)
            except BudgetExhausted as exc:
                last = exc
                break
            except RETRYABLE as exc:
                last = exc
                if isinstance(exc, (MovedError, AskError)):
                    with self.stats.lock:
                        self.stats.redirects += 1
                if on_failure is not None:
                    on_failure(exc)
            except REDIS_ERRORS:
                self._failed()
                raise
        self._failed()
        elapsed = self.clock() - op.started
        reason = f"{last.__class__.__name__}: {_first_line(last)}" if last else "deadline passed"
        raise BudgetExhausted(f"{name}: gave up after {op.attempt} attempt(s), {op.connections} "
                              f"connection(s), {elapsed:.2f}s ({reason})")

    def _failed(self) -> None:
        with self.stats.lock:
            self.stats.failed_operations += 1


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else ""


class NodePool:
    """Owns one raw connection per node address; opening one is charged to the operation."""

    def __init__(self, auth: RedisAuth, config: BudgetConfig):
        self.auth = auth
        self.config = config
        self._conns: dict[str, Connection] = {}
        self._lock = threading.Lock()

    def _new(self, address: str) -> Connection:
        host, _, port = address.rpartition(":")
        kwargs = dict(self.auth.auth_kwargs(), host=host, port=int(port),
                      socket_timeout=self.config.socket_timeout,
                      socket_connect_timeout=self.config.connect_timeout,
                      retry=Retry(NoBackoff(), 0), health_check_interval=0, protocol=2)
        return (SSLConnection if self.auth.ssl else Connection)(**kwargs)

    def get(self, address: str, op: Operation) -> Connection:
        """Return a connected connection to address; a new socket counts against op's cap."""
        with self._lock:
            conn = self._conns.get(address)
            if conn is None:
                conn = self._conns[address] = self._new(address)
        timeout = op.timeout(self.config.socket_timeout)
        conn.socket_timeout = timeout
        if conn._sock is None:
            op.open_connection()
            conn.socket_connect_timeout = op.timeout(self.config.connect_timeout)
            conn.connect()
            execute(conn, ("READONLY",))  # replica reads; a no-op on a master
        conn._sock.settimeout(timeout)
        return conn

    def drop(self, address: str) -> None:
        """Close the connection to address (after an error, a half-read socket is never reused)."""
        with self._lock:
            conn = self._conns.get(address)
        if conn is not None:
            conn.disconnect()

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.disconnect()


def execute(conn: Connection, *commands: tuple, raise_on_error: bool = True) -> list:
    """Send commands in one round trip; return the replies or raise the first error reply
    (with `raise_on_error=False`, error replies are returned in place as exceptions)."""
    conn.send_packed_command(conn.pack_commands(commands) if len(commands) > 1
                             else conn.pack_command(*commands[0]))
    replies, error = [], None
    for _ in commands:
        try:
            replies.append(conn.read_response())
        except redis.ResponseError as exc:
            error = error or exc
            replies.append(exc)
    if error is not None and raise_on_error:
        raise error
    return replies


class SlotMap:
    """Owns the node list of one slot (master first, then replicas); refreshes are single-flight."""

    def __init__(self, seeds: list[str], slot: int):
        self.seeds = list(seeds)
        self.slot = slot
        self.master: str | None = None
        self.replicas: list[str] = []
        self.version = 0
        self.stale = True
        self._suspects: dict[str, float] = {}
        self._lock = threading.Lock()

    def candidates(self, writes: bool = False) -> list[str]:
        """Return the addresses to try in order: master, then replicas (reads), then seeds."""
        known = ([self.master] if self.master else []) + ([] if writes else self.replicas)
        return self._healthy_first(known if known else list(self.seeds))

    def suspect(self, address: str, seconds: float = 2.0) -> None:
        """Try address last for a while (it just failed): a frozen master costs one timeout, not one per call."""
        self._suspects[address] = time.monotonic() + seconds

    def is_suspect(self, address: str) -> bool:
        """Return True while address is tried last (it failed less than its `suspect` seconds ago)."""
        return self._suspects.get(address, 0.0) > time.monotonic()

    def _healthy_first(self, addresses: list[str]) -> list[str]:
        now = time.monotonic()
        return sorted(addresses, key=lambda a: self._suspects.get(a, 0.0) > now)

    def moved(self, exc: MovedError) -> None:
        """Adopt the owner named by a MOVED reply and mark the map for a full refresh."""
        with self._lock:
            self.master = f"{exc.host}:{exc.port}"
            self.replicas = [r for r in self.replicas if r != self.master]
            self.stale = True
            self.version += 1

    def refresh(self, budget: Budget, pool: NodePool, seen_version: int | None = None) -> None:
        """Re-read CLUSTER NODES unless another caller refreshed since seen_version; raise BudgetExhausted."""
        with self._lock:
            if seen_version is not None and self.version != seen_version and not self.stale:
                return
            with budget.stats.lock:
                budget.stats.slot_refreshes += 1
            order = ([self.master] if self.master else []) + self.replicas
            order = self._healthy_first(order + [s for s in self.seeds if s not in order])
            tried: list[str] = []

            def fetch(op: Operation) -> bytes:
                candidates = [a for a in order if a not in tried] or order
                address = candidates[0]
                tried.append(address)
                try:
                    return execute(pool.get(address, op), ("CLUSTER", "NODES"))[0]
                except RETRYABLE:
                    pool.drop(address)
                    self.suspect(address)
                    raise

            master, replicas = parse_cluster_nodes(budget.run("slot-map refresh", fetch), self.slot)
            if master is not None:
                self.master, self.replicas = master, replicas
            self.stale = master is None
            self.version += 1


def parse_cluster_nodes(text: bytes | str, slot: int) -> tuple[str | None, list[str]]:
    """Return (master address, healthy replica addresses) serving slot, from CLUSTER NODES output.

    CLUSTER NODES is used rather than CLUSTER SLOTS because Redis 7.0 leaves replicas that have
    not yet reported a replication offset out of CLUSTER SLOTS.
    """
    if isinstance(text, bytes):
        text = text.decode()
    nodes = [line.split() for line in text.splitlines() if line.strip()]
    master_id, master = None, None
    for fields in nodes:
        flags = fields[2].split(",") if len(fields) >= 8 else []
        if "master" not in flags or "fail" in flags:
            continue
        for spec in fields[8:]:
            if spec.startswith("["):
                continue
            lo, _, hi = spec.partition("-")
            if int(lo) <= slot <= int(hi or lo):
                master_id, master = fields[0], _node_address(fields[1])
    replicas = [_node_address(f[1]) for f in nodes
                if len(f) >= 8 and master_id and f[3] == master_id and "fail" not in f[2].split(",")
                and f[7] == "connected"]
    return master, replicas


def _node_address(field_: str) -> str:
    """Return host:port of a CLUSTER NODES address field ip:port@cport[,hostname]."""
    host, _, port = field_.split("@", 1)[0].rpartition(":")
    return f"{host or '127.0.0.1'}:{int(port)}"

"""Read and write one namespace's rules in Redis: CAS commits with WAIT, snapshots, deltas, history."""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterable

import msgpack
import redis
from redis.cluster import RedisCluster

from .commit_script import COMMIT_LUA
from .connection import REDIS_ERRORS, RedisConfig, connect
from .errors import (
    AlreadyExistsError,
    ConflictError,
    CorruptDataError,
    LimitError,
    NotFoundError,
    StoreError,
)
from .keyspace import NAMESPACES_KEY, Keys
from .namespace import as_text, consistent_read, contiguous, decode_rules
from .schema import MAX_RULES_PER_NAMESPACE, decode_rule, encode_rule, is_valid_id

log = logging.getLogger("rulegate.store")

LOG_MAXLEN = 10_000
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError,
             redis.exceptions.TryAgainError, redis.exceptions.MovedError, redis.exceptions.AskError)


@dataclass(frozen=True)
class WriteResult:
    """An acknowledged commit: new revision, namespace generation, replicas that confirmed it."""

    revision: int
    generation: str
    replicas_acked: int
    replicas_wanted: int

    @property
    def replicated(self) -> bool:
        return self.replicas_acked >= self.replicas_wanted


@dataclass(frozen=True)
class NamespaceState:
    """A consistent read of a namespace: revision, generation and validated rules by id."""

    revision: int
    generation: str
    rules: dict[str, dict]
    raw: dict[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class LogEntry:
    """One committed change: every (id, before, after) pair of one revision (None = absent)."""

    revision: int
    op: str
    actor: str
    ts: int
    txid: str
    changes: list[tuple[str, bytes | None, bytes | None]]


class RuleStore:
    """The namespace store over a Redis Cluster (or a single Redis) client."""

    def __init__(self, client: redis.Redis | RedisCluster, *, wait_replicas: int = 1,
                 wait_timeout_ms: int = 500, max_attempts: int = 3, log_maxlen: int = LOG_MAXLEN,
                 max_rules: int = MAX_RULES_PER_NAMESPACE):
        self.client = client
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.max_attempts = max_attempts
        self.log_maxlen = log_maxlen
        self.max_rules = max_rules
        self._script_sha: str | None = None

    @classmethod
    def from_config(cls, cfg: RedisConfig, **kwargs) -> "RuleStore":
        """Return a store connected according to cfg."""
        return cls(connect(cfg), **kwargs)

    def close(self) -> None:
        self.client.close()

    # ---- writes ----------------------------------------------------------------------------
    def put_rule(self, ns: str, rule: dict, expected_rev: int | None, actor: str, *,
                 create_only: bool = False) -> WriteResult:
        """Create or replace one validated rule; raise ConflictError/LimitError/StoreError."""
        return self.commit(ns, [(rule["id"], encode_rule(rule))], expected_rev, actor,
                           op="create" if create_only else "put", create_only=create_only)

    def delete_rule(self, ns: str, rule_id: str, expected_rev: int | None, actor: str) -> WriteResult:
        """Delete one rule; raise NotFoundError when it does not exist, ConflictError when stale."""
        return self.commit(ns, [(rule_id, b"")], expected_rev, actor, op="delete")

    def commit(self, ns: str, changes: list[tuple[str, bytes]], expected_rev: int | None, actor: str,
               *, op: str, create_only: bool = False) -> WriteResult:
        """Apply changes atomically (b"" deletes) if the revision is still expected_rev."""
        _check_namespace(ns)
        if not changes:
            raise ValueError("a commit needs at least one change")
        keys = Keys(ns)
        txid = uuid.uuid4().hex
        args: list = [-1 if expected_rev is None else expected_rev, op, actor, int(time.time()),
                      self.log_maxlen, self.max_rules, uuid.uuid4().hex[:16], "1" if create_only else "0",
                      txid, len(changes)]
        for rule_id, value in changes:
            args += [rule_id, value]
        key_list = [keys.rules, keys.rev, keys.log, keys.meta, keys.events]
        ambiguous = False
        for attempt in range(1, self.max_attempts + 1):
            try:
                reply, acked = self._eval_and_wait(keys, key_list, args)
            except RETRYABLE as exc:
                ambiguous = True
                log.warning("commit attempt failed", extra={"ns": ns, "attempt": attempt,
                                                            "error": exc.__class__.__name__})
                self._refresh_topology()
                time.sleep(min(0.05 * 2 ** attempt, 0.5))
                continue
            except redis.ResponseError as exc:
                done = self._maybe_already_committed(ns, exc, txid, ambiguous)
                if done is not None:
                    return done
                raise _map_script_error(exc, expected_rev) from None
            except REDIS_ERRORS as exc:
                raise StoreError(f"commit to namespace {ns!r}: {exc.__class__.__name__}: {_safe(exc)}") from None
            self._remember_namespace(ns)
            return WriteResult(int(reply[0]), as_text(reply[1]), acked, self.wait_replicas)
        raise StoreError(f"commit to namespace {ns!r} failed after {self.max_attempts} attempts")

    def _eval_and_wait(self, keys: Keys, key_list: list[str], args: list) -> tuple[list, int]:
        node_client = self._node_client(keys)
        if self._script_sha is None:
            self._script_sha = node_client.script_load(COMMIT_LUA)
        for _ in range(2):
            with node_client.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._script_sha, len(key_list), *key_list, *args)
                if self.wait_replicas > 0:
                    pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
                results = pipe.execute(raise_on_error=False)
            reply = results[0]
            if isinstance(reply, redis.exceptions.NoScriptError):
                node_client.script_load(COMMIT_LUA)
                continue
            if isinstance(reply, Exception):
                raise reply
            acked = results[1] if self.wait_replicas > 0 else 0
            return reply, int(acked) if not isinstance(acked, Exception) else 0
        raise StoreError("commit script could not be loaded")

    def _node_client(self, keys: Keys) -> redis.Redis:
        """Return a plain client for the master of the namespace slot (same connection for WAIT)."""
        if not isinstance(self.client, RedisCluster):
            return self.client
        node = self.client.nodes_manager.get_node_from_slot(keys.slot)
        return self.client.get_redis_connection(node)

    def _refresh_topology(self) -> None:
        if isinstance(self.client, RedisCluster):
            try:
                self.client.nodes_manager.initialize()
            except RETRYABLE + REDIS_ERRORS:
                pass

    def _maybe_already_committed(self, ns: str, exc: Exception, txid: str, ambiguous: bool) -> WriteResult | None:
        """After a lost reply, a conflict may be our own earlier attempt: find it by txid."""
        if not ambiguous or not str(exc).startswith(("RGCONFLICT", "RGEXISTS", "RGNOTFOUND")):
            return None
        for entry in self.log_range(ns, "-", "+", reverse=True, count=20):
            if entry.txid == txid:
                state_gen = self._generation(ns)
                return WriteResult(entry.revision, state_gen, 0, self.wait_replicas)
        return None

    def _remember_namespace(self, ns: str) -> None:
        try:
            self.client.sadd(NAMESPACES_KEY, ns)
        except REDIS_ERRORS as exc:
            log.warning("could not record namespace", extra={"ns": ns, "error": exc.__class__.__name__})

    # ---- reads -----------------------------------------------------------------------------
    def revision(self, ns: str) -> int:
        """Return the namespace revision (0 when it has never been written)."""
        return int(self._call(self.client.get, Keys(ns).rev) or 0)

    def _generation(self, ns: str) -> str:
        return as_text(self._call(self.client.hget, Keys(ns).meta, "gen") or b"")

    def load_raw(self, ns: str) -> tuple[int, str, dict[str, bytes]]:
        """Return (rev, generation, raw rules) read consistently (rev checked before and after)."""
        def run(cmds: list[tuple]) -> list:
            pipe = self.client.pipeline(transaction=False)
            for cmd in cmds:
                pipe.execute_command(*cmd)
            return self._call(pipe.execute)

        return consistent_read(ns, run)

    def load(self, ns: str) -> NamespaceState:
        """Return the validated rules of ns; raise CorruptDataError naming the first bad rule."""
        rev, gen, raw = self.load_raw(ns)
        return NamespaceState(rev, gen, decode_rules(ns, raw), raw)

    def changes_since(self, ns: str, rev: int, limit: int = 1000) -> list[LogEntry] | None:
        """Return log entries rev+1.. in order, or None when the log no longer covers the gap."""
        entries = self.log_range(ns, f"{rev + 1}-0", "+", count=limit)
        current = self.revision(ns)
        if not entries:
            return [] if current <= rev else None
        return entries if contiguous(entries, rev, current, limit) else None

    def log_range(self, ns: str, start: str, end: str, *, count: int = 100,
                  reverse: bool = False) -> list[LogEntry]:
        """Return decoded log entries between stream ids start..end (XRANGE semantics)."""
        key = Keys(ns).log
        if reverse:
            raw = self._call(self.client.xrevrange, key, end, start, count=count)
        else:
            raw = self._call(self.client.xrange, key, start, end, count=count)
        return [decode_entry(ns, entry_id, fields) for entry_id, fields in raw]

    def history(self, ns: str, before_rev: int | None = None, limit: int = 50) -> list[LogEntry]:
        """Return up to `limit` newest log entries (older than before_rev when given)."""
        end = f"{before_rev - 1}-0" if before_rev else "+"
        if before_rev is not None and before_rev <= 1:
            return []
        return self.log_range(ns, "-", end, count=limit, reverse=True)

    def namespaces(self) -> list[str]:
        """Return the names of every namespace ever written, sorted."""
        return sorted(as_text(n) for n in self._call(self.client.smembers, NAMESPACES_KEY))

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except REDIS_ERRORS as exc:
            raise StoreError(f"redis: {exc.__class__.__name__}: {_safe(exc)}") from None


def _safe(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else ""


def _check_namespace(ns: str) -> None:
    if not is_valid_id(ns):
        raise ValueError(f"bad namespace {ns!r}: must match [a-z0-9][a-z0-9_.-]{{0,63}}")


def _map_script_error(exc: redis.ResponseError, expected: int | None) -> Exception:
    word, _, rest = str(exc).partition(" ")
    if word == "RGCONFLICT":
        return ConflictError(expected, int(rest))
    if word == "RGEXISTS":
        return AlreadyExistsError(f"rule {rest!r} already exists")
    if word == "RGNOTFOUND":
        return NotFoundError(f"rule {rest!r} does not exist")
    if word == "RGLIMIT":
        return LimitError(f"namespace would hold {rest} rules; the limit is {MAX_RULES_PER_NAMESPACE}")
    if word == "RGCORRUPT":
        return CorruptDataError(f"namespace keys are inconsistent: {rest}")
    return StoreError(f"commit failed: {_safe(exc)}")


def decode_entry(ns: str, entry_id: bytes | str, fields: dict) -> LogEntry:
    """Return the LogEntry of one stream entry; raise CorruptDataError when undecodable."""
    f = {as_text(k): v for k, v in fields.items()}
    try:
        changes = msgpack.unpackb(f["changes"], raw=True)
        return LogEntry(int(f["rev"]), as_text(f["op"]), as_text(f["actor"]), int(f["ts"]), as_text(f.get("txid", b"")),
                        [(as_text(c[0]), c[1] or None, c[2] or None) for c in changes])
    except (KeyError, ValueError, TypeError, IndexError, msgpack.UnpackException) as exc:
        raise CorruptDataError(f"namespace {ns!r} log entry {as_text(entry_id)}: undecodable "
                               f"({exc.__class__.__name__})") from None


def decode_changes(entries: Iterable[LogEntry]) -> list[tuple[int, str, dict | None]]:
    """Return (rev, id, rule-or-None) for every change, validating each rule."""
    out = []
    for entry in entries:
        for rule_id, _before, after in entry.changes:
            rule = decode_rule(after, where=f"log rev {entry.revision} rule {rule_id!r}") if after else None
            out.append((entry.revision, rule_id, rule))
    return out

"""Read and write one namespace's rules in Redis: CAS commits with WAIT, snapshots, deltas, history."""
from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import msgpack
import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster

from .commit_script import COMMIT_LUA
from .connection import REDIS_ERRORS, RedisConfig, connect
from .errors import (
    AlreadyExistsError,
    ConflictError,
    CorruptDataError,
    NamespaceLimitError,
    NotFoundError,
    RuleConflictError,
    StoreError,
)
from .keyspace import NAMESPACES_KEY, Keys
from .namespace import NamespaceRead, as_text, consistent_read, contiguous, decode_rules
from .schema import MAX_RULES_PER_NAMESPACE, decode_rule, encode_rule, is_valid_id

log = logging.getLogger("rulegate.store")

LOG_MAXLEN = 10_000
MAX_REMEMBERED = 100_000  # namespace names a store remembers as registered
# The encoded size limit of a namespace (sum of len(id) + len(msgpack value) over its rules). nginx keeps the
# whole set as one msgpack payload (about this plus 7 bytes a rule) in `lua_shared_dict rulegate 64m`
# (lua/conf/rulegate.conf), next to the slot map and its status keys: 16 MiB is a quarter of that dict.
MAX_NAMESPACE_BYTES = 16 * 1024 * 1024
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError,
             redis.exceptions.TryAgainError, redis.exceptions.MovedError, redis.exceptions.AskError)
REDIRECTS = (redis.exceptions.MovedError, redis.exceptions.AskError)
LOST_REPLY = (redis.ConnectionError, redis.TimeoutError)  # the script may have run
COMMIT_NODES = 2  # the slot's master as this client knows it, and at most one node it redirects to
COMMIT_BACKOFF = ExponentialBackoff(cap=0.5, base=0.05)  # before retrying TRYAGAIN or a lost node
COMMIT_SHA = hashlib.sha1(COMMIT_LUA.encode()).hexdigest()


@dataclass(frozen=True)
class WriteResult:
    """An acknowledged commit: new revision, namespace generation, replicas that confirmed it (or, `unchanged`,
    a write that would have changed nothing and committed nothing)."""

    revision: int
    generation: str
    replicas_acked: int
    replicas_wanted: int
    unchanged: bool = False  # nothing differed: no commit, `revision` is the current one

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
    digest: str = ""


@dataclass(frozen=True)
class Usage:
    """What a namespace holds against its limits: rule count and encoded bytes (as the commit script counts)."""

    rules: int
    bytes: int


@dataclass(frozen=True)
class RuleRead:
    """One rule read consistently with its namespace: revision, generation, the rule's stored bytes (None: absent)."""

    revision: int
    generation: str
    raw: bytes | None


@dataclass(frozen=True)
class LogEntry:
    """One committed change: every (id, before, after) pair of one revision (None = absent)."""

    revision: int
    op: str
    actor: str
    ts: int
    txid: str
    changes: list[tuple[str, bytes | None, bytes | None]]
    digest: str = ""


@dataclass(frozen=True)
class _Route:
    """Where a commit attempt goes: one node's client, the node's name, and whether ASKING precedes it."""

    client: redis.Redis
    name: str
    asking: bool = False


class RuleStore:
    """The namespace store over a Redis Cluster (or a single Redis) client."""

    def __init__(self, client: redis.Redis | RedisCluster, *, wait_replicas: int = 1,
                 wait_timeout_ms: int = 500, max_attempts: int = 3, log_maxlen: int = LOG_MAXLEN,
                 max_rules: int = MAX_RULES_PER_NAMESPACE, max_bytes: int = MAX_NAMESPACE_BYTES):
        self.client = client
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.max_attempts = max_attempts
        self.log_maxlen = log_maxlen
        self.max_rules = max_rules
        self.max_bytes = max_bytes
        # namespaces known to be in NAMESPACES_KEY (nothing removes one): a commit skips the SADD for them
        self._registered: set[str] = set()

    @classmethod
    def from_config(cls, cfg: RedisConfig, **kwargs) -> "RuleStore":
        """Return a store connected according to cfg."""
        return cls(connect(cfg), **kwargs)

    def close(self) -> None:
        self.client.close()

    # ---- writes ----------------------------------------------------------------------------
    def put_rule(self, ns: str, rule: dict, expected_rev: int | None, actor: str, *,
                 create_only: bool = False, expected_hash: str | None = None,
                 encoded: bytes | None = None) -> WriteResult:
        """Create or replace one validated rule (at expected_rev, or while the rule still has expected_hash:
        see commit); `encoded` is encode_rule(rule) when the caller has it. Raise
        ConflictError/RuleConflictError/LimitError/StoreError."""
        raw = encode_rule(rule) if encoded is None else encoded
        return self.commit(ns, [(rule["id"], raw)], expected_rev, actor,
                           op="create" if create_only else "put", create_only=create_only,
                           expected_hashes=None if expected_hash is None else {rule["id"]: expected_hash})

    def delete_rule(self, ns: str, rule_id: str, expected_rev: int | None, actor: str, *,
                    expected_hash: str | None = None) -> WriteResult:
        """Delete one rule; raise NotFoundError when it does not exist, ConflictError/RuleConflictError when stale."""
        return self.commit(ns, [(rule_id, b"")], expected_rev, actor, op="delete",
                           expected_hashes=None if expected_hash is None else {rule_id: expected_hash})

    def commit(self, ns: str, changes: list[tuple[str, bytes]], expected_rev: int | None, actor: str,
               *, op: str, create_only: bool = False, expected_hashes: Mapping[str, str] | None = None,
               headroom: tuple[int, int] = (0, 0)) -> WriteResult:
        """Apply changes atomically (b"" deletes) if the revision is still expected_rev and every rule in
        expected_hashes still holds the bytes whose rule_hash() it names ("*": the rule exists); raise
        ConflictError, RuleConflictError, NamespaceLimitError (max_rules / max_bytes, each raised by `headroom`'s
        rules / bytes for this commit: a kill switch on a full namespace), StoreError."""
        _check_namespace(ns)
        if not changes:
            raise ValueError("a commit needs at least one change")
        if len({rule_id for rule_id, _value in changes}) != len(changes):
            raise ValueError("a commit may change each rule once")
        conditions = dict(expected_hashes or {})
        if set(conditions) - {rule_id for rule_id, _value in changes}:
            raise ValueError("expected_hashes names a rule the commit does not change")
        keys = Keys(ns)
        txid = uuid.uuid4().hex
        args: list = [-1 if expected_rev is None else expected_rev, op, actor, int(time.time()),
                      self.log_maxlen, self.max_rules + headroom[0], uuid.uuid4().hex[:16],
                      "1" if create_only else "0", txid, self.max_bytes + headroom[1], len(changes)]
        for rule_id, value in changes:
            args += [rule_id, value, conditions.get(rule_id, "")]
        args.append(keys.events)
        result = self._commit_attempts(ns, keys, args, txid, expected_rev)
        self._remember_namespace(ns)
        return result

    def _commit_attempts(self, ns: str, keys: Keys, args: list, txid: str, expected_rev: int | None) -> WriteResult:
        """Return the commit's result, following MOVED/ASK and retrying TRYAGAIN and lost replies within
        max_attempts and COMMIT_NODES nodes; raise StoreError or the script's error as a RulegateError."""
        route: _Route | None = None  # None: the slot's master as this client knows it
        touched: set[str] = set()
        ambiguous = False  # a lost reply: the script may have run, so a later conflict may be our own
        last = ""
        attempt, free_ask = 0, True  # following one ASK is the second half of the attempt that got it
        while attempt < self.max_attempts:
            attempt += 1
            try:
                route = route or self._slot_route(keys)
                touched.add(route.name)
                if len(touched) > COMMIT_NODES:
                    raise StoreError(f"commit to namespace {ns!r}: redirected to a third node ({route.name})")
                reply, acked = self._eval_and_wait(route, keys, args)
            except RETRYABLE as exc:
                ambiguous = ambiguous or isinstance(exc, LOST_REPLY)
                last = f"{exc.__class__.__name__} from {route.name}"
                log.log(logging.DEBUG if isinstance(exc, REDIRECTS) else logging.WARNING, "commit attempt failed",
                        extra={"ns": ns, "attempt": attempt, "node": route.name, "error": exc.__class__.__name__})
                is_ask = isinstance(exc, redis.exceptions.AskError) and not isinstance(exc, redis.exceptions.MovedError)
                if is_ask and free_ask:
                    free_ask = False
                    attempt -= 1
                elif attempt == self.max_attempts:
                    break
                route = self._next_route(route, exc, attempt)
                continue
            except redis.ResponseError as exc:
                done = self._maybe_already_committed(ns, exc, txid, ambiguous)
                if done is not None:
                    return done
                raise _map_script_error(ns, exc, expected_rev) from None
            except REDIS_ERRORS as exc:
                raise StoreError(f"commit to namespace {ns!r}: {exc.__class__.__name__}: {_safe(exc)}") from None
            return WriteResult(int(reply[0]), as_text(reply[1]), acked, self.wait_replicas)
        raise StoreError(f"commit to namespace {ns!r} failed after {self.max_attempts} attempts (last: {last})")

    def _eval_and_wait(self, route: _Route, keys: Keys, args: list) -> tuple[list, int]:
        """Return (script reply, replicas acked) from route's node; raise the script's error reply."""
        key_list = (keys.rules, keys.rev, keys.log, keys.meta)
        results = self._send(route, ("EVALSHA", COMMIT_SHA, len(key_list), *key_list, *args))
        if isinstance(results[0], redis.exceptions.NoScriptError):  # EVAL also caches it on this node
            results = self._send(route, ("EVAL", COMMIT_LUA, len(key_list), *key_list, *args))
        reply = results[0]
        if isinstance(reply, Exception):
            raise reply
        acked = results[1] if self.wait_replicas > 0 else 0
        return reply, 0 if isinstance(acked, Exception) else int(acked)

    def _send(self, route: _Route, script: tuple) -> list:
        """Return the replies of [ASKING,] script [, WAIT], sent in one round trip on one connection."""
        with route.client.pipeline(transaction=False) as pipe:
            if route.asking:
                pipe.execute_command("ASKING")
            pipe.execute_command(*script)
            if self.wait_replicas > 0:
                pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            results = pipe.execute(raise_on_error=False)
        return results[1:] if route.asking else results

    def _slot_route(self, keys: Keys) -> _Route:
        """Return the route to the master of the namespace slot as this client knows it."""
        if not isinstance(self.client, RedisCluster):
            return _Route(self.client, "single")
        node = self.client.nodes_manager.get_node_from_slot(keys.slot)
        return _Route(self.client.get_redis_connection(node), node.name)

    def _next_route(self, route: _Route, exc: Exception, attempt: int) -> _Route | None:
        """Return where the attempt after exc goes (None: the slot's master); back off unless redirected."""
        if isinstance(exc, REDIRECTS):
            if not isinstance(self.client, RedisCluster):
                raise StoreError(f"redirected to {exc.host}:{exc.port}, but the store is not in cluster mode")
            moved = isinstance(exc, redis.exceptions.MovedError)  # MovedError subclasses AskError
            if moved:
                self.client.nodes_manager.move_slot(exc)
            return self._node_route(exc.host, exc.port, asking=not moved)
        time.sleep(COMMIT_BACKOFF.compute(attempt))
        if isinstance(exc, redis.exceptions.TryAgainError):  # keys split mid-migration: same node again
            return route
        self._refresh_topology()
        return None

    def _node_route(self, host: str, port: int, *, asking: bool) -> _Route:
        """Return the route to the node a redirect named; raise StoreError when it is unknown."""
        node = self.client.get_node(host=host, port=port)
        if node is None:  # a node this client has not met yet
            self._refresh_topology()
            node = self.client.get_node(host=host, port=port)
        if node is None:
            raise StoreError(f"redirected to {host}:{port}, a node the cluster does not list")
        return _Route(self.client.get_redis_connection(node), node.name, asking)

    def _refresh_topology(self) -> None:
        if isinstance(self.client, RedisCluster):
            try:
                self.client.nodes_manager.initialize()
            except RETRYABLE + REDIS_ERRORS:
                pass

    def _maybe_already_committed(self, ns: str, exc: Exception, txid: str, ambiguous: bool) -> WriteResult | None:
        """After a lost reply, a conflict may be our own earlier attempt: find it by txid."""
        if not ambiguous or not str(exc).startswith(("RGCONFLICT", "RGRULESTALE", "RGEXISTS", "RGNOTFOUND")):
            return None
        for entry in self.log_range(ns, "-", "+", reverse=True, count=20):
            if entry.txid == txid:
                state_gen = self._generation(ns)
                return WriteResult(entry.revision, state_gen, 0, self.wait_replicas)
        return None

    def _remember_namespace(self, ns: str) -> None:
        if ns in self._registered:
            return
        try:
            self.client.sadd(NAMESPACES_KEY, ns)
        except REDIS_ERRORS as exc:
            log.warning("could not record namespace", extra={"ns": ns, "error": exc.__class__.__name__})
            return
        self.note_registered(ns)

    def is_registered(self, ns: str) -> bool:
        """Return True when this store saw ns in the namespace set (or added it): namespaces are never removed."""
        return ns in self._registered

    def note_registered(self, ns: str) -> None:
        """Remember that ns is in the namespace set (up to MAX_REMEMBERED names; past that, checks go to Redis)."""
        if len(self._registered) < MAX_REMEMBERED:
            self._registered.add(ns)

    # ---- reads -----------------------------------------------------------------------------
    def revision(self, ns: str) -> int:
        """Return the namespace revision (0 when it has never been written)."""
        return int(self._call(self.client.get, Keys(ns).rev) or 0)

    def usage(self, ns: str) -> Usage:
        """Return the rule count and encoded bytes the commit script keeps for ns; counted from the rules
        hash (not stored) for a namespace not written since the totals exist."""
        keys = Keys(ns)
        rules, size = self._call(self.client.hmget, keys.meta, "rules", "bytes")
        if rules is not None and size is not None:
            return Usage(int(rules), int(size))
        raw = self._call(self.client.hgetall, keys.rules)
        return Usage(len(raw), sum(len(k) + len(v) for k, v in raw.items()))

    def init_namespace(self, ns: str) -> None:
        """Give a namespace with no commit yet its generation (as its first commit would), so that gateways
        configured for it see an existing, empty namespace instead of an unknown one; idempotent."""
        meta = Keys(ns).meta
        if self._call(self.client.hsetnx, meta, "gen", uuid.uuid4().hex[:16]):
            self._call(self.client.hset, meta, "created", str(int(time.time())))

    def _generation(self, ns: str) -> str:
        return as_text(self._call(self.client.hget, Keys(ns).meta, "gen") or b"")

    def load_raw(self, ns: str) -> NamespaceRead:
        """Return (rev, generation, raw rules, digest) read consistently (rev checked before and after)."""
        return consistent_read(ns, lambda cmds: self.slot_read(ns, cmds))

    def read_rule(self, ns: str, rule_id: str) -> RuleRead | None:
        """Return one rule's stored bytes with the namespace revision and generation, or None when the revision
        moved during the read (one round trip)."""
        keys = Keys(ns)
        rev, raw, gen, rev_after = self.slot_read(ns, [("GET", keys.rev), ("HGET", keys.rules, rule_id),
                                                           ("HGET", keys.meta, "gen"), ("GET", keys.rev)])
        if rev != rev_after:
            return None
        return RuleRead(int(rev or 0), as_text(gen or b""), raw)

    def slot_read(self, ns: str, cmds: list[tuple]) -> list:
        """Return the replies of commands on keys of ns (one slot), sent in one round trip to the slot's master
        on one connection; after a redirect or a connection error, through the cluster client's pipeline (which
        follows redirects and refreshes the slot map; reads only). Raise StoreError."""
        if isinstance(self.client, RedisCluster):
            try:
                with self._slot_route(Keys(ns)).client.pipeline(transaction=False) as pipe:
                    for cmd in cmds:
                        pipe.execute_command(*cmd)
                    return pipe.execute()
            except REDIS_ERRORS:  # MOVED, ASK, a lost node, a slot not in the map: the cluster pipeline's turn
                pass
        pipe = self.client.pipeline(transaction=False)
        for cmd in cmds:
            pipe.execute_command(*cmd)
        return self._call(pipe.execute)

    def load(self, ns: str) -> NamespaceState:
        """Return the validated rules of ns; raise CorruptDataError naming the first bad rule."""
        read = self.load_raw(ns)
        return NamespaceState(read.revision, read.generation, decode_rules(ns, read.raw), read.raw, read.digest)

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


def rule_hash(raw: bytes) -> str:
    """Return the SHA-1 hex of a rule's stored bytes: what commit(expected_hashes=...) compares."""
    return hashlib.sha1(raw).hexdigest()


def _map_script_error(ns: str, exc: redis.ResponseError, expected: int | None) -> Exception:
    word, _, rest = str(exc).partition(" ")
    if word == "RGCONFLICT":
        return ConflictError(expected, int(rest))
    if word == "RGRULESTALE":
        rev, _, rest = rest.partition(" ")
        rule_id, _, current = rest.rpartition(" ")
        return RuleConflictError(rule_id, None if current == "-" else current, int(rev))
    if word == "RGEXISTS":
        return AlreadyExistsError(f"rule {rest!r} already exists")
    if word == "RGNOTFOUND":
        return NotFoundError(f"rule {rest!r} does not exist")
    if word == "RGLIMIT":
        limit, maximum, current, after = rest.split(" ")
        return NamespaceLimitError(ns, limit, int(maximum), int(current), int(after))
    if word == "RGCORRUPT":
        return CorruptDataError(f"namespace keys are inconsistent: {rest}")
    return StoreError(f"commit failed: {_safe(exc)}")


def decode_entry(ns: str, entry_id: bytes | str, fields: dict) -> LogEntry:
    """Return the LogEntry of one stream entry; raise CorruptDataError when undecodable."""
    f = {as_text(k): v for k, v in fields.items()}
    try:
        changes = msgpack.unpackb(f["changes"], raw=True)
        return LogEntry(int(f["rev"]), as_text(f["op"]), as_text(f["actor"]), int(f["ts"]), as_text(f.get("txid", b"")),
                        [(as_text(c[0]), c[1] or None, c[2] or None) for c in changes],
                        as_text(f.get("digest", b"")))
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

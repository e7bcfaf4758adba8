"""A namespace's content as read from Redis: the consistent read, rule decoding, log contiguity.

Both readers use these: `RuleStore` (ruleadmin, redis-py's cluster client) and the gateway
agent's sync loop (budgeted single-node connections). Each supplies `run`, a callable that
sends a list of commands to one node of the namespace's slot and returns their replies.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, NamedTuple, Protocol

from .errors import CorruptDataError, StoreError
from .keyspace import Keys
from .schema_fast import decode_rule  # schema.decode_rule's results and errors; canonical bytes skip the full check

READ_ATTEMPTS = 5
SCAN_COUNT = 500
SLICE_SECONDS = 0.002
YIELD_SLEEP = 0.00001  # not 0: under gevent, sleep(0) runs ready greenlets but polls no sockets or timers


class NamespaceRead(NamedTuple):
    """One consistent read: revision, generation, the store's content digest, raw rules by id."""

    revision: int
    generation: str
    raw: dict[str, bytes]
    digest: str


class HasRevision(Protocol):
    revision: int


def as_text(value: bytes | str) -> str:
    """Return value as str (Redis replies are bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def pairs(flat: dict | list | None) -> dict:
    """Return a HGETALL reply as a dict, whether the client parsed it or left it flat."""
    if isinstance(flat, dict):
        return flat
    it = iter(flat or [])
    return dict(zip(it, it))


def read_commands(keys: Keys) -> list[tuple]:
    """Return the commands of one consistent read: rev, rules, generation, digest, rev again."""
    return [("GET", keys.rev), ("HGETALL", keys.rules), ("HGET", keys.meta, "gen"),
            ("HGET", keys.meta, "digest"), ("GET", keys.rev)]


def consistent_read(ns: str, run: Callable[[list[tuple]], list], attempts: int = READ_ATTEMPTS) -> NamespaceRead:
    """Return the namespace read with the revision equal before and after.

    Raises StoreError when the namespace changed during every attempt (and whatever `run` raises).
    """
    for _ in range(attempts):
        rev1, flat, gen, digest, rev2 = run(read_commands(Keys(ns)))
        if rev1 == rev2:
            read = NamespaceRead(int(rev1 or 0), as_text(gen or b""),
                                 {as_text(k): v for k, v in pairs(flat).items()}, as_text(digest or b""))
            return _checked(ns, read)
    raise StoreError(f"namespace {ns!r} changed during {attempts} consecutive reads")


def _checked(ns: str, read: NamespaceRead) -> NamespaceRead:
    """Return read; raise StoreError when its revision and generation disagree (a partial view).

    Revision 0 with a generation and no rules is a namespace created (ruleadmin) but never written.
    """
    if (read.revision > 0 and not read.generation) or (read.revision == 0 and read.generation and read.raw):
        raise StoreError(f"namespace {ns!r}: inconsistent read (revision {read.revision}, generation "
                         f"{read.generation or 'none'}): a slot migration in progress, or damaged keys")
    return read


def _short_sleep() -> None:
    time.sleep(YIELD_SLEEP)  # looked up on each call: gevent's sleep once monkey-patched


class Slicer:
    """A pause() for long loops: yields once `seconds` of work passed since the last yield.

    The yield is `rest()`: by default a 10 µs sleep, which lets other threads take the GIL (and, under
    gevent, lets the hub run one loop iteration); the sidecar passes a wait for gevent's loop to be idle
    (gateway_agent/sync.py `until_idle`), so every request ready by then is served before the next slice.
    """

    def __init__(self, seconds: float = SLICE_SECONDS, rest: Callable[[], None] | None = None):
        self.seconds = seconds
        self.rest = _short_sleep if rest is None else rest
        self._since = time.perf_counter()
        self.yields = 0

    def __call__(self) -> None:
        if time.perf_counter() - self._since >= self.seconds:
            self.rest()
            self.yields += 1
            self._since = time.perf_counter()


def chunked_read(ns: str, run: Callable[[list[tuple]], list], *, count: int = SCAN_COUNT,
                 pause: Callable[[], None] = lambda: None, attempts: int = READ_ATTEMPTS) -> NamespaceRead:
    """Return the namespace read with HSCAN in chunks of `count`, pausing between chunks.

    Consistent when rev and the store's digest are equal before and after the scan (every commit
    moves rev); the caller still compares the content's digest with the store's. Raises StoreError
    when the namespace changed during every attempt (and whatever `run` raises).
    """
    keys = Keys(ns)
    for _ in range(attempts):
        rev1, gen, digest1 = run([("GET", keys.rev), ("HGET", keys.meta, "gen"), ("HGET", keys.meta, "digest")])
        raw: dict[str, bytes] = {}
        cursor = b"0"
        while True:
            cursor, flat = run([("HSCAN", keys.rules, cursor, "COUNT", count)])[0]
            raw.update((as_text(k), v) for k, v in pairs(flat).items())
            pause()
            if int(cursor) == 0:
                break
        rev2, digest2 = run([("GET", keys.rev), ("HGET", keys.meta, "digest")])
        if rev1 == rev2 and digest1 == digest2:
            read = NamespaceRead(int(rev1 or 0), as_text(gen or b""), raw, as_text(digest1 or b""))
            return _checked(ns, read)
    raise StoreError(f"namespace {ns!r} changed during {attempts} consecutive reads")


def decode_rules(ns: str, raw: dict[str, bytes], *, cooperative: bool = False,
                 pause: Callable[[], None] | None = None) -> dict[str, dict]:
    """Return the validated rules of raw by id; raise CorruptDataError naming the first bad rule.

    With `cooperative` (or a `pause` of the caller's), yields to other greenlets/threads every
    SLICE_SECONDS of work.
    """
    rules = {}
    if pause is None and cooperative:
        pause = Slicer()
    for rule_id, value in raw.items():
        if pause is not None:
            pause()
        rules[rule_id] = decode_stored(rule_id, value, f"namespace {ns!r} rule {rule_id!r}")
    return rules


def decode_stored(rule_id: str, value: bytes, where: str) -> dict:
    """Return the validated rule stored as `value` under `rule_id`, its id the key's string (a compiled set shares
    it with the raw map); raise CorruptDataError, prefixed `where`, when it does not decode or names another id."""
    rule = decode_rule(value, where=where)
    if rule["id"] != rule_id:
        raise CorruptDataError(f"{where}: stored under another id")
    rule["id"] = rule_id
    return rule


def contiguous(entries: Iterable[HasRevision], held: int, current: int, batch: int) -> bool:
    """Return True when entries are held+1, held+2, ... and reach `current` (or fill a batch)."""
    entries = list(entries)
    if not entries or entries[0].revision != held + 1:
        return False
    for a, b in zip(entries, entries[1:]):
        if b.revision != a.revision + 1:
            return False
    return entries[-1].revision >= current or len(entries) >= batch

"""The pure rule evaluator: compile a rule set once, then `decide()` per request with no I/O.

Semantics (mirrored by lua/rulegate/router.lua and pinned by tests/vectors/):
route = most specific matching rules (exact host > longest wildcard suffix > '*', then longest
path prefix; methods filter); inside the route an active degrade rule covering the request's
bucket wins (rule id order), else the split rule (first matching policy, then `default`),
else `pass` (the gateway uses its own default upstream).
"""
from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Protocol

from . import iputil
from .request import Request, wire_bytes
from .schema import BODILESS_STATUSES, BUCKETS, ramp_share

__all__ = ["Decision", "Request", "RuleSet", "bucket_of", "decide", "find_route"]

EMPTY: Mapping[str, str] = {}
MAX_UID_DIGITS = 16


@dataclass(frozen=True, slots=True)
class Decision:
    """What the gateway does: proxy to `upstream`, respond, redirect, or pass (no rule)."""

    action: str
    upstream: str | None = None
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""
    location: str | None = None
    rule_id: str | None = None
    revision: int = 0
    breaker: str | None = None  # the breaker rule this request passed (closed or probe): report() its outcome

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape used by the sidecar and the vectors."""
        out: dict[str, Any] = {"action": self.action, "rule_id": self.rule_id, "revision": self.revision}
        if self.action == "proxy":
            out["upstream"] = self.upstream
        elif self.action in ("respond", "redirect"):
            out.update(status=self.status, headers=dict(self.headers), body=self.body)
            if self.location is not None:
                out["location"] = self.location
        return out


def bucket_of(salt: str, key: str) -> int:
    """Return the sticky bucket 0..9999 of a key: crc32(salt + ':' + key) % 10000."""
    return zlib.crc32(wire_bytes(key), _seed(salt)) % BUCKETS


def _bucket(seed: int, key: str) -> int:
    try:
        raw = key.encode()
    except UnicodeEncodeError:  # bytes that were not UTF-8 (or other lone surrogates)
        raw = wire_bytes(key)
    return zlib.crc32(raw, seed) % BUCKETS


def _seed(salt: str) -> int:
    """Return the running CRC-32 of salt + ':' (so a bucket costs one crc32 over the key only)."""
    return zlib.crc32(f"{salt}:".encode())


def _key_value(source: str, name: str, req: Request) -> str | None:
    if source == "ip":
        return req.ip or None
    if source == "request":
        return req.request_id or os.urandom(8).hex()
    if source == "header":
        return req.headers.get(name)
    if source == "cookie":
        return req.cookies.get(name)
    return req.args.get(name)


class _Split:
    __slots__ = ("rule_id", "source", "name", "checks", "default", "start", "end")

    def __init__(self, rule: dict, revision: int):
        self.rule_id = rule["id"]
        window = rule.get("window") or {}
        self.start, self.end = window.get("start"), window.get("end")  # both None: always active
        self.source = rule["key"]["source"]
        self.name = rule["key"].get("name", "").lower() if self.source == "header" else rule["key"].get("name", "")
        self.checks = [_compile_policy(p, rule["id"], revision) for p in rule["policies"]]
        self.default = Decision("proxy", upstream=rule["default"], rule_id=rule["id"], revision=revision)

    def pick(self, req: Request) -> Decision:
        source = self.source
        if source == "header":
            key = req.headers.get(self.name)
        elif source == "ip":
            key = req.ip or None
        else:
            key = (req.cookies if source == "cookie" else req.args).get(self.name)
        for check in self.checks:
            hit = check(key, req)
            if hit is not None:
                return hit
        return self.default


def _split_inactive(split: _Split, req: Request) -> bool:
    """Return True when a split rule with a window is outside it at the request's clock."""
    now = req.now if req.now is not None else time.time()
    return (split.start is not None and now < split.start) or (split.end is not None and now >= split.end)


def _ramped_percent(seed: int, ramp: dict, edges: list[tuple[int, Decision]]):
    """A percent policy with a ramp: bucket i covers [E*c(i-1)//W, E*c(i)//W) of the effective share E."""
    total = edges[-1][0]

    def ramped(key: str | None, req: Request) -> Decision | None:
        share = ramp_share(ramp, req.now if req.now is not None else time.time())
        text = key if key is not None else req.ip
        try:
            raw = text.encode()
        except UnicodeEncodeError:
            raw = wire_bytes(text)
        bucket = zlib.crc32(raw, seed) % BUCKETS
        if bucket >= share:
            return None
        need = (bucket + 1) * total  # bucket < E*c//W  <=>  (bucket+1)*W <= E*c
        for edge, decision in edges:
            if need <= share * edge:
                return decision
        return None
    return ramped


def _compile_policy(p: dict, rule_id: str, revision: int):
    ptype = p["type"]
    if ptype == "percent":
        seed = _seed(p.get("salt", rule_id))
        crc32 = zlib.crc32
        edges = []
        total = 0
        for b in p["buckets"]:
            total += b["weight"]
            edges.append((total, Decision("proxy", upstream=b["upstream"], rule_id=rule_id, revision=revision)))
        if "ramp" in p:
            return _ramped_percent(seed, p["ramp"], edges)

        def percent(key: str | None, req: Request) -> Decision | None:
            text = key if key is not None else req.ip
            try:  # inlined _bucket: the hot path of percent splits
                raw = text.encode()
            except UnicodeEncodeError:
                raw = wire_bytes(text)
            bucket = crc32(raw, seed) % BUCKETS
            for edge, decision in edges:
                if bucket < edge:
                    return decision
            return None
        return percent
    hit = Decision("proxy", upstream=p["upstream"], rule_id=rule_id, revision=revision)
    if ptype == "uid_range":
        ranges = [(lo, hi) for lo, hi in p["ranges"]]

        def uid_range(key: str | None, req: Request) -> Decision | None:
            if key is None or len(key) > MAX_UID_DIGITS or not key.isascii() or not key.isdigit():
                return None
            uid = int(key)
            for lo, hi in ranges:
                if lo <= uid <= hi:
                    return hit
            return None
        return uid_range
    if ptype == "uid_suffix":
        suffixes = tuple(p["suffixes"])
        return lambda key, req: hit if key is not None and key.endswith(suffixes) else None
    if ptype == "ip_cidr":
        nets = [iputil.parse_cidr(c) for c in p["cidrs"]]

        def ip_cidr(key: str | None, req: Request) -> Decision | None:
            addr = iputil.parse_ip(req.ip)
            if addr is None:
                return None
            return hit if any(iputil.contains(n, addr) for n in nets) else None
        return ip_cidr
    values = frozenset(p["values"])
    name = p["name"]
    if ptype == "header":
        lname = name.lower()
        return lambda key, req: hit if req.headers.get(lname) in values else None
    if ptype == "cookie":
        return lambda key, req: hit if req.cookies.get(name) in values else None
    return lambda key, req: hit if req.args.get(name) in values else None


class _Degrade:
    __slots__ = ("rule_id", "edge", "start", "end", "source", "name", "seed", "decision", "breaker")

    def __init__(self, rule: dict, revision: int):
        self.rule_id = rule["id"]
        self.edge = int(rule["percent"] * 100 + 0.5)
        window = rule.get("window") or {}
        self.start = window.get("start")
        self.end = window.get("end")
        key = rule.get("key") or {"source": "request"}
        self.source = key["source"]
        self.name = key.get("name", "").lower() if self.source == "header" else key.get("name", "")
        self.seed = _seed(rule.get("salt", rule["id"]))
        self.decision = _action_decision(rule["action"], rule["id"], revision)
        self.breaker = rule.get("breaker")

    def applies(self, req: Request, now: float) -> bool:
        if self.start is not None and now < self.start:
            return False
        if self.end is not None and now >= self.end:
            return False
        if self.edge >= BUCKETS:
            return True
        if self.edge <= 0:
            return False
        key = _key_value(self.source, self.name, req)
        return _bucket(self.seed, key if key is not None else req.ip) < self.edge


def _action_decision(action: dict, rule_id: str, revision: int) -> Decision:
    atype = action["type"]
    if atype == "upstream":
        return Decision("proxy", upstream=action["upstream"], rule_id=rule_id, revision=revision)
    if atype == "static":
        headers = {} if action["status"] in BODILESS_STATUSES else {"Content-Type": action["content_type"]}
        headers.update(action["headers"])
        return Decision("respond", status=action["status"], headers=headers, body=action["body"],
                        rule_id=rule_id, revision=revision)
    if atype == "redirect":
        return Decision("redirect", status=action["status"], headers={"Location": action["location"]},
                        location=action["location"], rule_id=rule_id, revision=revision)
    headers = {"Retry-After": str(action["retry_after"])} if "retry_after" in action else {}
    return Decision("respond", status=action["status"], headers=headers, body="",
                    rule_id=rule_id, revision=revision)


class _Route:
    __slots__ = ("degrades", "splits", "fast")

    def __init__(self) -> None:
        self.degrades: list[tuple[frozenset | None, _Degrade]] = []
        self.splits: list[tuple[frozenset | None, _Split]] = []
        self.fast = None

    def finish(self) -> None:
        self.degrades.sort(key=lambda item: item[1].rule_id)
        self.splits.sort(key=lambda item: item[1].rule_id)
        self.fast = None
        if not self.degrades and len(self.splits) == 1 and self.splits[0][0] is None \
                and self.splits[0][1].start is None and self.splits[0][1].end is None:
            self.fast = self.splits[0][1].pick

    def without(self, ids: set[str]) -> "_Route":
        """Return a copy without the items of rules in ids (self is not changed)."""
        route = _Route()
        route.degrades = [item for item in self.degrades if item[1].rule_id not in ids]
        route.splits = [item for item in self.splits if item[1].rule_id not in ids]
        return route


class _HostIndex:
    """Routes of one host pattern, looked up by path prefix length (longest first)."""

    __slots__ = ("by_path", "lengths")

    def __init__(self) -> None:
        self.by_path: dict[str, _Route] = {}
        self.lengths: list[int] = []

    def finish(self) -> None:
        self.lengths = sorted({len(p) for p in self.by_path}, reverse=True)
        for route in self.by_path.values():
            route.finish()


def _host_key(host: str) -> tuple[str, str]:
    """Return (table, key) of a route host: exact, wildcard (suffix from the dot), or any."""
    if host == "*":
        return "any", ""
    if host.startswith("*."):
        return "wildcard", host[1:]
    return "exact", host


class RuleSet:
    """An immutable compiled rule set of one namespace at one revision."""

    def __init__(self, rules: Iterable[dict], revision: int = 0, generation: str = "",
                 pause: Callable[[], None] | None = None):
        """Compile rules; `pause`, when given, is called between rules (a cooperative yield)."""
        self._init(revision, generation, {r["id"]: r for r in rules})
        for rule in self.rules.values():
            if pause is not None:
                pause()
            if rule.get("enabled", True):
                self._add(rule)
        for index in self._indexes():
            if pause is not None:
                pause()
            index.finish()

    def _init(self, revision: int, generation: str, rules: dict[str, dict]) -> None:
        self.revision = revision
        self.generation = generation
        self.rules = rules
        self.exact: dict[str, _HostIndex] = {}
        self.wildcard: dict[str, _HostIndex] = {}
        self.any_host: _HostIndex | None = None
        self.pass_decision = Decision("pass", revision=revision)
        self.route_cache: dict[tuple[str, str, str], _Route | None] = {}
        self.stamped: dict[int, Decision] = {}

    def with_changes(self, changed: Mapping[str, dict], removed: Iterable[str], revision: int,
                     generation: str) -> "RuleSet":
        """Return this set with `changed` rules put and `removed` ids dropped, at `revision`.

        Copy-on-write: only the routes the changes touch are rebuilt; the rest is shared with self,
        which is not modified. decide() gives what RuleSet(all rules, revision) would.
        """
        rules = dict(self.rules)
        ids = set(changed) | set(removed)
        touched: dict[tuple[str, str], set[str]] = {}  # (table, host key) -> paths
        for rule_id in ids:
            for rule in (rules.get(rule_id), changed.get(rule_id)):
                if rule is not None:
                    touched.setdefault(_host_key(rule["route"]["host"]), set()).add(rule["route"]["path"])
        for rule_id in removed:
            rules.pop(rule_id, None)
        rules.update(changed)
        new = object.__new__(RuleSet)
        new._init(revision, generation, rules)
        new.exact, new.wildcard, new.any_host = dict(self.exact), dict(self.wildcard), self.any_host
        for (table, key), paths in touched.items():
            old = self._index(table, key)
            index = _HostIndex()
            if old is not None:
                index.by_path = dict(old.by_path)
            for path in paths:
                route = index.by_path.get(path)
                index.by_path[path] = route.without(ids) if route is not None else _Route()
            new._set_index(table, key, index)
        for rule in changed.values():
            if rule.get("enabled", True):
                new._add(rule)
        for (table, key), paths in touched.items():
            index = new._index(table, key)
            for path in paths:
                route = index.by_path[path]
                if route.degrades or route.splits:
                    route.finish()
                else:
                    del index.by_path[path]
            index.lengths = sorted({len(p) for p in index.by_path}, reverse=True)
            if not index.by_path:
                new._set_index(table, key, None)
        return new

    def _index(self, table: str, key: str) -> _HostIndex | None:
        if table == "any":
            return self.any_host
        return (self.exact if table == "exact" else self.wildcard).get(key)

    def _set_index(self, table: str, key: str, index: _HostIndex | None) -> None:
        if table == "any":
            self.any_host = index
            return
        target = self.exact if table == "exact" else self.wildcard
        if index is None:
            target.pop(key, None)
        else:
            target[key] = index

    def restamp(self, decision: Decision) -> Decision:
        """Return decision carrying this set's revision (a rule compiled at an earlier one)."""
        out = self.stamped.get(id(decision))
        if out is None or out.revision != self.revision:
            out = replace(decision, revision=self.revision)
            self.stamped[id(decision)] = out
        return out

    def _indexes(self) -> list[_HostIndex]:
        out = list(self.exact.values()) + list(self.wildcard.values())
        return out + ([self.any_host] if self.any_host else [])

    def _add(self, rule: dict) -> None:
        table, key = _host_key(rule["route"]["host"])
        index = self._index(table, key)
        if index is None:
            index = _HostIndex()
            self._set_index(table, key, index)
        route = index.by_path.setdefault(rule["route"]["path"], _Route())
        methods = frozenset(rule["route"]["methods"]) if rule["route"].get("methods") else None
        if rule["kind"] == "split":
            route.splits.append((methods, _Split(rule, self.revision)))
        else:
            route.degrades.append((methods, _Degrade(rule, self.revision)))

    def __len__(self) -> int:
        return len(self.rules)


def _route_in(index: _HostIndex, req: Request) -> _Route | None:
    path = req.path
    by_path = index.by_path
    for n in index.lengths:
        route = by_path.get(path[:n]) if len(path) >= n else None
        if route is not None and _method_matches(route, req.method):
            return route
    return None


def _method_matches(route: _Route, method: str) -> bool:
    for methods, _ in route.degrades:
        if methods is None or method in methods:
            return True
    for methods, _ in route.splits:
        if methods is None or method in methods:
            return True
    return False


class BreakerState(Protocol):
    """What decide() asks about breaker rules (rulegate.breaker.Breakers)."""

    def admit(self, rule_id: str, config: Mapping[str, Any], t: float) -> bool:
        """Return True when the rule applies to a request decided at t."""


def find_route(rs: RuleSet, req: Request) -> _Route | None:
    """Return the most specific route matching the request, or None."""
    host = req.host
    index = rs.exact.get(host)
    if index is not None:
        route = _route_in(index, req)
        if route is not None:
            return route
    if rs.wildcard:
        dot = host.find(".")
        while dot != -1:
            index = rs.wildcard.get(host[dot:])
            if index is not None:
                route = _route_in(index, req)
                if route is not None:
                    return route
            dot = host.find(".", dot + 1)
    if rs.any_host is not None:
        return _route_in(rs.any_host, req)
    return None


ROUTE_CACHE_SIZE = 20_000
_MISS = object()


def decide(rs: RuleSet, req: Request, breakers: BreakerState | None = None) -> Decision:
    """Return the Decision for one request; never raises on request content.

    Pure (no I/O, no state) unless a rule has a `breaker`: then `breakers.admit()` says whether it applies
    (without `breakers` every breaker counts as closed: the rule does not apply)."""
    cache_key = (req.host, req.path, req.method)
    route = rs.route_cache.get(cache_key, _MISS)
    if route is _MISS:
        route = find_route(rs, req)
        if len(rs.route_cache) >= ROUTE_CACHE_SIZE:
            rs.route_cache.clear()
        rs.route_cache[cache_key] = route
    if route is None:
        return rs.pass_decision
    if route.fast is not None:
        decision = route.fast(req)
        return decision if decision.revision == rs.revision else rs.restamp(decision)
    method = req.method
    if route.degrades:
        now = req.now if req.now is not None else time.time()
        passed = None
        for methods, degrade in route.degrades:
            if (methods is None or method in methods) and degrade.applies(req, now):
                if degrade.breaker is not None and (
                        breakers is None or not breakers.admit(degrade.rule_id, degrade.breaker, now)):
                    passed = passed or degrade.rule_id
                    continue
                decision = degrade.decision  # a later degrade answering: no outcome to report
                return decision if decision.revision == rs.revision else rs.restamp(decision)
        if passed is not None:
            return replace(_split_decision(rs, route, req, method), breaker=passed)
    return _split_decision(rs, route, req, method)


def _split_decision(rs: RuleSet, route: _Route, req: Request, method: str) -> Decision:
    for methods, split in route.splits:
        if methods is None or method in methods:
            if (split.start is not None or split.end is not None) and _split_inactive(split, req):
                continue
            decision = split.pick(req)
            return decision if decision.revision == rs.revision else rs.restamp(decision)
    return rs.pass_decision

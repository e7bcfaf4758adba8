"""The pure rule evaluator: compile a rule set once, then `decide()` per request with no I/O.

Semantics (mirrored by lua/rulegate/router.lua and pinned by tests/vectors/):
route = most specific matching rules (exact host > longest wildcard suffix > '*', then longest
path prefix; methods filter); inside the route an active degrade rule covering the request's
bucket wins (rule id order), else the split rule (first matching policy, then `default`),
else `pass` (the gateway uses its own default upstream).
"""
from __future__ import annotations

import operator
import os
import sys
import time
import zlib
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Hashable, Iterable, Mapping, Protocol

from . import iputil, split_code
from .request import EMPTY as NO_HEADERS  # one read-only empty mapping, shared by every Decision
from .request import Request, wire_bytes
from .schema import BODILESS_STATUSES, BUCKETS, ramp_share

__all__ = ["CompiledRule", "Decision", "Request", "RuleSet", "bucket_of", "compile_rule", "decide", "find_route"]

EMPTY: Mapping[str, str] = {}
MAX_UID_DIGITS = 16
_POOL: dict[Hashable, Any] = {}  # equal immutable pieces of compiled rules (suffix tuples, value sets), shared
_POOL_MAX = 4096


def _shared(value: Hashable) -> Any:
    """Return the pooled object equal to value (value itself the first time); the pool is bounded."""
    if len(_POOL) >= _POOL_MAX:
        _POOL.clear()  # only sharing is lost: pooled values are immutable
    return _POOL.setdefault((type(value), value), value)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the gateway does: proxy to `upstream`, respond, redirect, or pass (no rule)."""

    action: str
    upstream: str | None = None
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: NO_HEADERS)
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


class _NewDecision:
    """Decision's slots without the frozen __setattr__: _proxy fills one in, then makes it a Decision."""

    __slots__ = Decision.__slots__


assert _NewDecision.__slots__ == tuple(f.name for f in fields(Decision)), "_proxy() sets every field of Decision"


def _proxy(upstream: str, rule_id: str, revision: int) -> Decision:
    """Return Decision("proxy", upstream=upstream, rule_id=rule_id, revision=revision).

    Built as a _NewDecision whose class is then set to Decision (same slots: CPython allows it): the frozen
    dataclass's __init__ costs three times as much, and compiling a split makes one per upstream."""
    d = _NewDecision()
    d.action = "proxy"
    d.upstream = upstream
    d.status = None
    d.headers = NO_HEADERS
    d.body = ""
    d.location = None
    d.rule_id = rule_id
    d.revision = revision
    d.breaker = None
    d.__class__ = Decision
    return d


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


_crc32 = zlib.crc32
_new = object.__new__
_text = sys.intern  # the one shared copy of a string that many rules repeat (upstream, host, path, key name)


def _methods(route: dict) -> frozenset | None:
    methods = route.get("methods")
    return _shared(frozenset(_text(m) for m in methods)) if methods else None


def _key_name(key: dict) -> str:
    name = key.get("name", "")
    return _text(name.lower() if key["source"] == "header" else name)


class _Split:
    """A compiled split rule: its policies in order (one policy: that policy, no tuple), then `default`.

    Made by `_compile_split`, as an instance of the subclass for its shape."""

    __slots__ = ("rule_id", "methods", "source", "name", "checks", "default", "start", "end")

    def pick(self, req: Request) -> Decision:
        """Return the decision of the first policy matching the request's key, else `default`.

        The generic loop: a split of a common shape is an instance of a subclass whose `pick` is this
        loop written out for its shape (`_split_class`)."""
        source = self.source
        if source == "header":
            key = req.headers.get(self.name)
        elif source == "ip":
            key = req.ip or None
        else:
            key = (req.cookies if source == "cookie" else req.args).get(self.name)
        checks = self.checks
        for check in checks if type(checks) is tuple else (checks,):
            hit = check.match(key, req)
            if hit is not None:
                return hit
        return self.default


def _compile_split(rule: dict, revision: int) -> _Split:
    """Return a split rule compiled: an instance of the _Split subclass for its shape (`_split_class`)."""
    rule_id = rule["id"]
    key = rule["key"]
    source = _text(key["source"])
    default = _text(rule["default"])
    decision = _proxy(default, rule_id, revision)
    policies = rule["policies"]
    proxies = {default: decision}  # one Decision per upstream of the rule
    if len(policies) == 1:  # the policy itself, no 1-tuple (48 B a rule)
        checks = _compile_policy(policies[0], rule_id, revision, proxies)
        shape: tuple = (source, type(checks))
    else:
        checks = tuple([_compile_policy(p, rule_id, revision, proxies) for p in policies])
        shape = (source, *map(type, checks))
    split = _new(_SHAPES.get(shape) or _split_class(shape))
    split.rule_id = rule_id
    split.methods = _methods(rule["route"]) if "methods" in rule["route"] else None
    window = rule.get("window")
    split.start, split.end = (window.get("start"), window.get("end")) if window else (None, None)  # None: open
    split.source = source
    split.name = _text(key["name"].lower() if source == "header" else key["name"]) if "name" in key else ""
    split.default = decision
    split.checks = checks
    return split


_SHAPES: dict[tuple, type] = {}  # (key source, policy classes...) -> the _Split subclass with its generated pick
MAX_SHAPES = 256


def _split_class(shape: tuple) -> type:
    """Return the _Split subclass for a shape (source, then the class of each policy): `pick` written out.

    _Split itself (the generic loop) for a split with no policy or more than MAX_CHECKS, or once MAX_SHAPES
    shapes have a class (only speed differs)."""
    cls = _SHAPES.get(shape)
    if cls is None:
        if len(_SHAPES) >= MAX_SHAPES:
            return _Split
        kinds = tuple(_POLICY_KINDS.get(kind, "match") for kind in shape[1:])
        if 0 < len(kinds) <= split_code.MAX_CHECKS:
            cls = type(f"_Split[{shape[0]}:{'+'.join(kinds)}]", (_Split,),
                       {"__slots__": (), "pick": split_code.make_pick(shape[0], kinds), "__doc__": _Split.__doc__})
        else:
            cls = _Split
        cls = _SHAPES.setdefault(shape, cls)
    return cls


def _split_inactive(split: _Split, req: Request) -> bool:
    """Return True when a split rule with a window is outside it at the request's clock."""
    now = req.now if req.now is not None else time.time()
    return (split.start is not None and now < split.start) or (split.end is not None and now >= split.end)


class _Percent:
    """A percent policy: bucket < edge of the first (cumulative weight, Decision) pair."""

    __slots__ = ("seed", "edges")

    def __init__(self, seed: int, edges: tuple[tuple[int, Decision], ...]):
        self.seed, self.edges = seed, edges

    def match(self, key: str | None, req: Request) -> Decision | None:
        text = key if key is not None else req.ip
        try:  # inlined _bucket: the hot path of percent splits
            raw = text.encode()
        except UnicodeEncodeError:
            raw = wire_bytes(text)
        bucket = _crc32(raw, self.seed) % BUCKETS
        for edge, decision in self.edges:
            if bucket < edge:
                return decision
        return None


class _RampedPercent(_Percent):
    """A percent policy with a ramp: bucket i covers [E*c(i-1)//W, E*c(i)//W) of the effective share E."""

    __slots__ = ("ramp",)

    def __init__(self, seed: int, edges: tuple[tuple[int, Decision], ...], ramp: dict):
        super().__init__(seed, edges)
        self.ramp = ramp

    def match(self, key: str | None, req: Request) -> Decision | None:
        share = ramp_share(self.ramp, req.now if req.now is not None else time.time())
        bucket = _bucket(self.seed, key if key is not None else req.ip)
        if bucket >= share:
            return None
        total = self.edges[-1][0]
        need = (bucket + 1) * total  # bucket < E*c//W  <=>  (bucket+1)*W <= E*c
        for edge, decision in self.edges:
            if need <= share * edge:
                return decision
        return None


class _UidRange:
    __slots__ = ("ranges", "hit")

    def __init__(self, ranges: tuple[tuple[int, int], ...], hit: Decision):
        self.ranges, self.hit = ranges, hit

    def match(self, key: str | None, req: Request) -> Decision | None:
        if key is None or len(key) > MAX_UID_DIGITS or not key.isascii() or not key.isdigit():
            return None
        uid = int(key)
        for lo, hi in self.ranges:
            if lo <= uid <= hi:
                return self.hit
        return None


class _UidSuffix:
    __slots__ = ("suffixes", "hit")

    def __init__(self, suffixes: tuple[str, ...], hit: Decision):
        self.suffixes, self.hit = suffixes, hit

    def match(self, key: str | None, req: Request) -> Decision | None:
        return self.hit if key is not None and key.endswith(self.suffixes) else None


class _IpCidr:
    __slots__ = ("nets", "hit")

    def __init__(self, nets: tuple, hit: Decision):
        self.nets, self.hit = nets, hit

    def match(self, key: str | None, req: Request) -> Decision | None:
        addr = iputil.parse_ip(req.ip)
        if addr is None:
            return None
        return self.hit if any(iputil.contains(n, addr) for n in self.nets) else None


class _Values:
    """A header, cookie or arg policy: the request's value of `name` is one of `values`."""

    __slots__ = ("source", "name", "values", "hit")

    def __init__(self, source: str, name: str, values: frozenset, hit: Decision):
        self.source, self.name, self.values, self.hit = source, name, values, hit

    def match(self, key: str | None, req: Request) -> Decision | None:
        source = self.source
        got = (req.headers if source == "header" else req.cookies if source == "cookie" else req.args).get(self.name)
        return self.hit if got in self.values else None


_POLICY_KINDS = {_Percent: "percent", _UidSuffix: "uid_suffix"}  # matched inline by generated picks


def _proxy_of(upstream: str, rule_id: str, revision: int, proxies: dict[str, Decision]) -> Decision:
    """Return the rule's Decision to proxy to upstream (made once per upstream: proxies holds them)."""
    decision = proxies.get(upstream)
    if decision is None:
        decision = proxies[upstream] = _proxy(_text(upstream), rule_id, revision)
    return decision


def _compile_policy(p: dict, rule_id: str, revision: int, proxies: dict[str, Decision]):
    ptype = p["type"]
    if ptype == "percent":
        seed = _seed(p.get("salt", rule_id))
        edges = []
        total = 0
        for b in p["buckets"]:
            total += b["weight"]
            edges.append((total, _proxy_of(b["upstream"], rule_id, revision, proxies)))
        if "ramp" in p:
            return _RampedPercent(seed, tuple(edges), p["ramp"])
        return _Percent(seed, tuple(edges))
    hit = _proxy_of(p["upstream"], rule_id, revision, proxies)
    if ptype == "uid_suffix":
        suffixes = tuple(p["suffixes"])
        pooled = _POOL.get((tuple, suffixes))  # the usual case: no string to intern again
        return _UidSuffix(pooled if pooled is not None else _shared(tuple(map(_text, suffixes))), hit)
    if ptype == "uid_range":
        return _UidRange(tuple((lo, hi) for lo, hi in p["ranges"]), hit)
    if ptype == "ip_cidr":
        return _IpCidr(tuple(iputil.parse_cidr(c) for c in p["cidrs"]), hit)
    name = p["name"].lower() if ptype == "header" else p["name"]
    return _Values(_text(ptype), _text(name), _shared(frozenset(p["values"])), hit)


class _Degrade:
    __slots__ = ("rule_id", "methods", "edge", "start", "end", "source", "name", "seed", "decision", "breaker")

    def __init__(self, rule: dict, revision: int):
        self.rule_id = rule["id"]
        self.methods = _methods(rule["route"])
        self.edge = int(rule["percent"] * 100 + 0.5)
        window = rule.get("window") or {}
        self.start = window.get("start")
        self.end = window.get("end")
        key = rule.get("key") or {"source": "request"}
        self.source = _text(key["source"])
        self.name = _key_name(key)
        self.seed = _seed(rule.get("salt", rule["id"]))
        self.decision = _action_decision(rule["action"], rule["id"], revision)
        self.breaker = rule.get("breaker")

    def applies(self, req: Request, now: float) -> bool:
        if self.start is not None and now < self.start:
            return False
        if self.end is not None and now >= self.end:
            return False
        edge = self.edge
        if edge >= BUCKETS:
            return True
        if edge <= 0:
            return False
        key = req.headers.get(self.name) if self.source == "header" else _key_value(self.source, self.name, req)
        text = key if key is not None else req.ip
        try:  # inlined _bucket
            raw = text.encode()
        except UnicodeEncodeError:
            raw = wire_bytes(text)
        return _crc32(raw, self.seed) % BUCKETS < edge


def _action_decision(action: dict, rule_id: str, revision: int) -> Decision:
    atype = action["type"]
    if atype == "upstream":
        return Decision("proxy", upstream=_text(action["upstream"]), rule_id=rule_id, revision=revision)
    if atype == "static":
        headers = {} if action["status"] in BODILESS_STATUSES else {"Content-Type": action["content_type"]}
        headers.update(action["headers"])
        return Decision("respond", status=action["status"], headers=headers, body=action["body"],
                        rule_id=rule_id, revision=revision)
    if atype == "redirect":
        return Decision("redirect", status=action["status"], headers={"Location": action["location"]},
                        location=action["location"], rule_id=rule_id, revision=revision)
    headers = {"Retry-After": str(action["retry_after"])} if "retry_after" in action else {}
    return Decision("respond", status=action["status"], headers=headers or NO_HEADERS, body="",
                    rule_id=rule_id, revision=revision)


_RULE_ID = operator.attrgetter("rule_id")


class _Route:
    """The rules of one (host, path): lists while being built, tuples once `finish()`ed.

    A finished route whose only rule is a split without methods or window holds it in `fast` only
    (`splits` is then empty: no 1-tuple, 48 B a route); `all_splits()` gives the splits either way.
    """

    __slots__ = ("degrades", "splits", "fast")

    def __init__(self) -> None:
        self.degrades: list[_Degrade] | tuple[_Degrade, ...] = []
        self.splits: list[_Split] | tuple[_Split, ...] = []
        self.fast: _Split | None = None  # the only split, no methods, no window, no degrade

    def all_splits(self) -> "list[_Split] | tuple[_Split, ...]":
        return self.splits if self.fast is None else (self.fast,)

    def finish(self) -> None:
        splits = self.splits
        if len(splits) == 1 and not self.degrades and self.fast is None:  # most routes: one split
            split = splits[0]
            if split.methods is None and split.start is None and split.end is None:
                self.degrades, self.splits, self.fast = (), (), split
                return
        degrades, splits = self.degrades, self.all_splits() if not self.splits else self.splits
        self.degrades = tuple(sorted(degrades, key=_RULE_ID)) if len(degrades) > 1 else tuple(degrades)
        self.splits = tuple(sorted(splits, key=_RULE_ID)) if len(splits) > 1 else tuple(splits)
        self.fast = None
        if not self.degrades and len(self.splits) == 1 and self.splits[0].methods is None \
                and self.splits[0].start is None and self.splits[0].end is None:
            self.fast = self.splits[0]
            self.splits = ()

    def without(self, ids: set[str]) -> "_Route":
        """Return an unfinished copy without the items of rules in ids (self is not changed)."""
        route = _Route()
        route.degrades = [item for item in self.degrades if item.rule_id not in ids]
        route.splits = [item for item in self.all_splits() if item.rule_id not in ids]
        return route


class _HostIndex:
    """Routes of one host pattern, looked up by path prefix length (longest first)."""

    __slots__ = ("by_path", "lengths")

    def __init__(self) -> None:
        self.by_path: dict[str, _Route] = {}
        self.lengths: tuple[int, ...] = ()

    def finish(self) -> None:
        self.lengths = tuple(sorted({len(p) for p in self.by_path}, reverse=True))
        for route in self.by_path.values():
            route.finish()


def _host_key(host: str) -> tuple[str, str]:
    """Return (table, key) of a route host: exact, wildcard (suffix from the dot), or any."""
    if host == "*":
        return "any", ""
    if host.startswith("*."):
        return "wildcard", _text(host[1:])
    return "exact", host


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One rule compiled for a RuleSet: where it sits, its route item (None: disabled), its `breaker`.

    Immutable, so any number of sets (and a cache of them, gateway_agent/compiled.py) can share it.
    """

    rule_id: str
    place: tuple[str, str]  # (host, path) of its route, interned
    item: "_Split | _Degrade | None"
    breaker: dict | None


class _NewCompiledRule:
    """CompiledRule's slots without the frozen __setattr__ (see _proxy)."""

    __slots__ = CompiledRule.__slots__


assert _NewCompiledRule.__slots__ == tuple(f.name for f in fields(CompiledRule)), "compile_rule() sets every field"


def compile_rule(rule: dict, revision: int = 0) -> CompiledRule:
    """Return a validated rule compiled with its decisions stamped `revision` (a set re-stamps them)."""
    route = rule["route"]
    item = None
    if rule.get("enabled", True):
        item = _compile_split(rule, revision) if rule["kind"] == "split" else _Degrade(rule, revision)
    out = _NewCompiledRule()  # CompiledRule(...) without the frozen dataclass's __init__ (see _proxy)
    out.rule_id = rule["id"]
    out.place = (_text(route["host"]), _text(route["path"]))
    out.item = item
    out.breaker = rule.get("breaker")
    out.__class__ = CompiledRule
    return out


class RuleSet:
    """An immutable compiled rule set of one namespace at one revision.

    It keeps no rule dicts: only the compiled routes and, per rule id, the (host, path) the rule
    occupies (`placement`, what `with_changes` needs). Whoever needs the rules themselves keeps
    them, or their stored bytes (the agent's `Applied.raw`).
    """

    def __init__(self, rules: Iterable[dict], revision: int = 0, generation: str = "",
                 pause: Callable[[], None] | None = None):
        """Compile rules (the last of an id wins); `pause`, when given, is called between rules."""
        self._init(revision, generation, {})
        for rule in {r["id"]: r for r in rules}.values():
            if pause is not None:
                pause()
            self._put(compile_rule(rule, revision))
        self._finish(pause)

    @classmethod
    def from_compiled(cls, compiled: Iterable["CompiledRule"], revision: int = 0, generation: str = "",
                      pause: Callable[[], None] | None = None) -> "RuleSet":
        """Return the set of rules compiled earlier (`compile_rule`, any revision; one per id).

        decide() gives what RuleSet(the same rules, revision) would: decisions compiled at another
        revision are re-stamped on their way out. `pause` is called every 64 rules."""
        new = object.__new__(cls)
        new._init(revision, generation, {})
        routes: dict[tuple[str, str], _Route] = {}
        put = new._put
        for n, entry in enumerate(compiled):
            if pause is not None and not n & 63:
                pause()
            put(entry, routes)
        new._finish(pause)
        return new

    def _finish(self, pause: Callable[[], None] | None) -> None:
        for index in self._indexes():
            if pause is not None:
                pause()
            index.finish()

    def _init(self, revision: int, generation: str, placement: dict[str, tuple[str, str]],
              breakers: dict[str, dict] | None = None) -> None:
        self.revision = revision
        self.generation = generation
        self.placement = placement  # rule id -> (host, path) of its route, disabled rules included
        self.breakers: dict[str, dict] = {} if breakers is None else breakers  # rule id -> its `breaker` (few)
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
        return self.with_compiled({rule_id: compile_rule(rule, revision) for rule_id, rule in changed.items()},
                                  removed, revision, generation)

    def with_compiled(self, changed: Mapping[str, CompiledRule], removed: Iterable[str], revision: int,
                      generation: str) -> "RuleSet":
        """`with_changes` of rules compiled earlier (`compile_rule`, any revision: decisions compiled at
        another one are re-stamped, as after `from_compiled`); `removed` is iterated twice."""
        placement = dict(self.placement)
        ids = set(changed) | set(removed)
        touched: dict[tuple[str, str], set[str]] = {}  # (table, host key) -> paths
        for rule_id in ids:
            routes = [placement.get(rule_id)]
            if rule_id in changed:
                routes.append(changed[rule_id].place)
            for route in routes:
                if route is not None:
                    touched.setdefault(_host_key(route[0]), set()).add(route[1])
        for rule_id in removed:
            placement.pop(rule_id, None)
        breakers = {rule_id: b for rule_id, b in self.breakers.items() if rule_id not in ids}
        new = object.__new__(RuleSet)
        new._init(revision, generation, placement, breakers)
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
        for entry in changed.values():
            new._put(entry)
        for (table, key), paths in touched.items():
            index = new._index(table, key)
            for path in paths:
                route = index.by_path[path]
                if route.degrades or route.splits:
                    route.finish()
                else:
                    del index.by_path[path]
            index.lengths = tuple(sorted({len(p) for p in index.by_path}, reverse=True))
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

    def parts(self) -> list:
        """Return this set's placement, its routes, then its host indexes: what holds most of its objects.

        Dropping them one by one from the end once nothing else holds the set frees it in slices
        (gateway_agent/sync.py; ~15 ms in one block at 10,000 rules otherwise)."""
        indexes = self._indexes()
        out: list = [self.placement]
        for index in indexes:
            out += index.by_path.values()
        return out + indexes

    def compiled_rules(self, pause: Callable[[], None] | None = None) -> dict[str, CompiledRule]:
        """Return each rule of this set by id as `compile_rule` gave it (the same route item, place and
        `breaker`; decisions stamped with the revision they were compiled at): what `from_compiled` takes.

        Built from the routes and the placement (the set keeps no CompiledRule); `pause` every 64 rules."""
        items: dict[str, _Split | _Degrade] = {}
        n = 0
        for index in self._indexes():
            for route in index.by_path.values():
                n += 1
                if pause is not None and not n & 63:
                    pause()
                for item in route.degrades:
                    items[item.rule_id] = item
                for item in route.all_splits():
                    items[item.rule_id] = item
        out: dict[str, CompiledRule] = {}
        breakers = self.breakers
        for n, (rule_id, place) in enumerate(self.placement.items()):
            if pause is not None and not n & 63:
                pause()
            rule = _NewCompiledRule()  # CompiledRule(...) without the frozen dataclass's __init__ (see _proxy)
            rule.rule_id = rule_id
            rule.place = place
            rule.item = items.get(rule_id)  # None: disabled
            rule.breaker = breakers.get(rule_id)
            rule.__class__ = CompiledRule
            out[rule_id] = rule
        return out

    def _indexes(self) -> list[_HostIndex]:
        out = list(self.exact.values()) + list(self.wildcard.values())
        return out + ([self.any_host] if self.any_host else [])

    def _put(self, entry: "CompiledRule", routes: dict[tuple[str, str], _Route] | None = None) -> None:
        """Record where a compiled rule sits and add it to its (unfinished) route when enabled.

        `routes`, when given, remembers the route of each (host, path) seen (a whole set's build)."""
        place = entry.place
        self.placement[entry.rule_id] = place
        if entry.breaker is not None:
            self.breakers[entry.rule_id] = entry.breaker
        item = entry.item
        if item is None:
            return
        route = routes.get(place) if routes is not None else None
        if route is None:
            host = place[0]
            if host.startswith("*"):  # '*' or '*.suffix' (an exact host never starts with '*')
                table, key = _host_key(host)
                index = self._index(table, key)
                if index is None:
                    index = _HostIndex()
                    self._set_index(table, key, index)
            else:
                index = self.exact.get(host)
                if index is None:
                    index = self.exact[host] = _HostIndex()
            route = index.by_path.get(place[1])
            if route is None:
                route = index.by_path[place[1]] = _Route()
            if routes is not None:
                routes[place] = route
        if type(item) is not _Degrade:
            route.splits.append(item)
        else:
            route.degrades.append(item)

    def __len__(self) -> int:
        """Return the number of rules, disabled ones included."""
        return len(self.placement)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self.placement


def _route_in(index: _HostIndex, req: Request) -> _Route | None:
    path = req.path
    by_path = index.by_path
    for n in index.lengths:
        route = by_path.get(path[:n]) if len(path) >= n else None
        if route is not None and _method_matches(route, req.method):
            return route
    return None


def _method_matches(route: _Route, method: str) -> bool:
    if route.fast is not None:
        return True
    for degrade in route.degrades:
        if degrade.methods is None or method in degrade.methods:
            return True
    for split in route.splits:
        if split.methods is None or method in split.methods:
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
    fast = route.fast
    if fast is not None:
        decision = fast.pick(req)
        return decision if decision.revision == rs.revision else rs.restamp(decision)
    method = req.method
    if route.degrades:
        now = req.now if req.now is not None else time.time()
        passed = None
        for degrade in route.degrades:
            methods = degrade.methods
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
    for split in route.splits:
        methods = split.methods
        if methods is None or method in methods:
            if (split.start is not None or split.end is not None) and _split_inactive(split, req):
                continue
            decision = split.pick(req)
            return decision if decision.revision == rs.revision else rs.restamp(decision)
    return rs.pass_decision

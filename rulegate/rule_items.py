"""The compiled forms of split and degrade rules, and the Decisions they give.

A split compiles to a `_Split` (its policies, then `default`; a common shape gets a `pick` written out by
rulegate/split_code.py), a degrade to a `_Degrade`; rulegate/evaluator.py places them in routes and calls
`pick` / `covers` per request. docs/rules.md is the spec; lua/rulegate/router.lua mirrors it.
"""
from __future__ import annotations

import os
import sys
import time
import zlib
from dataclasses import dataclass, field, fields
from typing import Any, Hashable, Mapping

from . import iputil, split_code
from .request import EMPTY as NO_HEADERS  # one read-only empty mapping, shared by every Decision
from .request import Request, wire_bytes
from .schema import BODILESS_STATUSES, BUCKETS, ramp_share

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

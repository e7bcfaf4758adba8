"""A one-pass check of a rule already in canonical form: the cold path of a gateway loading stored bytes.

ruleadmin stores every rule canonical (`validate_rule`'s output: defaults filled in, keys sorted, hosts,
header names, CIDRs and decimals in canonical form), so `validate_rule(stored) == stored`. `canonical_rule`
checks exactly that, field by field with no error paths: it returns the rule itself when it is sure
`validate_rule` would accept it and return an equal dict (same keys in the same order, same types), and
None otherwise — anything unusual, invalid or not canonical. `decode_rule` then runs the full validator,
so what it accepts, refuses and says is always what `rulegate.schema.decode_rule` does.
tests/unit/test_schema_fast.py holds the two to the same results.

The fast path decodes with msgspec (C, ~2x msgpack's unpackb). Where the two decoders differ, msgspec either
refuses (then the full path decodes with msgpack and says what it says) or gives what canonical_rule never
takes: non-str map keys (msgpack refuses them), ext types and timestamps. For everything else (str, bin, ints,
floats of either width, arrays, maps with repeated keys: the last value at the first key's place) both give
equal objects; tests/unit/test_schema_fast.py checks it over arbitrary msgpack.
"""
from __future__ import annotations

import re
from itertools import combinations
from typing import Any

import msgspec

from .iputil import canonical_cidr
from .schema import (
    _GATEWAY_HEADERS,
    _HEADER_CHARS,
    _ID_FIRST,
    _ID_REST,
    _PATH_CHARS,
    _TOKEN_CHARS,
    _UPSTREAM_CHARS,
    _URI_CHARS,
    _VALUE_CHARS,
    BODILESS_STATUSES,
    BREAKER_LIMITS,
    BUCKETS,
    GUARD_BREACH,
    GUARD_DEFAULTS,
    GUARD_INTS,
    GUARD_LIMITS,
    MAX_BODY_BYTES,
    MAX_BUCKETS,
    MAX_ENCODED_RULE,
    MAX_HEADERS,
    MAX_LIST_ITEMS,
    MAX_POLICIES,
    MAX_RAMP_SPAN,
    MAX_RAMP_STEPS,
    MAX_TEXT,
    MAX_TIME,
    MAX_UID,
    METHODS,
    NAMESPACE_SCOPE,
    REDIRECT_STATUSES,
    _is_unicode,
)
from .schema import decode_rule as full_decode_rule

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")
_LOWER_HEADER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_METHODS = frozenset(METHODS)
_REDIRECTS = frozenset(REDIRECT_STATUSES)
_BODILESS = frozenset(BODILESS_STATUSES)
_BREACH = frozenset(GUARD_BREACH)
_LOCATION_STARTS = ("http://", "https://", "/")
_decode = msgspec.msgpack.Decoder().decode  # untyped: dict, list, str, bytes, int, float, bool, None, Ext, datetime


def _one_of(chars: set[str] | frozenset[str]) -> str:
    return "[" + "".join(re.escape(c) for c in sorted(chars)) + "]"


_ID = re.compile(_one_of(_ID_FIRST) + _one_of(_ID_REST) + "{0,63}")  # is_valid_id, with fullmatch
_PATH = re.compile("/" + _one_of(_PATH_CHARS) + "{0,511}")  # a route path, with fullmatch

# Strings already found good, by kind: rules repeat their upstreams, hosts, paths and names, and a set lookup costs a
# fraction of a character check. Only strings that passed the check are added; a set past _KNOWN_MAX is emptied
# (only speed is lost). Set operations are atomic under the GIL: threads may share them.
_KNOWN_MAX = 4096
_UPSTREAMS: set[str] = set()
_HOSTS: set[str] = set()
_HEADER_NAMES: set[str] = set()
_TOKENS: set[str] = set()
_SUFFIXES: set[str] = set()
_PATHS: set[str] = set()


def _learn(known: set[str], value: str, max_len: int, chars: frozenset[str] | set[str]) -> bool:
    """Return True when value is 1..max_len characters of chars (then known holds it)."""
    if not 0 < len(value) <= max_len or not chars.issuperset(value):
        return False
    if len(known) >= _KNOWN_MAX:
        known.clear()
    known.add(value)
    return True


def _sorted_keys(*groups: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(name for group in groups for name in group))


def _with_any_of(required: tuple[str, ...], optional: tuple[str, ...]) -> frozenset[tuple[str, ...]]:
    """Return the sorted key tuples of `required` plus any subset of `optional`."""
    return frozenset(_sorted_keys(required, extra) for n in range(len(optional) + 1)
                     for extra in combinations(optional, n))


_COMMON = ("id", "kind", "route", "enabled", "description", "updated_by", "updated_at")
_SPLIT_KEYS = _with_any_of(_COMMON + ("key", "policies", "default"), ("window",))
_DEGRADE_KEYS = _with_any_of(_COMMON + ("action", "percent"), ("window", "key", "salt", "breaker", "scope"))
_ROUTE_KEYS = ("host", "path")
_ROUTE_METHOD_KEYS = ("host", "methods", "path")
_WINDOW_KEYS = frozenset({("start",), ("end",), ("end", "start")})
_BREAKER_KEYS = frozenset(_sorted_keys(("window", "min_requests", "open_seconds", "probes"), extra) for extra in
                          (("error_ratio",), ("slow_ms", "slow_ratio"), ("error_ratio", "slow_ms", "slow_ratio")))
_POLICY_KEYS = {
    "uid_range": ("ranges", "type", "upstream"),
    "uid_suffix": ("suffixes", "type", "upstream"),
    "ip_cidr": ("cidrs", "type", "upstream"),
    "header": ("name", "type", "upstream", "values"),
    "cookie": ("name", "type", "upstream", "values"),
    "arg": ("name", "type", "upstream", "values"),
}
_PERCENT_KEYS = _with_any_of(("type", "buckets"), ("salt", "ramp"))
_BUCKET_KEYS = ("upstream", "weight")
_RAMP_LINEAR = {_sorted_keys(("start", "end", "from", "to", "mode"), g) for g in ((), ("guard",))}
_RAMP_STEP = {_sorted_keys(("start", "end", "from", "to", "mode", "steps"), g) for g in ((), ("guard",))}
_GUARD_KEYS = frozenset(_sorted_keys(("control", "min_requests"), tuple(GUARD_DEFAULTS), limits)
                        for limits in (("max_error_increase",), ("max_p95_ratio",), tuple(GUARD_LIMITS)))
_STATIC_KEYS = ("body", "content_type", "headers", "status", "type")
_STATIC_BODILESS_KEYS = ("body", "headers", "status", "type")
_REJECT_KEYS = frozenset({("status", "type"), ("retry_after", "status", "type")})


def decode_rule(raw: bytes, *, where: str = "rule") -> dict:
    """Return what `rulegate.schema.decode_rule(raw, where=where)` returns, raising what it raises.

    Bytes holding a canonical rule skip the full validator; anything else goes through it."""
    rule = decode_canonical(raw)
    return rule if rule is not None else full_decode_rule(raw, where=where)


def decode_canonical(raw: bytes) -> dict | None:
    """Return the rule stored as raw when it is a canonical rule (what `rulegate.schema.decode_rule` returns), else
    None: bytes that are not msgpack, not a rule, or a rule not in canonical form (decode those with the former)."""
    if type(raw) is not bytes or len(raw) > MAX_ENCODED_RULE:
        return None
    try:
        data = _decode(raw)
    except (msgspec.DecodeError, RecursionError):  # the full path's msgpack decides what to say
        return None
    return canonical_rule(data)


def decode_known_canonical(raw: bytes) -> dict:
    """Return the rule stored as raw, bytes `decode_canonical` returned a rule for before (a rule placed
    pending: rulegate.evaluator.place_rule): what it returned, without checking again."""
    return _decode(raw)


def canonical_rule(data: Any) -> dict | None:
    """Return data when `validate_rule(data) == data` for sure (keys in the same order, same types), else None."""
    if type(data) is not dict:
        return None
    keys = tuple(data)
    kind = data.get("kind")
    if kind == "split":
        ok = keys in _SPLIT_KEYS and _split_ok(data)
    elif kind == "degrade":
        ok = keys in _DEGRADE_KEYS and _degrade_ok(data)
    else:
        return None
    if not ok or type(data["enabled"]) is not bool:
        return None
    rule_id, description, by, at = data["id"], data["description"], data["updated_by"], data["updated_at"]
    if type(rule_id) is not str or _ID.fullmatch(rule_id) is None or not _route_ok(data["route"]):
        return None
    if description != "" and not _text_ok(description, MAX_TEXT, False):
        return None
    if by != "" and not _text_ok(by, 128, True):
        return None
    return data if type(at) is int and 0 <= at <= MAX_TIME else None


def _text_ok(value: Any, max_len: int, single_line: bool) -> bool:
    """What `_Checker.text` accepts with min_len 0 and no character set."""
    if type(value) is not str or len(value) > max_len or "\x00" in value:
        return False
    if single_line and ("\r" in value or "\n" in value):
        return False
    return value.isascii() or _is_unicode(value)


def _upstream_ok(value: Any) -> bool:
    return type(value) is str and (value in _UPSTREAMS or _learn(_UPSTREAMS, value, 128, _UPSTREAM_CHARS))


def _int_ok(value: Any, lo: int, hi: int) -> bool:
    return type(value) is int and lo <= value <= hi


def _decimal_ok(value: Any, lo: int, hi: int, scale: int) -> bool:
    """What `_decimal` accepts and returns unchanged: an integer, or a non-whole double units / scale."""
    if type(value) is int:
        return lo <= value <= hi
    if type(value) is not float or not lo <= value <= hi:
        return False
    units = round(value * scale)
    return abs(value * scale - units) <= 1e-6 and units % scale != 0 and units / scale == value


def _route_ok(route: Any) -> bool:
    if type(route) is not dict:
        return False
    keys = tuple(route)
    if keys != _ROUTE_KEYS:
        if keys != _ROUTE_METHOD_KEYS:
            return False
        methods = route["methods"]
        if type(methods) is not list or not 0 < len(methods) <= len(METHODS):
            return False
        for m in methods:
            if type(m) is not str or m not in _METHODS:
                return False
        if len(set(methods)) != len(methods):
            return False
    path, host = route["path"], route["host"]
    return (type(path) is str and (path in _PATHS or _path_ok(path))
            and type(host) is str and (host in _HOSTS or _host_ok(host)))


def _path_ok(path: str) -> bool:
    """A route path `_check_route` accepts (then _PATHS holds it)."""
    if _PATH.fullmatch(path) is None:
        return False
    if len(_PATHS) >= _KNOWN_MAX:
        _PATHS.clear()
    _PATHS.add(path)
    return True


def _host_ok(host: str) -> bool:
    """A host `canonical_rule_host` returns unchanged: '*', or lower-case labels, optionally after '*.'."""
    if host == "*":
        return True
    bare = host[2:] if host.startswith("*.") else host
    if not (bare != "" and len(host) <= 253 and bare[0] not in ".-" and bare[-1] not in ".-" and ".." not in bare
            and _HOST_CHARS.issuperset(bare)):
        return False
    if len(_HOSTS) >= _KNOWN_MAX:
        _HOSTS.clear()
    _HOSTS.add(host)
    return True


def _key_ok(key: Any, degrade: bool) -> bool:
    if type(key) is not dict:
        return False
    source = key.get("source")
    if source == "ip" or (degrade and source == "request"):
        return tuple(key) == ("source",)
    if tuple(key) != ("name", "source"):
        return False
    name = key["name"]
    if type(name) is not str:
        return False
    if source == "header":
        return name in _HEADER_NAMES or _learn(_HEADER_NAMES, name, 128, _LOWER_HEADER_CHARS)
    return (source == "cookie" or source == "arg") and (name in _TOKENS or _learn(_TOKENS, name, 128, _TOKEN_CHARS))


def _window_ok(window: Any) -> bool:
    if type(window) is not dict or tuple(window) not in _WINDOW_KEYS:
        return False
    start, end = window.get("start"), window.get("end")  # None: absent (a None present fails _int_ok)
    if "start" in window and not _int_ok(start, 0, MAX_TIME):
        return False
    if "end" in window and not _int_ok(end, 0, MAX_TIME):
        return False
    return start is None or end is None or start < end


def _items_ok(value: Any, max_items: int, min_items: int = 1) -> bool:
    return type(value) is list and min_items <= len(value) <= max_items


def _split_ok(rule: dict) -> bool:
    if "window" in rule and not _window_ok(rule["window"]):
        return False
    default, policies = rule["default"], rule["policies"]
    if type(default) is not str or (default not in _UPSTREAMS and not _learn(_UPSTREAMS, default, 128, _UPSTREAM_CHARS)):
        return False
    if not _key_ok(rule["key"], False) or type(policies) is not list or len(policies) > MAX_POLICIES:
        return False
    for p in policies:
        if type(p) is not dict:
            return False
        ptype = p.get("type")
        if ptype == "percent":
            if not _percent_policy_ok(p):
                return False
            continue
        if type(ptype) is not str or tuple(p) != _POLICY_KEYS.get(ptype):
            return False
        upstream = p["upstream"]
        if type(upstream) is not str or (upstream not in _UPSTREAMS
                                         and not _learn(_UPSTREAMS, upstream, 128, _UPSTREAM_CHARS)):
            return False
        if not _POLICY_CHECKS[ptype](p):
            return False
    return True


def _uid_range_ok(p: dict) -> bool:
    ranges = p["ranges"]
    if not _items_ok(ranges, MAX_LIST_ITEMS):
        return False
    for pair in ranges:
        if type(pair) is not list or len(pair) != 2:
            return False
        lo, hi = pair
        if type(lo) is not int or type(hi) is not int or not 0 <= lo <= hi <= MAX_UID:
            return False
    return True


def _uid_suffix_ok(p: dict) -> bool:
    suffixes = p["suffixes"]
    if type(suffixes) is not list or not 0 < len(suffixes) <= MAX_LIST_ITEMS:
        return False
    for s in suffixes:
        if type(s) is not str or (s not in _SUFFIXES and not _learn(_SUFFIXES, s, 32, _TOKEN_CHARS)):
            return False
    return True


def _ip_cidr_ok(p: dict) -> bool:
    cidrs = p["cidrs"]
    if not _items_ok(cidrs, MAX_LIST_ITEMS):
        return False
    for cidr in cidrs:
        if type(cidr) is not str or not 0 < len(cidr) <= 64:
            return False
        try:
            if canonical_cidr(cidr) != cidr:
                return False
        except ValueError:
            return False
    return True


def _match_ok(p: dict) -> bool:
    name, values = p["name"], p["values"]
    if type(name) is not str or not _items_ok(values, MAX_LIST_ITEMS):
        return False
    if p["type"] == "header":
        if name not in _HEADER_NAMES and not _learn(_HEADER_NAMES, name, 128, _LOWER_HEADER_CHARS):
            return False
    elif name not in _TOKENS and not _learn(_TOKENS, name, 128, _TOKEN_CHARS):
        return False
    for v in values:
        if not _text_ok(v, MAX_TEXT, True):
            return False
    return True


_POLICY_CHECKS = {"uid_range": _uid_range_ok, "uid_suffix": _uid_suffix_ok, "ip_cidr": _ip_cidr_ok,
                  "header": _match_ok, "cookie": _match_ok, "arg": _match_ok}


def _percent_policy_ok(p: dict) -> bool:
    if tuple(p) not in _PERCENT_KEYS or ("salt" in p and not _text_ok(p["salt"], 64, True)):
        return False
    buckets = p["buckets"]
    if not _items_ok(buckets, MAX_BUCKETS):
        return False
    total = 0
    for b in buckets:
        if type(b) is not dict or tuple(b) != _BUCKET_KEYS or not _upstream_ok(b["upstream"]):
            return False
        w = b["weight"]
        if type(w) is not int or not 0 < w <= BUCKETS:
            return False
        total += w
    if total > BUCKETS:
        return False
    return "ramp" not in p or _ramp_ok(p["ramp"], {b["upstream"] for b in buckets})


def _ramp_ok(ramp: Any, canary: set[str]) -> bool:
    if type(ramp) is not dict:
        return False
    keys, mode = tuple(ramp), ramp.get("mode")
    if mode == "linear":
        if keys not in _RAMP_LINEAR:
            return False
    elif mode != "step" or keys not in _RAMP_STEP or not _int_ok(ramp["steps"], 1, MAX_RAMP_STEPS):
        return False
    start, end = ramp["start"], ramp["end"]
    if not (_int_ok(start, 0, MAX_TIME) and _int_ok(end, 0, MAX_TIME) and start < end <= start + MAX_RAMP_SPAN
            and _int_ok(ramp["from"], 0, BUCKETS) and _int_ok(ramp["to"], 0, BUCKETS)):
        return False
    return "guard" not in ramp or _guard_ok(ramp["guard"], canary)


def _guard_ok(guard: Any, canary: set[str]) -> bool:
    if type(guard) is not dict or tuple(guard) not in _GUARD_KEYS:
        return False
    control = guard["control"]
    breach = guard["on_breach"]
    if not _upstream_ok(control) or control in canary or type(breach) is not str or breach not in _BREACH:
        return False
    for name, (lo, hi) in GUARD_INTS.items():
        if not _int_ok(guard[name], lo, hi):
            return False
    for name, (lo, hi, places) in GUARD_LIMITS.items():
        if name in guard and not _decimal_ok(guard[name], lo, hi, 10**places):
            return False
    return True


def _degrade_ok(rule: dict) -> bool:
    if not (_action_ok(rule["action"]) and _decimal_ok(rule["percent"], 0, 100, 100)):
        return False
    if "window" in rule and not _window_ok(rule["window"]):
        return False
    if "key" in rule and not _key_ok(rule["key"], True):
        return False
    if "salt" in rule and not _text_ok(rule["salt"], 64, True):
        return False
    if "scope" in rule:  # namespace scope: route * /, no breaker
        route = rule["route"]  # not checked yet (canonical_rule: _route_ok)
        return (rule["scope"] == NAMESPACE_SCOPE and type(rule["scope"]) is str and type(route) is dict
                and route.get("host") == "*" and route.get("path") == "/" and "breaker" not in rule)
    return "breaker" not in rule or _breaker_ok(rule["breaker"])


def _action_ok(action: Any) -> bool:
    if type(action) is not dict:
        return False
    atype, keys = action.get("type"), tuple(action)
    if atype == "upstream":
        return keys == ("type", "upstream") and _upstream_ok(action["upstream"])
    if atype == "redirect":
        loc = action.get("location")
        return (keys == ("location", "status", "type") and type(action["status"]) is int
                and action["status"] in _REDIRECTS and type(loc) is str and 0 < len(loc) <= 2048
                and loc.startswith(_LOCATION_STARTS) and _URI_CHARS.issuperset(loc))
    if atype == "reject":
        return (keys in _REJECT_KEYS and _int_ok(action["status"], 400, 599)
                and ("retry_after" not in action or _int_ok(action["retry_after"], 0, 86_400)))
    return atype == "static" and _static_ok(action, keys)


def _static_ok(action: dict, keys: tuple) -> bool:
    status, body = action.get("status"), action.get("body")
    if not _int_ok(status, 200, 599) or not _text_ok(body, MAX_BODY_BYTES * 4, False):
        return False
    if status in _BODILESS:
        if keys != _STATIC_BODILESS_KEYS or body != "":
            return False
    elif keys != _STATIC_KEYS or not _header_value_ok(action["content_type"], 128) \
            or (len(body) > MAX_BODY_BYTES // 4 and len(body.encode()) > MAX_BODY_BYTES):
        return False
    return _headers_ok(action["headers"])


def _header_value_ok(value: Any, max_len: int) -> bool:
    return (type(value) is str and 0 < len(value) <= max_len and _VALUE_CHARS.issuperset(value)
            and value[0] not in " \t" and value[-1] not in " \t")


def _headers_ok(headers: Any) -> bool:
    if type(headers) is not dict or len(headers) > MAX_HEADERS:
        return False
    seen = set()
    previous = ""
    for name, value in headers.items():
        if type(name) is not str or not 0 < len(name) <= 128 or not _HEADER_CHARS.issuperset(name) \
                or name <= previous or not _header_value_ok(value, MAX_TEXT):
            return False
        lower = name.lower()  # letters, digits and '-' only: str.lower is ascii_lower here
        if lower in _GATEWAY_HEADERS or lower in seen:
            return False
        seen.add(lower)
        previous = name
    return True


def _breaker_ok(breaker: Any) -> bool:
    if type(breaker) is not dict or tuple(breaker) not in _BREAKER_KEYS:
        return False
    for name, hi in BREAKER_LIMITS.items():
        if name in breaker and not _int_ok(breaker[name], 1, hi):
            return False
    for name in ("error_ratio", "slow_ratio"):
        if name in breaker:
            value = breaker[name]
            if type(value) is not int and type(value) is not float or not 0 <= value <= 1:
                return False
    return True

"""A one-pass check of a rule already in canonical form: the cold path of a gateway loading stored bytes.

ruleadmin stores every rule canonical (`validate_rule`'s output: defaults filled in, keys sorted, hosts,
header names, CIDRs and decimals in canonical form), so `validate_rule(stored) == stored`. `stored_rule`
checks exactly that, with no error paths: it returns the rule, typed, when it is sure `validate_rule` would
accept it and return an equal dict (same keys in the same order, same types), and None otherwise — anything
unusual, invalid or not canonical. `decode_rule` then runs the full validator, so what it accepts, refuses and
says is always what `rulegate.schema.decode_rule` does. tests/unit/test_schema_fast.py holds the two to the
same results.

The check is in two steps. msgspec (C) decodes the bytes into typed structs (`StoredRule`), which checks every
type and refuses unknown fields, and encodes them again: only bytes equal to packb's own spelling of the rule
pass (keys in canonical order, none repeated, the shortest int, float64, str never bin), so what passes holds
exactly the struct's content whatever the decoder would make of odd spellings. Python then checks what a type
cannot say: which fields each kind and policy type needs, ranges, characters, canonical CIDRs and decimals.
A load places the typed rule without building a dict (`rulegate.evaluator.place_stored`: the agent's load of
bench/reload.py's rules 64.4k → 51.6k instructions a rule against the dict walk this replaced, bench/REPORT.md);
`decode_canonical` gives the dict.
"""
from __future__ import annotations

import re
from typing import Any

import msgpack
import msgspec
from msgspec import UNSET, UnsetType

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


_BREAKER_KEYS = frozenset(_sorted_keys(("window", "min_requests", "open_seconds", "probes"), extra) for extra in
                          (("error_ratio",), ("slow_ms", "slow_ratio"), ("error_ratio", "slow_ms", "slow_ratio")))
_BUCKET_KEYS = ("upstream", "weight")
_RAMP_LINEAR = {_sorted_keys(("start", "end", "from", "to", "mode"), g) for g in ((), ("guard",))}
_RAMP_STEP = {_sorted_keys(("start", "end", "from", "to", "mode", "steps"), g) for g in ((), ("guard",))}
_GUARD_KEYS = frozenset(_sorted_keys(("control", "min_requests"), tuple(GUARD_DEFAULTS), limits)
                        for limits in (("max_error_increase",), ("max_p95_ratio",), tuple(GUARD_LIMITS)))
_STATIC_KEYS = ("body", "content_type", "headers", "status", "type")
_STATIC_BODILESS_KEYS = ("body", "headers", "status", "type")
_REJECT_KEYS = frozenset({("status", "type"), ("retry_after", "status", "type")})


# A stored rule's shape, for msgspec's typed decoder (C). Each struct lists every field its object may have, in
# canonical (sorted) order; those a kind or a policy type may lack default to UNSET, which encoding leaves out.
# The decoder checks the types and refuses unknown fields. `stored_rule` then encodes the struct again and
# compares the bytes: equal bytes prove the keys were in canonical order, none repeated, and every value spelled as
# packb spells it, so the untyped decode of raw is the struct's content. Which fields each kind and policy type
# needs, and each value's range and characters, are the Python checks below. The objects a load never reads (a
# degrade's action and breaker, a percent policy's buckets and ramp) decode as plain dicts and lists.
class _Route(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    host: str
    methods: list[str] | UnsetType = UNSET
    path: str


class _Key(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    name: str | UnsetType = UNSET
    source: str


class _Window(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    end: int | UnsetType = UNSET
    start: int | UnsetType = UNSET


class _Policy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    buckets: list | UnsetType = UNSET
    cidrs: list[str] | UnsetType = UNSET
    name: str | UnsetType = UNSET
    ramp: dict | UnsetType = UNSET
    ranges: list[list[int]] | UnsetType = UNSET
    salt: str | UnsetType = UNSET
    suffixes: list[str] | UnsetType = UNSET
    type: str
    upstream: str | UnsetType = UNSET
    values: list[str] | UnsetType = UNSET


class StoredRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    """A canonical rule, typed: what `stored_rule` returns."""
    action: dict | UnsetType = UNSET
    breaker: dict | UnsetType = UNSET
    default: str | UnsetType = UNSET
    description: str
    enabled: bool
    id: str
    key: _Key | UnsetType = UNSET
    kind: str
    percent: int | float | UnsetType = UNSET
    policies: list[_Policy] | UnsetType = UNSET
    route: _Route
    salt: str | UnsetType = UNSET
    scope: str | UnsetType = UNSET
    updated_at: int
    updated_by: str
    window: _Window | UnsetType = UNSET


_typed_decode = msgspec.msgpack.Decoder(StoredRule).decode
_encode = msgspec.msgpack.Encoder().encode
_to_builtins = msgspec.to_builtins
_MAP16 = 0xDE  # msgspec heads a struct of more than 15 fields with a map16 (it knows the count once written)


def decode_rule(raw: bytes, *, where: str = "rule") -> dict:
    """Return what `rulegate.schema.decode_rule(raw, where=where)` returns, raising what it raises.

    Bytes holding a canonical rule skip the full validator; anything else goes through it."""
    rule = decode_canonical(raw)
    return rule if rule is not None else full_decode_rule(raw, where=where)


def decode_canonical(raw: bytes) -> dict | None:
    """Return the rule stored as raw when it is a canonical rule (what `rulegate.schema.decode_rule` returns), else
    None: bytes that are not msgpack, not a rule, or a rule not in canonical form (decode those with the former)."""
    rule = stored_rule(raw)
    return None if rule is None else _to_builtins(rule)  # dicts, lists and scalars, keys in the struct's order


def decode_known_canonical(raw: bytes) -> dict:
    """Return the rule stored as raw, bytes `decode_canonical` returned a rule for before (a rule placed
    pending: rulegate.evaluator.place_rule): what it returned, without checking again."""
    return _decode(raw)


def canonical_rule(data: Any) -> dict | None:
    """Return data when `validate_rule(data) == data` for sure (keys in the same order, same types), else None."""
    try:
        raw = msgpack.packb(data, use_bin_type=True)  # a Packer of its own: its buffer is never shared
    except (TypeError, ValueError, OverflowError, UnicodeEncodeError):  # nothing a stored rule holds
        return None
    return data if stored_rule(raw) is not None else None


def stored_rule(raw: bytes) -> StoredRule | None:
    """Return the rule stored as raw, typed, when raw holds a canonical rule (`decode_canonical`), else None."""
    if type(raw) is not bytes or len(raw) > MAX_ENCODED_RULE:
        return None
    try:
        rule = _typed_decode(raw)
    except (msgspec.DecodeError, RecursionError):  # msgspec.ValidationError is a DecodeError
        return None
    again = _encode(rule)
    if again[0] == _MAP16:  # the same map with a fixmap head (a rule has at most 15 fields)
        if again[1] or raw[0] != 0x80 | again[2] or again[3:] != raw[1:]:
            return None
    elif again != raw:
        return None
    return rule if _rule_ok(rule) else None


def stored_guarded(rule: StoredRule) -> bool:
    """`rulegate.ramps.has_guard` of a rule `stored_rule` returned."""
    if rule.kind == "split":
        for policy in rule.policies:
            if policy.ramp is not UNSET and "guard" in policy.ramp:
                return True
    return False


def _rule_ok(rule: StoredRule) -> bool:
    kind = rule.kind
    if kind == "split":
        if (rule.action is not UNSET or rule.percent is not UNSET or rule.salt is not UNSET
                or rule.breaker is not UNSET or rule.scope is not UNSET or not _split_ok(rule)):
            return False
    elif kind != "degrade" or rule.default is not UNSET or rule.policies is not UNSET or not _degrade_ok(rule):
        return False
    rule_id, description, by = rule.id, rule.description, rule.updated_by
    if not 0 < len(rule_id) <= 64 or rule_id[0] not in _ID_FIRST or not _ID_REST.issuperset(rule_id):
        return False
    if not _route_ok(rule.route):
        return False
    if description != "" and not _text_ok(description, MAX_TEXT, False):
        return False
    if by != "" and not _text_ok(by, 128, True):
        return False
    return 0 <= rule.updated_at <= MAX_TIME


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


def _route_ok(route: _Route) -> bool:
    methods = route.methods
    if methods is not UNSET:
        if not 0 < len(methods) <= len(METHODS):
            return False
        for m in methods:
            if m not in _METHODS:
                return False
        if len(set(methods)) != len(methods):
            return False
    path, host = route.path, route.host
    return (path in _PATHS or _path_ok(path)) and (host in _HOSTS or _host_ok(host))


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


def _key_ok(key: _Key, degrade: bool) -> bool:
    source, name = key.source, key.name
    if source == "ip" or (degrade and source == "request"):
        return name is UNSET
    if name is UNSET:
        return False
    if source == "header":
        return name in _HEADER_NAMES or _learn(_HEADER_NAMES, name, 128, _LOWER_HEADER_CHARS)
    return (source == "cookie" or source == "arg") and (name in _TOKENS or _learn(_TOKENS, name, 128, _TOKEN_CHARS))


def _window_ok(window: _Window) -> bool:
    start, end = window.start, window.end
    if start is UNSET:
        return end is not UNSET and 0 <= end <= MAX_TIME
    if not 0 <= start <= MAX_TIME:
        return False
    return end is UNSET or start < end <= MAX_TIME


def _items_ok(value: Any, max_items: int, min_items: int = 1) -> bool:
    return type(value) is list and min_items <= len(value) <= max_items


def _split_ok(rule: StoredRule) -> bool:
    key, policies, default = rule.key, rule.policies, rule.default
    if key is UNSET or policies is UNSET or default is UNSET or len(policies) > MAX_POLICIES:
        return False
    if rule.window is not UNSET and not _window_ok(rule.window):
        return False
    if default not in _UPSTREAMS and not _learn(_UPSTREAMS, default, 128, _UPSTREAM_CHARS):
        return False
    if not _key_ok(key, False):
        return False
    for p in policies:
        ptype = p.type
        if ptype == "percent":
            if not _percent_policy_ok(p):
                return False
            continue
        upstream = p.upstream
        if (p.buckets is not UNSET or p.ramp is not UNSET or p.salt is not UNSET or upstream is UNSET
                or upstream not in _UPSTREAMS and not _learn(_UPSTREAMS, upstream, 128, _UPSTREAM_CHARS)):
            return False
        check = _POLICY_CHECKS.get(ptype)
        if check is None or not check(p):
            return False
    return True


def _uid_range_ok(p: _Policy) -> bool:
    ranges = p.ranges
    if (ranges is UNSET or p.cidrs is not UNSET or p.name is not UNSET or p.suffixes is not UNSET
            or p.values is not UNSET or not 0 < len(ranges) <= MAX_LIST_ITEMS):
        return False
    for pair in ranges:
        if len(pair) != 2 or not 0 <= pair[0] <= pair[1] <= MAX_UID:
            return False
    return True


def _uid_suffix_ok(p: _Policy) -> bool:
    suffixes = p.suffixes
    if (suffixes is UNSET or p.cidrs is not UNSET or p.name is not UNSET or p.ranges is not UNSET
            or p.values is not UNSET or not 0 < len(suffixes) <= MAX_LIST_ITEMS):
        return False
    for s in suffixes:
        if s not in _SUFFIXES and not _learn(_SUFFIXES, s, 32, _TOKEN_CHARS):
            return False
    return True


def _ip_cidr_ok(p: _Policy) -> bool:
    cidrs = p.cidrs
    if (cidrs is UNSET or p.name is not UNSET or p.ranges is not UNSET or p.suffixes is not UNSET
            or p.values is not UNSET or not 0 < len(cidrs) <= MAX_LIST_ITEMS):
        return False
    for cidr in cidrs:
        if not 0 < len(cidr) <= 64:
            return False
        try:
            if canonical_cidr(cidr) != cidr:
                return False
        except ValueError:
            return False
    return True


def _match_ok(p: _Policy) -> bool:
    name, values = p.name, p.values
    if (name is UNSET or values is UNSET or p.cidrs is not UNSET or p.ranges is not UNSET
            or p.suffixes is not UNSET or not 0 < len(values) <= MAX_LIST_ITEMS):
        return False
    if p.type == "header":
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


def _percent_policy_ok(p: _Policy) -> bool:
    buckets, salt = p.buckets, p.salt
    if (buckets is UNSET or p.cidrs is not UNSET or p.name is not UNSET or p.ranges is not UNSET
            or p.suffixes is not UNSET or p.upstream is not UNSET or p.values is not UNSET
            or salt is not UNSET and not _text_ok(salt, 64, True) or not 0 < len(buckets) <= MAX_BUCKETS):
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
    return p.ramp is UNSET or _ramp_ok(p.ramp, {b["upstream"] for b in buckets})


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


def _degrade_ok(rule: StoredRule) -> bool:
    action, percent = rule.action, rule.percent
    if action is UNSET or percent is UNSET or not _action_ok(action) or not _decimal_ok(percent, 0, 100, 100):
        return False
    if rule.window is not UNSET and not _window_ok(rule.window):
        return False
    if rule.key is not UNSET and not _key_ok(rule.key, True):
        return False
    if rule.salt is not UNSET and not _text_ok(rule.salt, 64, True):
        return False
    if rule.scope is not UNSET:  # namespace scope: route * /, no breaker
        route = rule.route
        return rule.scope == NAMESPACE_SCOPE and route.host == "*" and route.path == "/" and rule.breaker is UNSET
    return rule.breaker is UNSET or _breaker_ok(rule.breaker)


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

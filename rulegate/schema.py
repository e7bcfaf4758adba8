"""Rule schema v1: validation with field paths, canonical forms and canonical msgpack encoding.

A rule is a plain dict (JSON-shaped). `validate_rule` returns the canonical dict (defaults filled
in, hosts/CIDRs/header names in canonical form) or raises ValidationError listing every problem
with its field path; it never raises anything else, whatever JSON it is given. What it returns is
exactly what every gateway can apply (lua/rulegate/schema.lua accepts all of it). The field
reference lives in docs/rules.md.
"""
from __future__ import annotations

from typing import Any, Callable

import msgpack

from .errors import CorruptDataError, ValidationError
from .hostnames import ascii_lower, canonical_rule_host
from .iputil import canonical_cidr
from .ramps import HALT_MODES
from .ramps import guarded_policies as guarded_policies  # re-exported: the ramp math lives in ramps.py
from .ramps import halted_ramp as halted_ramp
from .ramps import ramp_share as ramp_share

MAX_RULES_PER_NAMESPACE = 20_000
MAX_POLICIES = 32
MAX_BUCKETS = 100
MAX_LIST_ITEMS = 256
MAX_HEADERS = 32
MAX_BODY_BYTES = 64 * 1024
MAX_TEXT = 1024
MAX_ENCODED_RULE = 96 * 1024
BUCKETS = 10_000
MAX_UID = 2**53 - 1  # every integer up to here is exact in a Lua (LuaJIT) number
BODILESS_STATUSES = (204, 205, 304)
MAX_TIME = 2**40  # epoch seconds (windows, ramps, updated_at)
MAX_RAMP_SPAN = 366 * 86_400  # keeps every ramp product below 2^53 (exact in LuaJIT doubles)
MAX_RAMP_STEPS = 1000
RAMP_MODES = ("linear", "step")
GUARD_INTS = {"min_requests": (1, 1_000_000), "window": (10, 3600)}
GUARD_LIMITS = {"max_error_increase": (0, 1, 4), "max_p95_ratio": (1, 100, 2)}  # lo, hi, decimals
GUARD_DEFAULTS = {"window": 60, "on_breach": "revert"}
GUARD_BREACH = HALT_MODES

KINDS = ("split", "degrade")
KEY_SOURCES = ("header", "cookie", "arg", "ip")
BREAKER_LIMITS = {"window": 600, "min_requests": 1_000_000, "slow_ms": 3_600_000, "open_seconds": 3600,
                  "probes": 1000}
DEGRADE_KEY_SOURCES = KEY_SOURCES + ("request",)  # "request": a per-request id, the default of a degrade
MATCH_POLICIES = ("header", "cookie", "arg")
POLICY_TYPES = ("uid_range", "uid_suffix", "ip_cidr", "header", "cookie", "arg", "percent")
ACTIONS = ("static", "redirect", "upstream", "reject")
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

_ID_FIRST = set("abcdefghijklmnopqrstuvwxyz0123456789")
_ID_REST = _ID_FIRST | set("_.-")
_UPSTREAM_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")
_TOKEN_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~")
_HEADER_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_PRINTABLE = set(map(chr, range(0x20, 0x7F)))
_VALUE_CHARS = _PRINTABLE | {"\t"}
_URI_CHARS = _PRINTABLE - {" "}
_PATH_CHARS = _URI_CHARS - {"?", "#"}
_GATEWAY_HEADERS = ("content-type", "content-length", "transfer-encoding", "connection")


def is_valid_id(value: object) -> bool:
    """Return True when value is a rule id or namespace name: [a-z0-9][a-z0-9_.-]{0,63}."""
    return (isinstance(value, str) and 0 < len(value) <= 64 and value[0] in _ID_FIRST
            and _ID_REST.issuperset(value))


class _Checker:
    """Collects errors by field path while walking one rule."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def fail(self, path: str, message: str) -> None:
        self.errors.setdefault(path or "<root>", message)

    def obj(self, value: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...]) -> dict | None:
        if not isinstance(value, dict):
            self.fail(path, "must be an object")
            return None
        for name in value:
            if name not in required and name not in optional:
                self.fail(_join(path, str(name)), "unknown field")
        for name in required:
            if name not in value:
                self.fail(_join(path, name), "is required")
        return value

    def text(self, value: Any, path: str, *, max_len: int = MAX_TEXT, min_len: int = 0,
             chars: set[str] | None = None, single_line: bool = True) -> str | None:
        if not isinstance(value, str):
            self.fail(path, "must be a string")
            return None
        if len(value) < min_len:
            self.fail(path, "must not be empty" if min_len == 1 else f"must be at least {min_len} characters")
            return None
        if len(value) > max_len:
            self.fail(path, f"must be at most {max_len} characters")
            return None
        if chars is not None and not chars.issuperset(value):
            self.fail(path, "contains characters that are not allowed")
            return None
        if not value.isascii() and not _is_unicode(value):
            self.fail(path, "must be valid Unicode text (no lone surrogates)")
            return None
        if "\x00" in value or (single_line and ("\r" in value or "\n" in value)):
            self.fail(path, "must not contain control characters")
            return None
        return value

    def integer(self, value: Any, path: str, lo: int, hi: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, "must be an integer")
            return None
        if not lo <= value <= hi:
            self.fail(path, f"must be between {lo} and {hi}")
            return None
        return value

    def items(self, value: Any, path: str, max_items: int, min_items: int = 1) -> list:
        if not isinstance(value, list):
            self.fail(path, "must be a list")
            return []
        if len(value) < min_items:
            self.fail(path, f"must have at least {min_items} item{'s' if min_items > 1 else ''}")
        if len(value) > max_items:
            self.fail(path, f"must have at most {max_items} items")
            return []
        return value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _is_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _copy(value: Any, depth: int = 0) -> Any:
    """Return a copy of the JSON containers a rule can hold (deeper ones are invalid anyway)."""
    if depth > 6:
        return value
    if isinstance(value, dict):  # scalars are kept as they are without a call each
        return {k: _copy(v, depth + 1) if isinstance(v, _JSON_CONTAINERS) else v for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v, depth + 1) if isinstance(v, _JSON_CONTAINERS) else v for v in value]
    return value


_JSON_CONTAINERS = (dict, list)


def _header_name(c: _Checker, value: Any, path: str) -> str | None:
    """Check a request header name a rule reads; return it lower-cased (its canonical form)."""
    name = c.text(value, path, max_len=128, min_len=1)
    if name is None:
        return None
    if not _HEADER_CHARS.issuperset(name):
        c.fail(path, "must be a header name of letters, digits and '-' (nginx drops names with '_', '.' "
                     "or other characters)")
        return None
    return ascii_lower(name)


def _upstream(c: _Checker, value: Any, path: str) -> None:
    c.text(value, path, max_len=128, min_len=1, chars=_UPSTREAM_CHARS)


def _check_route(c: _Checker, value: Any) -> None:
    route = c.obj(value, "route", ("host", "path"), ("methods",))
    if route is None:
        return
    if "host" in route and c.text(route["host"], "route.host", max_len=1024, min_len=1) is not None:
        try:
            route["host"] = canonical_rule_host(route["host"])
        except ValueError as exc:
            c.fail("route.host", str(exc))
    path = route.get("path")
    if "path" in route and c.text(path, "route.path", max_len=512, min_len=1) is not None:
        if not path.startswith("/") or not _PATH_CHARS.issuperset(path):
            c.fail("route.path", "must start with '/' and hold only printable ASCII without spaces, '?' or '#' "
                                 "(percent-encode other bytes as clients send them)")
    if "methods" in route:
        methods = c.items(route["methods"], "route.methods", len(METHODS))
        for i, m in enumerate(methods):
            if not isinstance(m, str) or m not in METHODS:
                c.fail(f"route.methods[{i}]", f"must be one of {', '.join(METHODS)}")
        if len(set(map(str, methods))) != len(methods):
            c.fail("route.methods", "must not repeat a method")


def _check_key(c: _Checker, value: Any, path: str, sources: tuple[str, ...] = KEY_SOURCES) -> None:
    key = c.obj(value, path, ("source",), ("name",))
    if key is None:
        return
    source = key.get("source")
    if not isinstance(source, str) or source not in sources:
        c.fail(_join(path, "source"), f"must be one of {', '.join(sources)}")
    elif source in ("ip", "request"):
        if "name" in key:
            c.fail(_join(path, "name"), f"is not used with source '{source}'")
    elif "name" not in key:
        c.fail(_join(path, "name"), "is required")
    elif source == "header":
        name = _header_name(c, key["name"], _join(path, "name"))
        if name is not None:
            key["name"] = name
    else:
        c.text(key["name"], _join(path, "name"), max_len=128, min_len=1, chars=_TOKEN_CHARS)


def _check_uid_range(c: _Checker, p: dict, path: str) -> None:
    for i, pair in enumerate(c.items(p.get("ranges"), f"{path}.ranges", MAX_LIST_ITEMS)):
        ip = f"{path}.ranges[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            c.fail(ip, "must be a [lo, hi] pair")
            continue
        lo = c.integer(pair[0], f"{ip}[0]", 0, MAX_UID)
        hi = c.integer(pair[1], f"{ip}[1]", 0, MAX_UID)
        if lo is not None and hi is not None and lo > hi:
            c.fail(ip, "lo must be <= hi")


def _check_uid_suffix(c: _Checker, p: dict, path: str) -> None:
    for i, s in enumerate(c.items(p.get("suffixes"), f"{path}.suffixes", MAX_LIST_ITEMS)):
        c.text(s, f"{path}.suffixes[{i}]", max_len=32, min_len=1, chars=_TOKEN_CHARS)


def _check_ip_cidr(c: _Checker, p: dict, path: str) -> None:
    cidrs = c.items(p.get("cidrs"), f"{path}.cidrs", MAX_LIST_ITEMS)
    for i, cidr in enumerate(cidrs):
        if c.text(cidr, f"{path}.cidrs[{i}]", max_len=64, min_len=1) is None:
            continue
        try:
            cidrs[i] = canonical_cidr(cidr)
        except ValueError as exc:
            c.fail(f"{path}.cidrs[{i}]", f"is not a valid CIDR ({exc})")


def _check_match(c: _Checker, p: dict, path: str) -> None:
    if p["type"] == "header":
        name = _header_name(c, p.get("name"), f"{path}.name")
        if name is not None:
            p["name"] = name
    else:
        c.text(p.get("name"), f"{path}.name", max_len=128, min_len=1, chars=_TOKEN_CHARS)
    for i, v in enumerate(c.items(p.get("values"), f"{path}.values", MAX_LIST_ITEMS)):
        c.text(v, f"{path}.values[{i}]", max_len=MAX_TEXT)


def _check_percent_policy(c: _Checker, p: dict, path: str) -> None:
    if "salt" in p:
        c.text(p["salt"], f"{path}.salt", max_len=64)
    total = 0
    for i, b in enumerate(c.items(p.get("buckets"), f"{path}.buckets", MAX_BUCKETS)):
        bp = f"{path}.buckets[{i}]"
        bucket = c.obj(b, bp, ("upstream", "weight"), ())
        if bucket is None:
            continue
        if "upstream" in bucket:
            _upstream(c, bucket["upstream"], f"{bp}.upstream")
        w = bucket.get("weight")
        if "weight" in bucket:
            if isinstance(w, bool) or not isinstance(w, int):
                c.fail(f"{bp}.weight", "must be an integer")
            elif w <= 0:
                c.fail(f"{bp}.weight", "must be > 0")
            elif w > BUCKETS:
                c.fail(f"{bp}.weight", f"must be <= {BUCKETS}")
            else:
                total += w
    if total > BUCKETS:
        c.fail(f"{path}.buckets", f"weights sum to {total}; they must sum to at most {BUCKETS}")
    if "ramp" in p:
        _check_ramp(c, p["ramp"], f"{path}.ramp")
        if isinstance(p["ramp"], dict) and "guard" in p["ramp"]:
            _check_guard(c, p["ramp"], f"{path}.ramp.guard", _bucket_upstreams(p))


def _check_ramp(c: _Checker, value: Any, path: str) -> None:
    ramp = c.obj(value, path, ("start", "end", "from", "to", "mode"), ("steps", "guard"))
    if ramp is None:
        return
    start = c.integer(ramp["start"], f"{path}.start", 0, MAX_TIME) if "start" in ramp else None
    end = c.integer(ramp["end"], f"{path}.end", 0, MAX_TIME) if "end" in ramp else None
    if start is not None and end is not None:
        if end <= start:
            c.fail(f"{path}.end", f"must be after {path}.start")
        elif end - start > MAX_RAMP_SPAN:
            c.fail(f"{path}.end", f"must be at most {MAX_RAMP_SPAN} seconds (366 days) after {path}.start")
    for name in ("from", "to"):
        if name in ramp:
            c.integer(ramp[name], f"{path}.{name}", 0, BUCKETS)
    mode = ramp.get("mode")
    if "mode" in ramp and (not isinstance(mode, str) or mode not in RAMP_MODES):
        c.fail(f"{path}.mode", f"must be one of {', '.join(RAMP_MODES)}")
    elif mode == "linear" and "steps" in ramp:
        c.fail(f"{path}.steps", "is only used with mode 'step'")
    elif mode == "step":
        if "steps" not in ramp:
            c.fail(f"{path}.steps", "is required with mode 'step'")
        else:
            c.integer(ramp["steps"], f"{path}.steps", 1, MAX_RAMP_STEPS)


def _bucket_upstreams(p: dict) -> set[str]:
    buckets = p.get("buckets") if isinstance(p.get("buckets"), list) else []
    return {b["upstream"] for b in buckets if isinstance(b, dict) and isinstance(b.get("upstream"), str)}


def _check_guard(c: _Checker, ramp: dict, path: str, bucket_upstreams: set) -> None:
    """Check a ramp's guard (docs/rules.md "Guards"); store it canonical (defaults, limits as _decimal gives)."""
    guard = c.obj(ramp["guard"], path, ("control", "min_requests"), tuple(GUARD_DEFAULTS) + tuple(GUARD_LIMITS))
    if guard is None:
        return
    if "control" in guard:
        _upstream(c, guard["control"], f"{path}.control")
        if isinstance(guard["control"], str) and guard["control"] in bucket_upstreams:
            c.fail(f"{path}.control", "must not be one of this policy's bucket upstreams (the canary)")
    for name, (lo, hi) in GUARD_INTS.items():
        if name in guard:
            c.integer(guard[name], f"{path}.{name}", lo, hi)
    for name, (lo, hi, places) in GUARD_LIMITS.items():
        if name in guard:
            value = _decimal(c, guard[name], f"{path}.{name}", lo, hi, places)
            if value is not None:
                guard[name] = value
    if "on_breach" in guard and (not isinstance(guard["on_breach"], str) or guard["on_breach"] not in GUARD_BREACH):
        c.fail(f"{path}.on_breach", f"must be one of {', '.join(GUARD_BREACH)}")
    if not any(name in guard for name in GUARD_LIMITS):
        c.fail(path, "needs max_error_increase, max_p95_ratio or both")
    ramp["guard"] = {**GUARD_DEFAULTS, **guard}


_POLICY_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], Callable]] = {
    "uid_range": (("type", "ranges", "upstream"), (), _check_uid_range),
    "uid_suffix": (("type", "suffixes", "upstream"), (), _check_uid_suffix),
    "ip_cidr": (("type", "cidrs", "upstream"), (), _check_ip_cidr),
    "header": (("type", "name", "values", "upstream"), (), _check_match),
    "cookie": (("type", "name", "values", "upstream"), (), _check_match),
    "arg": (("type", "name", "values", "upstream"), (), _check_match),
    "percent": (("type", "buckets"), ("salt", "ramp"), _check_percent_policy),
}


def _check_policy(c: _Checker, value: Any, path: str) -> None:
    ptype = value.get("type") if isinstance(value, dict) else None
    if not isinstance(ptype, str) or ptype not in _POLICY_FIELDS:
        if isinstance(value, dict):
            c.fail(f"{path}.type", f"must be one of {', '.join(POLICY_TYPES)}")
        else:
            c.fail(path, "must be an object")
        return
    required, optional, check = _POLICY_FIELDS[ptype]
    policy = c.obj(value, path, required, optional)
    if policy is None:
        return
    if "upstream" in required and "upstream" in policy:
        _upstream(c, policy["upstream"], f"{path}.upstream")
    check(c, policy, path)


_ACTION_FIELDS = {
    "static": (("type", "status"), ("content_type", "headers", "body")),
    "redirect": (("type", "location"), ("status",)),
    "upstream": (("type", "upstream"), ()),
    "reject": (("type",), ("status", "retry_after")),
}


def _check_action(c: _Checker, value: Any) -> None:
    atype = value.get("type") if isinstance(value, dict) else None
    if not isinstance(atype, str) or atype not in _ACTION_FIELDS:
        c.fail("action.type" if isinstance(value, dict) else "action",
               f"must be one of {', '.join(ACTIONS)}" if isinstance(value, dict) else "must be an object")
        return
    action = c.obj(value, "action", *_ACTION_FIELDS[atype])
    if action is None:
        return
    if atype == "static":
        _check_static(c, action)
    elif atype == "redirect":
        status = action.get("status", 302)
        if isinstance(status, bool) or not isinstance(status, int):
            c.fail("action.status", "must be an integer")
        elif status not in REDIRECT_STATUSES:
            c.fail("action.status", f"must be one of {', '.join(map(str, REDIRECT_STATUSES))}")
        loc = c.text(action.get("location"), "action.location", max_len=2048, min_len=1)
        if loc is not None and not (loc.startswith(("http://", "https://", "/"))
                                    and _URI_CHARS.issuperset(loc)):
            c.fail("action.location", "must be an absolute URL or a path starting with '/', in printable ASCII "
                                      "without spaces (percent-encode other characters)")
    elif atype == "upstream":
        _upstream(c, action.get("upstream"), "action.upstream")
    else:
        if "status" in action:
            c.integer(action["status"], "action.status", 400, 599)
        if "retry_after" in action:
            c.integer(action["retry_after"], "action.retry_after", 0, 86_400)


def _check_static(c: _Checker, action: dict) -> None:
    status = c.integer(action.get("status"), "action.status", 200, 599)
    bodiless = status in BODILESS_STATUSES
    if "content_type" in action:
        if bodiless:
            c.fail("action.content_type", f"must not be set with status {status} (a response without a body)")
        else:
            _header_value(c, action["content_type"], "action.content_type", 128)
    body = c.text(action["body"], "action.body", max_len=MAX_BODY_BYTES * 4, single_line=False) \
        if "body" in action else None
    if body is not None and len(body.encode()) > MAX_BODY_BYTES:
        c.fail("action.body", f"must be at most {MAX_BODY_BYTES} bytes")
    elif body and bodiless:
        c.fail("action.body", f"must be empty with status {status} (a response without a body)")
    if "headers" in action:
        _check_headers(c, action["headers"])


def _header_value(c: _Checker, value: Any, path: str, max_len: int = MAX_TEXT) -> None:
    text = c.text(value, path, max_len=max_len, min_len=1)
    if text is None:
        return
    if not _VALUE_CHARS.issuperset(text):
        c.fail(path, "must be printable ASCII")
    elif text != text.strip(" \t"):
        c.fail(path, "must not start or end with whitespace")


def _check_headers(c: _Checker, value: Any) -> None:
    if not isinstance(value, dict):
        c.fail("action.headers", "must be an object of header name -> value")
        return
    if len(value) > MAX_HEADERS:
        c.fail("action.headers", f"must have at most {MAX_HEADERS} headers")
        return
    seen: dict[str, str] = {}
    for name, v in value.items():
        path = f"action.headers.{name}"
        if c.text(name, path, max_len=128, min_len=1, chars=_HEADER_CHARS) is None:
            continue
        lower = ascii_lower(name)
        if lower in _GATEWAY_HEADERS:
            c.fail(path, "is set by the gateway" + (" (use content_type)" if lower == "content-type" else ""))
        elif lower in seen:
            c.fail(path, f"repeats the header {seen[lower]} (header names are case-insensitive)")
        seen.setdefault(lower, name)
        _header_value(c, v, path)


_DECIMALS = {2: "two", 4: "four"}


def _decimal(c: _Checker, value: Any, path: str, lo: int, hi: int, places: int) -> int | float | None:
    """Return a number lo … hi with at most `places` decimals in canonical form: an integer when whole, else the
    double nearest to units / 10**places (what every runtime reads back exactly); None after a failure."""
    scale = 10**places
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        c.fail(path, "must be a number")
    elif not lo <= value <= hi:
        c.fail(path, f"must be between {lo} and {hi}")
    elif abs(value * scale - round(value * scale)) > 1e-6:
        c.fail(path, f"must have at most {_DECIMALS.get(places, places)} decimals")
    else:
        units = round(value * scale)
        return units // scale if units % scale == 0 else units / scale
    return None


def _check_percent(c: _Checker, rule: dict) -> None:
    value = _decimal(c, rule["percent"], "percent", 0, 100, 2)
    if value is not None:
        rule["percent"] = value


def _check_window(c: _Checker, value: Any) -> None:
    window = c.obj(value, "window", (), ("start", "end"))
    if window is None:
        return
    start = c.integer(window["start"], "window.start", 0, MAX_TIME) if "start" in window else None
    end = c.integer(window["end"], "window.end", 0, MAX_TIME) if "end" in window else None
    if not window:
        c.fail("window", "needs a start, an end or both")
    if start is not None and end is not None and start >= end:
        c.fail("window.end", "must be after window.start")


def _ratio(c: _Checker, value: Any, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        c.fail(path, "must be a number")
    elif not 0 <= value <= 1:
        c.fail(path, "must be between 0 and 1")


def _check_breaker(c: _Checker, value: Any) -> None:
    b = c.obj(value, "breaker", ("window", "min_requests", "open_seconds", "probes"),
              ("error_ratio", "slow_ms", "slow_ratio"))
    if b is None:
        return
    for name, hi in BREAKER_LIMITS.items():
        if name in b:
            c.integer(b[name], f"breaker.{name}", 1, hi)
    for name in ("error_ratio", "slow_ratio"):
        if name in b:
            _ratio(c, b[name], f"breaker.{name}")
    if ("slow_ms" in b) != ("slow_ratio" in b):
        c.fail("breaker.slow_ratio" if "slow_ms" in b else "breaker.slow_ms", "slow_ms and slow_ratio go together")
    if "error_ratio" not in b and "slow_ratio" not in b:
        c.fail("breaker", "needs error_ratio, slow_ratio or both")


def _check_scope(c: _Checker, rule: dict) -> None:
    """A degrade rule's `scope` (only "namespace"): its route is then `*` `/` and it has no breaker."""
    if rule["scope"] != NAMESPACE_SCOPE or type(rule["scope"]) is not str:
        c.fail("scope", "must be namespace")
        return
    route = rule.get("route")
    if isinstance(route, dict):
        if isinstance(route.get("host"), str) and route["host"] != "*":
            c.fail("route.host", "must be * with scope namespace")
        if isinstance(route.get("path"), str) and route["path"] != "/":
            c.fail("route.path", "must be / with scope namespace")
    if "breaker" in rule:
        c.fail("breaker", "is not allowed with scope namespace")


_COMMON_REQUIRED = ("id", "kind", "route")
_COMMON_OPTIONAL = ("enabled", "description", "updated_by", "updated_at")
_KIND_FIELDS = {
    "split": (("key", "policies", "default"), ("window",)),
    "degrade": (("action",), ("percent", "window", "key", "salt", "breaker", "scope")),
}
NAMESPACE_SCOPE = "namespace"  # a degrade rule's `scope`: every request of the namespace, before routing


def validate_rule(data: Any) -> dict:
    """Return the canonical rule dict; raise ValidationError with every field-path problem (nothing else)."""
    return _validate(_copy(data))


def _validate(data: Any) -> dict:
    """Return validate_rule(data), changing data's containers (a copy, or what msgpack just decoded)."""
    c = _Checker()
    kind = data.get("kind") if isinstance(data, dict) else None
    if isinstance(data, dict) and kind not in KINDS:
        c.fail("kind", f"must be one of {', '.join(KINDS)}")
        kind_req, kind_opt = (), tuple(f for pair in _KIND_FIELDS.values() for fs in pair for f in fs)
    else:
        kind_req, kind_opt = _KIND_FIELDS.get(kind, ((), ()))
    rule = c.obj(data, "", _COMMON_REQUIRED + kind_req, _COMMON_OPTIONAL + kind_opt)
    if rule is None:
        raise ValidationError(c.errors)
    if "id" in rule and not is_valid_id(rule["id"]):
        c.fail("id", "must match [a-z0-9][a-z0-9_.-]{0,63}")
    if "route" in rule:
        _check_route(c, rule["route"])
    if "enabled" in rule and not isinstance(rule["enabled"], bool):
        c.fail("enabled", "must be true or false")
    if "description" in rule:
        c.text(rule["description"], "description", max_len=MAX_TEXT, single_line=False)
    if "updated_by" in rule:
        c.text(rule["updated_by"], "updated_by", max_len=128)
    if "updated_at" in rule:
        c.integer(rule["updated_at"], "updated_at", 0, 2**40)
    if kind == "split":
        if "key" in rule:
            _check_key(c, rule["key"], "key")
        for i, p in enumerate(c.items(rule.get("policies"), "policies", MAX_POLICIES, min_items=0)):
            _check_policy(c, p, f"policies[{i}]")
        if "default" in rule:
            _upstream(c, rule["default"], "default")
        if "window" in rule:
            _check_window(c, rule["window"])
    elif kind == "degrade":
        if "action" in rule:
            _check_action(c, rule["action"])
        if "percent" in rule:
            _check_percent(c, rule)
        if "window" in rule:
            _check_window(c, rule["window"])
        if "key" in rule:
            _check_key(c, rule["key"], "key", DEGRADE_KEY_SOURCES)
        if "salt" in rule:
            c.text(rule["salt"], "salt", max_len=64)
        if "breaker" in rule:
            _check_breaker(c, rule["breaker"])
        if "scope" in rule:
            _check_scope(c, rule)
    if c.errors:
        raise ValidationError(c.errors)
    return normalise(rule)


def normalise(rule: dict) -> dict:
    """Return a copy of a valid rule with defaults filled in and keys in canonical order."""
    out = dict(rule)
    out.setdefault("enabled", True)
    out.setdefault("description", "")
    out.setdefault("updated_by", "")
    out.setdefault("updated_at", 0)
    if out["kind"] == "degrade":
        out.setdefault("percent", 100)
        action = dict(out["action"])
        if action["type"] == "static":
            if action["status"] not in BODILESS_STATUSES:
                action.setdefault("content_type", "text/plain; charset=utf-8")
            action.setdefault("headers", {})
            action.setdefault("body", "")
        elif action["type"] == "redirect":
            action.setdefault("status", 302)
        elif action["type"] == "reject":
            action.setdefault("status", 503)
        out["action"] = action
    return _sorted(out)


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for k in sorted(value):
            v = value[k]
            out[k] = _sorted(v) if isinstance(v, _CONTAINERS) else v
        return out
    if isinstance(value, (list, tuple)):
        return [_sorted(v) if isinstance(v, _CONTAINERS) else v for v in value]
    return value


_CONTAINERS = (dict, list, tuple)


def encode_rule(rule: dict) -> bytes:
    """Return the canonical (deterministic) msgpack encoding of a validated rule."""
    return msgpack.packb(_sorted(rule), use_bin_type=True)


def encode_validated(rule: dict) -> bytes:
    """Return encode_rule(rule) for a dict exactly as validate_rule or decode_rule returned it (its keys are already
    in canonical order, so nothing is re-sorted); a dict changed since must go through encode_rule."""
    return msgpack.packb(rule, use_bin_type=True)


def decode_rule(raw: bytes, *, where: str = "rule") -> dict:
    """Return the validated rule stored as msgpack bytes; raise CorruptDataError otherwise."""
    if not isinstance(raw, (bytes, bytearray)) or len(raw) > MAX_ENCODED_RULE:
        raise CorruptDataError(f"{where}: not a msgpack rule (wrong type or too large)")
    try:
        data = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise CorruptDataError(f"{where}: undecodable msgpack ({exc.__class__.__name__})") from None
    try:
        return _validate(data)  # no copy: nothing else holds what unpackb returned
    except ValidationError as exc:
        raise CorruptDataError(f"{where}: stored rule fails validation: {exc}") from None

"""Hypothesis strategies: rules as operators may write them (every field, non-canonical forms included).

`rule_inputs()` draws dicts that `validate_rule` accepts (and canonicalizes); `json_values`
draws arbitrary JSON. Shared by the schema property tests and the Lua acceptance test.
"""
from __future__ import annotations

from hypothesis import strategies as st

from rulegate.iputil import format_ip
from rulegate.schema import (
    BODILESS_STATUSES,
    MAX_RAMP_SPAN,
    MAX_RAMP_STEPS,
    MAX_UID,
    METHODS,
    RAMP_MODES,
    REDIRECT_STATUSES,
)

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
VISIBLE = "".join(map(chr, range(0x21, 0x7F)))
ids = st.builds(str.__add__, st.sampled_from(ALNUM[:26] + ALNUM[52:]),
                st.text(ALNUM[:26] + ALNUM[52:] + "_.-", max_size=63))
upstreams = st.text(ALNUM + "_.:-", min_size=1, max_size=40)
tokens = st.text(ALNUM + "!#$%&'*+.^_`|~-", min_size=1, max_size=32)
header_names = st.text(ALNUM + "-", min_size=1, max_size=40)
unicode_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n\x00"), max_size=40)
multiline_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=80)
header_values = st.builds(lambda a, mid, b: a + mid + b if mid or b else a, st.sampled_from(VISIBLE),
                          st.text(VISIBLE + " \t", max_size=30), st.sampled_from(VISIBLE))
IDN_LABELS = ("b\u00fccher", "M\u00fcnchen", "\u043f\u0440\u0438\u043c\u0435\u0440", "\u4f8b\u3048",
              "\u0130stanbul", "caf\u00e9", "\u00e9t\u00e9")


@st.composite
def hosts(draw) -> str:
    """A host pattern in any accepted spelling: case, a trailing dot, IDN labels, '*.' or '*'."""
    if draw(st.integers(0, 9)) == 0:
        return "*"
    ascii_label = st.builds(lambda a, mid: a + mid, st.sampled_from(ALNUM), st.text(ALNUM + "-", max_size=10)
                            ).map(lambda x: x.rstrip("-") or "a")
    label = st.one_of(ascii_label, st.sampled_from(IDN_LABELS))
    host = ".".join(draw(st.lists(label, min_size=1, max_size=4)))
    if draw(st.booleans()):
        host = "*." + host
    return host + ("." if draw(st.booleans()) else "")


paths = st.text(VISIBLE.replace("?", "").replace("#", ""), max_size=30).map(lambda p: "/" + p)


@st.composite
def cidrs(draw) -> str:
    """A CIDR in any accepted spelling: bare address, netmask, leading zeros, upper-case hex, full groups."""
    family = draw(st.sampled_from([4, 6]))
    bits = 32 if family == 4 else 128
    prefix = draw(st.integers(0, bits))
    value = draw(st.integers(0, 2**bits - 1)) >> (bits - prefix) << (bits - prefix)
    text = format_ip(family, value)
    if family == 6:
        style = draw(st.integers(0, 2))
        if style == 1:
            text = text.upper()
        elif style == 2:
            text = ":".join(f"{value >> (112 - 16 * i) & 0xFFFF:04x}" for i in range(8))
    form = draw(st.integers(0, 3))
    if form == 0 and prefix == bits:
        return text
    if form == 1 and family == 4:
        mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
        return f"{text}/{format_ip(4, mask)}"
    if form == 2:
        return f"{text}/{prefix:03d}"
    return f"{text}/{prefix}"


@st.composite
def keys(draw, degrade: bool = False) -> dict:
    source = draw(st.sampled_from(["header", "cookie", "arg", "ip"] + (["request"] if degrade else [])))
    if source in ("ip", "request"):
        return {"source": source}
    return {"source": source, "name": draw(header_names if source == "header" else tokens)}


@st.composite
def ramps(draw) -> dict:
    """A percent policy's ramp: any valid times, shares, mode and step count."""
    start = draw(st.integers(0, 2**40 - 1))
    end = draw(st.integers(start + 1, min(start + MAX_RAMP_SPAN, 2**40)))
    ramp = {"start": start, "end": end, "from": draw(st.integers(0, 10_000)), "to": draw(st.integers(0, 10_000)),
            "mode": draw(st.sampled_from(RAMP_MODES))}
    if ramp["mode"] == "step":
        ramp["steps"] = draw(st.integers(1, MAX_RAMP_STEPS))
    return ramp


@st.composite
def guard_limits(draw, lo: int, hi: int, places: int) -> int | float:
    """A guard limit as written: an integer, a whole float, units / 10**places, or a double next to one."""
    scale = 10**places
    units = draw(st.integers(lo * scale, hi * scale))
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.integers(lo, hi))
    if kind == 1:
        return float(draw(st.integers(lo, hi)))
    value = units / scale
    if kind == 3:
        value = min(max(value * (1 + draw(st.sampled_from([-1e-15, 1e-15]))), lo), hi)
    return value


@st.composite
def guards(draw, canary: set[str]) -> dict:
    """A ramp's guard as written (defaults left out or given, limits non-canonical); control outside `canary`."""
    guard = {"control": draw(upstreams.filter(lambda u: u not in canary)),
             "min_requests": draw(st.integers(1, 1_000_000))}
    which = draw(st.sampled_from(["error", "p95", "both"]))
    if which != "p95":
        guard["max_error_increase"] = draw(guard_limits(0, 1, 4))
    if which != "error":
        guard["max_p95_ratio"] = draw(guard_limits(1, 100, 2))
    if draw(st.booleans()):
        guard["window"] = draw(st.integers(10, 3600))
    if draw(st.booleans()):
        guard["on_breach"] = draw(st.sampled_from(["revert", "freeze"]))
    return guard


@st.composite
def windows(draw) -> dict:
    start = draw(st.integers(0, 2**40 - 1))
    return draw(st.sampled_from([{"start": start}, {"end": start + 1}, {"start": start, "end": min(start + 3600, 2**40)}]))


@st.composite
def policies(draw) -> dict:
    kind = draw(st.sampled_from(["uid_range", "uid_suffix", "ip_cidr", "header", "cookie", "arg", "percent"]))
    if kind == "percent":
        n = draw(st.integers(1, 6))
        weights = draw(st.lists(st.integers(1, 10_000 // n), min_size=n, max_size=n))
        p = {"type": kind, "buckets": [{"upstream": draw(upstreams), "weight": w} for w in weights]}
        if draw(st.booleans()):
            p["salt"] = draw(unicode_text)
        if draw(st.booleans()):
            p["ramp"] = draw(ramps())
            if draw(st.booleans()):
                p["ramp"]["guard"] = draw(guards({b["upstream"] for b in p["buckets"]}))
        return p
    p = {"type": kind, "upstream": draw(upstreams)}
    if kind == "uid_range":
        bound = st.one_of(st.integers(0, MAX_UID), st.integers(MAX_UID - 1000, MAX_UID), st.integers(0, 10**6))
        pairs = draw(st.lists(st.tuples(bound, bound), min_size=1, max_size=4))
        p["ranges"] = [[min(a, b), max(a, b)] for a, b in pairs]
    elif kind == "uid_suffix":
        p["suffixes"] = draw(st.lists(tokens, min_size=1, max_size=4))
    elif kind == "ip_cidr":
        p["cidrs"] = draw(st.lists(cidrs(), min_size=1, max_size=4))
    else:
        p["name"] = draw(header_names if kind == "header" else tokens)
        p["values"] = draw(st.lists(unicode_text, min_size=1, max_size=4))
    return p


@st.composite
def response_headers(draw) -> dict:
    names = draw(st.lists(header_names, max_size=5, unique_by=str.lower))
    names = [n for n in names if n.lower() not in ("content-type", "content-length", "transfer-encoding", "connection")]
    return {n: draw(header_values) for n in names}


@st.composite
def actions(draw) -> dict:
    kind = draw(st.sampled_from(["static", "redirect", "upstream", "reject"]))
    if kind == "static":
        status = draw(st.one_of(st.sampled_from(BODILESS_STATUSES), st.integers(200, 599)))
        action = {"type": kind, "status": status}
        if draw(st.booleans()):
            action["headers"] = draw(response_headers())
        if status not in BODILESS_STATUSES:
            if draw(st.booleans()):
                action["content_type"] = draw(header_values)
            if draw(st.booleans()):
                action["body"] = draw(multiline_text)
        elif draw(st.booleans()):
            action["body"] = ""
        return action
    if kind == "redirect":
        action = {"type": kind, "location": draw(st.sampled_from(["/", "https://example.com/", "http://a/"]))
                  + draw(st.text(VISIBLE, max_size=20))}
        if draw(st.booleans()):
            action["status"] = draw(st.sampled_from(REDIRECT_STATUSES))
        return action
    if kind == "upstream":
        return {"type": kind, "upstream": draw(upstreams)}
    action = {"type": kind}
    if draw(st.booleans()):
        action["status"] = draw(st.integers(400, 599))
    if draw(st.booleans()):
        action["retry_after"] = draw(st.integers(0, 86_400))
    return action


ratios = st.one_of(st.sampled_from([0, 1]), st.floats(0, 1, allow_nan=False))


@st.composite
def breakers(draw) -> dict:
    """A degrade rule's `breaker` object: error_ratio, slow_ms + slow_ratio, or both."""
    b = {"window": draw(st.integers(1, 600)), "min_requests": draw(st.integers(1, 1_000_000)),
         "open_seconds": draw(st.integers(1, 3600)), "probes": draw(st.integers(1, 1000))}
    which = draw(st.sampled_from(["error", "slow", "both"]))
    if which != "slow":
        b["error_ratio"] = draw(ratios)
    if which != "error":
        b.update(slow_ms=draw(st.integers(1, 3_600_000)), slow_ratio=draw(ratios))
    return b


@st.composite
def rule_inputs(draw) -> dict:
    """A rule as an operator may write it; validate_rule accepts it."""
    route = {"host": draw(hosts()), "path": draw(paths)}
    if draw(st.booleans()):
        route["methods"] = draw(st.lists(st.sampled_from(METHODS), min_size=1, max_size=7, unique=True))
    rule = {"id": draw(ids), "route": route}
    for name, strategy in (("enabled", st.booleans()), ("description", multiline_text),
                           ("updated_by", unicode_text), ("updated_at", st.integers(0, 2**40))):
        if draw(st.booleans()):
            rule[name] = draw(strategy)
    if draw(st.booleans()):
        rule.update(kind="split", key=draw(keys()), policies=draw(st.lists(policies(), max_size=6)),
                    default=draw(upstreams))
        if draw(st.booleans()):
            rule["window"] = draw(windows())
        return rule
    rule.update(kind="degrade", action=draw(actions()))
    if draw(st.booleans()):
        rule["percent"] = draw(st.one_of(st.integers(0, 100), st.integers(0, 10_000).map(lambda bp: bp / 100)))
    if draw(st.booleans()):
        rule["window"] = draw(windows())
    if draw(st.booleans()):
        rule["key"] = draw(keys(degrade=True))
    if draw(st.booleans()):
        rule["salt"] = draw(unicode_text)
    if draw(st.integers(0, 7)) == 0:  # scope namespace: route * / (methods kept), no breaker
        rule.update(scope="namespace", route={**route, "host": "*", "path": "/"})
    elif draw(st.booleans()):
        rule["breaker"] = draw(breakers())
    return rule


surrogates = st.integers(0xD800, 0xDFFF).map(chr)  # hypothesis never draws them by itself
any_text = st.text(st.one_of(st.characters(), surrogates), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70) | st.floats() | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=16)

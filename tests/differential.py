"""The differential fuzz: seeded random rule sets and raw requests, the Python evaluator against the Lua router.

`fuzz_set(seed)` draws a rule set (written the way operators write rules: mixed case, trailing
dots, netmasks, ... then validated) and raw requests aimed at it, rich in the inputs where the
runtimes used to disagree: host spelling, header names and repeats, cookies, query strings past
100 arguments, uids around 2^53, odd IP syntax, bytes that are not UTF-8. `http=True` keeps every
request acceptable to nginx (no 400), so it can be sent over real HTTP. Used by
tests/lua/test_differential.py and bench/differential.py.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from rulegate.schema import validate_rule
from tests.lua.decide_harness import HttpResponse, RawRequest

NOW = 1_800_000_000
UPSTREAMS = ("stable", "canary", "a", "b", "c", "v1", "v2", "fallback")  # upstream blocks of tests.lua.conftest
HOSTS = ("shop.example.com", "api.example.com", "k.example.com", "a.b.example.com", "xn--bcher-kva.example",
         "10.0.0.1")
HOST_PATTERNS = HOSTS + ("*.example.com", "*.b.example.com", "*", "*.example")
REQUEST_HOSTS = HOSTS + ("example.com", "other.org", "x.example.com", "deep.a.b.example.com", "b\u00fccher.example",
                         "\u212a.example.com", "\udcff.example.com", "[::1]", "[2001:db8::1]")
PATHS = ("/", "/api", "/api/v1", "/a", "/static/", "/x%41", "/p")
PATH_TAILS = ("", "", "x", "/deeper", "%2F", "\u00e9", "\udcfe", "/v1/items")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
HEADER_NAMES = ("x-uid", "x-key", "x-flag", "x-forwarded-for", "user-agent", "x-empty")
ODD_HEADER_NAMES = ("x_uid", "x.uid", "X_Key", "x-uid_", "x~uid")
COOKIE_NAMES = ("sid", "uid", "beta", "a")
ARG_NAMES = ("u", "v", "a", "a99", "a100", "sid")
VALUES = ("1", "7", "42", "007", "0", "77", "1500", "on", "off", "", "a b", "\u00e9", "x+y", "%zz", "1, 2",
          "9007199254740991", "9007199254740992", "09007199254740991", "9999999999999999", "18446744073709551616",
          "+42", "4e1", "0x2a", "\u0664\u0662", "\udcff7", "caf\u00e9", "10.0.0.1")
IPS = ("10.1.2.3", "10.0.0.1", "192.168.1.7", "192.168.1.8", "203.0.113.9", "2001:db8::1", "2001:DB8::1",
       "fe80::1", "fe80::1%eth0", "FE80::1", "[fe80::1]", "::ffff:10.1.2.3", "010.1.2.3", "10.1.2", "10.1.2.3.4",
       "1::2::3", "::", "fe80:0:0:0:0:0:10.1.2.3", "fe80:1:2:3:4:5:6::", "garbage", "", "10.1.2.3:80", "::1")
CIDRS = ("10.0.0.0/255.0.0.0", "10.0.0.0/8", "192.168.1.7", "2001:DB8::/32", "fe80::/10", "::/0", "0.0.0.0/0",
         "::ffff:0:0/96", "203.0.113.0/24", "10.1.2.3/32")
UID_RANGES = ([0, 100], [1000, 1999], [2**53 - 10, 2**53 - 1], [7, 7], [0, 2**53 - 1], [42, 42])
RESPONSE_HEADERS = {"Cache-Control": "no-store", "X-Reason": "maintenance", "x-frame-options": "DENY",
                    "Retry-After": "5", "ETag": '"v1"'}


def _spell(rnd: random.Random, host: str) -> str:
    """Return host as an operator might write it: random upper case, maybe a trailing dot, maybe IDN."""
    if host == "xn--bcher-kva.example" and rnd.random() < 0.5:
        host = "B\u00fccher.example"
    host = "".join(c.upper() if rnd.random() < 0.3 else c for c in host)
    return host + "." if host != "*" and rnd.random() < 0.2 else host


def _policy(rnd: random.Random) -> dict:
    kind = rnd.choice(("uid_range", "uid_suffix", "ip_cidr", "header", "cookie", "arg", "percent"))
    if kind == "percent":
        n = rnd.randint(1, 3)
        p: dict[str, Any] = {"type": kind, "buckets": [{"upstream": rnd.choice(UPSTREAMS),
                                                        "weight": rnd.randint(1, 10_000 // n)} for _ in range(n)]}
        if rnd.random() < 0.5:
            p["salt"] = rnd.choice(("exp1", "s\u00e4lz", "", "x"))
        if rnd.random() < 0.4:
            p["ramp"] = _ramp(rnd)
            if rnd.random() < 0.3:  # gateways do not route by a guard (docs/rules.md "Guards")
                canary = {b["upstream"] for b in p["buckets"]}
                p["ramp"]["guard"] = {"control": rnd.choice([u for u in UPSTREAMS if u not in canary]),
                                      "min_requests": rnd.randint(1, 100), "max_error_increase": 0.05,
                                      "max_p95_ratio": rnd.choice((1, 1.5, 2.25)), "on_breach": "freeze"}
        return p
    p = {"type": kind, "upstream": rnd.choice(UPSTREAMS)}
    if kind == "uid_range":
        p["ranges"] = rnd.sample(UID_RANGES, rnd.randint(1, 2))
    elif kind == "uid_suffix":
        p["suffixes"] = rnd.sample(("7", "0", "77", "2", "9"), rnd.randint(1, 2))
    elif kind == "ip_cidr":
        p["cidrs"] = rnd.sample(CIDRS, rnd.randint(1, 3))
    else:
        names = {"header": HEADER_NAMES + ("cookie",), "cookie": COOKIE_NAMES, "arg": ARG_NAMES}[kind]
        name = rnd.choice(names)
        p["name"] = name.upper() if kind == "header" and rnd.random() < 0.3 else name
        p["values"] = rnd.sample([v for v in VALUES if "\udcff" not in v], rnd.randint(1, 3))
    return p


def _ramp(rnd: random.Random) -> dict:
    """A ramp around the requests' clock: up or down, linear or in steps, short or the longest allowed."""
    span = rnd.choice((1, 60, 100, 240, 3600, 366 * 86_400, rnd.randint(1, 400)))
    start = NOW + rnd.randint(-150, 100) - (rnd.randrange(span) if rnd.random() < 0.3 else 0)
    share = (0, 1, 9999, 10_000, 5000)
    ramp: dict[str, Any] = {"start": start, "end": start + span,
                            "from": rnd.choice(share) if rnd.random() < 0.3 else rnd.randint(0, 10_000),
                            "to": rnd.choice(share) if rnd.random() < 0.3 else rnd.randint(0, 10_000),
                            "mode": rnd.choice(("linear", "step"))}
    if ramp["mode"] == "step":
        ramp["steps"] = rnd.choice((1, 2, 3, 7, 1000, rnd.randint(1, 1000)))
    return ramp


def _window(rnd: random.Random) -> dict:
    start = NOW + rnd.randint(-100, 100)
    return rnd.choice(({"start": start}, {"end": start}, {"start": start, "end": start + 60}))


def _key(rnd: random.Random) -> dict:
    source = rnd.choice(("header", "header", "cookie", "arg", "ip"))
    if source == "ip":
        return {"source": "ip"}
    names = {"header": HEADER_NAMES, "cookie": COOKIE_NAMES, "arg": ARG_NAMES}[source]
    name = rnd.choice(names)
    return {"source": source, "name": name.title() if source == "header" and rnd.random() < 0.3 else name}


def _action(rnd: random.Random) -> dict:
    kind = rnd.choice(("static", "static", "redirect", "upstream", "reject"))
    if kind == "static":
        status = rnd.choice((200, 204, 205, 304, 429, 503))
        action: dict[str, Any] = {"type": kind, "status": status,
                                  "headers": dict(rnd.sample(sorted(RESPONSE_HEADERS.items()), rnd.randint(0, 3)))}
        if status not in (204, 205, 304):
            action["body"] = rnd.choice(("", "down", "<h1>back soon</h1>\n", "caf\u00e9"))
            if rnd.random() < 0.5:
                action["content_type"] = rnd.choice(("text/html", "application/json; charset=utf-8"))
        return action
    if kind == "redirect":
        return {"type": kind, "location": rnd.choice(("/new", "https://shop.example.com/x?y=1")),
                "status": rnd.choice((301, 302, 303, 307, 308))}
    if kind == "upstream":
        return {"type": kind, "upstream": rnd.choice(UPSTREAMS)}
    return {"type": kind, "status": rnd.choice((503, 429)), **({"retry_after": 30} if rnd.random() < 0.5 else {})}


def random_rule(rnd: random.Random, i: int) -> dict:
    """Return one validated (canonical) rule, written non-canonically first."""
    route: dict[str, Any] = {"host": _spell(rnd, rnd.choice(HOST_PATTERNS)), "path": rnd.choice(PATHS)}
    if rnd.random() < 0.25:
        route["methods"] = rnd.sample(METHODS, rnd.randint(1, 3))
    rule: dict[str, Any] = {"id": f"r{i:02d}-{rnd.randrange(100)}", "route": route,
                            "enabled": rnd.random() < 0.92}
    if rnd.random() < 0.65:
        rule.update(kind="split", key=_key(rnd), policies=[_policy(rnd) for _ in range(rnd.randint(0, 4))],
                    default=rnd.choice(UPSTREAMS))
        if rnd.random() < 0.25:
            rule["window"] = _window(rnd)
    else:
        rule.update(kind="degrade", action=_action(rnd))
        if rnd.random() < 0.5:
            rule["percent"] = rnd.choice((100, 50, 0, 12.5, 99.99, 0.01, 33.33))
        if rnd.random() < 0.3:
            rule["window"] = _window(rnd)
        if rnd.random() < 0.5:
            rule["key"] = {"source": "request"} if rnd.random() < 0.2 else _key(rnd)
        if rnd.random() < 0.3:
            rule["salt"] = rnd.choice(("s", "\u00fcber"))
        if rnd.random() < 0.06:  # scope namespace (before routing): mostly a share, so routes still decide
            rule.update(scope="namespace", route={**route, "host": "*", "path": "/"},
                        percent=rnd.choice((12.5, 0.01, 33.33, 50, 0, 100)))
        elif rnd.random() < 0.25:  # no outcomes in the fuzz: closed, so the rule never applies (both runtimes)
            rule["breaker"] = _breaker(rnd)
    return validate_rule(rule)


def _breaker(rnd: random.Random) -> dict:
    b = {"window": rnd.randint(1, 600), "min_requests": rnd.randint(1, 100), "open_seconds": rnd.randint(1, 3600),
         "probes": rnd.randint(1, 10)}
    if rnd.random() < 0.7:
        b["error_ratio"] = rnd.choice((0, 1, 0.5, 0.05))
    if "error_ratio" not in b or rnd.random() < 0.3:
        b.update(slow_ms=rnd.randint(1, 5000), slow_ratio=rnd.choice((0, 1, 0.25)))
    return b


@dataclass
class _Hints:
    """Names and values the aimed rule reads, so that requests hit its policies often."""

    header: list[tuple[str, list[str]]]
    cookie: list[tuple[str, list[str]]]
    arg: list[tuple[str, list[str]]]

    @classmethod
    def of(cls, rule: dict | None) -> "_Hints":
        out = cls([], [], [])
        if rule is None:
            return out
        uids = [v for p in rule.get("policies", []) for lo, hi in p.get("ranges", [])
                for v in (str(lo), str(hi), str(hi + 1), str(lo).zfill(16), str(hi).zfill(17))]
        uids += [s for p in rule.get("policies", []) for s in p.get("suffixes", [])]
        key = rule.get("key") or {}
        if key.get("name"):
            getattr(out, key["source"]).append((key["name"], uids or list(VALUES)))
        for p in rule.get("policies", []):
            if p["type"] in ("header", "cookie", "arg"):
                getattr(out, p["type"]).append((p["name"], p["values"]))
        return out

    def pick(self, rnd: random.Random, kind: str, names: tuple[str, ...]) -> tuple[str, str]:
        hints = getattr(self, kind)
        if hints and rnd.random() < 0.6:
            name, values = rnd.choice(hints)
            return name, rnd.choice(values) if rnd.random() < 0.8 else rnd.choice(VALUES)
        return rnd.choice(names), rnd.choice(VALUES)


def _request_host(rnd: random.Random, aim: dict | None) -> str:
    if aim is not None:
        host = aim["route"]["host"].replace("*.", rnd.choice(("x.", "a.b.", "\u00fc.", "\udcff."))).replace(
            "*", "any.example")
        if rnd.random() < 0.1:
            host = host.replace("k", "\u212a")  # the Kelvin sign folds to 'k' in Unicode, not in ASCII
    else:
        host = rnd.choice(REQUEST_HOSTS)
    if host.startswith("["):
        return host + (":8080" if rnd.random() < 0.5 else "")
    host = "".join(c.upper() if rnd.random() < 0.2 else c for c in host)
    if rnd.random() < 0.2:
        host += "."
    if rnd.random() < 0.2:
        host += ":8080"
    return host


def _escape(rnd: random.Random, text: str) -> bytes:
    """Return text for a query string: some characters percent-encoded (either case), '+' for spaces."""
    out = bytearray()
    for byte in text.encode("utf-8", "surrogateescape"):
        ch = bytes((byte,))
        if ch == b" ":
            out += b"+" if rnd.random() < 0.7 else b"%20"
        elif ch in b"&=+#%" or byte >= 0x80 and rnd.random() < 0.8 or byte < 0x21 or rnd.random() < 0.05:
            out += (b"%%%02X" if rnd.random() < 0.5 else b"%%%02x") % byte
        else:
            out += ch
    return bytes(out)


def _query(rnd: random.Random, hints: _Hints) -> bytes:
    parts: list[bytes] = []
    if rnd.random() < 0.15:  # around the cap of 100 arguments
        parts += [b"f%d=%d" % (i, i) for i in range(rnd.randint(97, 101))]
    for _ in range(rnd.randint(0, 5)):
        form = rnd.random()
        arg, value = hints.pick(rnd, "arg", ARG_NAMES)
        name = _escape(rnd, arg)
        if form < 0.1:
            parts.append(b"")  # an empty segment
        elif form < 0.2:
            parts.append(name)  # no '='
        elif form < 0.25:
            parts.append(b"=" + _escape(rnd, value))  # an empty name
        elif form < 0.3:
            parts.append(name + b"=%zz%4")  # invalid escapes
        else:
            parts.append(name + b"=" + _escape(rnd, value))
    if rnd.random() < 0.2:
        rnd.shuffle(parts)
    return b"&".join(parts)


def _header_value(rnd: random.Random, http: bool, value: str) -> bytes:
    value = value.encode("utf-8", "surrogateescape")
    if not http and rnd.random() < 0.1:
        value = b" " + value + b"\t"  # the raw request builders keep it; nginx would strip it
    return value


def _cookie_header(rnd: random.Random, hints: _Hints) -> bytes:
    pieces = []
    for _ in range(rnd.randint(1, 4)):
        form = rnd.random()
        cookie, value = hints.pick(rnd, "cookie", COOKIE_NAMES)
        name, value = cookie.encode(), value.encode("utf-8", "surrogateescape")
        if form < 0.1:
            pieces.append(name)  # no '='
        elif form < 0.2:
            pieces.append(b"=" + value)
        elif form < 0.35:
            pieces.append(b"\t" + name + b" = " + value)
        else:
            pieces.append(name + b"=" + value)
    return rnd.choice((b"; ", b";", b" ;")).join(pieces).strip(b" \t") or b"a=1"


def random_request(rnd: random.Random, http: bool = True, rules: list[dict] = ()) -> RawRequest:
    """Return one raw request (aimed at the rules' routes most of the time); with http, one nginx accepts."""
    aim = rnd.choice(rules) if rules and rnd.random() < 0.85 else None
    hints = _Hints.of(aim)
    path = aim["route"]["path"] if aim is not None else rnd.choice(PATHS)
    target = (path + rnd.choice(PATH_TAILS)).encode("utf-8", "surrogateescape")
    if rnd.random() < 0.6:
        target += b"?" + _query(rnd, hints)
    headers: list[tuple[bytes, bytes]] = []
    for _ in range(rnd.randint(0, 5)):
        if rnd.random() < 0.15:
            name, value = "Cookie", _cookie_header(rnd, hints)
        else:
            name, text = hints.pick(rnd, "header", HEADER_NAMES + ODD_HEADER_NAMES)
            value = _header_value(rnd, http, text)
        name = "".join(c.upper() if rnd.random() < 0.3 else c for c in name)
        headers.append((name.encode(), value))
        if rnd.random() < 0.2:  # the same header again
            again = _cookie_header(rnd, hints) if name.lower() == "cookie" else \
                _header_value(rnd, http, hints.pick(rnd, "header", HEADER_NAMES)[1])
            headers.append((name.encode(), again))
    method = rnd.choice(aim["route"].get("methods") or METHODS if aim is not None else METHODS)
    if not http and rnd.random() < 0.05:
        method = method.lower()
    request_id = rnd.choice((f"{rnd.getrandbits(64):016x}", f"req-{rnd.randrange(50)}", "\u00fcber-1"))
    return RawRequest(_request_host(rnd, aim).encode("utf-8", "surrogateescape"), target, method,
                      rnd.choice(IPS).encode(), _now(rnd), headers, request_id.encode())


def _now(rnd: random.Random) -> int | float:
    """The request's clock around NOW, sometimes with a fraction of a second (gateways floor it for ramps)."""
    now = NOW + rnd.randint(-120, 120)
    return now + rnd.choice((0.25, 0.5, 0.999)) if rnd.random() < 0.2 else now


@dataclass
class FuzzSet:
    """One seeded rule set and the requests thrown at it."""

    seed: int
    rules: list[dict]
    requests: list[RawRequest]


def fuzz_set(seed: int, n_requests: int, http: bool = True) -> FuzzSet:
    """Return the rule set and requests of a seed (deterministic)."""
    rnd = random.Random(seed)
    rules = {r["id"]: r for r in (random_rule(rnd, i) for i in range(rnd.randint(1, 12)))}
    ruleset = list(rules.values())
    return FuzzSet(seed, ruleset, [random_request(rnd, http, ruleset) for _ in range(n_requests)])


def http_disagreement(want: dict[str, Any], resp: HttpResponse, method: str) -> str | None:
    """Return why an HTTP response does not carry the Python decision, or None when it does."""
    rule = resp.headers.get("x-rulegate-rule", "")
    if rule != (want["rule_id"] or ""):
        return f"rule {rule!r} != {want['rule_id']!r}"
    if want["action"] in ("proxy", "pass"):
        upstream = want["upstream"] if want["action"] == "proxy" else "default"
        if resp.status != 200 or resp.headers.get("x-echo-upstream") != upstream:
            return f"status {resp.status} upstream {resp.headers.get('x-echo-upstream')!r} != {upstream!r}"
        return None
    if resp.status != want["status"]:
        return f"status {resp.status} != {want['status']}"
    for k, v in want["headers"].items():
        if resp.headers.get(k.lower()) != v:
            return f"header {k}: {resp.headers.get(k.lower())!r} != {v!r}"
    if "content-type" not in {k.lower() for k in want["headers"]} and want["status"] in (204, 205, 304) \
            and "content-type" in resp.headers:
        return f"unexpected content-type {resp.headers['content-type']!r}"
    if method != "HEAD" and resp.body != want["body"].encode():
        return f"body {resp.body[:60]!r} != {want['body'][:60]!r}"
    return None

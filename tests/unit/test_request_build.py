"""Request building: `from_environ` and the lazily parsed cookies/args give exactly what `from_dict` gives.

A WSGI environ is built from raw request bytes the way gevent's pywsgi builds it (native strings are
bytes as latin-1, names upper-cased with '-' as '_', names holding '_' dropped, repeats merged).
"""
from __future__ import annotations

import random
import urllib.parse
from typing import Any

import pytest

from rulegate.evaluator import RuleSet, decide
from rulegate.hostnames import ascii_upper, request_host
from rulegate.request import (
    EMPTY,
    MAX_ARGS,
    EnvironHeaders,
    Request,
    _host,
    _method,
    from_wire,
    header_map,
    parse_cookies,
    parse_query,
    wire_bytes,
)
from rulegate.schema import validate_rule
from tests.conftest import load_vectors

CASES = load_vectors()
Raw = tuple[bytes, bytes, str, str, list[tuple[bytes, bytes]]]  # host, target, method, ip, header lines


def raw_of_case(req: dict[str, Any]) -> Raw:
    """Return the raw form of a vector request (args and cookies objects inlined into target and Cookie)."""
    target = wire_bytes(req.get("path") or "/")
    if req.get("args"):
        query = "&".join(f"{urllib.parse.quote_plus(wire_bytes(k))}={urllib.parse.quote_plus(wire_bytes(v))}"
                         for k, v in req["args"].items())
        target += (b"&" if b"?" in target else b"?") + query.encode()
    headers = req.get("headers") or {}
    lines = [(wire_bytes(k), wire_bytes(v)) for k, v in (headers.items() if isinstance(headers, dict) else headers)]
    if req.get("cookies"):
        lines.append((b"Cookie", wire_bytes("; ".join(f"{k}={v}" for k, v in req["cookies"].items()))))
    return wire_bytes(req.get("host", "")), target, req.get("method", "GET"), req.get("ip", ""), lines


def environ_of(raw: Raw, raw_uri: bool = True) -> dict[str, str]:
    """Return the WSGI environ gevent's pywsgi builds for a raw request."""
    host, target, method, ip, lines = raw
    path, _, query = target.partition(b"?")
    env = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "QUERY_STRING": query.decode("latin-1"),
           "PATH_INFO": urllib.parse.unquote_to_bytes(path).decode("latin-1"), "REMOTE_ADDR": ip,
           "SERVER_NAME": "gw", "SERVER_PORT": "80", "wsgi.url_scheme": "http"}
    if raw_uri:
        env["RAW_URI"] = target.decode("latin-1")
    for name, value in [(b"Host", host), *lines]:
        key = name.decode("latin-1").upper().replace("-", "_")
        if "_" in name.decode("latin-1"):
            continue
        key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key
        text = value.decode("latin-1")
        env[key] = env[key] + ("; " if key == "HTTP_COOKIE" else ",") + text if key in env else text
    return env


def dict_of(raw: Raw) -> dict[str, Any]:
    """Return the from_dict input of a raw request (what the sidecar gets for it)."""
    host, target, method, ip, lines = raw
    return {"host": from_wire(host), "path": from_wire(target), "method": method, "ip": ip,
            "headers": [(from_wire(k), from_wire(v)) for k, v in [(b"Host", host), *lines]]}


def fields(req: Request) -> tuple:
    return (req.host, req.path, req.method, req.ip, dict(req.headers), dict(req.cookies), dict(req.args), req.now,
            req.request_id)


def representable(raw: Raw) -> bool:
    """True when a WSGI server keeps everything the spec reads: no '_' names, no repeats but Cookie,
    no empty Content-Type / Content-Length (servers set CONTENT_TYPE "" when there is none)."""
    names = [k.lower() for k, _ in raw[4] if k.lower() != b"cookie"]
    empty_content = any(k.lower() in (b"content-type", b"content-length") and not v for k, v in raw[4])
    return len(names) == len(set(names)) and b"host" not in names and not any(b"_" in k for k in names) \
        and not empty_content


def eager(data: dict[str, Any]) -> tuple:
    """Return the fields of from_dict as the spec computes them, every part parsed up front."""
    target = str(data.get("path") or "/")
    path, has_query, query = target.partition("?")
    headers = header_map(data.get("headers") or {})
    cookies = data.get("cookies")
    args = data.get("args")
    return (request_host(str(data.get("host", ""))), path or "/", ascii_upper(str(data.get("method") or "GET")),
            str(data.get("ip") or ""), headers,
            {str(k): str(v) for k, v in cookies.items()} if cookies is not None
            else parse_cookies(headers.get("cookie", "")),
            {str(k): str(v) for k, v in list(args.items())[:MAX_ARGS]} if args is not None
            else parse_query(query) if has_query else {},
            data.get("now"), str(data.get("request_id") or ""))


@pytest.mark.parametrize("file,data,case", CASES, ids=[f"{f}:{c['name']}" for f, _, c in CASES])
def test_vector_requests(file, data, case):
    """On every vector request: from_dict gives the eager fields; from_environ gives from_dict's and its decision."""
    req = case["request"]
    assert fields(Request.from_dict(req)) == eager(req)
    raw = raw_of_case(req)
    built = Request.from_environ(environ_of(raw), ip=req.get("ip", ""), now=req.get("now"),
                                 request_id=req.get("request_id", ""))
    if representable(raw):
        assert fields(built) == fields(Request.from_dict({**dict_of(raw), "now": req.get("now"),
                                                          "request_id": req.get("request_id", "")}))
        rs = RuleSet([validate_rule(r) for r in data["rules"]], data["revision"])
        if not any(r.get("key", {"source": "request"})["source"] == "request" and r["kind"] == "degrade"
                   and not req.get("request_id") for r in data["rules"]):  # random ids decide differently
            assert decide(rs, built).to_dict() == decide(rs, Request.from_dict(req)).to_dict()
    else:  # the WSGI server merged repeats: the spec's first value is the merged value's first item
        first = Request.from_dict(dict_of(raw)).headers
        for name, value in built.headers.items():
            assert value.startswith(first[name])


def random_text(rnd: random.Random, alphabet: str, high: bool = True) -> bytes:
    out = bytearray()
    for _ in range(rnd.randrange(0, 12)):
        out += rnd.choice(alphabet).encode() if not high or rnd.random() < 0.8 else bytes([rnd.randrange(0x80, 0x100)])
    return bytes(out)


def random_raw(rnd: random.Random) -> Raw:
    host = rnd.choice([b"api.example.com", b"API.Example.COM.", b"a.b:8080", b"[::1]:80", b"x\xc3\xa9.com", b""])
    path = b"/" + random_text(rnd, "abcAZ09/-._~%", high=rnd.random() < 0.3)
    if rnd.random() < 0.6:
        path += b"?" + b"&".join(random_text(rnd, "ab=+%20x") for _ in range(rnd.randrange(0, 6)))
    names = rnd.sample(["X-Uid", "x-tenant", "Accept", "User-Agent", "X-Env", "content-type", "X-A1"],
                       rnd.randrange(0, 5))
    lines = [(n.encode(), random_text(rnd, "abc ,=;09").strip(b" ")) for n in names]
    for _ in range(rnd.randrange(0, 3)):
        cookie = random_text(rnd, "ab=; \tc1", high=rnd.random() < 0.2).strip(b" \t")
        lines.append((rnd.choice([b"Cookie", b"cookie"]), cookie))
    return host, path, rnd.choice(["GET", "post", "DELETE"]), rnd.choice(["10.0.0.1", "::1", ""]), lines


@pytest.mark.parametrize("raw_uri", [True, False])
def test_random_requests_from_environ_equal_from_dict(raw_uri):
    """Random raw requests (non-UTF-8 bytes, ports, case, repeated Cookie lines): same fields both ways."""
    rnd = random.Random(14)
    checked = 0
    for _ in range(3000):
        raw = random_raw(rnd)
        if not raw_uri:
            raw = (raw[0], raw[1].replace(b"%", b"p"), *raw[2:])  # PATH_INFO is percent-decoded: no escapes
        if not representable(raw):
            continue
        built = Request.from_environ(environ_of(raw, raw_uri), request_id="r1")
        want = Request.from_dict({**dict_of(raw), "request_id": "r1"})
        assert fields(built) == fields(want), raw
        assert built == want
        checked += 1
    assert checked > 1000


def test_lazy_parts_are_parsed_once_and_only_from_their_source():
    """cookies/args parse on first use, then stay; given cookies/args win over the header and the query."""
    req = Request.from_dict({"host": "h", "path": "/p?a=1&a=2&b", "headers": {"Cookie": "s=1; s=2", "X": "y"}})
    assert req.cookies == {"s": "1"} and req.cookies is req.cookies
    assert req.args == {"a": "1", "b": ""} and req.args is req.args
    given = Request.from_dict({"host": "h", "path": "/p?a=1", "headers": {"Cookie": "s=1"},
                               "cookies": {"t": "2"}, "args": {"c": "3"}})
    assert (dict(given.cookies), dict(given.args)) == ({"t": "2"}, {"c": "3"})
    bare = Request.from_dict({"host": "h", "path": "/p"})
    assert bare.cookies == {} and bare.args == {} and bare.path == "/p"
    by_hand = Request("h", "/p?x=1", headers={"cookie": "a=b"})
    assert (by_hand.cookies, by_hand.args, by_hand.request_id) == ({}, {}, "")
    assert Request("h", cookies={"a": "b"}, args={"c": "d"}).cookies == {"a": "b"}


def test_environ_headers_mapping():
    """EnvironHeaders reads lower-case names only, maps '-' to '_', drops nothing it can deliver."""
    env = {"HTTP_X_UID": "42", "HTTP_HOST": "h", "CONTENT_TYPE": "", "CONTENT_LENGTH": "5", "PATH_INFO": "/",
           "HTTP_X_RAW": "caf\xc3\xa9"}
    headers = EnvironHeaders(env)
    assert headers.get("x-uid") == "42" and headers["x-uid"] == "42"
    assert headers.get("X-Uid") is None and headers.get("x_uid") is None  # stored names are lower-case, no '_'
    assert headers.get("content-type", "none") == "none" and headers.get("content-length") == "5"
    assert headers.get("x-raw") == "café"
    assert dict(headers) == {"x-uid": "42", "host": "h", "content-length": "5", "x-raw": "café"}
    assert len(headers) == 4 and "x-uid" in headers and "x-nope" not in headers
    with pytest.raises(KeyError):
        headers["x-nope"]


def test_fast_paths_equal_the_spec_functions():
    """The shortcuts for host and method give what request_host and ascii_upper give."""
    rnd = random.Random(5)
    alphabet = "abcXYZ09.:[]-_éİ\udc80 "
    for _ in range(5000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 10)))
        assert _host(text) == request_host(text), text
        assert _method(text) == ascii_upper(text), text


def test_hand_built_defaults_are_read_only_and_shared():
    """A Request built by hand without headers/cookies/args gets an empty read-only mapping."""
    req = Request("h")
    assert req.headers is EMPTY and req.cookies is EMPTY and req.args is EMPTY
    with pytest.raises(TypeError):
        req.headers["x"] = "y"  # type: ignore[index]
    assert repr(req).startswith("Request(host='h', path='/'")

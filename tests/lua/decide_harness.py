"""Test helpers that put the Python evaluator and the Lua router side by side.

`DecideHarness` is an nginx that checks and decides batches (tests/lua/decide_harness.lua):
rules travel as the msgpack the store holds, requests as raw bytes built by `RawRequest`.
`HttpClient` sends the same raw requests over keep-alive HTTP to a real gateway, so request
building in nginx ($host, $http_*, the query string) is exercised too.
"""
from __future__ import annotations

import json
import socket
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from rulegate.evaluator import Request, RuleSet, decide
from rulegate.request import from_wire, wire_bytes
from rulegate.schema import encode_rule
from rulegate_dev.nginx import NginxLauncher
from tests.conftest import placed_ruleset

HERE = Path(__file__).resolve().parent
IP_HEADER, NOW_HEADER, REQUEST_ID_HEADER = b"X-Test-Ip", b"X-Test-Now", b"X-Test-Request-Id"

HARNESS_HTTP = """
    client_body_buffer_size 16m;
    client_max_body_size 64m;
    server {{
        listen 127.0.0.1:{port};
        location = /check {{ content_by_lua_block {{ require("decide_harness").check() }} }}
        location = /batch {{ content_by_lua_block {{ require("decide_harness").batch() }} }}
        location = /changes {{ content_by_lua_block {{ require("decide_harness").changes() }} }}
    }}
"""


@dataclass
class RawRequest:
    """An HTTP request as bytes: what both runtimes are given."""

    host: bytes
    target: bytes = b"/"
    method: str = "GET"
    ip: bytes = b""
    now: int | float | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    request_id: bytes = b""

    @classmethod
    def from_case(cls, req: dict[str, Any]) -> "RawRequest":
        """Return the raw form of a vector/sidecar request dict (args and cookies objects inlined)."""
        target = wire_bytes(req.get("path") or "/")
        args = req.get("args") or {}
        if args:
            query = "&".join(f"{urllib.parse.quote_plus(wire_bytes(k))}={urllib.parse.quote_plus(wire_bytes(v))}"
                             for k, v in args.items())
            target += (b"&" if b"?" in target else b"?") + query.encode()
        hdrs = req.get("headers") or {}
        pairs = hdrs.items() if isinstance(hdrs, dict) else hdrs
        headers = [(wire_bytes(k), wire_bytes(v)) for k, v in pairs]
        cookies = req.get("cookies") or {}
        if cookies:
            headers.append((b"Cookie", wire_bytes("; ".join(f"{k}={v}" for k, v in cookies.items()))))
        return cls(wire_bytes(req.get("host", "")), target, req.get("method", "GET"), wire_bytes(req.get("ip", "")),
                   req.get("now"), headers, wire_bytes(req.get("request_id", "")))

    def header_lines(self) -> list[tuple[bytes, bytes]]:
        """Return every header line in order, the test headers (client IP, clock, request id) included."""
        lines = [(b"Host", self.host), (IP_HEADER, self.ip)]
        if self.now is not None:
            lines.append((NOW_HEADER, str(self.now).encode()))
        if self.request_id:
            lines.append((REQUEST_ID_HEADER, self.request_id))
        return lines + self.headers

    def python_request(self) -> Request:
        """Return the Request the Python side builds from these bytes (a WSGI-like view)."""
        headers = [(from_wire(k), from_wire(v)) for k, v in self.header_lines()]
        return Request.from_dict({"host": from_wire(self.host), "path": from_wire(self.target),
                                  "method": self.method, "ip": from_wire(self.ip), "now": self.now,
                                  "headers": headers, "request_id": from_wire(self.request_id)})

    def lua_request(self) -> dict[str, Any]:
        """Return the raw request as rulegate.request.from_raw takes it."""
        headers = [[k, v] for k, v in self.header_lines()]
        out: dict[str, Any] = {"host": self.host, "target": self.target, "method": self.method.encode(),
                               "ip": self.ip, "headers": headers}
        if self.now is not None:
            out["now"] = self.now
        if self.request_id:
            out["request_id"] = self.request_id
        return out

    def http_bytes(self) -> bytes:
        """Return the request as sent on the wire (the client IP and clock in test headers)."""
        lines = [self.method.encode() + b" " + self.target + b" HTTP/1.1"]
        lines += [k + b": " + v for k, v in self.header_lines()]
        return b"\r\n".join(lines) + b"\r\n\r\n"


def lua_decision(d: dict[str, Any]) -> dict[str, Any]:
    """Return a Lua decision in the evaluator's to_dict() shape."""
    out: dict[str, Any] = {"action": d["action"], "rule_id": d.get("rule_id"), "revision": d["revision"]}
    if d["action"] == "proxy":
        out["upstream"] = d["upstream"]
    elif d["action"] in ("respond", "redirect"):
        out.update(status=d["status"], headers=d.get("headers") or {}, body=d.get("body", ""))
        if d.get("location") is not None:
            out["location"] = d["location"]
    return out


def python_decisions(rules: list[dict], revision: int, requests: list[RawRequest]) -> list[dict[str, Any]]:
    """Return the Python evaluator's decisions for raw requests; raise when the same rules placed by a full load
    (each route compiled by its first request: `place_rule`) decide any request otherwise."""
    rs = RuleSet(rules, revision)
    out = [decide(rs, r.python_request()).to_dict() for r in requests]
    placed = placed_ruleset(rules, revision)
    mismatch = [n for n, r in enumerate(requests) if decide(placed, r.python_request()).to_dict() != out[n]]
    assert not mismatch, f"the placed Python set differs on requests {mismatch[:10]}"
    return out


class DecideHarness(NginxLauncher):
    """An nginx answering /check (schema) and /batch (decide) for the Lua modules."""

    def __init__(self, prefix: Path) -> None:
        super().__init__(HARNESS_HTTP, prefix=prefix, extra_lua_paths=(f"{HERE}/?.lua",), workers=1)

    def _post(self, path: str, payload: dict[str, Any]) -> Any:
        req = urllib.request.Request(self.url(path), data=msgpack.packb(payload, use_bin_type=True), method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    def check(self, rules: list[dict]) -> list[str | None]:
        """Return the Lua schema's verdict per rule: None (accepted) or the error."""
        return self.check_raw([encode_rule(r) for r in rules])

    def check_raw(self, raws: list[bytes]) -> list[str | None]:
        """Return the Lua schema's verdict per stored rule given as its bytes (as check); fail when
        rulegate.schema_fast was sure of a rule the full check refuses."""
        return self.check_both(raws)[0]

    def check_both(self, raws: list[bytes]) -> tuple[list[str | None], list[bool]]:
        """Return check_raw's verdicts and, per rule, whether rulegate.schema_fast was sure of it."""
        res = self._post("/check", {"rules": raws})
        unsound = [e for e in res["errors"] if e and e.startswith("schema_fast accepted")]
        assert not unsound, unsound[:5]
        return res["errors"], res["fast"]

    def batch(self, rules: list[dict], revision: int, requests: list[RawRequest]) -> list[dict[str, Any]]:
        """Return the Lua router's decisions (to_dict shape); raise when Lua refuses a rule, or when the rules placed
        pending (router.add_pending, compiled by each route's first request) decide any request otherwise."""
        res = self._post("/batch", {"rules": [encode_rule(r) for r in rules], "revision": revision,
                                    "requests": [r.lua_request() for r in requests]})
        refused = [e for e in res["errors"] if e is not None]
        assert not refused, refused
        # the same rules placed pending (compiled by each route's first request) decide the same
        assert not res["pending_mismatch"], f"pending set differs on requests {res['pending_mismatch'][:10]}"
        # every enabled rule but those of scope namespace (mpdecode.route_of leaves them to a whole decode)
        placeable = sorted(r["id"] for r in rules if r.get("enabled", True) is not False and "scope" not in r)
        assert res["pending"] == len(placeable), f"rules not placed pending: {res['unplaced']}"
        return [lua_decision(d) for d in res["decisions"]]


    def changes(self, steps: list[tuple[int, dict[str, dict | None]]],
                requests: list[RawRequest]) -> list[list[dict[str, Any]]]:
        """Return the Lua router's decisions after each step of (revision, {id: rule or None (removed)}), the set
        built by router.with_changes() step by step."""
        res = self._post("/changes", {
            "steps": [{"revision": rev, "changes": {i: encode_rule(r) if r is not None else False
                                                     for i, r in changes.items()}} for rev, changes in steps],
            "requests": [r.lua_request() for r in requests]})
        return [[lua_decision(d) for d in step] for step in res["decisions"]]


@dataclass
class HttpResponse:
    """A raw HTTP response: status, headers (lower-case names, first occurrence), body."""

    status: int
    headers: dict[str, str]
    body: bytes


class HttpClient:
    """One keep-alive connection sending RawRequests to a gateway."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.buf = b""

    def close(self) -> None:
        """Close the connection."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.buf = b""

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(marker, 1)
        return head

    def _read_n(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        self.buf += chunk

    def send(self, req: RawRequest) -> HttpResponse:
        """Send one request and return the response (reconnects when the server closed)."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.sock.sendall(req.http_bytes())
        head = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        if req.method == "HEAD" or status in (204, 304):
            body = b""
        elif "content-length" in headers:
            body = self._read_n(int(headers["content-length"]))
        else:
            body = b""
            while True:
                size = int(self._read_until(b"\r\n"), 16)
                body += self._read_n(size)
                self._read_n(2)
                if size == 0:
                    break
        if headers.get("connection", "").lower() == "close":
            self.close()
        return HttpResponse(status, headers, body)

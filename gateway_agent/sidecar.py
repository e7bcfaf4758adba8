"""The sidecar: a gevent WSGI server answering decisions over HTTP for non-nginx gateways.

POST /v1/decide  JSON request -> JSON decision        GET /v1/rules  the applied rules (ETag, If-None-Match)
POST /v1/report  a decision's rule_id/upstream/breaker + status and latency_ms -> 204 (RuleClient.report)
GET  /healthz    200 when ready (a rule set is loaded), 503 with `state` and `message` before
GET  /metrics   Prometheus text
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import signal
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Iterable

import msgspec

from rulegate.evaluator import Decision, Request

from .client import RuleClient
from .metrics import AgentMetrics
from .sync import Applied, slicer

log = logging.getLogger("rulegate.agent.sidecar")

MAX_BODY = 64 * 1024
MAX_ANSWERS = 10_000  # encoded decision responses kept
_STR_FIELDS = ("host", "path", "method", "ip", "request_id")
_MAP_FIELDS = ("headers", "cookies", "args")
_FIELDS = frozenset(_STR_FIELDS + _MAP_FIELDS + ("now",))
_JSON = [("Content-Type", "application/json")]


class BadRequest(ValueError):
    """The HTTP request cannot be turned into a decision request; the message says why."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def _string_map(value: Any) -> bool:
    if type(value) is not dict:
        return False
    for k, v in value.items():
        if type(k) is not str or type(v) is not str:  # JSON gives exact types: no subclasses to admit
            return False
    return True


def _string_pairs(value: Any) -> bool:
    if type(value) is not list:
        return False
    for p in value:
        if type(p) is not list or len(p) != 2 or type(p[0]) is not str or type(p[1]) is not str:
            return False
    return True


def parse_request(body: bytes) -> Request:
    """Return the Request in a JSON body; raise BadRequest naming the problem.

    The shape is docs/rules.md "Requests": `headers` is an object or a list of [name, value]
    pairs; strings may hold anything JSON can (lone surrogates included): they never fail a decision.
    A body msgspec decodes into `_Body` is well-formed; anything it refuses takes the json path
    (`_parse_json`), which gives json.loads's reading and names the problem.
    """
    try:
        fields = _decode_body(body)
    except msgspec.DecodeError:  # not a well-formed body in UTF-8 JSON (or a lone surrogate): json decides
        pass
    else:
        now = fields.now
        if type(now) is not int or -_INT_LIMIT < now < _INT_LIMIT:
            return Request.from_fields(fields.host, fields.path, fields.method, fields.ip, fields.headers,
                                       fields.cookies, fields.args, now, fields.request_id)
    return _parse_json(body)


def _parse_json(body: bytes) -> Request:
    """Return the Request in a JSON body as json.loads reads it; raise BadRequest naming the problem."""
    try:
        data = _loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if type(data) is dict and _well_formed(data):
        return Request.from_dict(data)
    _check(data)  # names the first problem, in the documented order
    return Request.from_dict(data)


class _Body(msgspec.Struct, forbid_unknown_fields=True):
    """A /v1/decide body that `_check` accepts, as msgspec decodes it in C (absent: the default)."""

    host: Annotated[str, msgspec.Meta(min_length=1)]
    path: str = ""
    method: str = ""
    ip: str = ""
    headers: dict[str, str] | list[tuple[str, str]] | None = None
    cookies: dict[str, str] | None = None
    args: dict[str, str] | None = None
    now: int | float | None = None  # JSON numbers out of a double's range are refused: never inf or NaN
    request_id: str = ""


_decode_body = msgspec.json.Decoder(_Body).decode


_STR_SET = frozenset(_STR_FIELDS)
_OBJECT_SET = frozenset(_MAP_FIELDS)


def _well_formed(data: dict) -> bool:
    """Return True when data passes every check of `_check` (one pass over what is there; never looser)."""
    for name, value in data.items():
        kind = type(value)
        if kind is str:
            if name not in _STR_SET:
                return False
        elif kind is dict:
            if name not in _OBJECT_SET or not _string_map(value):
                return False
        elif value is None:
            if name not in _OBJECT_SET and name != "now":
                return False
        elif kind is list:
            if name != "headers" or not _string_pairs(value):
                return False
        elif name != "now" or (kind is not int and kind is not float) or not math.isfinite(value):
            return False
    host = data.get("host")
    return type(host) is str and host != ""


def _check(data: Any) -> None:
    """Raise BadRequest naming the first problem of a decoded body."""
    if type(data) is not dict:
        raise BadRequest("body must be a JSON object")
    if not data.keys() <= _FIELDS:
        raise BadRequest(f"unknown field {sorted(data.keys() - _FIELDS)[0]!r}")
    host = data.get("host")
    if type(host) is not str or not host:
        raise BadRequest("host is required and must be a string")
    for name in _STR_FIELDS:
        if name in data and type(data[name]) is not str:
            raise BadRequest(f"{name} must be a string")
    headers = data.get("headers")
    if headers is not None and not (_string_map(headers) or _string_pairs(headers)):
        raise BadRequest("headers must be an object of string values or a list of [name, value] strings")
    for name in ("cookies", "args"):
        value = data.get(name)
        if value is not None and not _string_map(value):
            raise BadRequest(f"{name} must be an object of string values")
    now = data.get("now")
    if now is not None and (isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now)):
        raise BadRequest("now must be a finite number")


_REPORT_NAMES = ("rule_id", "upstream", "breaker")
_REPORT_FIELDS = frozenset(_REPORT_NAMES + ("status", "latency_ms"))
MAX_NAME = 256  # rule ids and upstream names are at most 128 characters (rulegate/schema.py)


def parse_report(body: bytes) -> tuple[str | None, str | None, str | None, int, float]:
    """Return (rule_id, upstream, breaker, status, latency_ms) of a /v1/report body; raise BadRequest naming the
    field (`rule_id`, `upstream`, `breaker`: what /v1/decide answered, a string or null; `status`: an integer
    0..999, 0 for a transport failure; `latency_ms`: a finite number >= 0)."""
    try:
        data = _loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if type(data) is not dict:
        raise BadRequest("body must be a JSON object")
    if not data.keys() <= _REPORT_FIELDS:
        name = sorted(data.keys() - _REPORT_FIELDS)[0]
        raise BadRequest(f"unknown field {name!r}", name)
    names = []
    for name in _REPORT_NAMES:
        value = data.get(name)
        if value is not None and (type(value) is not str or not 0 < len(value) <= MAX_NAME):
            raise BadRequest(f"{name} must be a string of 1..{MAX_NAME} characters or null", name)
        names.append(value)
    status = data.get("status")
    if type(status) is not int or not 0 <= status <= 999:
        raise BadRequest("status is required: an integer 0..999 (0: a transport failure)", "status")
    latency = data.get("latency_ms")
    if type(latency) not in (int, float) or not math.isfinite(latency) or latency < 0:
        raise BadRequest("latency_ms is required: a finite number >= 0", "latency_ms")
    return names[0], names[1], names[2], status, float(latency)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


# Integers are bounded where JSON is decoded: one a double cannot hold (1e309 and up) would
# fail later as an OverflowError (500); it is refused here with 400.
MAX_INT_DIGITS = 300
_INT_LIMIT = 10**MAX_INT_DIGITS  # the least integer with more digits


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BadRequest(f"integers may have at most {MAX_INT_DIGITS} digits, got {len(text.lstrip('-'))}")
    return int(text)


_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_int=_bounded_int)
_scan = _DECODER.scan_once
_encode = json.JSONEncoder(separators=(",", ":")).encode


def _loads(body: bytes) -> Any:
    """Return json.loads(body, parse_constant=..., parse_int=...), the decoder built once.

    Fast path: a body that is one UTF-8 JSON object with nothing around it goes straight to the
    C scanner; anything else (whitespace, BOM, UTF-16/32, errors) takes json's own path, so
    results and error messages are json.loads's.
    """
    if body[:1] == b"{" and body[1:2] != b"\x00":  # json.detect_encoding would say utf-8
        text = body.decode("utf-8", "surrogatepass")
        try:
            data, end = _scan(text, 0)
        except StopIteration:
            data, end = None, -1
        if end == len(text):
            return data
    return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))


class SidecarApp:
    """The WSGI application over one RuleClient."""

    def __init__(self, client: RuleClient, metrics: AgentMetrics | None = None, *, max_body: int = MAX_BODY):
        self.client = client
        self.metrics = metrics or AgentMetrics(client)
        self.max_body = max_body
        # id(decision) -> (decision, headers, body): a rule set's decisions are a few shared objects,
        # so most answers are encoded once (the entry keeps its decision alive: ids stay unique)
        self._answers: dict[int, tuple[Decision, list[tuple[str, str]], bytes]] = {}
        self._rules_view: tuple[str, bytes] | None = None  # (ETag, body) of GET /v1/rules for the last set asked

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if path == "/v1/decide":
            if method != "POST":
                return _reply(start_response, 405, {"error": "use POST"})
            return self.decide(environ, start_response)
        if path == "/v1/report":
            if method != "POST":
                return _reply(start_response, 405, {"error": "use POST"})
            return self.report(environ, start_response)
        if method not in ("GET", "HEAD"):
            return _reply(start_response, 405, {"error": "use GET"})
        if path == "/healthz":
            health = self.client.health()
            return _reply(start_response, 200 if health["ready"] else 503, health)
        if path == "/v1/rules":
            return self.rules(environ, start_response)
        if path == "/metrics":
            body, ctype = self.metrics.render()
            start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
            return [body]
        return _reply(start_response, 404, {"error": f"no such endpoint {path}"})

    def rules(self, environ: dict, start_response: Callable) -> list[bytes]:
        """GET /v1/rules: the applied set's rules, revision, generation and digest, all of one set.

        The body is built once per applied set (decoded and JSON-encoded rule by rule, yielding every ~2 ms
        like a reload: at 20,000 rules one json.dumps blocked the sidecar for ~250 ms) and kept, only the
        last one asked for; its ETag names the set, so a poller's If-None-Match costs a 304 and no work."""
        applied = self.client.syncer.current
        namespace = self.client.config.namespace
        if applied is None:
            return _reply(start_response, 200, {"namespace": namespace, "revision": None, "generation": None,
                                                "digest": None, "rules": {}})
        etag = _rules_etag(applied)
        if _etag_matches(environ.get("HTTP_IF_NONE_MATCH"), etag):
            start_response("304 Not Modified", [("ETag", etag)])
            return []
        view = self._rules_view
        if view is None or view[0] != etag:
            view = self._rules_view = (etag, _rules_body(namespace, applied, slicer()))
        body = view[1]
        start_response("200 OK", _JSON + [("ETag", etag), ("Content-Length", str(len(body)))])
        return [body]

    def _body(self, environ: dict, start_response: Callable) -> bytes | list[bytes]:
        """Return the request body, or the error reply (a list) for a bad Content-Length."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _reply(start_response, 400, {"error": "bad Content-Length"})
        if length <= 0 or length > self.max_body:
            return _reply(start_response, 400 if length <= 0 else 413,
                          {"error": f"body must be 1..{self.max_body} bytes of JSON"})
        return environ["wsgi.input"].read(length)

    def report(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        body = self._body(environ, start_response)
        if isinstance(body, list):
            return body
        try:
            rule_id, upstream, breaker, status, latency_ms = parse_report(body)
        except BadRequest as exc:
            payload: dict[str, Any] = {"error": str(exc)}
            if exc.field:
                payload["fields"] = {exc.field: str(exc)}
            return _reply(start_response, 400, payload)
        self.client.report_outcome(rule_id, upstream, breaker, status, latency_ms)
        start_response("204 No Content", [])
        return []

    def decide(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        body = self._body(environ, start_response)
        if isinstance(body, list):
            return body
        try:
            request = parse_request(body)
        except BadRequest as exc:
            return _reply(start_response, 400, {"error": str(exc)})
        decision = self.client.decide(request)
        self.metrics.decisions[decision.action].inc()
        answer = self._answers.get(id(decision))
        if answer is None or answer[0] is not decision:
            answer = self._encode_answer(decision)
        start_response("200 OK", list(answer[1]))  # a copy: a server may add to the list it gets
        return [answer[2]]

    def _encode_answer(self, decision: Decision) -> tuple[Decision, list[tuple[str, str]], bytes]:
        out = decision.to_dict()
        if decision.breaker is not None:
            out["breaker"] = decision.breaker  # what /v1/report takes back with the outcome
        body = _encode(out).encode()
        answer = (decision, _JSON + [("Content-Length", str(len(body)))], body)
        if len(self._answers) >= MAX_ANSWERS:
            self._answers.clear()
        self._answers[id(decision)] = answer
        return answer


_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 503: "Service Unavailable"}


_json = msgspec.json.encode


def _rules_etag(applied: Applied) -> str:
    """Return the strong ETag of an applied set's /v1/rules body: equal generation, revision and content digest
    give equal bodies."""
    return '"%s"' % hashlib.sha1(f"{applied.generation}\n{applied.revision}\n{applied.digest}".encode()).hexdigest()


def _etag_matches(header: str | None, etag: str) -> bool:
    """True when an If-None-Match header names etag (or is `*`); weak tags compare by their value."""
    if not header:
        return False
    return any(tag.strip().removeprefix("W/") in (etag, "*") for tag in header.split(","))


def _rules_body(namespace: str, applied: Applied, pause: Callable[[], None]) -> bytes:
    """Return the JSON of /v1/rules for applied, decoding and encoding one rule between two pause() calls
    (msgspec's encoder: ~1 µs a rule; the bytes were validated when applied, so decoding does not raise)."""
    parts = [b'{"namespace":', _json(namespace), b',"revision":', _json(applied.revision), b',"generation":',
             _json(applied.generation), b',"digest":', _json(applied.digest), b',"rules":{']
    sep = b""
    for rule_id, rule in applied.each_rule(pause):
        parts += (sep, _json(rule_id), b":", _json(rule))
        sep = b","
    parts.append(b"}}")
    return b"".join(parts)


def _reply(start_response: Callable, status: int, payload: Any) -> list[bytes]:
    body = _encode(payload).encode()
    start_response(f"{status} {_REASONS[status]}", _JSON + [("Content-Length", str(len(body)))])
    return [body]


@dataclass(frozen=True)
class ServerLimits:
    """Limits of the sidecar's HTTP server (gateway_agent.wsgi_server enforces them).

    A connection waits at most idle_timeout s for its next request; a request (line, headers,
    body) must arrive within request_timeout s (else 408); bodies above max_body bytes get 413."""

    max_body: int = MAX_BODY
    idle_timeout: float = 30.0
    request_timeout: float = 10.0
    max_connections: int = 1000

    def __post_init__(self) -> None:
        if min(self.max_body, self.idle_timeout, self.request_timeout, self.max_connections) <= 0:
            raise ValueError(f"server limits must be positive: {self}")


def serve(client: RuleClient, host: str, port: int, *, limits: ServerLimits = ServerLimits(),
          stop_timeout: float = 5.0) -> None:
    """Start client and a gevent WSGI server on host:port; return after SIGTERM/SIGINT (graceful)."""
    import gevent

    from .wsgi_server import make_server

    client.start()
    server = make_server(SidecarApp(client, max_body=limits.max_body), host, port, limits, error_log=log)

    def shutdown() -> None:
        log.info("shutting down: draining requests for up to %.0fs", stop_timeout)
        server.stop(timeout=stop_timeout)

    gevent.signal_handler(signal.SIGTERM, shutdown)
    gevent.signal_handler(signal.SIGINT, shutdown)
    log.info("sidecar for namespace %s listening on %s:%d", client.config.namespace, host, port)
    try:
        server.serve_forever()
    finally:
        client.stop()
        log.info("sidecar stopped")

"""The request the evaluator sees, and how it is built from raw HTTP values.

lua/rulegate/request.lua builds the same request inside nginx; docs/rules.md "Requests" is the
spec both follow. Building a Request is on every decision's path, so it is cheap: the Cookie
header and the query string are parsed only when a rule reads `cookies` / `args`, and
`Request.from_environ` reads headers from a WSGI environ on demand. Strings are text; bytes that
are not UTF-8 travel as the lone surrogates U+DC80..U+DCFF (Python's "surrogateescape"), so every
request string maps to exactly the bytes nginx saw (`wire_bytes`).
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, Iterable

from .hostnames import ascii_lower, ascii_upper, request_host

MAX_ARGS = 100
EMPTY: Mapping[str, str] = MappingProxyType({})
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def wire_bytes(text: str) -> bytes:
    """Return the bytes a request string stands for: UTF-8, U+DC80..U+DCFF as raw bytes; never raises.

    A string holding any other lone surrogate is encoded with every surrogate in its 3-byte form.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def from_wire(raw: bytes) -> str:
    """Return request bytes as a string (invalid UTF-8 as lone surrogates, reversible by wire_bytes)."""
    return raw.decode("utf-8", "surrogateescape")


def _unescape(raw: bytes) -> bytes:
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        raw = _ESCAPE.sub(lambda m: bytes((int(m[1], 16),)), raw)
    return raw


def parse_query(query: str, max_args: int = MAX_ARGS) -> dict[str, str]:
    """Return the arguments of a raw query string: the first `max_args` '&'-separated segments count.

    A segment is `name=value` (no '=': the value is ''); '+' is a space, then %XX is decoded (an
    invalid escape stays as it is); a segment with an empty name is ignored but counted; the
    first occurrence of a name counts.
    """
    out: dict[str, str] = {}
    for segment in wire_bytes(query).split(b"&", max_args)[:max_args]:
        name, _, value = segment.partition(b"=")
        name = _unescape(name)
        if name:
            key = from_wire(name)
            if key not in out:
                out[key] = from_wire(_unescape(value))
    return out


def parse_cookies(raw: str) -> dict[str, str]:
    """Return the cookies of a Cookie header: `name=value` pieces split on ';', spaces and tabs trimmed.

    Pieces without '=' or with an empty name are ignored; the first occurrence of a name counts;
    values are taken as they are (no unquoting, no decoding).
    """
    out: dict[str, str] = {}
    for piece in raw.split(";"):
        name, eq, value = piece.partition("=")
        name = name.strip(" \t")
        if eq and name and name not in out:
            out[name] = value.strip(" \t")
    return out


def header_map(headers: Headers) -> dict[str, str]:
    """Return lower-case name -> value; the first occurrence of a name counts, Cookie lines join with '; '."""
    items = headers.items() if type(headers) is dict or isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    cookie: str | None = None
    for name, value in items:
        if type(name) is not str:
            name = str(name)
        if not name.islower():  # islower(): no cased character is upper-case, so A-Z lower-casing is a no-op
            name = ascii_lower(name)
        if type(value) is not str:
            value = str(value)
        if name == "cookie":
            cookie = value if cookie is None else f"{cookie}; {value}"
        elif name not in out:
            out[name] = value
    if cookie is not None:
        out["cookie"] = cookie
    return out


def _host(raw: str) -> str:
    """Return request_host(raw), skipping the work when raw is already a routing host (the common case)."""
    if raw.islower() and ":" not in raw and raw[-1:] != "." and raw[:1] != "[":
        return raw
    return request_host(raw)


def _method(raw: str) -> str:
    return raw if raw.isupper() else ascii_upper(raw)


# Hosts and methods repeat across requests: normalized once, then looked up (bounded; GIL-atomic dict ops).
_HOSTS: dict[str, str] = {}
_METHODS = {m: m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
MAX_CACHED_HOSTS = 4096
_ENV_HOSTS: dict[str, str] = {}  # the same for ASCII HTTP_HOST values (a native string is its request string)


def _cached_host(raw: str) -> str:
    host = _HOSTS.get(raw)
    if host is None:
        host = _host(raw)
        if len(_HOSTS) >= MAX_CACHED_HOSTS:
            _HOSTS.clear()
        _HOSTS[raw] = host
    return host


_PLAIN_NAMES: set[str] = set()  # header names that header_map() keeps as they are (str, lower-case, not cookie)


def _cached_env_host(raw: str) -> str:
    host = _HOSTS.get(raw) or _cached_host(raw)
    if len(_ENV_HOSTS) >= MAX_CACHED_HOSTS:
        _ENV_HOSTS.clear()
    _ENV_HOSTS[raw] = host
    return host


def _plain_name(name: object) -> bool:
    """Return True when header_map() keeps `name` as it is, remembering such names (bounded)."""
    if type(name) is not str or not name.islower() or name == "cookie":
        return False
    if len(_PLAIN_NAMES) >= 4096:
        _PLAIN_NAMES.clear()
    _PLAIN_NAMES.add(name)
    return True


def from_native(text: str) -> str:
    """Return a WSGI "native string" (bytes as latin-1, PEP 3333) as a request string (see `from_wire`)."""
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # not a native string: the server decoded it already
        return text


_ENV_KEYS: dict[str, str | None] = {}


def _environ_key(name: str) -> str | None:
    """Return the environ key of a lower-case header name, None for a name a gateway cannot deliver."""
    key = _ENV_KEYS.get(name, "")
    if key == "":
        if "_" in name or ascii_lower(name) != name:  # not a stored (lower-case) name; nginx drops '_' names
            key = None
        elif name in ("content-type", "content-length"):
            key = ascii_upper(name).replace("-", "_")
        else:
            key = "HTTP_" + ascii_upper(name).replace("-", "_")
        if len(_ENV_KEYS) >= 4096:
            _ENV_KEYS.clear()
        _ENV_KEYS[name] = key
    return key


class EnvironHeaders(Mapping[str, str]):
    """The request headers of a WSGI environ as a read-only lower-case name -> value mapping, read on demand.

    Caveats (docs/rules.md "Requests"): the WSGI server has already merged repeated headers (most
    join them with ',' — the spec counts the first occurrence; Cookie lines are joined with '; ' by
    gevent, werkzeug and gunicorn) and maps '-' to '_' in names, so a header sent as `X_Uid` may read
    as `x-uid` on servers that do not drop such names (gevent and nginx drop them).
    """

    __slots__ = ("environ",)

    def __init__(self, environ: Mapping[str, Any]):
        self.environ = environ

    def get(self, name: str, default: Any = None) -> Any:
        key = _ENV_KEYS.get(name) or _environ_key(name)
        value = self.environ.get(key) if key is not None else None
        if value is None or (value == "" and key[0] == "C"):  # servers set CONTENT_TYPE "" for none
            return default
        return value if value.isascii() else from_native(value)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        for key in self.environ:
            if key.startswith("HTTP_"):
                yield ascii_lower(key[5:]).replace("_", "-")
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and self.environ[key] != "":
                yield ascii_lower(key).replace("_", "-")

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"EnvironHeaders({dict(self)!r})"


class Request:
    """What the evaluator needs of an HTTP request, as a gateway built it (see `from_dict`).

    `host` is normalized (`hostnames.request_host`), `path` has no query, header names are
    lower-case; `headers`, `cookies` and `args` hold the counting (first) value of each name.
    Built by hand, `cookies` and `args` are what is given (default: none). Treat a Request as
    read-only: `cookies` and `args` of one built by `from_dict`/`from_environ` are parsed on first use.
    """

    __slots__ = ("host", "path", "method", "ip", "headers", "now", "request_id", "_cookies", "_args", "_query")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, host: str, path: str = "/", method: str = "GET", ip: str = "",
                 headers: Mapping[str, str] | None = None, cookies: Mapping[str, str] | None = None,
                 args: Mapping[str, str] | None = None, now: float | None = None, request_id: str = ""):
        self.host = host
        self.path = path
        self.method = method
        self.ip = ip
        self.headers = EMPTY if headers is None else headers
        self._cookies = EMPTY if cookies is None else cookies
        self._args = EMPTY if args is None else args
        self.now = now
        self.request_id = request_id

    @property
    def cookies(self) -> Mapping[str, str]:
        """Return the cookies (name -> first value), parsing the Cookie header on first use."""
        cookies = self._cookies
        if cookies is None:  # from the (joined) Cookie header
            raw = self.headers.get("cookie")
            cookies = self._cookies = parse_cookies(raw) if raw else EMPTY
        return cookies

    @property
    def args(self) -> Mapping[str, str]:
        """Return the query arguments (name -> first value), parsing the query string on first use."""
        args = self._args
        if args is None:
            args = self._args = parse_query(self._query)
        return args

    def _fields(self) -> tuple:
        return (self.host, self.path, self.method, self.ip, self.headers, self.cookies, self.args, self.now,
                self.request_id)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Request:
            return NotImplemented
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        names = ("host", "path", "method", "ip", "headers", "cookies", "args", "now", "request_id")
        return "Request(" + ", ".join(f"{n}={v!r}" for n, v in zip(names, self._fields())) + ")"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Request":
        """Return the Request of a JSON-shaped mapping (the vectors', the sidecar's, the simulator's).

        `host` is the raw Host header (port, case and a trailing dot are normalized); `path` the
        request target, whose query gives the args unless `args` is given; `headers` an object or a
        list of [name, value] pairs; `cookies`, when absent, come from the Cookie header; `request_id`
        the id a degrade keyed on `request` hashes (absent: a random id per decision).
        """
        if type(data) is dict and len(data) == 5:  # the common shape, exactly host, path, method, ip, headers
            try:
                host, target, method, ip = data["host"], data["path"], data["method"], data["ip"]
                headers = data["headers"]
                if (type(headers) is dict and len(headers) == 1 and type(host) is str and type(target) is str
                        and type(ip) is str and target and "?" not in target):
                    name, = headers
                    value = headers[name]
                    if type(name) is str and type(value) is str and (name in _PLAIN_NAMES or _plain_name(name)):
                        # as the general path builds it, from values that need no work (KeyError: a cache miss)
                        req = _new(cls)
                        req.host = _HOSTS[host]
                        req.method = _METHODS[method]
                        req.path = target
                        req.ip = ip
                        req.headers = {name: value}
                        req._cookies = None
                        req._args = EMPTY
                        req.now = None
                        req.request_id = ""
                        return req
            except KeyError:
                pass
        return cls._from_mapping(data)

    @classmethod
    def _from_mapping(cls, data: Mapping[str, Any]) -> "Request":
        get = data.get
        return cls.from_fields(get("host", ""), get("path"), get("method"), get("ip"), get("headers"), get("cookies"),
                               get("args"), get("now"), get("request_id"))

    @classmethod
    def from_fields(cls, host: str, path: str | None = None, method: str | None = None, ip: str | None = None,
                    headers: Headers | None = None, cookies: Mapping[str, str] | None = None,
                    args: Mapping[str, str] | None = None, now: float | None = None,
                    request_id: str | None = None) -> "Request":
        """Return the Request `from_dict` builds of a mapping holding these fields (None or "": absent)."""
        req = _new(cls)
        if type(host) is not str:
            host = str(host)
        req.host = _HOSTS.get(host) or _cached_host(host)
        target = path or "/"
        if type(target) is not str:
            target = str(target)
        mark = target.find("?") if "?" in target else -1
        req.path = target if mark == -1 else target[:mark] or "/"
        method = method or "GET"
        req.method = _METHODS.get(method) or _method(method if type(method) is str else str(method))
        ip = ip or ""
        req.ip = ip if type(ip) is str else str(ip)
        if type(headers) is dict and len(headers) == 1:  # the common one-header case, inlined
            name, = headers
            value = headers[name]
            if type(name) is str and type(value) is str and (name in _PLAIN_NAMES or _plain_name(name)):
                req.headers = {name: value}
            else:
                req.headers = header_map(headers)
        elif not headers:
            req.headers = {}
        else:
            req.headers = header_map(headers)
        if cookies is None:
            req._cookies = None
        else:
            req._cookies = {str(k): str(v) for k, v in cookies.items()}
        if args is not None:
            req._args = {str(k): str(v) for k, v in list(args.items())[:MAX_ARGS]}
        elif mark == -1:
            req._args = EMPTY
        else:
            req._args, req._query = None, target[mark + 1:]
        req.now = now
        request_id = request_id or ""
        req.request_id = request_id if type(request_id) is str else str(request_id)
        return req

    @classmethod
    def from_environ(cls, environ: Mapping[str, Any], *, ip: str | None = None, now: float | None = None,
                     request_id: str = "") -> "Request":
        """Return the Request of a WSGI environ; headers are read from its `HTTP_*` keys on demand.

        `host` is HTTP_HOST; `path` the raw target of RAW_URI / REQUEST_URI when the server gives
        one, else SCRIPT_NAME + PATH_INFO (already percent-decoded by the server); args come from
        QUERY_STRING; `ip` defaults to REMOTE_ADDR. Strings are read as WSGI native strings
        (bytes as latin-1). What differs from `from_dict` over the raw request is the WSGI
        server's doing: repeated headers arrive merged (see `EnvironHeaders`).
        """
        if type(environ) is dict and "RAW_URI" not in environ and "REQUEST_URI" not in environ:
            try:  # the common shape (gevent's pywsgi): cached ASCII host, known method, ASCII path (KeyError: not)
                path = environ["SCRIPT_NAME"] + environ["PATH_INFO"]
                query = environ["QUERY_STRING"]
                if path and path.isascii():
                    req = _new(cls)
                    req.host = _ENV_HOSTS[environ["HTTP_HOST"]]
                    req.method = _METHODS[environ["REQUEST_METHOD"]]
                    req.path = path
                    req.ip = environ.get("REMOTE_ADDR", "") if ip is None else ip
                    req.headers = headers = _new(EnvironHeaders)
                    headers.environ = environ
                    req._cookies = None
                    if query:
                        req._args, req._query = None, query if query.isascii() else from_native(query)
                    else:
                        req._args = EMPTY
                    req.now = now
                    req.request_id = request_id
                    return req
            except KeyError:
                pass
        req = _new(cls)
        host = environ.get("HTTP_HOST", "")
        if host.isascii():
            req.host = _ENV_HOSTS.get(host) or _cached_env_host(host)
        else:
            req.host = _host(from_native(host))
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if raw:
            path = raw.partition("?")[0]
        else:
            path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        req.path = (path if path.isascii() else from_native(path)) or "/"
        method = environ.get("REQUEST_METHOD") or "GET"
        req.method = _METHODS.get(method) or _method(method)
        req.ip = environ.get("REMOTE_ADDR", "") if ip is None else ip
        req.headers = headers = _new(EnvironHeaders)  # EnvironHeaders(environ) without an __init__ call
        headers.environ = environ
        req._cookies = None
        query = environ.get("QUERY_STRING")
        if query:
            req._args, req._query = None, query if query.isascii() else from_native(query)
        else:
            req._args = EMPTY
        req.now = now
        req.request_id = request_id
        return req


_new = object.__new__

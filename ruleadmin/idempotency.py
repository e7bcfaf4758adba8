"""Idempotency-Key on mutating API calls: the first answer per (user, key) is kept in Redis and replayed."""
from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Callable

from flask import Response, current_app, request

from rulegate.connection import redis_call
from rulegate.errors import StoreError

from .auth import api_user
from .errors import APIError
from .extensions import backend

log = logging.getLogger("ruleadmin")

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
KEY_PREFIX = "rg:idem:"
PENDING_SECONDS = 60  # a reservation whose request died without releasing it frees the key after this
KEPT_HEADERS = ("ETag", "Location", "Content-Type")
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Record:
    """What a key is bound to: the request's fingerprint and, once answered, the answer (status None = running)."""

    fingerprint: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def dumps(self) -> str:
        """Return the record as JSON for Redis."""
        return json.dumps({"fp": self.fingerprint, "status": self.status, "headers": self.headers,
                           "body": base64.b64encode(self.body).decode()})

    @classmethod
    def loads(cls, raw: bytes | str) -> "Record":
        """Return the record stored as `raw`."""
        data = json.loads(raw)
        return cls(data["fp"], data["status"], data["headers"], base64.b64decode(data["body"]))


class IdempotencyStore:
    """Records under rg:idem:<user>:<sha256(key)>: reserved with SET NX, then the answer kept for ttl seconds."""

    def __init__(self, client, ttl_seconds: int, pending_seconds: int = PENDING_SECONDS):
        self.client = client
        self.ttl = ttl_seconds
        self.pending = pending_seconds

    @staticmethod
    def name(user: str, key: str) -> str:
        """Return the Redis key of a user's Idempotency-Key."""
        return f"{KEY_PREFIX}{user}:{hashlib.sha256(key.encode()).hexdigest()}"

    _call = staticmethod(redis_call)

    def reserve(self, name: str, fingerprint: str) -> Record | None:
        """Return None when this call now owns the key, else the earlier record; raise StoreError."""
        for _ in range(3):
            if self._call(self.client.set, name, Record(fingerprint).dumps(), nx=True, ex=self.pending):
                return None
            raw = self._call(self.client.get, name)
            if raw is not None:
                return Record.loads(raw)
        return Record(fingerprint)  # freed and re-taken in between: treat as still running

    def save(self, name: str, record: Record) -> None:
        """Keep the answer for ttl seconds; raise StoreError."""
        self._call(self.client.set, name, record.dumps(), ex=self.ttl)

    def release(self, name: str) -> None:
        """Delete the reservation so the client can retry; raise StoreError."""
        self._call(self.client.delete, name)


def parse_key(raw: str) -> str:
    """Return the header value; raise APIError 400 unless it is 1-255 printable ASCII characters."""
    if not 1 <= len(raw) <= MAX_KEY_LENGTH or any(not " " <= c <= "~" for c in raw):
        raise APIError(400, f"{HEADER} must be 1-255 printable ASCII characters",
                       {HEADER: "must be 1-255 printable ASCII characters"})
    return raw


def fingerprint(method: str, path: str, body: bytes) -> str:
    """Return the sha256 hex digest of method, path and body."""
    return hashlib.sha256(b"\n".join((method.encode(), path.encode(), body))).hexdigest()


def canonical_body() -> bytes:
    """Return the request body, as sorted compact JSON when it parses (so key order and spacing do not count)."""
    raw = request.get_data(cache=True)
    data = request.get_json(silent=True) if request.is_json else None
    if data is None:
        return raw
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _record(fp: str, resp: Response, redact: tuple[str, ...]) -> Record:
    body = resp.get_data()
    if redact and resp.is_json:
        data = json.loads(body)
        if isinstance(data, dict):
            body = json.dumps({**data, **{k: None for k in redact if k in data}}).encode()
    return Record(fp, resp.status_code, {h: resp.headers[h] for h in KEPT_HEADERS if h in resp.headers}, body)


def _replay(earlier: Record, fp: str) -> Response:
    if earlier.fingerprint != fp:
        raise APIError(422, f"this {HEADER} was already used with a different request",
                       {HEADER: "was used with a different method, path or body"})
    if earlier.status is None:
        raise APIError(409, f"a request with this {HEADER} is still in progress; retry later",
                       {HEADER: "in progress"}, headers={"Retry-After": "1"})
    resp = Response(earlier.body, status=earlier.status, headers=earlier.headers)
    resp.headers[REPLAYED] = "true"
    return resp


def _run(view: Callable, args: tuple, kwargs: dict) -> Response:
    """Return the view's response, rendering a raised error through the app's error handlers (re-raised if none)."""
    try:
        return current_app.make_response(view(*args, **kwargs))
    except Exception as exc:
        return current_app.make_response(current_app.handle_user_exception(exc))


def _settle(store: IdempotencyStore, name: str, record: Record | None) -> None:
    """Keep the answer, or release the key when record is None; a Redis failure is logged, not raised."""
    try:
        if record is None:
            store.release(name)
        else:
            store.save(name, record)
    except StoreError as exc:
        log.warning("could not settle an %s record: %s", HEADER, exc)


def idempotent(redact: tuple[str, ...] = ()) -> Callable:
    """Decorate a mutating API view (inside api_role): honour Idempotency-Key; `redact` body fields are not kept."""

    def deco(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            raw = request._get_current_object().headers.get(HEADER)
            if raw is None:
                return view(*args, **kwargs)
            name = IdempotencyStore.name(api_user().username, parse_key(raw))
            fp = fingerprint(request.method, request.path, canonical_body())
            store = IdempotencyStore(backend().store.client, int(current_app.config["IDEMPOTENCY_TTL_SECONDS"]))
            earlier = store.reserve(name, fp)
            if earlier is not None:
                return _replay(earlier, fp)
            try:
                resp = _run(view, args, kwargs)
            except BaseException:
                _settle(store, name, None)
                raise
            _settle(store, name, None if resp.status_code >= 500 else _record(fp, resp, redact))
            return resp

        wrapped.idempotent = True
        return wrapped

    return deco

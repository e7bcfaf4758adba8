"""API token records in Redis: rg:tokens (sha256 -> JSON), rg:tokens:used (sha256 -> last use, UNIX time).

A token is random and shown once; only its SHA-256 is stored, and its id is the first 16 hex digits
of that hash. A record may cap the role, limit the namespaces and carry an expiry.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable

from cachetools import TTLCache

from rulegate.connection import redis_call
from rulegate.schema import is_valid_id

from .principals import ROLES, AccountError

TOKENS_KEY = "rg:tokens"
USED_KEY = "rg:tokens:used"
TOKEN_PREFIX = "rgt_"
TOUCH_EVERY_SECONDS = 60  # last-use stamps are written at most this often per token and instance


def token_hash(token: str) -> str:
    """Return the sha256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenRecord:
    """A stored token (never its secret): owner, label, creator, role cap, namespace scope, expiry, last use."""

    digest: str
    username: str
    name: str = ""
    created_at: int = 0
    created_by: str = ""
    role: str | None = None
    namespaces: frozenset[str] | None = None
    expires_at: int | None = None
    last_used_at: int | None = None

    @property
    def id(self) -> str:
        """Return the token's public id: the first 16 hex digits of its hash."""
        return self.digest[:16]

    @classmethod
    def from_json(cls, digest: str, raw: bytes | str, last_used: int | None = None) -> "TokenRecord":
        """Return the record stored under digest (older records lack role, scope and expiry)."""
        rec = json.loads(raw)
        scope = rec.get("namespaces")
        return cls(digest, rec["username"], rec.get("name", ""), int(rec.get("created_at") or 0),
                   rec.get("created_by", ""), rec.get("role"), frozenset(scope) if scope is not None else None,
                   rec.get("expires_at"), last_used)

    def to_json(self) -> str:
        """Return the JSON stored in rg:tokens."""
        return json.dumps({"username": self.username, "name": self.name, "created_at": self.created_at,
                           "created_by": self.created_by, "role": self.role, "expires_at": self.expires_at,
                           "namespaces": sorted(self.namespaces) if self.namespaces is not None else None})

    def expired(self, now: float) -> bool:
        """Return True once the expiry has passed."""
        return self.expires_at is not None and now >= self.expires_at

    def to_dict(self, now: float) -> dict:
        """Return the record as shown by the API, the CLI and the UI."""
        return {"id": self.id, "username": self.username, "name": self.name, "role": self.role,
                "namespaces": sorted(self.namespaces) if self.namespaces is not None else None,
                "created_at": self.created_at, "created_by": self.created_by, "expires_at": self.expires_at,
                "expired": self.expired(now), "last_used_at": self.last_used_at}


class Tokens:
    """Token records; raise StoreError when Redis fails."""

    def __init__(self, client, clock: Callable[[], float] = time.time):
        self.client = client
        self.clock = clock
        self._touched: TTLCache = TTLCache(16384, TOUCH_EVERY_SECONDS)
        self._touch_lock = threading.Lock()

    _call = staticmethod(redis_call)

    @staticmethod
    def digest(token: str) -> str | None:
        """Return the stored hash of a well-formed token, None for anything that cannot be one."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        return token_hash(token)

    def create(self, record: TokenRecord) -> None:
        """Store a new token record."""
        self._call(self.client.hset, TOKENS_KEY, record.digest, record.to_json())

    @staticmethod
    def new_secret() -> tuple[str, str]:
        """Return (token, its digest) for a fresh random token."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        return token, token_hash(token)

    def load(self, digest: str) -> TokenRecord | None:
        """Return the record stored under digest, or None."""
        raw = self._call(self.client.hget, TOKENS_KEY, digest)
        return TokenRecord.from_json(digest, raw) if raw else None

    def list(self, username: str | None = None) -> list[TokenRecord]:
        """Return every token record (optionally of one user) with its last use, oldest first."""
        raw = self._call(self.client.hgetall, TOKENS_KEY)
        used = {k.decode(): int(v) for k, v in self._call(self.client.hgetall, USED_KEY).items()}
        out = []
        for digest, value in raw.items():
            rec = TokenRecord.from_json(digest.decode(), value, used.get(digest.decode()))
            if username is None or rec.username == username:
                out.append(rec)
        return sorted(out, key=lambda r: (r.created_at, r.id))

    def revoke(self, token_id: str) -> bool:
        """Delete the token whose id (hash prefix) is token_id; return whether one was deleted."""
        if len(token_id) != 16 or any(c not in "0123456789abcdef" for c in token_id):
            return False
        for digest in self._call(self.client.hkeys, TOKENS_KEY):
            if digest.decode().startswith(token_id):
                self._call(self.client.hdel, USED_KEY, digest)
                return bool(self._call(self.client.hdel, TOKENS_KEY, digest))
        return False

    def touch(self, digest: str) -> None:
        """Record that a token was used now, at most once per TOUCH_EVERY_SECONDS on this instance."""
        with self._touch_lock:
            if digest in self._touched:
                return
            self._touched[digest] = True
        self._call(self.client.hset, USED_KEY, digest, int(self.clock()))


# ---- what a new token may be -------------------------------------------------------------
MAX_SCOPE = 100
MIN_TOKEN_SECONDS = 60
MAX_TOKEN_SECONDS = 10 * 365 * 86400


def token_role(role: object, cap: str) -> str:
    """Return the token's role: `cap` when None, else role when it is a role no higher than cap."""
    if role is None:
        return cap
    if not isinstance(role, str) or role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}", "role")
    if ROLES.index(role) > ROLES.index(cap):
        raise AccountError(f"role must not exceed {cap}", "role")
    return role


def token_scope(namespaces: object, creator_scope: frozenset[str] | None) -> frozenset[str] | None:
    """Return the namespaces a token may reach (None: all), within the creator's scope."""
    if namespaces is None:
        return creator_scope
    if (not isinstance(namespaces, (list, tuple)) or not 1 <= len(namespaces) <= MAX_SCOPE
            or not all(is_valid_id(n) for n in namespaces)):
        raise AccountError(f"namespaces must be a list of 1-{MAX_SCOPE} namespace names", "namespaces")
    scope = frozenset(namespaces)
    if creator_scope is not None and not scope <= creator_scope:
        raise AccountError("namespaces must be within the creating token's namespaces", "namespaces")
    return scope


def token_expiry(expires_in: object, max_lifetime: int, now: float, creator_expiry: int | None) -> int | None:
    """Return the expiry (UNIX time, None: never): now + expires_in, at most max_lifetime (0: no cap) and
    never after the creating token's expiry."""
    limit = max_lifetime or MAX_TOKEN_SECONDS
    if expires_in is None:
        seconds = max_lifetime or None
    elif isinstance(expires_in, bool) or not isinstance(expires_in, int) or not MIN_TOKEN_SECONDS <= expires_in <= limit:
        raise AccountError(f"expires_in must be {MIN_TOKEN_SECONDS}-{limit} seconds", "expires_in")
    else:
        seconds = expires_in
    expiry = int(now) + seconds if seconds else None
    if creator_expiry is not None:
        expiry = min(expiry or creator_expiry, creator_expiry)
    return expiry

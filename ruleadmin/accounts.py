"""Users, password hashes, API token hashes and login rate limits, all stored in Redis under rg: keys."""
from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable

from cachetools import TTLCache
from werkzeug.security import check_password_hash, generate_password_hash

from rulegate.connection import REDIS_ERRORS
from rulegate.errors import StoreError
from rulegate.schema import is_valid_id

USERS_KEY = "rg:users"
TOKENS_KEY = "rg:tokens"
LOGIN_FAIL_PREFIX = "rg:login:fail:"
AUDIT_KEY = "rg:audit"
AUDIT_MAXLEN = 10_000
ROLES = ("viewer", "editor", "admin")
TOKEN_PREFIX = "rgt_"
# a constant hash so an unknown user costs as much as a wrong password (no user enumeration by timing)
_DUMMY_HASH = generate_password_hash("not-a-real-password")


@dataclass(frozen=True)
class User:
    """An authenticated principal: name, role, and how it authenticated (session or token id)."""

    username: str
    role: str
    token_id: str | None = None

    # Flask-Login protocol
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return self.username

    def can(self, role: str) -> bool:
        """Return True when this user's role is at least `role`."""
        return ROLES.index(self.role) >= ROLES.index(role)


class AccountError(ValueError):
    """A user or token request is invalid; the message says why."""


def token_hash(token: str) -> str:
    """Return the sha256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """Users and tokens in Redis (rg:users, rg:tokens) plus the shared login rate limiter."""

    def __init__(self, client, *, max_failures: int = 5, max_failures_per_ip: int = 50,
                 window_seconds: int = 300, auth_cache_seconds: float = 5.0, auth_cache_size: int = 4096,
                 timer: Callable[[], float] = time.monotonic):
        self.client = client
        self.max_failures = max_failures
        self.max_failures_per_ip = max_failures_per_ip
        self.window = window_seconds
        # Who a session or token is, cached per instance for a few seconds: every API call and page
        # view otherwise costs one or two Redis round trips. Changes made through this instance
        # clear it at once; other instances see a revoked token or a changed role within the TTL.
        self._auth_cache: TTLCache | None = (TTLCache(auth_cache_size, auth_cache_seconds, timer=timer)
                                             if auth_cache_seconds > 0 else None)
        self._auth_lock = threading.Lock()

    def _cached(self, key: tuple[str, str], load: Callable[[], User | None]) -> User | None:
        """Return the cached lookup for key, or run load() and cache its answer (None included)."""
        cache = self._auth_cache
        if cache is None:
            return load()
        with self._auth_lock:
            if key in cache:
                return cache[key]
        user = load()
        with self._auth_lock:
            cache[key] = user
        return user

    def forget_cached(self) -> None:
        """Drop every cached session/token lookup of this instance (after any account change)."""
        if self._auth_cache is not None:
            with self._auth_lock:
                self._auth_cache.clear()

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except REDIS_ERRORS as exc:
            raise StoreError(f"redis: {exc.__class__.__name__}") from None

    # ---- audit (account events; rule changes are in each namespace's log) --------------------
    def audit(self, event: str, actor: str, subject: str, detail: str = "") -> None:
        """Append an account event (user/token/namespace/login) to the capped rg:audit stream."""
        self._call(lambda: self.client.xadd(AUDIT_KEY, {"event": event, "actor": actor, "subject": subject,
                                                        "detail": detail, "ts": int(time.time())},
                                            maxlen=AUDIT_MAXLEN, approximate=True))

    def recent_audit(self, count: int = 100) -> list[dict]:
        """Return the newest account events first."""
        raw = self._call(self.client.xrevrange, AUDIT_KEY, "+", "-", count)
        return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in raw]

    # ---- users -----------------------------------------------------------------------------
    def create_user(self, username: str, role: str, password: str, actor: str = "cli") -> User:
        """Create or update a user; raise AccountError for a bad name, role or short password."""
        if not is_valid_id(username):
            raise AccountError("username must match [a-z0-9][a-z0-9_.-]{0,63}")
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}")
        if len(password) < 8:
            raise AccountError("password must have at least 8 characters")
        record = {"role": role, "password": generate_password_hash(password), "created_at": int(time.time())}
        self._call(self.client.hset, USERS_KEY, username, json.dumps(record))
        self.forget_cached()
        self.audit("user.saved", actor, username, role)
        return User(username, role)

    def _record(self, username: str) -> dict | None:
        raw = self._call(self.client.hget, USERS_KEY, username)
        return json.loads(raw) if raw else None

    def get_user(self, username: str) -> User | None:
        """Return the user, or None when it does not exist (or was deleted); cached for the auth TTL."""
        if not is_valid_id(username):
            return None
        return self._cached(("user", username), lambda: self._load_user(username))

    def _load_user(self, username: str) -> User | None:
        rec = self._record(username)
        return User(username, rec["role"]) if rec and rec.get("role") in ROLES else None

    def delete_user(self, username: str, actor: str = "cli") -> bool:
        """Delete a user and every token of it; return whether the user existed."""
        for tid in self.list_tokens(username):
            self.revoke_token(tid, actor)
        existed = bool(self._call(self.client.hdel, USERS_KEY, username))
        self.forget_cached()
        if existed:
            self.audit("user.deleted", actor, username)
        return existed

    def list_users(self) -> list[User]:
        """Return every user, sorted by name."""
        raw = self._call(self.client.hgetall, USERS_KEY)
        out = [User(k.decode(), json.loads(v).get("role", "viewer")) for k, v in raw.items()]
        return sorted(out, key=lambda u: u.username)

    def authenticate(self, username: str, password: str, ip: str) -> User | None:
        """Return the user when the password matches; raise RateLimited when too many failures."""
        self.check_rate(username, ip)
        rec = self._record(username) if is_valid_id(username) else None
        ok = check_password_hash(rec["password"] if rec else _DUMMY_HASH, password)
        if rec and ok and rec.get("role") in ROLES:
            self._call(self.client.delete, LOGIN_FAIL_PREFIX + "u:" + username)
            self.audit("login.ok", username, username, ip)
            return User(username, rec["role"])
        self._fail(username, ip)
        self.audit("login.failed", username if rec else "-", username[:64], ip)
        return None

    # ---- rate limiting ---------------------------------------------------------------------
    def _counter_keys(self, username: str, ip: str) -> list[tuple[str, int]]:
        name = username if is_valid_id(username) else "_invalid"
        return [(LOGIN_FAIL_PREFIX + "u:" + name, self.max_failures),
                (LOGIN_FAIL_PREFIX + "ip:" + ip, self.max_failures_per_ip)]

    def check_rate(self, username: str, ip: str) -> None:
        """Return None, or raise RateLimited when the user or the address failed too often."""
        for key, limit in self._counter_keys(username, ip):
            count = int(self._call(self.client.get, key) or 0)
            if count >= limit:
                ttl = int(self._call(self.client.ttl, key) or self.window)
                raise RateLimited(max(ttl, 1))

    def _fail(self, username: str, ip: str) -> None:
        for key, _limit in self._counter_keys(username, ip):
            if self._call(self.client.incr, key) == 1:
                self._call(self.client.expire, key, self.window)

    # ---- tokens ----------------------------------------------------------------------------
    def create_token(self, username: str, name: str = "", actor: str = "cli") -> tuple[str, str]:
        """Return (token id, secret token) for an existing user; only the hash is stored."""
        if self.get_user(username) is None:
            raise AccountError(f"user {username!r} does not exist")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = token_hash(token)
        record = {"username": username, "name": name[:128], "created_at": int(time.time())}
        self._call(self.client.hset, TOKENS_KEY, digest, json.dumps(record))
        self.audit("token.created", actor, username, digest[:16])
        return digest[:16], token

    def user_for_token(self, token: str) -> User | None:
        """Return the token's user (with its current role), or None when unknown or revoked."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        digest = token_hash(token)
        return self._cached(("token", digest), lambda: self._load_token_user(digest))

    def _load_token_user(self, digest: str) -> User | None:
        raw = self._call(self.client.hget, TOKENS_KEY, digest)
        if not raw:
            return None
        user = self._load_user(json.loads(raw)["username"])
        return User(user.username, user.role, digest[:16]) if user else None

    def list_tokens(self, username: str | None = None) -> dict[str, dict]:
        """Return {token id: record} (optionally of one user); secrets are never stored."""
        raw = self._call(self.client.hgetall, TOKENS_KEY)
        out = {}
        for digest, value in raw.items():
            rec = json.loads(value)
            if username is None or rec["username"] == username:
                out[digest.decode()[:16]] = rec
        return out

    def revoke_token(self, token_id: str, actor: str = "cli") -> bool:
        """Delete the token whose id (hash prefix) is token_id; return whether one was deleted."""
        if len(token_id) != 16 or any(c not in "0123456789abcdef" for c in token_id):
            return False
        for digest in self._call(self.client.hkeys, TOKENS_KEY):
            if digest.decode().startswith(token_id):
                deleted = bool(self._call(self.client.hdel, TOKENS_KEY, digest))
                self.forget_cached()
                if deleted:
                    self.audit("token.revoked", actor, token_id)
                return deleted
        return False


class RateLimited(Exception):
    """Too many failed logins for a user or an address; `retry_after` is in seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"too many failed logins; retry in {retry_after}s")
        self.retry_after = retry_after

"""Users (role, password hash, session version, disabled flag) and the account audit trail, in Redis under rg:.

Every change that must end a user's sessions (logout, password or role change, disable) bumps the
user's session version atomically in one script; a session carries the version it was created
with and is refused once the stored one differs. API tokens live in tokens.py.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Callable

from cachetools import TTLCache
from werkzeug.security import check_password_hash, generate_password_hash

from rulegate.connection import redis_call
from rulegate.schema import is_valid_id

from .principals import ROLES, AccountError, User, UserState, lower_role
from .throttle import LoginThrottle, ThrottleConfig
from .tokens import TokenRecord, Tokens, token_expiry, token_role, token_scope

USERS_KEY = "rg:users"
AUDIT_KEY = "rg:audit"
AUDIT_MAXLEN = 10_000
MIN_PASSWORD = 8
# a constant hash so an unknown user costs as much as a wrong password (no user enumeration by timing)
_DUMMY_HASH = generate_password_hash("not-a-real-password")

# Lua: is the user record `rec` (decoded) an enabled admin? And: does any other user of KEYS[1] than
# ARGV[1] hold that status? (Admins are few; one HGETALL is fine.)
_ADMIN_LIB = """
local function active_admin(rec)
  return rec ~= nil and rec['role'] == 'admin' and not rec['disabled']
end
local function other_active_admin(key, name)
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if all[i] ~= name and active_admin(cjson.decode(all[i + 1])) then return true end
  end
  return false
end
"""

# Merge ARGV[2] (a JSON object) into the user's JSON record and bump its session version "sv" when
# ARGV[3] is "always" or the patch changes role, password or disabled. A missing user is created
# (created_at = ARGV[4]) only when ARGV[4] is not empty, its session version starting at the creation time in
# milliseconds (ARGV[5]): a session of an earlier user of the same name carries a lower version unless that
# user changed more than once per millisecond of its life. Reply: {record JSON, bumped, created}, nil
# when the user does not exist, or "last_admin" (nothing written) when the patch would leave no
# enabled admin.
_SAVE_USER = _ADMIN_LIB + """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw and ARGV[4] == '' then return nil end
local rec = raw and cjson.decode(raw) or {created_at = tonumber(ARGV[4]), sv = tonumber(ARGV[5])}
local patch = cjson.decode(ARGV[2])
local was_admin = active_admin(rec)
local bump = ARGV[3] == 'always'
for _, f in ipairs({'role', 'password', 'disabled'}) do
  local old = rec[f]
  if f == 'disabled' then old = old or false end
  if patch[f] ~= nil and patch[f] ~= old then bump = true end
end
for k, v in pairs(patch) do rec[k] = v end
if was_admin and not active_admin(rec) and not other_active_admin(KEYS[1], ARGV[1]) then return 'last_admin' end
local sv = tonumber(rec['sv']) or 0
if raw and bump then sv = sv + 1 end
rec['sv'] = sv
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))
return {cjson.encode(rec), (raw and bump) and 1 or 0, raw and 0 or 1}
"""

# Delete user ARGV[1] unless it is the last enabled admin. Reply: 1 deleted, 0 missing, "last_admin".
_DELETE_USER = _ADMIN_LIB + """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
if active_admin(cjson.decode(raw)) and not other_active_admin(KEYS[1], ARGV[1]) then return 'last_admin' end
return redis.call('HDEL', KEYS[1], ARGV[1])
"""


class LastAdminError(AccountError):
    """The change would leave no enabled admin (nobody could manage users any more)."""

    def __init__(self, username: str, verb: str):
        super().__init__(f"cannot {verb} {username!r}: it is the last enabled admin; make another user admin first")


def _check_not_self(username: str, actor: str, verb: str) -> None:
    if username == actor:
        raise AccountError(f"you cannot {verb} yourself")


class Accounts:
    """Users in rg:users, tokens (tokens.Tokens), the audit stream, and a short per-instance lookup cache."""

    def __init__(self, client, *, max_failures: int = 5, max_failures_per_ip: int = 50,
                 window_seconds: int = 300, auth_cache_seconds: float = 5.0, auth_cache_size: int = 4096,
                 timer: Callable[[], float] = time.monotonic, clock: Callable[[], float] = time.time,
                 throttle: ThrottleConfig | None = None):
        self.client = client
        self.clock = clock
        self.throttle = LoginThrottle(client, throttle or ThrottleConfig(
            free_failures=max_failures, max_failures_per_address=max_failures_per_ip, window_seconds=window_seconds))
        self.tokens = Tokens(client, clock)
        # Who a session or token is, cached per instance for a few seconds: every API call and page
        # view otherwise costs one or two Redis round trips. Changes made through this instance
        # clear it at once; other instances see them within the TTL (RULEADMIN_AUTH_CACHE_SECONDS).
        self._auth_cache: TTLCache | None = (TTLCache(auth_cache_size, auth_cache_seconds, timer=timer)
                                             if auth_cache_seconds > 0 else None)
        self._auth_lock = threading.Lock()

    def _cached(self, key: tuple[str, str], load: Callable[[], object], refresh: bool = False):
        """Return the cached lookup for key, or run load() and cache its answer (None included)."""
        cache = self._auth_cache
        if cache is None:
            return load()
        if not refresh:
            with self._auth_lock:
                try:
                    return cache[key]  # one lookup (TTLCache: an expired entry is a KeyError too)
                except KeyError:
                    pass
        value = load()
        with self._auth_lock:
            cache[key] = value
        return value

    def forget_cached(self) -> None:
        """Drop every cached session/token lookup of this instance (after any account change)."""
        if self._auth_cache is not None:
            with self._auth_lock:
                self._auth_cache.clear()

    _call = staticmethod(redis_call)

    # ---- audit (account events; rule changes are in each namespace's log) --------------------
    def audit(self, event: str, actor: str, subject: str, detail: str = "") -> None:
        """Append an account event (user/token/namespace/login) to the capped rg:audit stream."""
        self._call(self.client.xadd, AUDIT_KEY, {"event": event, "actor": actor, "subject": subject,
                                                 "detail": detail, "ts": int(self.clock())},
                   maxlen=AUDIT_MAXLEN, approximate=True)

    def recent_audit(self, count: int = 100) -> list[dict]:
        """Return the newest account events first."""
        raw = self._call(self.client.xrevrange, AUDIT_KEY, "+", "-", count)
        return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in raw]

    # ---- users -----------------------------------------------------------------------------
    def _save(self, username: str, patch: dict, bump: str = "changes", create: bool = False,
              verb: str = "change") -> tuple[dict, bool, bool] | None:
        """Apply patch atomically; return (record, sessions ended, created) or None when the user is missing;
        raise LastAdminError (nothing written) when it would leave no enabled admin."""
        now = self.clock()
        reply = self._call(self.client.eval, _SAVE_USER, 1, USERS_KEY, username, json.dumps(patch), bump,
                           str(int(now)) if create else "", str(int(now * 1000)))
        self.forget_cached()
        if reply is None:
            return None
        if reply == b"last_admin":
            raise LastAdminError(username, verb)
        return json.loads(reply[0]), bool(reply[1]), bool(reply[2])

    def create_user(self, username: str, role: str, password: str | None, actor: str = "cli") -> User:
        """Create a user or change its role and/or password (None or "" keeps it); a change ends its
        sessions and revokes its tokens. Raise AccountError for a bad name, role or short password,
        LastAdminError when it would demote the last enabled admin."""
        if not is_valid_id(username):
            raise AccountError("username must match [a-z0-9][a-z0-9_.-]{0,63}")
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}", "role")
        patch: dict = {"role": role}
        if password:
            if len(password) < MIN_PASSWORD:
                raise AccountError(f"password must have at least {MIN_PASSWORD} characters", "password")
            patch["password"] = generate_password_hash(password)
        elif self._record(username) is None:
            raise AccountError(f"a new user needs a password of at least {MIN_PASSWORD} characters", "password")
        saved = self._save(username, {**patch, "updated_at": int(self.clock())}, create=True, verb="demote")
        if saved is None:  # deleted in between
            raise AccountError(f"user {username!r} does not exist")
        rec, ended, _created = saved
        if ended:
            self._revoke_all(username, actor, "user changed")
        self.audit("user.saved", actor, username, role + (" (sessions and tokens ended)" if ended else ""))
        return User(username, role, int(rec.get("sv") or 0))

    def set_disabled(self, username: str, disabled: bool, actor: str = "cli") -> bool:
        """Disable (end its sessions, revoke its tokens) or enable a user; return whether it exists.
        Raise AccountError when actor disables itself, LastAdminError for the last enabled admin."""
        if disabled:
            _check_not_self(username, actor, "disable")
        patch = {"disabled": disabled, "updated_at": int(self.clock())}
        if not is_valid_id(username) or self._save(username, patch, verb="disable") is None:
            return False
        if disabled:
            self._revoke_all(username, actor, "user disabled")
        self.audit("user.disabled" if disabled else "user.enabled", actor, username)
        return True

    def reset_password(self, username: str, password: str, actor: str = "cli") -> bool:
        """Set a new password (its sessions end, its tokens are revoked); return whether the user exists.
        Raise AccountError for a short password."""
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"password must have at least {MIN_PASSWORD} characters", "password")
        patch = {"password": generate_password_hash(password), "updated_at": int(self.clock())}
        if not is_valid_id(username) or self._save(username, patch) is None:
            return False
        self._revoke_all(username, actor, "password reset")
        self.audit("user.password_reset", actor, username, "sessions and tokens ended")
        return True

    def end_sessions(self, username: str, actor: str) -> None:
        """End every session of a user (logout ends them all: a copied cookie dies with it)."""
        if is_valid_id(username) and self._save(username, {}, bump="always") is not None:
            self.audit("sessions.ended", actor, username)

    def _record(self, username: str) -> dict | None:
        raw = self._call(self.client.hget, USERS_KEY, username)
        return json.loads(raw) if raw else None

    def user_state(self, username: str, refresh: bool = False) -> UserState | None:
        """Return the user's role, session version and disabled flag (cached for the auth TTL), or None."""
        if not is_valid_id(username):
            return None
        return self._cached(("user", username), lambda: self._load_state(username), refresh)

    def _load_state(self, username: str) -> UserState | None:
        rec = self._record(username)
        return UserState.from_record(rec) if rec else None

    def get_user(self, username: str) -> User | None:
        """Return the enabled user with its current role, or None when it does not exist or is disabled."""
        state = self.user_state(username)
        if state is None or state.disabled:
            return None
        return User(username, state.role, state.session_version)

    def session_user(self, username: str, version: int) -> User | None:
        """Return the user of a session created at `version`, or None when that session has ended."""
        state = self.user_state(username)
        if state is not None and version > state.session_version:  # newer than this instance's cache
            state = self.user_state(username, refresh=True)
        if state is None or state.disabled or state.session_version != version:
            return None
        return User(username, state.role, version)

    def delete_user(self, username: str, actor: str = "cli") -> bool:
        """Delete a user and every token of it; return whether the user existed. Raise AccountError when
        actor deletes itself, LastAdminError for the last enabled admin."""
        _check_not_self(username, actor, "delete")
        if not is_valid_id(username):
            return False
        reply = self._call(self.client.eval, _DELETE_USER, 1, USERS_KEY, username)
        self.forget_cached()
        if reply == b"last_admin":
            raise LastAdminError(username, "delete")
        self._revoke_all(username, actor, "user deleted")  # also any left by an earlier delete
        if reply:
            self.audit("user.deleted", actor, username)
        return bool(reply)

    def list_users(self) -> list[dict]:
        """Return every user as {username, role, disabled, created_at, updated_at}, sorted by name."""
        raw = self._call(self.client.hgetall, USERS_KEY)
        out = []
        for name, value in raw.items():
            rec = json.loads(value)
            out.append({"username": name.decode(), "role": rec.get("role", "viewer"),
                        "disabled": bool(rec.get("disabled")), "created_at": rec.get("created_at"),
                        "updated_at": rec.get("updated_at")})
        return sorted(out, key=lambda u: u["username"])

    def authenticate(self, username: str, password: str) -> tuple[User | None, str]:
        """Return (user, "ok") for a right password of an enabled user, else (None, "failed" or "disabled")."""
        rec = self._record(username) if is_valid_id(username) else None
        ok = check_password_hash(rec["password"] if rec and rec.get("password") else _DUMMY_HASH, password)
        state = UserState.from_record(rec) if rec and ok else None
        if state is None:
            return None, "failed"
        if state.disabled:
            return None, "disabled"
        return User(username, state.role, state.session_version), "ok"

    # ---- tokens ----------------------------------------------------------------------------
    def user_for_token(self, token: str) -> User | None:
        """Return the token's principal (role capped by the user's current one, scope, expiry), or None
        when the token is unknown, revoked, expired, or its user is gone or disabled."""
        digest = self.tokens.digest(token)
        if digest is None:
            return None
        rec: TokenRecord | None = self._cached(("token", digest), lambda: self.tokens.load(digest))
        if rec is None or rec.expired(self.clock()):
            return None
        state = self.user_state(rec.username)
        if state is None or state.disabled:
            return None
        self.tokens.touch(digest)
        return User(rec.username, lower_role(rec.role or state.role, state.role), state.session_version,
                    rec.id, rec.namespaces, rec.expires_at)

    def create_token(self, username: str, name: str = "", actor: str = "cli", *, creator: User | None = None,
                     role: str | None = None, namespaces: list[str] | None = None,
                     expires_in: int | None = None, max_lifetime: int = 0) -> tuple[str, str]:
        """Return (token id, secret token) for an enabled user; only the hash is stored. The role and
        scope never exceed the user's or the creator's (a token creating a token); raise AccountError."""
        state = self.user_state(username, refresh=True)
        if state is None or state.disabled:
            raise AccountError(f"user {username!r} does not exist or is disabled")
        cap = state.role
        if creator is not None:
            if creator.username != username and not (creator.can("admin") and creator.namespaces is None):
                raise AccountError("only admins (with a token without a namespace scope) create tokens for others")
            cap = lower_role(cap, creator.role)
        rec_role = token_role(role, cap)
        scope = token_scope(namespaces, creator.namespaces if creator else None)
        expires_at = token_expiry(expires_in, max_lifetime, self.clock(), creator.expires_at if creator else None)
        token, digest = self.tokens.new_secret()
        self.tokens.create(TokenRecord(digest, username, name[:128], int(self.clock()), actor, rec_role, scope,
                                       expires_at))
        self.audit("token.created", actor, username, f"{digest[:16]} role={rec_role}"
                   + (f" namespaces={','.join(sorted(scope))}" if scope is not None else "")
                   + (f" expires_at={expires_at}" if expires_at else ""))
        return digest[:16], token

    def revoke_token(self, token_id: str, actor: str = "cli", reason: str = "") -> bool:
        """Revoke the token with this id; return whether one was revoked."""
        revoked = self.tokens.revoke(token_id)
        self.forget_cached()
        if revoked:
            self.audit("token.revoked", actor, token_id, reason)
        return revoked

    def _revoke_all(self, username: str, actor: str, reason: str) -> None:
        for rec in self.tokens.list(username):
            self.revoke_token(rec.id, actor, reason)

    def list_tokens(self, username: str | None = None) -> dict[str, dict]:
        """Return {token id: record as JSON-shaped dict} (optionally of one user); secrets are never stored."""
        return {rec.id: rec.to_dict(self.clock()) for rec in self.tokens.list(username)}

"""REST API for accounts under /api/v1 (nested in the api blueprint): whoami, audit, tokens, users."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from .accounts import AccountError, LastAdminError
from .api_request import int_arg, json_body
from .auth import api_role, api_user
from .display import iso_utc
from .errors import APIError
from .extensions import backend
from .idempotency import idempotent
from .principals import User

bp = Blueprint("accounts", __name__)


def _sees_all(user: User) -> bool:
    return user.can("admin") and user.namespaces is None


@bp.get("/whoami")
@api_role("viewer")
def whoami():
    """Return the token's user, effective role, token id, namespace scope and expiry."""
    user = api_user()
    return jsonify(username=user.username, role=user.role, token_id=user.token_id,
                   namespaces=sorted(user.namespaces) if user.namespaces is not None else None,
                   expires_at=user.expires_at)


@bp.get("/audit")
@api_role("admin", unscoped=True)
def audit():
    """Return the newest account events (users, tokens, namespaces, logins), newest first."""
    limit = int_arg("limit", 1, 1000) or 100
    return jsonify(events=backend().accounts.recent_audit(limit))


@bp.get("/tokens")
@api_role("viewer")
def list_tokens():
    """Return every token (admins with an unscoped token) or the caller's own tokens, without secrets."""
    user = api_user()
    tokens = backend().accounts.list_tokens(None if _sees_all(user) else user.username)
    return jsonify(tokens=list(tokens.values()))


@bp.post("/tokens")
@api_role("viewer")
@idempotent(redact=("token",))
def create_token():
    """Create a token (for yourself, or for anyone as an admin): optional role, namespaces and expires_in
    seconds, never beyond the caller's; the secret is shown only in this response."""
    data = json_body(("username", "name", "role", "namespaces", "expires_in"))
    user = api_user()
    username, name = data.get("username", user.username), data.get("name", "")
    for field, value in (("username", username), ("name", name)):
        if not isinstance(value, str):
            raise APIError(400, f"invalid {field}", {field: "must be a string"})
    try:
        token_id, token = backend().accounts.create_token(
            username, name, actor=user.username, creator=user, role=data.get("role"),
            namespaces=data.get("namespaces"), expires_in=data.get("expires_in"),
            max_lifetime=int(current_app.config["TOKEN_MAX_LIFETIME_SECONDS"]))
    except AccountError as exc:
        raise APIError(400, str(exc), {exc.field: str(exc)}) from None
    return jsonify(id=token_id, token=token), 201


@bp.delete("/tokens/<token_id>")
@api_role("viewer")
@idempotent()
def revoke_token(token_id: str):
    """Revoke a token: admins (unscoped) any token, everyone else only their own."""
    user = api_user()
    if not _sees_all(user) and token_id not in backend().accounts.list_tokens(user.username):
        raise APIError(403, "only admins revoke other users' tokens", {"token_id": "not one of your tokens"})
    if not backend().accounts.revoke_token(token_id, actor=user.username):
        raise APIError(404, f"token {token_id!r} does not exist", {"token_id": "does not exist"})
    return jsonify(revoked=token_id)


@bp.get("/users")
@api_role("admin", unscoped=True)
def list_users():
    """Return every user with role, disabled flag and times (UNIX seconds and ISO 8601 UTC) (admin)."""
    return jsonify(users=[{**u, "created_at_iso": iso_utc(u["created_at"]) or None,
                           "updated_at_iso": iso_utc(u["updated_at"]) or None}
                          for u in backend().accounts.list_users()])


def _other_user(username: str, verb: str) -> None:
    """Raise 400 when an admin would lock themselves out, 404 when the user does not exist."""
    if username == api_user().username:
        raise APIError(400, f"you cannot {verb} yourself", {"username": f"cannot {verb} yourself"})
    if backend().accounts.user_state(username, refresh=True) is None:
        raise APIError(404, f"user {username!r} does not exist", {"username": "does not exist"})


def _change(username: str, verb: str, change) -> None:
    """Run change(); 404 when the user vanished meanwhile, 409 when it is the last enabled admin."""
    _other_user(username, verb)
    try:
        done = change()
    except LastAdminError as exc:
        raise APIError(409, str(exc), {"username": "the last enabled admin"}) from None
    except AccountError as exc:
        raise APIError(400, str(exc), {exc.field: str(exc)}) from None
    if not done:
        raise APIError(404, f"user {username!r} does not exist", {"username": "does not exist"})


@bp.post("/users/<username>/disable")
@api_role("admin", unscoped=True)
@idempotent()
def disable_user(username: str):
    """Disable a user: its sessions end and its tokens are revoked (admin; not yourself, not the last admin)."""
    acc, actor = backend().accounts, api_user().username
    _change(username, "disable", lambda: acc.set_disabled(username, True, actor=actor))
    return jsonify(username=username, disabled=True)


@bp.post("/users/<username>/enable")
@api_role("admin", unscoped=True)
@idempotent()
def enable_user(username: str):
    """Enable a disabled user again (admin); it logs in anew and needs new tokens."""
    acc, actor = backend().accounts, api_user().username
    _change(username, "enable", lambda: acc.set_disabled(username, False, actor=actor))
    return jsonify(username=username, disabled=False)


@bp.delete("/users/<username>")
@api_role("admin", unscoped=True)
@idempotent()
def delete_user(username: str):
    """Delete a user and its tokens (admin; not yourself, not the last admin)."""
    acc, actor = backend().accounts, api_user().username
    _change(username, "delete", lambda: acc.delete_user(username, actor=actor))
    return jsonify(deleted=username)


@bp.post("/users/<username>/password")
@api_role("admin", unscoped=True)
def reset_password(username: str):
    """Set a user's password {"password": ...} (admin, not your own): its sessions end, its tokens are
    revoked. No Idempotency-Key: the body holds a secret, and a repeat does the same again."""
    data = json_body(("password",))
    password = data.get("password")
    if not isinstance(password, str) or len(password) > 1024:
        raise APIError(400, "invalid password", {"password": "must be a string of at most 1024 characters"})
    acc, actor = backend().accounts, api_user().username
    if username == actor:
        raise APIError(400, "you cannot reset your own password here: it would revoke the token in use; "
                            "change it on the users page", {"username": "cannot reset your own password"})
    _change(username, "reset the password of", lambda: acc.reset_password(username, password, actor=actor))
    return jsonify(username=username, sessions_ended=True, tokens_revoked=True)

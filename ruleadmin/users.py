"""Admin-only web pages: users (roles, passwords, disable/enable/delete), API tokens, the account audit trail."""
from __future__ import annotations

import re
from datetime import datetime, timezone

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import IntegerField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, NumberRange, Optional

from .accounts import AccountError, LastAdminError
from .auth import web_role
from .extensions import backend
from .principals import ROLES

bp = Blueprint("users", __name__, url_prefix="/admin")


@bp.app_template_filter("utc")
def utc(ts: int | None) -> str:
    """Return a UNIX time as 'YYYY-MM-DD HH:MM UTC' ('' for none)."""
    if not ts:
        return ""
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


class UserForm(FlaskForm):
    """Create a user or change its role/password (a change ends its sessions and revokes its tokens)."""

    username = StringField("Username", validators=[Length(max=64)])
    role = SelectField("Role", choices=list(ROLES))
    password = PasswordField("Password", validators=[Length(max=1024)],
                             description="empty keeps the password of an existing user")


class TokenForm(FlaskForm):
    """Create an API token for a user, optionally with a lower role, a namespace scope and an expiry."""

    username = StringField("User", validators=[Length(max=64)])
    name = StringField("Label", validators=[Length(max=128)])
    role = SelectField("Role", choices=[SelectChoice("", "(the user's)")] + list(ROLES), default="")
    namespaces = StringField("Namespaces", validators=[Length(max=6500)], description="comma-separated; empty = all")
    expires_days = IntegerField("Expires in (days)", validators=[Optional(), NumberRange(1, 3650)],
                                description="empty = the maximum lifetime")


class ActionForm(FlaskForm):
    """A CSRF-protected button (delete, disable, enable, revoke)."""


def _page(user_form=None, token_form=None, new_token=None, status=200):
    acc = backend().accounts
    return render_template("users.html", users=acc.list_users(), tokens=acc.list_tokens(),
                           audit=acc.recent_audit(50), user_form=user_form or UserForm(),
                           token_form=token_form or TokenForm(), action=ActionForm(), new_token=new_token), status


def _valid_action() -> None:
    if not ActionForm().validate_on_submit():
        abort(400, "Invalid form (CSRF).")


@bp.get("/users")
@web_role("admin")
def index():
    """Users, tokens and recent account events."""
    return _page()


@bp.post("/users")
@web_role("admin")
def save_user():
    """Create or update a user."""
    form = UserForm()
    if not form.validate_on_submit():
        return _page(user_form=form, status=400)
    try:
        backend().accounts.create_user(form.username.data or "", form.role.data, form.password.data or "",
                                       actor=current_user.username)
    except AccountError as exc:  # LastAdminError too: demoting the last enabled admin
        getattr(form, exc.field, form.username).errors = [str(exc)]
        return _page(user_form=form, status=409 if isinstance(exc, LastAdminError) else 400)
    flash(f"User {form.username.data} saved.")
    return redirect(url_for("users.index"))


@bp.get("/users/<username>/delete")
@web_role("admin")
def confirm_delete_user(username: str):
    """The confirmation page of a user delete: the user and the tokens that go with it."""
    if username == current_user.username:
        abort(400, "You cannot delete yourself.")
    acc = backend().accounts
    user = next((u for u in acc.list_users() if u["username"] == username), None)
    if user is None:
        abort(404, "No such user.")
    return render_template("confirm_delete_user.html", user=user, tokens=acc.list_tokens(username),
                           action=ActionForm())


@bp.post("/users/<username>/<any(delete, disable, enable):verb>")
@web_role("admin")
def change_user(username: str, verb: str):
    """Delete (confirmed, with its tokens), disable (ends its sessions, revokes its tokens) or enable a user;
    not yourself, not the last enabled admin (409)."""
    _valid_action()
    if username == current_user.username:
        abort(400, f"You cannot {verb} yourself.")
    if verb == "delete" and request.form.get("confirmed") != "yes":
        return redirect(url_for("users.confirm_delete_user", username=username))
    acc, actor = backend().accounts, current_user.username
    try:
        done = (acc.delete_user(username, actor) if verb == "delete"
                else acc.set_disabled(username, verb == "disable", actor))
    except LastAdminError as exc:
        abort(409, str(exc))
    except AccountError as exc:
        abort(400, str(exc))
    if not done:
        abort(404, "No such user.")
    flash(f"User {username} {verb}d.")
    return redirect(url_for("users.index"))


@bp.post("/tokens")
@web_role("admin")
def create_token():
    """Create a token and show it once."""
    form = TokenForm()
    if not form.validate_on_submit():
        return _page(token_form=form, status=400)
    scope = [n for n in re.split(r"[\s,]+", form.namespaces.data or "") if n] or None
    days = form.expires_days.data
    try:
        token_id, token = backend().accounts.create_token(
            form.username.data or "", form.name.data or "", actor=current_user.username, creator=current_user,
            role=form.role.data or None, namespaces=scope, expires_in=days * 86400 if days else None,
            max_lifetime=int(current_app.config["TOKEN_MAX_LIFETIME_SECONDS"]))
    except AccountError as exc:
        getattr(form, "expires_days" if exc.field == "expires_in" else exc.field, form.username).errors = [str(exc)]
        return _page(token_form=form, status=400)
    return _page(new_token={"id": token_id, "token": token, "username": form.username.data})


@bp.post("/tokens/<token_id>/revoke")
@web_role("admin")
def revoke_token(token_id: str):
    """Revoke a token."""
    _valid_action()
    if not backend().accounts.revoke_token(token_id, actor=current_user.username):
        abort(404, "No such token.")
    flash(f"Token {token_id} revoked.")
    return redirect(url_for("users.index"))

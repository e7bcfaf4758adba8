"""Admin-only web pages: users (roles, passwords), API tokens, and the account audit trail."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField
from wtforms.validators import Length

from .accounts import ROLES, AccountError
from .auth import web_role
from .extensions import backend

bp = Blueprint("users", __name__, url_prefix="/admin")


class UserForm(FlaskForm):
    """Create a user or change its role/password."""

    username = StringField("Username", validators=[Length(max=64)])
    role = SelectField("Role", choices=list(ROLES))
    password = PasswordField("Password", validators=[Length(max=1024)])


class TokenForm(FlaskForm):
    """Create an API token for a user."""

    username = StringField("User", validators=[Length(max=64)])
    name = StringField("Label", validators=[Length(max=128)])


class ActionForm(FlaskForm):
    """A CSRF-protected button (delete, revoke)."""


def _page(user_form=None, token_form=None, new_token=None, status=200):
    acc = backend().accounts
    return render_template("users.html", users=acc.list_users(), tokens=acc.list_tokens(),
                           audit=acc.recent_audit(50), user_form=user_form or UserForm(),
                           token_form=token_form or TokenForm(), action=ActionForm(), new_token=new_token), status


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
        backend().accounts.create_user(form.username.data, form.role.data, form.password.data or "",
                                       actor=current_user.username)
    except AccountError as exc:
        form.username.errors = [str(exc)]
        return _page(user_form=form, status=400)
    flash(f"User {form.username.data} saved.")
    return redirect(url_for("users.index"))


@bp.post("/users/<username>/delete")
@web_role("admin")
def delete_user(username: str):
    """Delete a user and its tokens (not yourself)."""
    if not ActionForm().validate_on_submit():
        abort(400, "Invalid form (CSRF).")
    if username == current_user.username:
        abort(400, "You cannot delete yourself.")
    backend().accounts.delete_user(username, actor=current_user.username)
    flash(f"User {username} deleted.")
    return redirect(url_for("users.index"))


@bp.post("/tokens")
@web_role("admin")
def create_token():
    """Create a token and show it once."""
    form = TokenForm()
    if not form.validate_on_submit():
        return _page(token_form=form, status=400)
    try:
        token_id, token = backend().accounts.create_token(form.username.data, form.name.data or "",
                                                          actor=current_user.username)
    except AccountError as exc:
        form.username.errors = [str(exc)]
        return _page(token_form=form, status=400)
    return _page(new_token={"id": token_id, "token": token, "username": form.username.data})


@bp.post("/tokens/<token_id>/revoke")
@web_role("admin")
def revoke_token(token_id: str):
    """Revoke a token."""
    if not ActionForm().validate_on_submit():
        abort(400, "Invalid form (CSRF).")
    if not backend().accounts.revoke_token(token_id, actor=current_user.username):
        abort(404, "No such token.")
    flash(f"Token {token_id} revoked.")
    return redirect(url_for("users.index"))

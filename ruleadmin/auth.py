"""Authentication: Flask-Login sessions for the UI, bearer tokens for the API, and role checks."""
from __future__ import annotations

import functools
from typing import Callable

from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from .accounts import RateLimited, User
from .errors import APIError
from .extensions import backend, login_manager
from .metrics import LOGINS

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    """Username + password."""

    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class LogoutForm(FlaskForm):
    """An empty form: logging out is a CSRF-protected POST."""


def init_app(app: Flask) -> None:
    """Configure Flask-Login and register the login/logout views."""
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"
    login_manager.user_loader(_load_user)

    @app.context_processor
    def _logout_form() -> dict:
        return {"logout_form": LogoutForm()}

    app.register_blueprint(bp)


def _load_user(username: str) -> User | None:
    return backend().accounts.get_user(username)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form; on POST check the password (rate limited per user and per address)."""
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = backend().accounts.authenticate(form.username.data, form.password.data,
                                                   request.remote_addr or "-")
        except RateLimited as exc:
            LOGINS.labels("rate_limited").inc()
            form.password.errors.append(f"Too many failed attempts; try again in {exc.retry_after} seconds.")
            return render_template("login.html", form=form), 429
        if user is not None:
            LOGINS.labels("ok").inc()
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        LOGINS.labels("failed").inc()
        form.password.errors.append("Unknown user or wrong password.")
        status = 401
    elif request.method == "POST":
        status = 400
    return render_template("login.html", form=form), status


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("web.index")


@bp.post("/logout")
@login_required
def logout():
    """Log out (CSRF-protected POST) and go back to the login page."""
    logout_user()
    flash("You are logged out.")
    return redirect(url_for("auth.login"))


def web_role(role: str) -> Callable:
    """Decorate a web view: login required, and 403 unless the user has at least `role`."""

    def deco(view: Callable) -> Callable:
        @functools.wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if not current_user.can(role):
                abort(403, f"This needs the {role} role.")
            return view(*args, **kwargs)

        return wrapped

    return deco


def api_user() -> User:
    """Return the bearer token's user for this request; raise APIError 401 when absent or revoked."""
    if "api_user" in g:
        return g.api_user
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise APIError(401, "authentication required: send Authorization: Bearer <token>",
                       headers={"WWW-Authenticate": 'Bearer realm="ruleadmin"'})
    user = backend().accounts.user_for_token(token.strip())
    if user is None:
        raise APIError(401, "invalid or revoked token",
                       headers={"WWW-Authenticate": 'Bearer realm="ruleadmin", error="invalid_token"'})
    g.api_user = user
    return user


def api_role(role: str) -> Callable:
    """Decorate an API view: bearer token required, 403 unless its user has at least `role`."""

    def deco(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            user = api_user()
            if not user.can(role):
                raise APIError(403, f"this needs the {role} role; {user.username} is {user.role}")
            return view(*args, **kwargs)

        return wrapped

    return deco

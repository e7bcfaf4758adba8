"""Authentication: Flask-Login sessions for the UI (versioned, with idle and absolute lifetimes), bearer
tokens for the API, throttled logins, and role and namespace-scope checks."""
from __future__ import annotations

import functools
import logging
import time
from typing import Callable

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from .errors import APIError
from .extensions import backend, login_manager
from .inputs import ascii_int, safe_next
from .metrics import LOGIN_THROTTLED, LOGINS
from .principals import User
from .throttle import Throttled

bp = Blueprint("auth", __name__)
log = logging.getLogger("ruleadmin")
SEEN_EVERY_SECONDS = 60  # the idle stamp in the session cookie is refreshed at most this often
clock: Callable[[], float] = time.time  # the wall clock of session lifetimes (tests replace it)


class LoginForm(FlaskForm):
    """Username + password."""

    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class LogoutForm(FlaskForm):
    """An empty form: logging out is a CSRF-protected POST."""


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without building the cookie signer for a request that carries no session
    cookie (every API call): such a request gets the same new, empty session."""

    def open_session(self, app: Flask, request) -> SecureCookieSession | None:
        """Return a new empty session when there is no session cookie, else what Flask's interface returns."""
        if app.secret_key and ("HTTP_COOKIE" not in request.environ
                               or not request.cookies.get(self.get_cookie_name(app))):
            return self.session_class()  # no Cookie header (an API call): not even parsed
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SecureCookieSession, response) -> None:
        """Do what Flask's interface does; for a session that is empty and unmodified (every API call) that is
        only the "Vary: Cookie" of an accessed session, without computing the cookie settings first."""
        if not session and not session.modified:
            if session.accessed:
                if "Vary" in response.headers:
                    response.vary.add("Cookie")
                else:
                    response.headers["Vary"] = "Cookie"  # what vary.add writes, without parsing an absent header
            return
        super().save_session(app, session, response)


def init_app(app: Flask) -> None:
    """Configure the sessions, Flask-Login, the session lifetime check and the login/logout views."""
    app.session_interface = CookieSessions()
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"
    login_manager.user_loader(_load_user)
    app.before_request(_check_session_lifetime)

    @app.context_processor
    def _logout_form() -> dict:
        return {"logout_form": LogoutForm()}

    app.register_blueprint(bp)


def _load_user(user_id: str) -> User | None:
    """Return the session's user, or None when the session's version is no longer the user's."""
    username, _, version = user_id.partition(":")
    sv = ascii_int(version, 0, 2**53)
    return backend().accounts.session_user(username, sv) if sv is not None else None


def _check_session_lifetime() -> None:
    """End a session idle for SESSION_IDLE_SECONDS or older than SESSION_ABSOLUTE_SECONDS."""
    if "_user_id" not in session:
        return
    now = int(clock())
    login_at, seen_at = session.get("login_at"), session.get("seen_at")
    cfg = current_app.config
    if (not isinstance(login_at, int) or not isinstance(seen_at, int)
            or now - login_at > int(cfg["SESSION_ABSOLUTE_SECONDS"]) or now - seen_at > int(cfg["SESSION_IDLE_SECONDS"])):
        logout_user()
        session.pop("login_at", None)
        session.pop("seen_at", None)
        flash("Your session has expired; log in again.")
    elif now - seen_at >= SEEN_EVERY_SECONDS:
        session["seen_at"] = now


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form; on POST check the password (throttled per account and client address)."""
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("login.html", form=form), 400 if request.method == "POST" else 200
    acc = backend().accounts
    username, address = form.username.data, request.remote_addr or "-"
    try:
        acc.throttle.check(username, address)
    except Throttled as exc:
        LOGINS.labels("throttled").inc()
        LOGIN_THROTTLED.labels(exc.scope).inc()
        log.warning("login throttled: user=%r address=%s scope=%s retry_after=%ss",
                    username[:64], address, exc.scope, exc.retry_after)
        form.password.errors.append(f"Too many failed attempts; try again in {exc.retry_after} seconds.")
        return render_template("login.html", form=form), 429, {"Retry-After": str(exc.retry_after)}
    user, outcome = acc.authenticate(username, form.password.data)
    if user is None:
        return _refused(form, username, address, outcome)
    acc.throttle.succeeded(username, address)
    LOGINS.labels("ok").inc()
    acc.audit("login.ok", username, username, address)
    session.clear()
    login_user(user)  # a browser-session cookie: Flask-Login's "strong" protection drops it on another address
    session["login_at"] = session["seen_at"] = int(clock())
    return redirect(safe_next(request.args.get("next"), url_for("web.index")))


def _refused(form: LoginForm, username: str, address: str, outcome: str):
    """Record a failed login (throttle, metrics, log, audit) and answer the form with the error."""
    acc = backend().accounts
    LOGINS.labels(outcome).inc()
    if outcome == "disabled":
        acc.audit("login.refused", username, username, f"{address} (disabled)")
        form.username.errors.append("This account is disabled.")
        return render_template("login.html", form=form), 403
    failures, wait = acc.throttle.failed(username, address)
    log.warning("login failed: user=%r address=%s failures=%d wait=%ss", username[:64], address, failures, wait)
    acc.audit("login.failed", "-", username[:64], address)
    form.password.errors.append("Unknown user or wrong password.")
    return render_template("login.html", form=form), 401


@bp.post("/logout")
@login_required
def logout():
    """Log out (CSRF-protected POST): every session of this user ends, here and on other devices."""
    username = current_user.username
    backend().accounts.end_sessions(username, username)
    logout_user()
    session.clear()
    flash("You are logged out.")
    return redirect(safe_next(request.args.get("next"), url_for("auth.login")))


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
    """Return the bearer token's principal for this request; raise APIError 401 when absent, revoked or expired."""
    found = g._get_current_object()  # the objects behind the proxies: each attribute through a proxy costs ~2k ops
    user = found.get("api_user")
    if user is not None:
        return user
    header = request._get_current_object().headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise APIError(401, "authentication required: send Authorization: Bearer <token>",
                       {"Authorization": "must be Bearer <token>"},
                       headers={"WWW-Authenticate": 'Bearer realm="ruleadmin"'})
    user = backend().accounts.user_for_token(token.strip())
    if user is None:
        raise APIError(401, "invalid, expired or revoked token", {"Authorization": "unknown, expired or revoked token"},
                       headers={"WWW-Authenticate": 'Bearer realm="ruleadmin", error="invalid_token"'})
    found.api_user = user
    return user


def api_role(role: str, unscoped: bool = False) -> Callable:
    """Decorate an API view: bearer token required, 403 unless its role is at least `role`, its namespace
    scope covers the view's `ns`, and (when `unscoped`) it has no namespace scope at all."""

    def deco(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            user = api_user()
            if not user.can(role):
                raise APIError(403, f"this needs the {role} role; this token has {user.role}",
                               {"Authorization": f"needs the {role} role"})
            if unscoped and user.namespaces is not None:
                raise APIError(403, "this needs a token without a namespace scope",
                               {"Authorization": "token is limited to some namespaces"})
            ns = kwargs.get("ns")
            if ns is not None and not user.in_scope(ns):
                raise APIError(403, f"this token may not reach namespace {ns!r}",
                               {"namespace": "outside the token's namespaces"})
            return view(*args, **kwargs)

        return wrapped

    return deco

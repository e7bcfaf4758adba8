"""ruleadmin: the multi-instance Flask admin for rulegate rules. Entry point: create_app()."""
from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Return a configured app: defaults, then `config`, then RULEADMIN_* env; raise ConfigError."""
    # imported here, not with the package: gunicorn's arbiter imports ruleadmin.gunicorn_worker (the worker class)
    # before its workers fork and monkey-patch, and the app's modules must first be imported after that
    from werkzeug.middleware.proxy_fix import ProxyFix

    from . import config as config_mod
    from .app_class import RuleadminFlask

    app = RuleadminFlask(__name__)
    app.config.from_mapping(config_mod.DEFAULTS)
    if config:
        app.config.from_mapping(config)
    app.config.from_prefixed_env("RULEADMIN")
    config_mod.check(app.config, app.debug)
    if isinstance(app.config["PERMANENT_SESSION_LIFETIME"], int):
        app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=app.config["PERMANENT_SESSION_LIFETIME"])

    # web_history adds the history, diff, rollback, delete and empty views to web.bp
    from . import api, auth, display, errors, health, metrics, users, web, web_history  # noqa: F401
    from .extensions import Backend, csrf

    if app.config["PROXY_FIX_X_FOR"] or app.config["PROXY_FIX_X_PROTO"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=int(app.config["PROXY_FIX_X_FOR"]),
                                x_proto=int(app.config["PROXY_FIX_X_PROTO"]))
    app.extensions["ruleadmin"] = Backend(app)
    csrf.init_app(app)
    csrf.exempt(api.bp)
    auth.init_app(app)
    metrics.init_app(app)
    display.init_app(app)
    errors.register(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(web.bp)
    app.register_blueprint(users.bp)

    app.after_request(_security_headers)
    return app


# added to every response that does not set them itself: (lower-case name, name, value)
SECURITY_HEADERS = tuple((name.lower(), name, value) for name, value in (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"),
))


def _security_headers(resp):
    """Add SECURITY_HEADERS the response lacks (what four Headers.setdefault calls did, in one pass)."""
    headers = resp.headers
    present = {name.lower() for name in headers.keys()}
    for lower, name, value in SECURITY_HEADERS:
        if lower not in present:
            headers.add(name, value)
    return resp

"""The one JSON API error type and the handlers that render every failure as JSON (never a traceback)."""
from __future__ import annotations

import logging

import redis.exceptions
from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from rulegate.errors import StoreError

from . import inputs

log = logging.getLogger("ruleadmin")


class APIError(Exception):
    """An API failure with an HTTP status, a one-line message and optional field errors."""

    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None,
                 extra: dict | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or {}
        self.extra = extra or {}
        self.headers = headers or {}

    def response(self):
        """Return the Flask response for this error."""
        body = {"error": self.message, "fields": self.fields, **self.extra}
        resp = jsonify(body)
        resp.status_code = self.status
        resp.headers.update(self.headers)
        return resp


# the request part an HTTP error is about, for the `fields` of API errors werkzeug raises
_HTTP_ERROR_FIELDS = {400: "<request>", 404: "<path>", 405: "<method>", 413: "<body>", 415: "Content-Type"}


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path in ("/healthz",)


def register(app: Flask) -> None:
    """Attach the error handlers (JSON for the API, simple pages for the web UI) and the input guards
    (ruleadmin.inputs) that turn unreadable bodies and over-deep JSON into 400s."""
    inputs.init_app(app)

    @app.errorhandler(APIError)
    def _api_error(exc: APIError):
        return exc.response()

    @app.errorhandler(redis.exceptions.RedisError)
    @app.errorhandler(redis.exceptions.RedisClusterException)
    @app.errorhandler(StoreError)
    def _store_error(exc: Exception):
        log.warning("redis unavailable: %s", exc)
        if _wants_json():
            # the class only: the message can name internal node addresses (it is in the log)
            return APIError(503, "rule store unavailable; retry later",
                            extra={"detail": exc.__class__.__name__}).response()
        return render_template("error.html", status=503, message="The rule store is unavailable; retry later."), 503

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if _wants_json():
            code = exc.code or 500
            fields = {_HTTP_ERROR_FIELDS.get(code, "<request>"): exc.description or exc.name} if code < 500 else {}
            allow = getattr(exc, "valid_methods", None)
            return APIError(code, exc.description or exc.name, fields,
                            headers={"Allow": ", ".join(allow)} if allow else None).response()
        return render_template("error.html", status=exc.code, message=exc.description or exc.name), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        if _wants_json():
            return APIError(500, "internal error").response()
        return render_template("error.html", status=500, message="Internal error."), 500

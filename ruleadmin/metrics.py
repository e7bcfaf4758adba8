"""Prometheus metrics of one ruleadmin process (each gunicorn worker exports its own series)."""
from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry()
REQUESTS = Counter("ruleadmin_http_requests_total", "HTTP requests by endpoint and status",
                   ["method", "endpoint", "status"], registry=REGISTRY)
LATENCY = Histogram("ruleadmin_http_request_seconds", "HTTP request latency by endpoint",
                    ["endpoint"], registry=REGISTRY)
WRITES = Counter("ruleadmin_rule_writes_total", "Rule commits by outcome "
                 "(ok, conflict, invalid, unreplicated)", ["outcome"], registry=REGISTRY)
LOGINS = Counter("ruleadmin_logins_total", "Login attempts by outcome (ok, failed, throttled, disabled)",
                 ["outcome"], registry=REGISTRY)
LOGIN_THROTTLED = Counter("ruleadmin_login_throttled_total", "Login attempts refused by the throttle, by the "
                          "limit that applied (account+address, address, global)", ["scope"], registry=REGISTRY)

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Return the Prometheus exposition of this process."""
    return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)


# the labelled children of REQUESTS, LATENCY and WRITES, looked up once per label set (labels() on every request
# takes a lock and validates the labels); the same series, as many as the labels would make
_counted: dict[tuple[str, str, int], Counter] = {}
_timed: dict[str, Histogram] = {}
_written: dict[str, Counter] = {}


def _request_counter(method: str, endpoint: str, status: int) -> Counter:
    key = (method, endpoint, status)
    child = _counted.get(key)
    if child is None:
        child = _counted[key] = REQUESTS.labels(method, endpoint, str(status))
    return child


def write_counter(outcome: str) -> Counter:
    """Return the WRITES child of an outcome."""
    child = _written.get(outcome)
    if child is None:
        child = _written[outcome] = WRITES.labels(outcome)
    return child


def _latency(endpoint: str) -> Histogram:
    child = _timed.get(endpoint)
    if child is None:
        child = _timed[endpoint] = LATENCY.labels(endpoint)
    return child


def init_app(app: Flask) -> None:
    """Time every request and count it by endpoint and status."""

    @app.before_request
    def _start() -> None:
        g._get_current_object()._t0 = time.perf_counter()  # g's object itself: no proxy attribute per request

    @app.after_request
    def _count(resp):
        req = request._get_current_object()
        endpoint = req.endpoint or "unknown"
        _request_counter(req.method, endpoint, resp.status_code).inc()
        t0 = g._get_current_object().get("_t0")
        if t0 is not None:
            _latency(endpoint).observe(time.perf_counter() - t0)
        return resp

    app.register_blueprint(bp)

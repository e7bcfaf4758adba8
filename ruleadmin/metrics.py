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


def init_app(app: Flask) -> None:
    """Time every request and count it by endpoint and status."""

    @app.before_request
    def _start() -> None:
        g._t0 = time.perf_counter()

    @app.after_request
    def _count(resp):
        endpoint = request.endpoint or "unknown"
        REQUESTS.labels(request.method, endpoint, str(resp.status_code)).inc()
        if hasattr(g, "_t0"):
            LATENCY.labels(endpoint).observe(time.perf_counter() - g._t0)
        return resp

    app.register_blueprint(bp)

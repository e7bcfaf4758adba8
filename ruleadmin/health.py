"""GET /healthz: Redis reachable and the cluster state, as JSON (503 when unhealthy)."""
from __future__ import annotations

from flask import Blueprint, jsonify
from redis.cluster import RedisCluster

from rulegate.connection import REDIS_ERRORS
from rulegate.errors import StoreError

from .extensions import backend

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Return {"ok", "redis", "cluster_state"}; 503 when Redis is unreachable or the cluster is not ok."""
    try:
        client = backend().store.client
        client.ping()
        state = "standalone"
        if isinstance(client, RedisCluster):
            info = client.cluster_info(target_nodes=RedisCluster.RANDOM)
            state = str(info.get("cluster_state", "unknown"))
    except (*REDIS_ERRORS, StoreError, ValueError) as exc:
        return jsonify(ok=False, redis="unreachable", error=exc.__class__.__name__), 503
    ok = state in ("ok", "standalone")
    return jsonify(ok=ok, redis="ok", cluster_state=state), 200 if ok else 503

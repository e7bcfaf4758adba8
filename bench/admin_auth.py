"""Authenticated API reads/second with ruleadmin's auth cache on (TTL 5 s) and off (every lookup reads Redis).

Starts a throwaway 6-node Redis Cluster (or uses RULEADMIN_REDIS_NODES) and one gunicorn instance per
row, then N clients call `GET /api/v1/whoami` with a bearer token for a few seconds. The cost a token
lookup adds is what the cache removes (two Redis round trips per request). Not an assertion.

    python bench/admin_auth.py [--seconds 5] [--clients 8] [--workers 2]
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ruleadmin import create_app  # noqa: E402
from rulegate_dev.cluster import env_or_local_cluster  # noqa: E402
from rulegate_dev.nginx import free_port  # noqa: E402
from rulegate_dev.private_files import scratch_dir
from rulegate_dev.service import ruleadmin_service  # noqa: E402
from tests.admin.conftest import server_env  # noqa: E402


def hammer(url: str, token: str, seconds: float, clients: int) -> tuple[float, float, int]:
    """Return (requests/s, p99 ms, errors) of `clients` threads calling url for `seconds`."""
    lat: list[float] = []
    errors: list[int] = []
    stop = time.monotonic() + seconds

    def loop() -> None:
        s = requests.Session()
        h = {"Authorization": f"Bearer {token}"}
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            r = s.get(url, headers=h, timeout=10)
            (lat if r.status_code == 200 else errors).append(time.perf_counter() - t0)

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    return len(lat) / (time.monotonic() - t0), lat[int(0.99 * (len(lat) - 1))] * 1000 if lat else float("nan"), len(errors)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    tmp = scratch_dir("rg-bench-")
    nodes, cluster = env_or_local_cluster("RULEADMIN_REDIS_NODES", tmp / "cluster")
    config = {"SECRET_KEY": uuid.uuid4().hex, "REDIS_NODES": nodes, "REDIS_MODE": "cluster"}
    app = create_app({**config, "TESTING": True})
    accounts = app.extensions["ruleadmin"].accounts
    user = "bench-" + uuid.uuid4().hex[:6]
    accounts.create_user(user, "viewer", uuid.uuid4().hex)
    token_id, token = accounts.create_token(user, "bench")
    rows = []
    try:
        for label, ttl in (("auth cache off (0 s)", 0), ("auth cache on (5 s)", 5)):
            port = free_port()
            svc = ruleadmin_service(label, port, server_env({**config, "AUTH_CACHE_SECONDS": ttl}),
                                    tmp / f"admin-{port}.log", workers=args.workers)
            svc.start()
            try:
                svc.wait_healthy()
                hammer(f"{svc.url}/api/v1/whoami", token, 1.0, args.clients)  # warm-up
                rows.append((label, *hammer(f"{svc.url}/api/v1/whoami", token, args.seconds, args.clients)))
            finally:
                svc.stop()
    finally:
        accounts.revoke_token(token_id)
        accounts.delete_user(user)
        app.extensions["ruleadmin"].close()
        if cluster is not None:
            cluster.stop()
    base = rows[0][1]
    print(f"\nGET /api/v1/whoami with a bearer token: {args.clients} clients, {args.seconds:.0f}s per row, "
          f"{args.workers} gevent workers\n")
    print("| configuration | req/s | vs cache off | p99 ms | errors |\n|---|---:|---:|---:|---:|")
    for label, rps, p99, errs in rows:
        print(f"| {label} | {rps:,.0f} | {rps / base:.2f}x | {p99:.1f} | {errs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

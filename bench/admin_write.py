"""Rule writes/second through the REST API with 1 and 2 ruleadmin instances and 8 concurrent clients.

Starts a throwaway 6-node Redis Cluster (or uses RULEADMIN_REDIS_NODES), gunicorn instances with
gevent workers, and prints a table. Latency is per acknowledged write and includes the WAIT for
one replica. Not an assertion: numbers depend on the machine.

    python bench/admin_write.py [--seconds 5] [--clients 8] [--workers 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
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
from rulegate_dev.service import Service, ruleadmin_service  # noqa: E402
from tests.admin.conftest import server_env  # noqa: E402


def rule(rule_id: str, weight: int) -> dict:
    return {"id": rule_id, "kind": "split", "route": {"host": "bench.example.com", "path": f"/{rule_id}"},
            "key": {"source": "header", "name": "x-uid"}, "default": "stable",
            "policies": [{"type": "percent", "buckets": [{"upstream": "canary", "weight": weight}]}]}


def client_loop(urls: list[str], namespace: str, rule_id: str, token: str, stop: float,
                latencies: list[float], conflicts: list[int], errors: list[int], idx: int) -> None:
    """Write one rule in a loop with If-Match, refreshing the revision after a 412."""
    s = requests.Session()
    h = {"Authorization": f"Bearer {token}"}
    base = urls[idx % len(urls)]
    url = f"{base}/api/v1/namespaces/{namespace}/rules/{rule_id}"
    rev = None
    n = 0
    while time.monotonic() < stop:
        n += 1
        headers = dict(h) if rev is None else {**h, "If-Match": f'"{rev}"'}
        t0 = time.perf_counter()
        r = s.put(url, json=rule(rule_id, 1 + n % 9000), headers=headers, timeout=10)
        dt = time.perf_counter() - t0
        if r.status_code in (200, 201):
            latencies.append(dt)
            rev = r.json()["revision"]
        elif r.status_code in (412, 428):
            conflicts.append(1)
            rev = int(r.headers.get("ETag", '"0"').strip('"')) if r.status_code == 412 else None
            if r.status_code == 428:
                rev = int(s.get(url, headers=h, timeout=10).headers["ETag"].strip('"'))
        else:
            errors.append(r.status_code)


def run(urls: list[str], token: str, namespaces: list[str], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    conflicts: list[int] = []
    errors: list[int] = []
    stop = time.monotonic() + seconds
    threads = [threading.Thread(target=client_loop, args=(urls, namespaces[i % len(namespaces)], f"r{i}", token,
                                                          stop, latencies, conflicts, errors, i))
               for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    lat = sorted(latencies)
    pct = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000) if lat else (lambda p: float("nan"))
    return {"writes_s": len(lat) / elapsed, "p50": pct(0.50), "p99": pct(0.99), "conflicts": len(conflicts),
            "errors": len(errors), "mean": statistics.fmean(lat) * 1000 if lat else float("nan")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="gevent workers per instance")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rg-bench-"))
    nodes, cluster = env_or_local_cluster("RULEADMIN_REDIS_NODES", tmp / "cluster")
    config = {"SECRET_KEY": uuid.uuid4().hex, "REDIS_NODES": nodes, "REDIS_MODE": "cluster",
              "WAIT_REPLICAS": 1, "WAIT_TIMEOUT_MS": 1000}
    app = create_app(config)
    b = app.extensions["ruleadmin"]
    user = "bench-" + uuid.uuid4().hex[:6]
    b.accounts.create_user(user, "editor", uuid.uuid4().hex)
    token_id, token = b.accounts.create_token(user, "bench")
    shared = "bench-" + uuid.uuid4().hex[:6]
    own = [f"{shared}-{i}" for i in range(args.clients)]
    for ns in [shared, *own]:
        b.rules.create_namespace(ns)
    servers: list[Service] = []
    rows = []
    try:
        for count in (1, 2):
            while len(servers) < count:
                port = free_port()
                g = ruleadmin_service(f"ruleadmin #{len(servers) + 1}", port, server_env(config),
                                      Path(tmp) / f"ruleadmin-{port}.log", workers=args.workers)
                g.start()
                servers.append(g)
                g.wait_healthy()
            urls = [s.url for s in servers]
            for label, namespaces in (("own namespace each", own), ("one shared namespace", [shared])):
                res = run(urls, token, namespaces, args.clients, args.seconds)
                rows.append((count, label, res))
    finally:
        for s in servers:
            s.stop()
        b.accounts.revoke_token(token_id)
        b.accounts.delete_user(user)
        b.close()
        if cluster is not None:
            cluster.stop()
    print(f"\nruleadmin REST writes: {args.clients} concurrent clients, {args.seconds:.0f}s per row, "
          f"{args.workers} gevent workers per instance, WAIT 1 replica\n")
    print(f"{'instances':>9} | {'scenario':<21} | {'writes/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'412s':>6} | {'errors':>6}")
    print("-" * 9 + "-+-" + "-" * 21 + "-+-" + "-+-".join("-" * w for w in (8, 7, 7, 6, 6)))
    for count, label, r in rows:
        print(f"{count:>9} | {label:<21} | {r['writes_s']:>8.0f} | {r['p50']:>7.1f} | {r['p99']:>7.1f} | "
              f"{r['conflicts']:>6} | {r['errors']:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What ruleadmin's reads cost a worker at 20,000 rules: one rule, every rule, a page, a conditional GET, a simulation,
and the web UI's rule list, rule, fleet and history pages.

    python bench/admin_reads.py [--rules 20000] [--tree PATH]

Starts a private 6-node cluster (rulegate_dev.LocalCluster, stopped by pid at the end), writes --rules rules into
one namespace (in 40 imports of 500: the history's entries), and sends each read through the Flask test client of one
in-process app (the web pages through a second client logged in through the form) (the tree's, `--tree` for
another checkout: before/after with one script). Per read: the CPU of the first call after a write (what a reader
pays when the namespace just changed: a one-rule write happens before it) and the best of the next 3 calls, in
process CPU (the test client's own work included: it is the same in both trees). The baseline row is
GET /healthz through the same client. Numbers are for comparison, not assertions.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=20000)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose ruleadmin runs")
    args = parser.parse_args()
    sys.path[:0] = [str(args.tree), str(ROOT)]

    from ruleadmin import create_app
    from rulegate.schema import encode_rule, validate_rule
    from rulegate_dev.cluster import LocalCluster
    from rulegate_dev.private_files import scratch_dir

    def make_rule(i: int, upstream: str = "stable") -> dict:
        return validate_rule({
            "id": f"r{i:05d}", "kind": "split",
            "route": {"host": f"svc{i % 100}.example.com", "path": f"/api/v{i // 100}"},
            "key": {"source": "header", "name": "x-uid"},
            "policies": [{"type": "uid_suffix", "suffixes": ["1", "7"], "upstream": "canary"}],
            "default": upstream})

    tmp = scratch_dir("rulegate-admin-reads-")
    cluster = LocalCluster(tmp / "cluster")
    cluster.start()
    rows = []
    try:
        app = create_app({"SECRET_KEY": "bench", "REDIS_NODES": ",".join(cluster.startup_nodes),
                          "REDIS_MODE": "cluster", "WAIT_REPLICAS": 1, "WAIT_TIMEOUT_MS": 1000,
                          "SESSION_COOKIE_SECURE": False, "REMEMBER_COOKIE_SECURE": False})
        backend = app.extensions["ruleadmin"]
        ns = "reads"
        backend.rules.create_namespace(ns)
        for lo in range(0, args.rules, 500):
            backend.store.commit(ns, [(f"r{i:05d}", encode_rule(make_rule(i)))
                                      for i in range(lo, min(args.rules, lo + 500))], None, "bench", op="import")
        user = "bench-" + uuid.uuid4().hex[:6]
        backend.accounts.create_user(user, "admin", "correct-horse-battery")
        _, token = backend.accounts.create_token(user, "bench")
        headers = {"Authorization": f"Bearer {token}"}
        client = app.test_client()
        base = f"/api/v1/namespaces/{ns}"
        sim = {"request": {"host": "svc7.example.com", "path": "/api/v7/x", "headers": {"x-uid": "3"}}}
        reads = [
            ("GET /healthz (baseline)", lambda: client.get("/healthz")),
            ("GET one rule", lambda: client.get(f"{base}/rules/r00042", headers=headers)),
            ("GET every rule", lambda: client.get(f"{base}/rules", headers=headers)),
            ("GET every rule (its JSON held from the row above)", lambda: client.get(f"{base}/rules", headers=headers)),
            ("GET a page of 50 (?limit=50)", lambda: client.get(f"{base}/rules?limit=50", headers=headers)),
            ("GET every rule, If-None-Match current", lambda: client.get(
                f"{base}/rules", headers={**headers, "If-None-Match": f'"{backend.store.revision(ns)}"'})),
            ("POST simulate", lambda: client.post(f"{base}/simulate", headers=headers, json=sim)),
        ]
        web = app.test_client()  # the web UI, logged in through the form as the same admin
        login = web.get("/login").data
        csrf = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', login).group(1).decode()
        web.post("/login", data={"username": user, "password": "correct-horse-battery", "csrf_token": csrf})
        page = f"/ns/{ns}"
        reads += [
            ("web: rule list page", lambda: web.get(f"{page}/")),
            ("web: one rule's page", lambda: web.get(f"{page}/rules/r00042/")),
            ("web: fleet page", lambda: web.get(f"{page}/fleet")),
            ("web: history page", lambda: web.get(f"{page}/history")),
            ("web: diff page, revision 0 to the current", lambda: web.get(f"{page}/diff?from=0")),
        ]
        client.get(f"{base}/rules?limit=1", headers=headers)  # warm-up: imports, first connections
        for n, (name, call) in enumerate(reads):
            backend.store.put_rule(ns, make_rule(n * 7, "canary" if n % 2 else "stable"), None, "bench")
            t = time.process_time()
            response = call()
            first = time.process_time() - t
            again = []
            for _ in range(3):
                t = time.process_time()
                call()
                again.append(time.process_time() - t)
            rows.append((name, response.status_code, first, min(again)))
        backend.close()
    finally:
        cluster.stop()
    base_cpu = rows[0][3]
    width = max(len(r[0]) for r in rows)
    print(f"\n{args.rules:,} rules, tree {args.tree}")
    print(f"{'read'.ljust(width)} | status | first after a write | again (best of 3) | ratio to baseline")
    print("-" * (width + 70))
    for name, status, first, again in rows:
        print(f"{name.ljust(width)} | {status:>6} | {first * 1000:>15.1f} ms | {again * 1000:>14.1f} ms | "
              f"{again / base_cpu:>8.1f}x")
    print(f"\n(python {sys.version.split()[0]}, {os.cpu_count()} CPUs; process CPU of the test client's call)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What starting nginx from its snapshot file costs at a large namespace: CPU of the master and of each worker
until the rules are served, and how long that takes; prints a table.

    python bench/nginx_start.py [--rules 10000] [--workers 2] [--starts 3] [--lua DIR]

Starts a private 6-node cluster, loads --rules split rules (as bench/reload.py), runs nginx with a snapshot file
until the file holds them and stops it. Then every Redis node is stopped (SIGSTOP, by pid: the rules can only come
from the file) and nginx is started --starts times on the same prefix (a new shared dict each time): from the start
command, requests are sent until one is answered by the rules (its X-Rulegate-Rev), then the master's and each
worker's CPU (run time from /proc schedstat) are read. The baseline is the same run's start of nginx with no
snapshot file and Redis stopped (nothing to load). Everything is stopped by pid at the end. `--lua DIR` runs nginx
with another tree's Lua modules (before/after with one script). Numbers are for comparison, never assertions.
"""
from __future__ import annotations

import argparse
import http.client
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import rulegate_dev.nginx  # noqa: E402
from bench.reload import load_rules, loaded_nginx, worker_cpu  # noqa: E402
from rulegate.connection import RedisConfig  # noqa: E402
from rulegate.store import RuleStore  # noqa: E402
from rulegate_dev.cluster import LocalCluster  # noqa: E402
from rulegate_dev.nginx import NginxLauncher  # noqa: E402
from rulegate_dev.private_files import scratch_dir  # noqa: E402


def served_rev(port: int) -> str | None:
    """Return the X-Rulegate-Rev of one request to a rule's route (None: not answered by the rules)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/v7/x", headers={"Host": "svc7.example.com", "X-Uid": "3"})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.getheader("X-Rulegate-Rev")
    except OSError:
        return None


def start(gw: NginxLauncher, rev: str | None) -> dict:
    """Start gw; return the seconds until it served revision rev (or answered at all) and the CPU it took."""
    t0 = time.monotonic()
    gw.start()
    while True:
        got = served_rev(gw.port)
        if (got == rev) if rev is not None else True:
            break
        if time.monotonic() - t0 > 120:
            raise RuntimeError(f"nginx never served revision {rev}")
        time.sleep(0.002)
    seconds = time.monotonic() - t0
    while len(gw.worker_pids()) < gw.workers and time.monotonic() - t0 < 120:
        time.sleep(0.01)  # (a worker counts once it set its title: after its init)
    out = {"seconds": seconds, "master": worker_cpu(gw.pid),
           "workers": sorted((worker_cpu(p) for p in gw.worker_pids()), reverse=True)}
    gw.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--lua", type=Path, help="run nginx with this directory's Lua modules (another tree's lua/)")
    args = parser.parse_args()
    if args.lua:
        rulegate_dev.nginx.LUA_DIR = args.lua.resolve()
    tmp = Path(scratch_dir("rulegate-start-"))
    cluster = LocalCluster(tmp / "cluster")
    cluster.start()
    rows = []
    try:
        store = RuleStore.from_config(RedisConfig(nodes=list(cluster.startup_nodes)))
        load_rules(store, "start", args.rules)
        snap = tmp / "rules.snap"
        gw = loaded_nginx(cluster, "start", tmp / "nginx", args.workers, args.rules, snapshot_path=str(snap))
        rev = str(gw.json("/rulegate/status")["revision"])
        deadline = time.monotonic() + 60
        while not snap.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        gw.stop()
        store.close()
        for node in cluster.nodes:
            cluster.pause(node)
        try:
            for _ in range(args.starts):
                rows.append(("from the snapshot file", start(gw, rev)))
            snap.rename(tmp / "rules.snap.away")
            rows.append(("no snapshot file (baseline)", start(gw, None)))
        finally:
            for node in cluster.nodes:
                cluster.resume(node)
    finally:
        cluster.stop()
    base = rows[-1][1]
    print(f"\n{args.rules:,} rules, nginx with {args.workers} workers, every Redis node stopped: start until served")
    print(f"{'start':<28} | {'until served ms':>15} | {'ratio':>6} | {'master CPU ms':>13} | workers' CPU ms")
    print("-" * 90)
    for name, r in rows:
        print(f"{name:<28} | {r['seconds'] * 1000:>15.0f} | {r['seconds'] / base['seconds']:>5.1f}x | "
              f"{r['master'] * 1000:>13.0f} | {' / '.join(f'{c * 1000:.0f}' for c in r['workers'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

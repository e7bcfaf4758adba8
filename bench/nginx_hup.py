"""What an nginx reload (SIGHUP) costs the requests that arrive during it, at a large namespace; prints a table.

    python bench/nginx_hup.py [--rules 10000] [--workers 2] [--hups 3] [--lua DIR]

Starts a private 6-node cluster and one nginx (all stopped by pid at the end), loads --rules split rules (as
bench/reload.py) and waits until every worker serves them. Then, --hups times: one client thread sends requests
in a row, each on a new connection (after a SIGHUP the old workers stop accepting and close their keep-alive
connections: every client reconnects to the new workers), for 1 s at rest, then sends the master a SIGHUP and
goes on until the new workers have answered for 1 s. Per reload it prints the slowest request at rest and during
the reload (the baseline is the same run's at-rest figure), the CPU of the master and of the new workers over the
reload (/proc schedstat, ns), and how many requests failed. `--lua DIR` runs nginx with the Lua modules of DIR
(another tree's lua/: before/after with one script). Numbers are for comparison, never assertions.
"""
from __future__ import annotations

import argparse
import http.client
import os
import signal
import statistics
import sys
import threading
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


class Client:
    """Requests in a row from one thread, each on a new connection; latencies kept with their send time."""

    def __init__(self, port: int):
        self.port = port
        self.samples: list[tuple[float, float]] = []  # (sent at, seconds)
        self.failed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", "/api/v7/x", headers={"Host": "svc7.example.com", "X-Uid": "3"})
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status != 200:
                    self.failed += 1
            except OSError:
                self.failed += 1
            self.samples.append((t, time.perf_counter() - t))

    def window(self, start: float, end: float) -> list[float]:
        return [s for t, s in self.samples if start <= t < end]

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def hup(gw: NginxLauncher, client: Client) -> dict:
    """One SIGHUP under the client's requests: latencies at rest and during it, CPU of the master and new workers."""
    old = set(gw.worker_pids())
    rest_from = time.perf_counter()
    time.sleep(1.0)
    master = gw.pid
    assert master is not None
    master_cpu = worker_cpu(master)
    sent = time.perf_counter()
    os.kill(master, signal.SIGHUP)
    deadline = time.monotonic() + 60
    while True:
        new = set(gw.worker_pids()) - old
        if len(new) == len(old):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("nginx did not replace its workers")
        time.sleep(0.005)
    time.sleep(1.5)
    cpu = {p: worker_cpu(p) for p in new}  # a new worker's CPU since its fork (its whole life so far)
    end = time.perf_counter()
    return {"rest": client.window(rest_from, sent), "during": client.window(sent, end),
            "master": worker_cpu(master) - master_cpu, "workers": sorted(cpu.values(), reverse=True)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hups", type=int, default=3)
    parser.add_argument("--lua", type=Path, help="run nginx with this directory's Lua modules (another tree's lua/)")
    args = parser.parse_args()
    if args.lua:
        rulegate_dev.nginx.LUA_DIR = args.lua.resolve()
    tmp = str(scratch_dir("rulegate-hup-"))
    cluster = LocalCluster(Path(tmp) / "cluster")
    cluster.start()
    rows = []
    try:
        store = RuleStore.from_config(RedisConfig(nodes=list(cluster.startup_nodes)))
        load_rules(store, "hup", args.rules)
        gw = loaded_nginx(cluster, "hup", Path(tmp) / "nginx", args.workers, args.rules)
        try:
            time.sleep(3)  # every worker compiled the set (its timer), the checkpoint ran
            client = Client(gw.port)
            try:
                for _ in range(args.hups):
                    rows.append(hup(gw, client))
            finally:
                client.close()
            failed = client.failed
            st = gw.json("/rulegate/status")
        finally:
            gw.stop()
        store.close()
    finally:
        cluster.stop()

    print(f"\n{args.rules:,} rules, nginx with {args.workers} workers: SIGHUP under requests in a row, each on a new "
          f"connection")
    print(f"{'reload':>6} | {'at rest: max (p50) ms':>22} | {'during: max (p50) ms':>22} | {'ratio':>6} | "
          f"{'master CPU ms':>13} | new workers' CPU ms")
    print("-" * 104)
    for n, r in enumerate(rows, 1):
        rest, during = max(r["rest"]) * 1000, max(r["during"]) * 1000
        print(f"{n:>6} | {rest:>10.1f} ({statistics.median(r['rest']) * 1000:5.2f})     | "
              f"{during:>10.1f} ({statistics.median(r['during']) * 1000:5.2f})     | {during / rest:>5.1f}x | "
              f"{r['master'] * 1000:>13.0f} | {' / '.join(f'{c * 1000:.0f}' for c in r['workers'])}")
    print(f"\nfailed requests: {failed}; master_compiles={st.get('master_compiles', '-')} "
          f"worker_compiles={st.get('worker_compiles')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

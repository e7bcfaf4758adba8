"""How long a one-rule change takes to reach the gateways, at a large and a small namespace; prints a table.

    python bench/propagation.py [--rules 20000] [--baseline-rules 100] [--changes 40]

Starts a private 6-node cluster, one in-process agent (RuleClient, pub/sub + 1 s polling) and one nginx with
2 workers per size, all stopped (by pid) at the end. Each change puts one rule (its route's upstream flips) through
RuleStore; the clock runs from the write's return until (a) the agent's decide() gives the new upstream and (b) two
keep-alive connections to nginx (the kernel spreads them over the workers) both get it — i.e. what a client of
each gateway sees. The baseline is the same measurement at --baseline-rules in the same run: a change's cost does
not depend on the namespace's size when the ratio stays near 1. Numbers are for comparison, never assertions.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fleet import pct  # noqa: E402
from bench.reload import load_rules, make_rule  # noqa: E402
from gateway_agent import RuleClient  # noqa: E402
from rulegate.connection import RedisConfig  # noqa: E402
from rulegate.store import RuleStore  # noqa: E402
from rulegate_dev.cluster import LocalCluster  # noqa: E402
from rulegate_dev.gateway_conf import gateway_http, rulegate_location, upstream_blocks  # noqa: E402
from rulegate_dev.nginx import NginxLauncher, free_port  # noqa: E402
from rulegate_dev.private_files import scratch_dir

HOST, PATH = "svc1.example.com", "/api/v0/x"  # the route of rule r00001, the one each change flips


def upstream_of(conn: http.client.HTTPConnection) -> str:
    conn.request("GET", PATH, headers={"Host": HOST, "X-Uid": "3"})
    resp = conn.getresponse()
    resp.read()
    return resp.getheader("X-Upstream", "")


def measure(cluster: LocalCluster, store: RuleStore, ns: str, changes: int, tmp: str) -> dict[str, list[float]]:
    echo = free_port()
    http_body = gateway_http(
        upstream_blocks(["canary", "default", "stable"], echo, keepalive=8),
        rulegate_location("default", header_vars=True, proxy="proxy_set_header X-Upstream $rulegate_upstream;"),
        extra=f"server {{{{ listen 127.0.0.1:{echo}; location / {{{{ "
              f"add_header X-Upstream $http_x_upstream; return 200 ok; }}}} }}}}")
    options = {"namespace": ns, "startup_nodes": list(cluster.startup_nodes), "refresh_interval": 1,
               "response_headers": "vars", "gateway_id": f"bench-{ns}"}
    gw = NginxLauncher(http_body, prefix=Path(tmp) / f"nginx-{ns}", package_path=False, workers=2,
                       files={"conf/rulegate.json": json.dumps(options)})
    client = RuleClient(cluster.startup_nodes, ns, refresh_interval=1.0).start()
    gw.start()
    out: dict[str, list[float]] = {"agent": [], "nginx": [], "both": []}
    try:
        conns = [http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30) for _ in range(2)]
        req = {"host": HOST, "path": PATH, "headers": {"x-uid": "3"}}
        deadline = time.monotonic() + 120
        while not (client.decide(req).upstream == "stable" and all(upstream_of(c) == "stable" for c in conns)):
            if time.monotonic() > deadline:
                raise RuntimeError("the gateways did not load the namespace")
            time.sleep(0.2)
        time.sleep(1.0)  # the nginx listener subscribed
        for n in range(changes):
            want = "canary" if n % 2 == 0 else "stable"
            store.put_rule(ns, make_rule(1, upstream=want), None, "bench")
            t0 = time.perf_counter()
            seen: dict[str, float] = {}
            while len(seen) < 3 and time.perf_counter() - t0 < 30:
                now = time.perf_counter() - t0
                if "agent" not in seen and client.decide(req).upstream == want:
                    seen["agent"] = now
                for i, c in enumerate(conns):
                    if f"nginx{i}" not in seen and upstream_of(c) == want:
                        seen[f"nginx{i}"] = time.perf_counter() - t0
                time.sleep(0.0005)
            out["agent"].append(seen.get("agent", 30.0))
            out["nginx"].append(max(seen.get("nginx0", 30.0), seen.get("nginx1", 30.0)))
            out["both"].append(max(out["agent"][-1], out["nginx"][-1]))
            time.sleep(0.25)
        st = gw.json("/rulegate/status")
        out["counters"] = [st.get("full_reloads", 0), st.get("deltas_applied", 0), st.get("worker_compiles", 0),
                           st.get("worker_deltas", 0)]
        return out
    finally:
        client.stop()
        gw.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=20_000)
    parser.add_argument("--baseline-rules", type=int, default=100)
    parser.add_argument("--changes", type=int, default=40)
    args = parser.parse_args()
    tmp = str(scratch_dir("rulegate-propagation-"))
    cluster = LocalCluster(Path(tmp) / "cluster")
    cluster.start()
    results = {}
    try:
        store = RuleStore.from_config(RedisConfig(nodes=list(cluster.startup_nodes)))
        for count in (args.baseline_rules, args.rules):
            ns = f"prop{count}"
            load_rules(store, ns, count)
            results[count] = measure(cluster, store, ns, args.changes, tmp)
        store.close()
    finally:
        cluster.stop()
    base = results[args.baseline_rules]
    print(f"\none-rule change, write's return -> served ({args.changes} changes per size; p50 / p99 / max in ms)\n")
    print(f"| gateway | {args.baseline_rules:,} rules (baseline) | {args.rules:,} rules | p99 ratio |")
    print("|---|---:|---:|---:|")
    for key, label in (("agent", "Python agent"), ("nginx", "nginx, both connections"), ("both", "every gateway")):
        cells = []
        for count in (args.baseline_rules, args.rules):
            s = results[count][key]
            cells.append(f"{statistics.median(s) * 1000:.1f} / {pct(s, 0.99) * 1000:.1f} / {max(s) * 1000:.1f}")
        ratio = pct(results[args.rules][key], 0.99) / max(pct(base[key], 0.99), 1e-9)
        print(f"| {label} | {cells[0]} | {cells[1]} | {ratio:.2f}x |")
    c = results[args.rules]["counters"]
    print(f"\nnginx at {args.rules:,} rules after the changes: full_reloads={c[0]} deltas_applied={c[1]} "
          f"worker_compiles={c[2]} worker_deltas={c[3]}")
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

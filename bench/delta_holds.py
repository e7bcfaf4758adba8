"""How long a log delta of many rules holds the gateways' event loops, by delta size.

    python bench/delta_holds.py [--rules 10000] [--sizes 100,500,2000] [--repeat 2] [--lua DIR]

Starts a private 6-node cluster, stores --rules split rules (100 hosts x rules/100 paths, as bench/reload.py) and
one nginx with 2 workers whose loop lag probe looks every millisecond (loop_lag.lua), all stopped (by pid) at the
end. Each step commits one revision changing k rules (every 4th, under a quarter of the rules: nginx applies it as
a log delta), sends a request to each worker (a worker takes a new set on a request or in its timer) and reads,
from /rulegate/status, how many looks of the probe found the loop late by a span the worker itself held, by
bucket: the longest hold is the figure (a request arriving then waits for it). Beside it, in this process, the
Python agent's part: `decode_rule` of each changed rule and `RuleSet.with_changes` at --rules, timed as one
block (what the agent's sync held before 4786c09) and the longest slice with the sync loop's pause (Slicer, 2 ms
with OS threads; 1 ms under gevent). `--lua DIR` runs nginx with another tree's lua/ (a before/after pair).
Numbers for comparison, never assertions.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import rulegate_dev.nginx  # noqa: E402
from bench.reload import BenchGateway, load_rules, make_rule, pinned_connections  # noqa: E402
from rulegate.connection import RedisConfig  # noqa: E402
from rulegate.evaluator import RuleSet  # noqa: E402
from rulegate.namespace import Slicer  # noqa: E402
from rulegate.schema import decode_rule, encode_rule  # noqa: E402
from rulegate.store import RuleStore  # noqa: E402
from rulegate_dev.cluster import LocalCluster  # noqa: E402
from rulegate_dev.private_files import scratch_dir  # noqa: E402


def longest_hold(before: dict, after: dict) -> str:
    """The upper bound of the largest loop-lag bucket that gained a hold between two status readings."""
    bounds = [*after["bounds"], None]
    held = [n - b for n, b in zip(after["held"], before["held"])]
    top = max((i for i, n in enumerate(held) if n > 0), default=None)
    if top is None:
        return "none"
    return f"> {bounds[-2] * 1000:g} ms" if bounds[top] is None else f"<= {bounds[top] * 1000:g} ms"


def nginx_step(gw: BenchGateway, store: RuleStore, ns: str, k: int, tag: str) -> dict:
    """Commit k changed rules, let both workers take them, and return the holds and counters."""
    time.sleep(1.2)  # every worker flushed its loop lag counts
    before = gw.status()
    rev = store.commit(ns, [(f"r{i:05d}", encode_rule(make_rule(i, upstream=tag))) for i in range(0, 4 * k, 4)],
                       None, "bench", op="bulk").revision
    gw.wait(lambda st: st["worker"]["revision"] == rev)
    for conn in pinned_connections(gw.gw.port, 2):
        deadline = time.monotonic() + 30
        while True:  # the worker serves the new set when its decisions carry the new revision
            conn.request("GET", "/api/v0/x", headers={"Host": "svc0.example.com", "X-Uid": "3"})
            resp = conn.getresponse()
            resp.read()
            if resp.getheader("X-Rulegate-Rev") == str(rev) or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        conn.close()
    time.sleep(1.2)
    after = gw.status()
    return {"hold": longest_hold(before["loop_lag"], after["loop_lag"]),
            "full": after["full_reloads"] - before["full_reloads"],
            "deltas": after["deltas_applied"] - before["deltas_applied"]}


def agent_step(rs: RuleSet, k: int) -> tuple[float, float]:
    """Seconds of decode + with_changes for k changed rules in one block, and the longest slice with a Slicer."""
    raws = {f"r{i:05d}": encode_rule(make_rule(i, upstream="canary")) for i in range(0, 4 * k, 4)}
    t0 = time.perf_counter()
    rs.with_changes({rule_id: decode_rule(v) for rule_id, v in raws.items()}, [], 2, "")
    block = time.perf_counter() - t0
    longest, last = 0.0, time.perf_counter()

    def rest() -> None:
        nonlocal longest, last
        now = time.perf_counter()
        longest, last = max(longest, now - last), now

    pause = Slicer(rest=rest)
    changed = {}
    for rule_id, v in raws.items():
        pause()
        changed[rule_id] = decode_rule(v)
    rs.with_changes(changed, [], 2, "", pause)
    rest()
    return block, longest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--sizes", default="100,500,2000")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--lua", type=Path, help="run nginx with this directory's Lua modules (another tree's lua/)")
    args = parser.parse_args()
    if args.lua:
        rulegate_dev.nginx.LUA_DIR = args.lua.resolve()
    sizes = [int(x) for x in args.sizes.split(",")]
    tmp = str(scratch_dir("rulegate-deltaholds-"))
    cluster = LocalCluster(Path(tmp) / "cluster")
    cluster.start()
    rows = []
    try:
        store = RuleStore.from_config(RedisConfig(nodes=list(cluster.startup_nodes)))
        ns = "holds"
        load_rules(store, ns, args.rules)
        gw = BenchGateway(cluster, ns, Path(tmp) / "nginx", 2, 0.001)
        try:
            for k in sizes:
                for n in range(args.repeat):
                    rows.append((k, nginx_step(gw, store, ns, k, f"u{k}x{n}")))
        finally:
            gw.stop()
        store.close()
    finally:
        cluster.stop()
    rs = RuleSet([make_rule(i) for i in range(args.rules)], 1)
    agent = {k: [agent_step(rs, k) for _ in range(3)] for k in sizes}
    print(f"\nlog deltas over {args.rules:,} rules: the longest event-loop hold (nginx, 2 workers, loop lag probe "
          f"every 1 ms, each of {args.repeat} commits) and the agent's decode + compile (best of 3)\n")
    print("| changed rules | nginx: longest hold a worker made, per commit | nginx full reloads / deltas | "
          "agent: one block (ms) | agent: longest slice with the pause (ms) |")
    print("|---:|---|---:|---:|---:|")
    for k in sizes:
        mine = [r for size, r in rows if size == k]
        block = min(b for b, _ in agent[k]) * 1000
        sliced = statistics.median(s for _, s in agent[k]) * 1000
        print(f"| {k:,} | {', '.join(r['hold'] for r in mine)} | {sum(r['full'] for r in mine)} / "
              f"{sum(r['deltas'] for r in mine)} | {block:.1f} | {sliced:.2f} |")
    print(f"\n(python {sys.version.split()[0]}, {os.cpu_count()} CPUs; lua: {args.lua or 'this tree'}; a hold is "
          "counted by the bucket of the loop lag histogram it fell in)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

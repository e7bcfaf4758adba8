"""What one rule change costs the Python agent as the namespace grows: O(change) or O(rules); prints a table.

    python bench/agent_delta.py [--rules 1000,20000] [--changes 30] [--hosts same|100]

Starts a private 6-node cluster (rulegate_dev.LocalCluster, stopped by pid at the end). Per size, a
RuleClient (no notifications) with a snapshot file loads the namespace fully, then `--changes` times:
one rule rewritten through RuleStore.put_rule, then `Syncer.sync_once()` (the round trip, the log
entry's decode, the delta's compile, the install: everything the sync thread does for one change).
Reported: that thread's CPU (median, p90), the snapshot writes made meanwhile, and the CPU of the one
checkpoint that writes the snapshot once the changes settle (`Syncer.checkpoint`). The ratio column
divides each median by the first size's, measured in the same run: ~1.0 means a change costs O(change).
`--hosts same` spreads the rules over one host each (the largest host maps), `100` over 100 hosts.
Before/after: copy this file into another checkout's bench/ and run it there (it imports its own tree).
Numbers are for comparison, not assertions.
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

from gateway_agent import RuleClient  # noqa: E402
from rulegate.connection import RedisConfig  # noqa: E402
from rulegate.schema import encode_rule, validate_rule  # noqa: E402
from rulegate.store import RuleStore  # noqa: E402
from rulegate_dev.cluster import LocalCluster  # noqa: E402
from rulegate_dev.private_files import scratch_dir  # noqa: E402


def make_rule(i: int, hosts: int, upstream: str = "stable") -> dict:
    return validate_rule({
        "id": f"r{i:05d}", "kind": "split",
        "route": {"host": f"svc{i % hosts}.example.com", "path": f"/api/v{i // hosts}"},
        "key": {"source": "header", "name": "x-uid"},
        "policies": [{"type": "uid_suffix", "suffixes": ["1", "7"], "upstream": "canary"}],
        "default": upstream})


def measure(cluster: LocalCluster, store: RuleStore, count: int, hosts: int, changes: int, tmp: Path) -> dict:
    ns = f"delta{count}h{hosts}"
    for lo in range(0, count, 500):
        store.commit(ns, [(f"r{i:05d}", encode_rule(make_rule(i, hosts))) for i in range(lo, min(count, lo + 500))],
                     None, "bench", op="import")
    client = RuleClient(cluster.startup_nodes, ns, notifications=False, snapshot_path=str(tmp / f"{ns}.snap"))
    s = client.syncer
    s.slots.refresh(client.budget, s.pool)
    s.full_reload()
    writes = s.stats.snapshot_writes
    cpu = []
    for k in range(changes):
        store.put_rule(ns, make_rule(k * 37 % count, hosts, "canary" if k % 2 else "stable"), None, "bench")
        t = time.thread_time()
        s.sync_once()
        cpu.append(time.thread_time() - t)
    if s.stats.deltas_applied != changes or s.stats.full_reloads != 1:
        raise RuntimeError(f"expected {changes} deltas and no full reload after the first: {s.stats}")
    during = s.stats.snapshot_writes - writes
    t = time.thread_time()
    written = s.checkpoint(now=True) if hasattr(s, "checkpoint") else False  # a tree before checkpoints: none
    checkpoint = time.thread_time() - t if written else 0.0
    s.pool.close()
    cpu.sort()
    return {"median": statistics.median(cpu), "p90": cpu[int(len(cpu) * 0.9)], "writes": during,
            "checkpoint": checkpoint}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rules", default="1000,20000")
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--hosts", choices=["same", "100"], default="same",
                        help="one host per rule (same) or 100 hosts")
    args = parser.parse_args()
    tmp = scratch_dir("rulegate-agent-delta-")
    cluster = LocalCluster(tmp / "cluster")
    cluster.start()
    rows = []
    try:
        store = RuleStore.from_config(RedisConfig(nodes=list(cluster.startup_nodes)))
        for count in [int(x) for x in args.rules.split(",")]:
            hosts = count if args.hosts == "same" else 100
            rows.append((count, hosts, measure(cluster, store, count, hosts, args.changes, tmp)))
        store.close()
    finally:
        cluster.stop()
    base = rows[0][2]["median"]
    print(f"\n{'rules':>7} | {'hosts':>6} | {'CPU a change: median':>21} | {'p90':>8} | {'ratio':>6} | "
          f"{'snapshot writes':>15} | checkpoint after")
    print("-" * 94)
    for count, hosts, r in rows:
        print(f"{count:>7,} | {hosts:>6,} | {r['median'] * 1000:>18.2f} ms | {r['p90'] * 1000:>5.2f} ms | "
              f"{r['median'] / base:>5.2f}x | {r['writes']:>7} of {args.changes:<5} | {r['checkpoint'] * 1000:.1f} ms")
    print(f"\n(python {sys.version.split()[0]}, {os.cpu_count()} CPUs; CPU is the sync thread's, "
          "round trip included; ratio: to the first row, same run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

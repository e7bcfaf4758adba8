"""A fleet of Python agents on one namespace: Redis load at idle and per change, and propagation; prints a table.

    python bench/fleet.py [--gateways 1000] [--baseline 10] [--processes 4] [--rules 20] [--changes 4]
                          [--idle 6] [--refresh-interval 1] [--heartbeat-interval 5]

Starts a private 6-node cluster (stopped by pid at the end) and, per fleet size (--baseline, then --gateways),
--processes worker processes (this file with `worker`; 1 for the baseline), each running its share of real
`RuleClient`s (the agent's sync loop, pub/sub listener, budgeted connections; gevent, as the sidecar runs them).
Each size is measured with read_replica off, then on (the same agents: the loop reads the flag every cycle), on the
namespace's master and its replica (INFO commandstats calls, INFO's own left out, and total_net_output_bytes):
- idle: over --idle seconds once every gateway has the namespace: ops/s, bytes/s, ops per gateway per poll
  interval, and the agents' own count of Redis round trips per gateway per poll interval;
- propagation: --changes one-rule changes through RuleStore (WAIT 1 replica), each after every gateway applied the
  previous one, timed from the write's return to each gateway's applied revision (`Applied.applied_at`, same
  clock): p50/p99 over all gateways and changes;
- per change: --changes more with polling paused (refresh_interval set to 3600 s: only the change's notification
  wakes a loop; a due heartbeat still rides along), so the counters' deltas are the change's own cost.
Ratios are per gateway against the baseline of the same run and the same read_replica setting. Numbers are for
comparison, never assertions; on a small machine the fleet's own Python CPU bounds its propagation time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rulegate_dev.private_files import scratch_dir  # noqa: E402

NAMESPACE = "fleet"
COUNTERS = ("operations", "replica_reads", "replica_lagging", "replica_errors", "heartbeats_ok", "full_reloads",
            "deltas_applied", "syncs_failed")


# ---- worker process: N real agents under gevent ---------------------------------------------------------------
def worker(argv: list[str]) -> int:
    from gevent import monkey
    monkey.patch_all()
    import gevent
    from gevent.fileobject import FileObjectPosix

    from gateway_agent import RuleClient

    p = argparse.ArgumentParser()
    p.add_argument("--nodes", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--refresh-interval", type=float, required=True)
    p.add_argument("--heartbeat-interval", type=float, required=True)
    p.add_argument("--read-replica", action="store_true")
    args = p.parse_args(argv)
    clients = [RuleClient(args.nodes, NAMESPACE, refresh_interval=args.refresh_interval,
                          heartbeat_interval=args.heartbeat_interval, gateway_id=f"{args.prefix}-{i}",
                          read_replica=args.read_replica) for i in range(args.count)]
    for c in clients:
        c.start(wait=0)
        gevent.sleep(args.refresh_interval / max(1, args.count))  # spread the loops over one interval

    def reply(obj: object) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    stdin = FileObjectPosix(sys.stdin.fileno(), "rb", close=False)
    for line in stdin:
        cmd, *rest = line.decode().split()
        if cmd == "wait":  # wait <revision> <timeout>: every gateway's applied_at of that revision
            rev, timeout = int(rest[0]), float(rest[1])
            deadline = time.monotonic() + timeout
            times, missing = [], 0
            for c in clients:
                if c.wait_for_revision(rev, max(0.0, deadline - time.monotonic())):
                    cur = c.syncer.current
                    times.append(cur.applied_at if cur.revision == rev else None)
                else:
                    missing += 1
            reply({"applied_at": [t for t in times if t is not None], "missing": missing})
        elif cmd == "set":  # set read_replica 0|1, set refresh_interval SECONDS (read by the loop every cycle)
            for c in clients:
                if rest[0] == "read_replica":
                    c.syncer.config.read_replica = rest[1] == "1"
                else:
                    c.syncer.config.refresh_interval = float(rest[1])
                    c.refresh()
            reply({"set": rest})
        elif cmd == "stats":
            totals = dict.fromkeys(COUNTERS, 0)
            for c in clients:
                totals["operations"] += c.budget.stats.operations
                snap = c.syncer.stats.snapshot()
                for k in COUNTERS[1:]:
                    totals[k] += snap[k]
            reply(totals)
        elif cmd == "stop":
            gevent.joinall([gevent.spawn(c.stop) for c in clients], timeout=10)
            reply({"stopped": len(clients)})
            return 0
    return 0


# ---- the parent -------------------------------------------------------------------------------------------------
class Workers:
    """The worker processes of one configuration (stopped by pid)."""

    def __init__(self, nodes: list[str], gateways: int, processes: int, tag: str, args, read_replica: bool):
        self.procs: list[subprocess.Popen] = []
        per = [gateways // processes + (1 if i < gateways % processes else 0) for i in range(processes)]
        for i, count in enumerate(c for c in per if c):
            cmd = [sys.executable, __file__, "worker", "--nodes", ",".join(nodes), "--count", str(count),
                   "--prefix", f"{tag}-p{i}", "--refresh-interval", str(args.refresh_interval),
                   "--heartbeat-interval", str(args.heartbeat_interval)] + (["--read-replica"] if read_replica else [])
            self.procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
                                               env={**os.environ, "PYTHONPATH": str(ROOT)}))

    def ask(self, line: str) -> list[dict]:
        for p in self.procs:
            p.stdin.write((line + "\n").encode())
            p.stdin.flush()
        out = []
        for p in self.procs:
            text = p.stdout.readline()
            if not text:
                raise RuntimeError(f"worker {p.pid} exited ({p.poll()})")
            out.append(json.loads(text))
        return out

    def wait(self, rev: int, timeout: float = 60) -> tuple[list[float], int]:
        replies = self.ask(f"wait {rev} {timeout}")
        return [t for r in replies for t in r["applied_at"]], sum(r["missing"] for r in replies)

    def stats(self) -> dict[str, int]:
        totals = dict.fromkeys(COUNTERS, 0)
        for r in self.ask("stats"):
            for k in COUNTERS:
                totals[k] += r[k]
        return totals

    def stop(self) -> None:
        try:
            self.ask("stop")
        except (OSError, RuntimeError, ValueError):
            pass
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def node_counters(client) -> tuple[int, int]:
    """Return (commands processed but INFO, total_net_output_bytes) of one node."""
    stats = client.info("commandstats")
    ops = sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")
    return ops, int(client.info("stats")["total_net_output_bytes"])


def sample(nodes: dict) -> dict[str, tuple[int, int]]:
    return {name: node_counters(c) for name, c in nodes.items()}


def delta(a: dict, b: dict) -> dict[str, tuple[int, int]]:
    return {k: (b[k][0] - a[k][0], b[k][1] - a[k][1]) for k in a}


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def changes(store, workers: Workers, count: int, first: int) -> tuple[list[float], int]:
    """Commit `count` one-rule changes, each after every gateway applied the previous one; return the
    propagation samples (write's return -> each gateway's applied_at) and how many were not applied in time."""
    from bench.reload import make_rule
    props: list[float] = []
    missing_total = 0
    for n in range(first, first + count):
        result = store.put_rule(NAMESPACE, make_rule(1, upstream="canary" if n % 2 == 0 else "stable"), None,
                                "bench")
        returned = time.time()
        times, missing = workers.wait(result.revision, 60)
        missing_total += missing
        props += [max(0.0, t - returned) for t in times]
    return props, missing_total


def run_config(store, nodes: dict, nodes_list: list[str], gateways: int, processes: int, tag: str,
               args) -> list[dict]:
    """Measure one fleet size with read_replica off, then on (the same agents; the loop reads the flag every
    cycle): idle, propagation with polling, per-change cost with polling paused (pub/sub wakes only)."""
    t_start = time.monotonic()
    workers = Workers(nodes_list, gateways, processes, tag, args, False)
    out = []
    try:
        rev = store.revision(NAMESPACE)
        _, missing = workers.wait(rev, 300)
        if missing:
            raise RuntimeError(f"{missing} of {gateways} gateways did not load revision {rev}")
        started = time.monotonic() - t_start
        for rr in (False, True):
            workers.ask(f"set read_replica {int(rr)}")
            time.sleep(args.heartbeat_interval + args.refresh_interval)  # start-up traffic over, heartbeats spread
            s0, c0, t0 = sample(nodes), workers.stats(), time.monotonic()
            time.sleep(args.idle)
            s1, c1, t1 = sample(nodes), workers.stats(), time.monotonic()
            props, missing = changes(store, workers, args.changes, 0)
            workers.ask("set refresh_interval 3600")  # quiet: only the change notifications wake the loops
            time.sleep(args.refresh_interval * 1.5)
            w0, cw0 = sample(nodes), workers.stats()
            _, quiet_missing = changes(store, workers, args.changes, 1)
            w1, cw1 = sample(nodes), workers.stats()
            workers.ask(f"set refresh_interval {args.refresh_interval}")
            window = delta(w0, w1)
            out.append({"gateways": gateways, "read_replica": rr, "idle": delta(s0, s1), "idle_secs": t1 - t0,
                        "round_trips": c1["operations"] - c0["operations"],
                        "per_change": {k: (v[0] / args.changes, v[1] / args.changes) for k, v in window.items()},
                        "props": props, "missing": missing + quiet_missing,
                        "counters_idle": {k: c1[k] - c0[k] for k in COUNTERS},
                        "counters_changes": {k: cw1[k] - cw0[k] for k in COUNTERS}, "startup": started})
        return out
    finally:
        workers.stop()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        return worker(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=1000, help="gateways of the fleet (default 1000)")
    parser.add_argument("--baseline", type=int, default=10, help="gateways of the baseline (default 10)")
    parser.add_argument("--processes", type=int, default=4, help="worker processes of the fleet (default 4)")
    parser.add_argument("--rules", type=int, default=20, help="rules in the namespace (default 20)")
    parser.add_argument("--changes", type=int, default=4, help="one-rule changes per measurement (default 4)")
    parser.add_argument("--idle", type=float, default=6.0, help="seconds of the idle measurement (default 6)")
    parser.add_argument("--refresh-interval", type=float, default=1.0, help="agents' poll interval (default 1 s)")
    parser.add_argument("--heartbeat-interval", type=float, default=5.0, help="agents' heartbeat (default 5 s)")
    args = parser.parse_args()

    from bench.reload import load_rules
    from rulegate.connection import RedisConfig
    from rulegate.keyspace import Keys
    from rulegate.store import RuleStore
    from rulegate_dev.cluster import LocalCluster

    began = time.monotonic()
    tmp = str(scratch_dir("rulegate-fleet-"))
    cluster = LocalCluster(Path(tmp) / "cluster")
    cluster.start()
    results = []
    try:
        store = RuleStore.from_config(RedisConfig(nodes=list(cluster.startup_nodes)))
        load_rules(store, NAMESPACE, args.rules)
        master = cluster.slot_owner(Keys(NAMESPACE).slot)
        nodes = {"master": cluster.client(master), "replica": cluster.client(cluster.replicas_of(master)[0])}
        for gateways, processes, tag in ((args.baseline, 1, "base"), (args.gateways, args.processes, "fleet")):
            results += run_config(store, nodes, cluster.startup_nodes, gateways, processes, tag, args)
            print(f"  {tag}: {gateways} gateways done ({time.monotonic() - began:.0f} s)", file=sys.stderr)
        store.close()
    finally:
        cluster.stop()
    report(results, args, time.monotonic() - began)
    return 0


def report(results: list[dict], args, elapsed: float) -> None:
    def per_gw(r: dict, what: str, node: str, i: int) -> float:
        if what == "idle":
            return r["idle"][node][i] / r["idle_secs"] * args.refresh_interval / r["gateways"]
        return r["per_change"][node][i] / r["gateways"]

    print(f"\nfleet of Python agents on one namespace ({args.rules} rules, poll {args.refresh_interval:g} s, "
          f"heartbeat {args.heartbeat_interval:g} s, {args.changes} one-rule changes per measurement); Redis "
          f"counters of the namespace's master (m) / replica (r)\n")
    print("| gateways | read_replica | idle ops/s m / r | idle KB/s m / r | idle ops per gateway per poll m / r "
          "(ratio) | agent round trips per gateway per poll | per change: ops m / r | per change: KB m / r "
          "| bytes per gateway per change (ratio) | propagation p50 / p99 ms (p99 ratio) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        base = next(b for b in results if b["gateways"] == args.baseline and b["read_replica"] == r["read_replica"])
        b_ops = per_gw(base, "idle", "master", 0) + per_gw(base, "idle", "replica", 0)
        b_bytes = per_gw(base, "change", "master", 1) + per_gw(base, "change", "replica", 1)
        b_p99 = pct(base["props"], 0.99)
        secs = r["idle_secs"]
        im, ir = r["idle"]["master"], r["idle"]["replica"]
        cm, cr = r["per_change"]["master"], r["per_change"]["replica"]
        ops_gw = (per_gw(r, "idle", "master", 0), per_gw(r, "idle", "replica", 0))
        bytes_gw = per_gw(r, "change", "master", 1) + per_gw(r, "change", "replica", 1)
        trips = r["round_trips"] / secs * args.refresh_interval / r["gateways"]
        p50, p99 = statistics.median(r["props"]) * 1000 if r["props"] else float("nan"), pct(r["props"], 0.99) * 1000
        print(f"| {r['gateways']:,} | {'on' if r['read_replica'] else 'off'} "
              f"| {im[0] / secs:,.0f} / {ir[0] / secs:,.0f} | {im[1] / secs / 1024:,.1f} / {ir[1] / secs / 1024:,.1f} "
              f"| {ops_gw[0]:.2f} / {ops_gw[1]:.2f} ({sum(ops_gw) / b_ops:.2f}x) | {trips:.2f} "
              f"| {cm[0]:,.0f} / {cr[0]:,.0f} | {cm[1] / 1024:,.1f} / {cr[1] / 1024:,.1f} "
              f"| {bytes_gw:,.0f} ({bytes_gw / b_bytes:.2f}x) | {p50:.0f} / {p99:.0f} ({p99 / 1000 / b_p99:.2f}x) |")
    print("\nagent counters (summed over the fleet; idle window | quiet change window):")
    show = ("replica_reads", "replica_lagging", "replica_errors", "heartbeats_ok", "deltas_applied", "full_reloads",
            "syncs_failed")
    for r in results:
        ci, cc = r["counters_idle"], r["counters_changes"]
        print(f"  {r['gateways']:,} gw, read_replica {'on' if r['read_replica'] else 'off'}: "
              + ", ".join(f"{k}={ci[k]}" for k in show) + " | " + ", ".join(f"{k}={cc[k]}" for k in show)
              + f"; not applied within 60 s: {r['missing']}; all loaded {r['startup']:.1f} s after start")
    print(f"\n(python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {elapsed:.0f} s in all; ops = INFO "
          f"commandstats calls, bytes = total_net_output_bytes; per change = the quiet change window / changes)")


if __name__ == "__main__":
    sys.exit(main())

"""A namespace kill switch on a namespace of many routes: what it writes and what it costs every gateway.

    python bench/kill_switch.py [--rules 10000] [--rounds 3] [--lua DIR]

Starts a private 6-node cluster, stores --rules split rules on as many routes (100 hosts x rules/100 paths, as
bench/reload.py), and runs one in-process agent (RuleClient) and one nginx with 2 workers on that namespace,
all stopped (by pid) at the end. Each round engages a namespace kill switch (a static 503) two ways, then undoes it:

- baseline, "one rule per route": what ruleadmin committed for a namespace switch before 4b3644f — a degrade
  rule of percent 100 on every (host, path) of the namespace plus `*` `/`, in one commit (written here through
  RuleStore.commit with the kill switches' headroom, as ruleadmin did); its undo deletes them in one commit;
- "scope namespace": `ruleadmin.killswitch.engage` / `undo` of this tree (one rule of scope namespace).

Per engage and undo it prints the call's wall time (ruleadmin's engage commits, then reads the rules that can
decide before its kill rule by id), the rules and bytes written, the time from the call until the agent and both nginx
workers answer a request of a route (503 while engaged, 200 after the undo; a thread polls them from the call on),
each nginx worker's CPU over that window (schedstat, less its idle rate) and whether nginx took it as a delta or a
full reload. Figures are medians
over --rounds; numbers for comparison, never assertions. `--lua DIR` runs nginx with another tree's lua/ (a
before/after pair).
"""
from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import rulegate_dev.nginx  # noqa: E402
from bench.reload import BenchGateway, load_rules, pinned_connections, worker_cpu  # noqa: E402
from gateway_agent import RuleClient  # noqa: E402
from ruleadmin import killswitch  # noqa: E402
from ruleadmin.rules import RuleService  # noqa: E402
from rulegate.connection import RedisConfig  # noqa: E402
from rulegate.schema import encode_rule, validate_rule  # noqa: E402
from rulegate.store import RuleStore  # noqa: E402
from rulegate_dev.cluster import LocalCluster  # noqa: E402
from rulegate_dev.private_files import scratch_dir  # noqa: E402

ACTION = {"type": "static", "status": 503, "body": "down"}
PROBES = [("svc7.example.com", "/api/v0/x"), ("svc42.example.com", "/api/v31/y"), ("nowhere.example.com", "/")]


def per_route_rules(store: RuleStore, ns: str, sid: str) -> list[tuple[str, bytes]]:
    """The rules a namespace switch was before 4b3644f: one per (host, path) of the rules, plus * /."""
    routes = {(r["route"]["host"], r["route"]["path"]) for r in store.load(ns).rules.values()} | {("*", "/")}
    now = int(time.time())
    return [(f"0--kill.{sid}.{n}", encode_rule(validate_rule({
        "id": f"0--kill.{sid}.{n}", "kind": "degrade", "route": {"host": host, "path": path}, "action": ACTION,
        "percent": 100, "description": f"kill switch {sid} (namespace) engaged by bench", "updated_by": "bench",
        "updated_at": now}))) for n, (host, path) in enumerate(sorted(routes))]


class Gateways:
    """The agent and nginx on the namespace, and what one change costs them."""

    def __init__(self, cluster: LocalCluster, ns: str, tmp: str):
        self.client = RuleClient(cluster.startup_nodes, ns, refresh_interval=1.0).start()
        self.gw = BenchGateway(cluster, ns, Path(tmp) / f"nginx-{ns}", 2, False)
        self.conns = pinned_connections(self.gw.gw.port, 2)
        self.pids = [self.gw.pid, *self.gw.others]
        t0, cpu0 = time.monotonic(), {p: worker_cpu(p) for p in self.pids}
        time.sleep(1.0)
        self.idle = {p: (worker_cpu(p) - cpu0[p]) / (time.monotonic() - t0) for p in self.pids}

    def statuses(self) -> list[int]:
        """The agent's status for each probe (200 for a proxy or pass), then each nginx worker's."""
        out = []
        for host, path in PROBES:
            d = self.client.decide({"host": host, "path": path, "headers": {"x-uid": "3"}})
            out.append(d.status if d.action == "respond" else 200)
        for conn in self.conns:
            for host, path in PROBES:
                conn.request("GET", path, headers={"Host": host, "X-Uid": "3"})
                resp = conn.getresponse()
                resp.read()
                out.append(resp.status)
        return out

    def measure(self, write, want: int) -> dict:
        """Run write() (returns rules, bytes) and time it; meanwhile a thread polls the gateways from the call on
        until every answer is `want` (an engage may return after they all answer: it commits first)."""
        before = self.gw.status()
        cpu0 = {p: worker_cpu(p) for p in self.pids}
        served: list[float] = []

        def poll() -> None:
            while any(s != want for s in self.statuses()):
                if time.perf_counter() - t0 > 60:
                    return
                time.sleep(0.001)
            served.append(time.perf_counter())

        t0 = time.perf_counter()
        poller = threading.Thread(target=poll)
        poller.start()
        rules, size = write()
        wrote = time.perf_counter()
        poller.join()
        if not served:
            raise RuntimeError(f"the gateways did not answer {want} within 60 s")
        end = max(served[0], wrote)
        cpu = [max(0.0, worker_cpu(p) - cpu0[p] - self.idle[p] * (end - t0)) for p in self.pids]
        after = self.gw.status()
        return {"write": wrote - t0, "served": served[0] - t0, "rules": rules, "bytes": size, "cpu": cpu,
                "full": after["full_reloads"] - before["full_reloads"],
                "deltas": after["deltas_applied"] - before["deltas_applied"]}

    def stop(self) -> None:
        for conn in self.conns:
            conn.close()
        self.client.stop()
        self.gw.stop()


def round_trip(gws: Gateways, svc: RuleService, store: RuleStore, ns: str, n: int) -> dict[str, dict]:
    """Engage and undo a namespace switch both ways; the figures of each step."""
    out = {}
    kill = per_route_rules(store, ns, f"base{n}")

    def engage_per_route():
        store.commit(ns, kill, None, "bench", op=killswitch.OP_ENGAGE, create_only=True,
                     headroom=killswitch.KILL_HEADROOM)
        return len(kill), sum(len(v) for _, v in kill)

    def undo_per_route():
        store.commit(ns, [(rule_id, b"") for rule_id, _ in kill], None, "bench", op=killswitch.OP_UNDO)
        return len(kill), 0

    out["per_route_engage"] = gws.measure(engage_per_route, 503)
    time.sleep(0.5)
    out["per_route_undo"] = gws.measure(undo_per_route, 200)
    time.sleep(0.5)
    done: list = []

    def engage_scope():
        done.append(killswitch.engage(svc, ns, "namespace", None, ACTION, "bench"))
        return len(done[-1].record["rule_ids"]), 0  # its bytes: read below, outside the timed window

    def undo_scope():
        killswitch.undo(svc, ns, done[-1].record["id"], "bench")
        return 1, 0

    out["scope_engage"] = gws.measure(engage_scope, 503)
    out["scope_engage"]["bytes"] = sum(len(encode_rule(svc.get_rule(ns, i)[1])) for i in done[-1].record["rule_ids"])
    time.sleep(0.5)
    out["scope_undo"] = gws.measure(undo_scope, 200)
    time.sleep(0.5)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lua", type=Path, help="run nginx with this directory's Lua modules (another tree's lua/)")
    args = parser.parse_args()
    if args.lua:
        rulegate_dev.nginx.LUA_DIR = args.lua.resolve()
    tmp = str(scratch_dir("rulegate-killswitch-"))
    cluster = LocalCluster(Path(tmp) / "cluster")
    cluster.start()
    rounds = []
    try:
        store = RuleStore.from_config(RedisConfig(nodes=list(cluster.startup_nodes)))
        svc = RuleService(store)
        ns = "kill"
        svc.create_namespace(ns)
        load_rules(store, ns, args.rules)
        gws = Gateways(cluster, ns, tmp)
        try:
            for n in range(args.rounds):
                rounds.append(round_trip(gws, svc, store, ns, n))
        finally:
            gws.stop()
        store.close()
    finally:
        cluster.stop()

    def med(step: str, key: str, i: int | None = None) -> float:
        return statistics.median(r[step][key] if i is None else r[step][key][i] for r in rounds)

    print(f"\nnamespace kill switch at {args.rules:,} rules on {args.rules:,} routes "
          f"(medians of {args.rounds} rounds)\n")
    print("| step | rules written | bytes written | call returns (ms) | call -> every gateway answers (ms) | "
          "nginx CPU, syncing / other worker (ms) | nginx full reloads / deltas |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for step, label in (("per_route_engage", "engage, one rule per route (baseline: before 4b3644f)"),
                        ("scope_engage", "engage, one rule of scope namespace"),
                        ("per_route_undo", "undo, one rule per route (baseline)"),
                        ("scope_undo", "undo, scope namespace")):
        cpu = f"{med(step, 'cpu', 0) * 1000:.1f} / {med(step, 'cpu', 1) * 1000:.1f}"
        print(f"| {label} | {med(step, 'rules'):,.0f} | {med(step, 'bytes'):,.0f} | {med(step, 'write') * 1000:.1f} | "
              f"{med(step, 'served') * 1000:.1f} | {cpu} | "
              f"{sum(r[step]['full'] for r in rounds)} / {sum(r[step]['deltas'] for r in rounds)} |")
    print(f"\n(python {sys.version.split()[0]}, {os.cpu_count()} CPUs; ruleadmin's engage commits, then reads the "
          "rules that can decide before it by id; nginx CPU is each worker's run time from /proc/PID/schedstat less "
          "its idle rate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

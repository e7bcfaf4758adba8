"""Memory of nginx workers holding a large namespace: Lua heap after a full GC and RSS, per worker; prints a table.

    python bench/nginx_memory.py [--rules 20000] [--workers 2] [--lua DIR] [--deltas 5] [--full-reloads N] [--traffic]
        [--warm]

Starts a private 6-node cluster and one nginx (all stopped by pid at the end), loads --rules split rules (as
bench/reload.py), waits until every worker serves them and a few deltas went through, then asks each worker for
`collectgarbage("count")` after `collectgarbage()` and reads its RSS and PSS from /proc. The baseline is the raw
size of the rule set (the stored msgpack bytes); ratios are per worker against it. Numbers are for comparison,
never assertions.
`--lua DIR` runs nginx with the Lua modules of DIR (another tree's lua/: before/after with one script).
`--deltas N` sets how many one-rule changes follow the first load (5). `--full-reloads N` then forces N
full reloads, one at a time, in which every rule's bytes are new (a new generation id, as bench/reload.py's
"every rule's bytes new": the old and the new set are alive together in each worker) and measures again
each time every worker serves the new set; `--traffic` sends requests (one keep-alive client per worker)
from the first measurement to the end, so the collector paces itself under load as it would in production;
`--warm` sends every worker one request per rule before each measurement, so that every split has decided (a
split's decisions are built by the first request it decides): the served set at its largest.
"""
from __future__ import annotations

import argparse
import http.client
import re
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import rulegate_dev.nginx  # noqa: E402
from bench.reload import load_rules, loaded_nginx, make_rule, new_generation, pinned_connections  # noqa: E402
from rulegate.connection import RedisConfig  # noqa: E402
from rulegate.store import RuleStore  # noqa: E402
from rulegate_dev.cluster import LocalCluster  # noqa: E402
from rulegate_dev.nginx import NginxLauncher  # noqa: E402
from rulegate_dev.private_files import scratch_dir

LUA_MEMORY = """location = /lua-memory {{
            content_by_lua_block {{
                collectgarbage()
                ngx.say(require("cjson").encode({{ pid = ngx.worker.pid(), kb = collectgarbage("count") }}))
            }}
        }}"""


def rss_by_kind(pid: int) -> dict[str, float]:
    """A worker's RSS in MiB by kind of mapping (/proc/PID/smaps): shm = shared mappings (lua_shared_dict
    zones: the pages this worker touched), heap = glibc's brk heap (nginx pools, cosocket buffers),
    anon = private anonymous mappings (LuaJIT's allocator, glibc's large blocks), files = mapped files; and
    pss = its proportional set size (each page shared with other processes, the shared dict's and the
    libraries', counted divided by how many map it: what the worker adds to the machine's memory)."""
    out = {"shm": 0.0, "heap": 0.0, "anon": 0.0, "files": 0.0, "pss": 0.0}
    kind = "files"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            perms, path = head[1], " ".join(head[5:])
            if perms[3] == "s":
                kind = "shm"
            elif path == "[heap]":
                kind = "heap"
            elif path == "" or path.startswith("["):
                kind = "anon"
            else:
                kind = "files"
        elif head and head[0] == "Rss:":
            out[kind] += int(head[1]) / 1024
        elif head and head[0] == "Pss:":
            out["pss"] += int(head[1]) / 1024
    return out


def measure(gw: NginxLauncher, workers: int) -> tuple[dict[int, float], dict[int, float], dict, int | None]:
    """Return each worker's Lua heap after a full GC and RSS (MiB), its RSS by kind, and the syncing worker."""
    heap: dict[int, float] = {}
    for _ in range(20 * workers):
        m = gw.json("/lua-memory")
        heap[m["pid"]] = m["kb"] / 1024
    rss = {pid: kb / 1024 for pid, kb in gw.worker_rss_kb().items()}
    kinds = {pid: rss_by_kind(pid) for pid in rss}
    st = gw.json("/rulegate/status")
    syncing = int(st["listener"]) if st.get("listener") else None  # holds the raw rules for deltas
    return heap, rss, kinds, syncing


def print_table(title: str, raw_mib: float, found: tuple) -> None:
    heap, rss, kinds, syncing = found
    print(f"\n{title}\n")
    print("| worker | Lua heap (MiB) | heap / raw | RSS (MiB) | RSS / raw | RSS: shm / anon / brk heap / files "
          "| PSS (MiB) |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for pid in sorted(rss):
        h = heap.get(pid)
        cell = f"{h:.1f} | {h / raw_mib:.1f}x" if h is not None else "(not reached) | -"
        role = "syncing" if pid == syncing else "other"
        k = kinds[pid]
        split = f"{k['shm']:.1f} / {k['anon']:.1f} / {k['heap']:.1f} / {k['files']:.1f}"
        print(f"| {pid} ({role}) | {cell} | {rss[pid]:.1f} | {rss[pid] / raw_mib:.1f}x | {split} | {k['pss']:.1f} |")


def warm_every_route(port: int, workers: int, rules: int) -> int:
    """Send every worker one request per rule of the bench (rule i's route: svc{i % 100}.example.com,
    /api/v{i // 100}), each rule's only route, so that every split has decided a request (nginx builds a split's
    decisions then); return the requests sent. One keep-alive connection per worker (bench/reload.py)."""
    conns = pinned_connections(port, workers)
    if len(conns) < workers:
        raise RuntimeError(f"connections reached {len(conns)} of {workers} workers")
    sent = 0
    for conn in conns:
        for i in range(rules):
            conn.request("GET", f"/api/v{i // 100}/x", headers={"Host": f"svc{i % 100}.example.com", "X-Uid": "1"})
            conn.getresponse().read()
            sent += 1
        conn.close()
    return sent


class Traffic:
    """Keep-alive clients sending the bench's routed request in a loop until stopped; counts answers."""

    def __init__(self, port: int, clients: int):
        self.port, self.stop, self.sent, self.failed = port, threading.Event(), 0, 0
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            try:
                conn.request("GET", "/api/v7/x", headers={"Host": "svc7.example.com", "X-Uid": str(self.sent)})
                ok = conn.getresponse().read() is not None
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                ok = False
            self.sent += 1
            self.failed += not ok

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lua", type=Path, help="run nginx with this directory's Lua modules (another tree's lua/)")
    parser.add_argument("--deltas", type=int, default=5, help="one-rule changes after the first load (default 5)")
    parser.add_argument("--full-reloads", type=int, default=0, metavar="N",
                        help="measure again after each of N full reloads in which every rule's bytes are new")
    parser.add_argument("--traffic", action="store_true", help="send requests from the first measurement to the end")
    parser.add_argument("--warm", action="store_true",
                        help="before each measurement, one request per rule to every worker (every split decided)")
    args = parser.parse_args()
    if args.lua:
        rulegate_dev.nginx.LUA_DIR = args.lua.resolve()
    tmp = str(scratch_dir("rulegate-memory-"))
    cluster = LocalCluster(Path(tmp) / "cluster")
    cluster.start()
    try:
        store = RuleStore.from_config(RedisConfig(nodes=list(cluster.startup_nodes)))
        load_rules(store, "mem", args.rules)
        read = store.load_raw("mem")
        raw_mib = sum(len(k) + len(v) for k, v in read.raw.items()) / 2**20
        gw = loaded_nginx(cluster, "mem", Path(tmp) / "nginx", args.workers, args.rules, LUA_MEMORY)
        warmed = 0
        try:
            for n in range(args.deltas):  # deltas, as in steady operation
                rev = store.put_rule("mem", make_rule(1, upstream="canary" if n % 2 == 0 else "stable"), None,
                                     "bench").revision
            while gw.json("/rulegate/status").get("revision") != rev:
                time.sleep(0.1)
            time.sleep(3)  # every worker picked the set up (its timer), the checkpoint ran
            if args.warm:
                warmed += warm_every_route(gw.port, args.workers, args.rules)
            first = measure(gw, args.workers)
            traffic = Traffic(gw.port, args.workers) if args.traffic else None
            later = []
            for _ in range(args.full_reloads):
                before = gw.json("/rulegate/status")
                new_generation(cluster, "mem", args.rules)
                deadline = time.monotonic() + 180
                while True:  # the syncing worker applied it and every other worker compiled it
                    st = gw.json("/rulegate/status")
                    if (st.get("generation") != before.get("generation")
                            and st.get("worker_compiles", 0) >= before.get("worker_compiles", 0) + args.workers - 1):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("nginx did not apply the full reload")
                    time.sleep(0.2)
                time.sleep(3)  # the checkpoint of the new set ran
                if args.warm:
                    warmed += warm_every_route(gw.port, args.workers, args.rules)
                later.append(measure(gw, args.workers))
            if traffic is not None:
                traffic.close()
        finally:
            gw.stop()
        store.close()
    finally:
        cluster.stop()
    head = f"{args.rules:,} rules, raw stored size {raw_mib:.1f} MiB (baseline), nginx with {args.workers} workers"
    print_table(head + f": after the first load and {args.deltas} deltas", raw_mib, first)
    for n, found in enumerate(later, 1):
        print_table(head + f": after full reload {n} (every rule's bytes new)", raw_mib, found)
    if traffic is not None:
        print(f"\n{traffic.sent:,} requests sent from the first measurement to the end, {traffic.failed} failed")
    if args.warm:
        print(f"\n--warm: {warmed:,} requests, one per rule to every worker before each measurement")
    return 0


if __name__ == "__main__":
    sys.exit(main())

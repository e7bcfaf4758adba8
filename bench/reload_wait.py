"""The sidecar's worst request wait during forced full reloads, for any checkout of the repo; prints lines.

    python bench/reload_wait.py [--tree PATH] [--rules 10000] [--reps 2] [--cpu-reps 3]

Starts a private cluster and one sidecar (`--snapshot` on) running the code of `--tree` (default: this
checkout; pass an older `git worktree` for a before/after in one run), then times sequential keep-alive
`POST /v1/decide` requests at rest and from just before a forced full reload until 0.2 s after the new
generation is applied: a new generation id over the same bytes but one rule's (a new generation of
exactly the same rules is taken without a full reload), then every rule's bytes rewritten
(a new description, the matching digest) and a new generation id. Then, with no requests, the sidecar
process's CPU (its threads' run time from /proc schedstat) over `--cpu-reps` reloads of each kind, from
the trigger until its snapshot of the new generation is written (+0.1 s). The writes run in a forked child with the
bytes encoded before the window (in this process they held the GIL and counted as the sidecar's wait).
Stops what it started (by pid).
"""
from __future__ import annotations

import argparse
import atexit
import http.client
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# The sidecar under a greenlet switch tracer (--trace): each switch's time, the thread's CPU and the greenlet
# switched to (its repr when first seen: the sync thread's greenlet names "rulegate-sync"), dumped at exit.
TRACER = """
import atexit, pickle, runpy, sys, time, greenlet
out, log, names = sys.argv.pop(1), [], {}
clock, cpu = time.perf_counter, time.thread_time
def switched(event, args):
    log.append((clock(), cpu(), id(args[1])))
    if id(args[1]) not in names:
        names[id(args[1])] = repr(args[1])[:200]
def dump():
    with open(out, "wb") as f:
        pickle.dump((log, names), f)
greenlet.settrace(switched)
atexit.register(dump)
runpy.run_module("gateway_agent", run_name="__main__", alter_sys=True)
"""


def during_reload(send, trigger, done) -> list[tuple[float, float]]:
    """Return (start, end) (perf_counter: CLOCK_MONOTONIC, the sidecar's clock too) of each request from just
    before a forced full reload until 0.2 s after it is applied (bench/reload.py during_reload, timed)."""
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            send()
            samples.append((t, time.perf_counter()))

    thread = threading.Thread(target=loop)
    thread.start()
    time.sleep(0.2)
    trigger()
    deadline = time.monotonic() + 60
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    stop.set()
    thread.join()
    return samples


def print_trace(path: Path, windows: list[tuple[str, list[tuple[float, float]]]]) -> None:
    """Print, per reload, the sync greenlet's longest run without a switch (thread CPU: what a request ready
    meanwhile waits for at most, on a CPU of its own) and, for the slowest request, the sidecar's CPU inside it:
    the sync greenlet's, and everything's (the rest of the wait was spent off the sidecar's CPU: the OS)."""
    import bisect
    import pickle

    log, names = pickle.loads(path.read_bytes())
    spans = [(t, t2, cpu2 - cpu, "rulegate-sync" in names.get(g, ""))
             for (t, cpu, g), (t2, cpu2, _) in zip(log, log[1:])]
    starts = [s[0] for s in spans]
    for name, timed in windows:
        lo, hi = timed[0][0], timed[-1][1]
        sync = [s[2] for s in spans[bisect.bisect_left(starts, lo):bisect.bisect_left(starts, hi)] if s[3]]
        t0, t1 = max(timed, key=lambda t: t[1] - t[0])
        inside = spans[max(0, bisect.bisect_left(starts, t0) - 1):bisect.bisect_left(starts, t1)]

        def share(s: tuple) -> float:
            return s[2] * max(0.0, min(s[1], t1) - max(s[0], t0)) / ((s[1] - s[0]) or 1)

        print(f"  trace, {name}: the sync greenlet's longest run {max(sync, default=0) * 1000:.2f} ms CPU "
              f"({len(sync)} runs); slowest request {(t1 - t0) * 1000:.1f} ms: sidecar CPU inside it "
              f"{sum(share(s) for s in inside) * 1000:.2f} ms, of which the sync greenlet's "
              f"{sum(share(s) for s in inside if s[3]) * 1000:.2f} ms", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=str(ROOT))
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--cpu-reps", type=int, default=3, help="reloads of each kind timed in CPU, no requests")
    parser.add_argument("--trace", action="store_true", help="run the sidecar under a greenlet switch tracer and "
                        "print what its sync greenlet did during the requests (see print_trace)")
    args = parser.parse_args()
    tree = Path(args.tree).resolve()
    sys.path.insert(0, str(tree))
    spec = importlib.util.spec_from_file_location("tree_reload", tree / "bench" / "reload.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # the tree's own rule shape, loader and helpers
    from rulegate.connection import RedisConfig
    from rulegate.digest import content_digest
    from rulegate.keyspace import Keys
    from rulegate.schema import encode_rule
    from rulegate.store import RuleStore
    from rulegate_dev.cluster import LocalCluster
    from rulegate_dev.nginx import free_port

    def reload(cluster: LocalCluster, ns: str, rewrite: bool) -> None:
        master = bench.Master(cluster, ns)
        keys = Keys(ns)
        if rewrite:
            raw = {}
            for i in range(args.rules):
                rule = bench.make_rule(i)
                rule["description"] = f"rewritten {time.time()}"
                raw[f"r{i:05d}"] = encode_rule(rule)
            master.client.hset(keys.rules, mapping=raw)
            master.client.hset(keys.meta, "digest", content_digest(raw))
        else:  # one rule's bytes new: a full reload (a new generation of the same rules is taken without one)
            rule = bench.make_rule(0)
            rule["description"] = f"rewritten {time.time()}"
            master.client.hset(keys.rules, "r00000", encode_rule(rule))
            whole = {k.decode(): v for k, v in master.client.hgetall(keys.rules).items()}
            master.client.hset(keys.meta, "digest", content_digest(whole))
        master.client.hset(keys.meta, "gen", f"wait-{time.time()}")
        master.client.execute_command("SPUBLISH", keys.events, f"rev {int(master.client.get(keys.rev) or 0)}")
        master.client.close()

    def trigger(cluster: LocalCluster, ns: str, rewrite: bool):
        """The reload's writes in a forked child, the rewritten bytes encoded before the window: run here, they
        hold the GIL the sampling thread needs, and that wait is counted as the sidecar's (a tree whose
        bench/reload.py predates in_child() runs them here)."""
        if not hasattr(bench, "in_child"):
            return lambda: reload(cluster, ns, rewrite)
        prepared = bench.rewritten(args.rules) if rewrite else None
        return bench.in_child(bench.new_generation, cluster, ns, 0, prepared)

    def reload_cpu(pid: int, snap: Path, start) -> float:
        """Return the sidecar process's CPU (utime + stime) from a forced reload to its snapshot written, plus
        0.1 s for the replaced set's freeing (nothing polls the sidecar meanwhile: the snapshot file is read)."""
        from rulegate.snapshot import read_snapshot
        before = read_snapshot(snap).generation
        cpu = bench.worker_cpu(pid)
        start()
        deadline = time.monotonic() + 60
        while read_snapshot(snap).generation == before and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        return bench.worker_cpu(pid) - cpu

    tmp = tempfile.mkdtemp(prefix="rulegate-wait-")  # not rulegate_dev.private_files: --tree may predate it
    atexit.register(shutil.rmtree, tmp, True)
    cluster = LocalCluster(Path(tmp) / "cluster")
    cluster.start()
    try:
        store = RuleStore.from_config(RedisConfig(nodes=list(cluster.startup_nodes)))
        ns = f"wait{args.rules}"
        bench.load_rules(store, ns, args.rules)
        store.close()
        port = free_port()
        trace = Path(tmp) / "switches.pickle"
        run = ["-c", TRACER, str(trace)] if args.trace else ["-m", "gateway_agent"]
        proc = subprocess.Popen([sys.executable, *run, "serve", "--redis-nodes",
                                 ",".join(cluster.startup_nodes), "--namespace", ns, "--listen", f"127.0.0.1:{port}",
                                 "--snapshot", f"{tmp}/{ns}.snap", "--refresh-interval", "0.2"],
                                cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

            def health() -> dict:
                probe.request("GET", "/healthz")
                return json.loads(probe.getresponse().read())

            deadline = time.monotonic() + 60
            while True:
                try:
                    if health().get("rules") == args.rules:
                        break
                except OSError:
                    probe.close()
                if time.monotonic() > deadline:
                    raise RuntimeError("the sidecar did not load the rules")
                time.sleep(0.1)
            body = json.dumps({"host": "svc7.example.com", "path": "/api/v7/x", "headers": {"x-uid": "3"}})

            def send() -> None:
                conn.request("POST", "/v1/decide", body=body, headers={"Content-Type": "application/json"})
                conn.getresponse().read()

            print(f"tree {tree}, {args.rules} rules")
            print(f"at rest: {bench.ms(bench.latencies(send, 1.0))}", flush=True)
            windows: list[tuple[str, list[tuple[float, float]]]] = []
            for _ in range(args.reps):
                for name, rewrite in (("same bytes but one, new generation", False), ("every rule's bytes new", True)):
                    before = health()["generation"]
                    timed = during_reload(send, trigger(cluster, ns, rewrite),
                                          lambda: health()["generation"] != before)
                    busy = [t1 - t0 for t0, t1 in timed]
                    windows.append((name, timed))
                    for child in getattr(bench, "CHILDREN", ()):
                        child.join(30)
                    print(f"reload, {name}: {bench.ms(busy)} over {len(busy)} requests", flush=True)
            snap = Path(tmp) / f"{ns}.snap"
            for name, rewrite in (("same bytes but one, new generation", False), ("every rule's bytes new", True)):
                cpu = [reload_cpu(proc.pid, snap, trigger(cluster, ns, rewrite)) for _ in range(args.cpu_reps)]
                for child in getattr(bench, "CHILDREN", ()):
                    child.join(30)
                print(f"sidecar CPU of a reload, {name}, no requests: "
                      f"{', '.join(f'{c * 1000:.0f}' for c in cpu)} ms", flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
        if args.trace:
            print_trace(trace, windows)
    finally:
        cluster.stop()
    print(f"(python {sys.version.split()[0]}; sequential requests from this process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

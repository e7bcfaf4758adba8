"""Benchmark of the Python agent; prints a table, each figure next to a baseline from the same run.

    python bench/agent.py [--rules 10000] [--seconds 2] [--rounds 3]
    python bench/agent.py --loop {app,server,static_app,static_server} --calls N [--rules 1000]

(--loop: N POST /v1/decide through the sidecar's WSGI app, or its server's handler over a loopback connection
in process, or the baseline's; no Redis, no timing: run under `valgrind --tool=cachegrind --cache-sim=no` at
two N and divide the difference by the difference of N for instructions per request.)

Starts a private 6-node cluster (rulegate_dev.LocalCluster) in a temp dir and a sidecar child
process; both are stopped (by pid) at the end. Numbers are for comparison, not assertions. HTTP
rates alternate sidecar and baseline for --rounds rounds and keep each one's best (the machine's
other load disturbs both alike).
"""
from __future__ import annotations

import argparse
import gc
import http.client
import io
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway_agent import RuleClient  # noqa: E402
from gateway_agent.budget import execute  # noqa: E402
from gateway_agent.compiled import CompileCache  # noqa: E402
from rulegate.connection import RedisConfig  # noqa: E402
from rulegate.evaluator import Request, RuleSet, decide  # noqa: E402
from rulegate.keyspace import Keys  # noqa: E402
from rulegate.schema import encode_rule, validate_rule  # noqa: E402
from rulegate.store import RuleStore  # noqa: E402
from rulegate_dev.cluster import LocalCluster  # noqa: E402
from rulegate_dev.nginx import free_port  # noqa: E402
from rulegate_dev.private_files import scratch_dir

BASELINE_SERVER = r"""
from gevent import monkey; monkey.patch_all()
import socket, sys
from gevent.pywsgi import WSGIServer, WSGIHandler
class H(WSGIHandler):
    def handle(self):
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle()
BODY = b'{"action":"pass","rule_id":null,"revision":0}'
def app(environ, start_response):
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]
if __name__ == "__main__":
    WSGIServer(("127.0.0.1", int(sys.argv[1])), app, log=None, handler_class=H).serve_forever()
"""
DECIDE_BODY = json.dumps({"host": "svc3.example.com", "path": "/api/v4/items", "ip": "10.1.2.3",
                          "headers": {"x-uid": "12345"}}).encode()


def make_rule(i: int) -> dict:
    """Return a realistic split rule; hosts and paths spread over 100 x 100 routes."""
    return validate_rule({
        "id": f"r{i:05d}", "kind": "split",
        "route": {"host": f"svc{i % 100}.example.com", "path": f"/api/v{i // 100}"},
        "key": {"source": "header", "name": "x-uid"},
        "policies": [{"type": "uid_suffix", "suffixes": ["1", "7"], "upstream": f"canary{i}"},
                     {"type": "percent", "buckets": [{"upstream": f"blue{i}", "weight": 2000}]}],
        "default": f"stable{i}"})


def requests_for(n: int) -> list[Request]:
    rnd = random.Random(7)
    return [Request.from_dict({"host": f"svc{rnd.randrange(100)}.example.com",
                               "path": f"/api/v{rnd.randrange(100)}/items", "ip": "10.1.2.3",
                               "headers": {"x-uid": str(rnd.randrange(10**6))}}) for _ in range(n)]


def rate(fn, seconds: float) -> float:
    """Return calls per second of fn() over about `seconds`."""
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(1000):
            fn()
        n += 1000
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def http_rate(port: int, method: str, path: str, body: bytes | None, clients: int, seconds: float) -> float:
    """Return requests per second with `clients` keep-alive connections in threads."""
    counts = [0] * clients
    stop = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json"} if body else {}

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        while time.perf_counter() < stop:
            conn.request(method, path, body=body, headers=headers)
            conn.getresponse().read()
            counts[k] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def served(proc: subprocess.Popen, port: int, clients: int, seconds: float) -> tuple[float, float]:
    """Return (requests/s, server CPU µs per request) of POST /v1/decide against one server process."""
    cpu = cpu_seconds(proc.pid)
    start = time.perf_counter()
    per_second = http_rate(port, "POST", "/v1/decide", DECIDE_BODY, clients, seconds)
    requests = per_second * (time.perf_counter() - start)
    return per_second, (cpu_seconds(proc.pid) - cpu) / max(requests, 1) * 1e6


def app_rates(client: RuleClient, seconds: float) -> tuple[float, float]:
    """Return calls/s of the sidecar's WSGI app and of the baseline's static app for POST /v1/decide (no HTTP)."""
    from gateway_agent.sidecar import SidecarApp

    static: dict = {}
    exec(BASELINE_SERVER.replace("from gevent import monkey; monkey.patch_all()", ""), static)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/decide", "CONTENT_LENGTH": str(len(DECIDE_BODY))}

    def call(app) -> None:
        app({**environ, "wsgi.input": io.BytesIO(DECIDE_BODY)}, lambda status, headers: None)

    ours, base = SidecarApp(client), static["app"]
    return rate(lambda: call(ours), seconds), rate(lambda: call(base), seconds)


def wait_http(port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def load_rules(store: RuleStore, ns: str, count: int) -> None:
    for lo in range(0, count, 500):
        changes = [(f"r{i:05d}", encode_rule(make_rule(i))) for i in range(lo, min(count, lo + 500))]
        store.commit(ns, changes, None, "bench", op="import")


def reload_numbers(cluster: LocalCluster, ns: str, runs: int) -> dict[str, float]:
    """Return timings and memory of a full reload vs a bare HGETALL of the same hash."""
    client = RuleClient(cluster.startup_nodes, ns, notifications=False)
    s = client.syncer
    s.slots.refresh(client.budget, s.pool)
    hgetall, reload, warm = [], [], []
    for _ in range(runs):
        t = time.perf_counter()
        client.budget.run("bench", lambda op: execute(s.pool.get(s.slots.master, op), ("HGETALL", Keys(ns).rules)))
        hgetall.append(time.perf_counter() - t)
        s.current, s.compiled = None, CompileCache()  # nothing held: every rule decoded and compiled
        t = time.perf_counter()
        s.full_reload()
        reload.append(time.perf_counter() - t)
        s.current = None  # the same bytes again (a new generation id, a reconnect): the cache has them
        t = time.perf_counter()
        s.full_reload()
        warm.append(time.perf_counter() - t)
    raw_bytes = sum(len(k) + len(v) for k, v in s.current.raw.items())
    s.current, s.compiled = None, CompileCache()  # held = the applied set and the cache's entries
    gc.collect()
    tracemalloc.start()
    s.full_reload()
    gc.collect()
    held, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    s.pool.close()
    return {"hgetall": min(hgetall), "reload": min(reload), "warm": min(warm), "held": held, "raw": raw_bytes}


def loop(mode: str, calls: int, rules: int) -> None:
    """Serve `calls` POST /v1/decide in process (see the module doc); for instruction counts."""
    import logging

    from gevent import socket as gsocket
    from gevent import spawn
    from gevent.pywsgi import WSGIServer

    from gateway_agent.sidecar import ServerLimits, SidecarApp
    from gateway_agent.sync import Applied
    from gateway_agent.wsgi_server import make_server

    client = RuleClient(["127.0.0.1:1"], "bench")  # never started: the rule set is set directly
    client.syncer.current = Applied(RuleSet([make_rule(i) for i in range(rules)], 1, "g"), {}, 1, "g", "bench",
                                    time.time())
    static: dict = {}
    exec(BASELINE_SERVER.replace("from gevent import monkey; monkey.patch_all()", ""), static)
    app = SidecarApp(client) if mode in ("app", "server") else static["app"]
    if mode in ("app", "static_app"):
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/decide", "CONTENT_LENGTH": str(len(DECIDE_BODY))}
        for _ in range(calls):
            app({**environ, "wsgi.input": io.BytesIO(DECIDE_BODY)}, lambda status, headers: None)
        return
    if mode == "server":
        server = make_server(app, "127.0.0.1", 0, ServerLimits(), logging.getLogger("bench"))
    else:
        server = WSGIServer(("127.0.0.1", 0), app, log=None, handler_class=static["H"])
    request = (b"POST /v1/decide HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(DECIDE_BODY)) + DECIDE_BODY
    listener = gsocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    conn = gsocket.create_connection(listener.getsockname())
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    accepted, address = listener.accept()
    handler = spawn(server.handle, accepted, address)
    reader = conn.makefile("rb")
    for _ in range(calls):
        conn.sendall(request)
        if not reader.readline().startswith(b"HTTP/1.1 200"):
            raise RuntimeError("the server did not answer 200")
        length = 0
        while (line := reader.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        reader.read(length)
    conn.close()
    handler.join(timeout=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop", choices=("app", "server", "static_app", "static_server"))
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    if args.loop:
        loop(args.loop, args.calls, args.rules)
        return 0
    tmp = str(scratch_dir("rulegate-bench-"))
    cluster = LocalCluster(Path(tmp) / "cluster").start()
    procs: list[subprocess.Popen] = []
    rows: list[tuple[str, str, str]] = []
    try:
        store = RuleStore.from_config(RedisConfig.from_nodes(cluster.startup_nodes, mode="cluster"))
        ns = "bench"
        load_rules(store, ns, args.rules)

        reqs = requests_for(1000)
        it = itertools.cycle(reqs)
        with RuleClient(cluster.startup_nodes, ns) as client:
            if not client.wait_for_revision(store.revision(ns), 30):
                raise RuntimeError(f"client did not load the rules: {client.health()['last_error']}")
            rs: RuleSet = client.syncer.current.ruleset
            base = rate(lambda: decide(rs, next(it)), args.seconds)
            ours = rate(lambda: client.decide(next(it)), args.seconds)
            app, static_app = app_rates(client, args.seconds)
        rows.append((f"in-process decide() ({args.rules} rules)", f"{ours:,.0f}/s",
                     f"evaluator.decide() direct: {base:,.0f}/s"))
        rows.append(("sidecar WSGI app, POST /v1/decide (no HTTP)", f"{1e6 / app:,.1f} µs",
                     f"the baseline's static app: {1e6 / static_app:,.1f} µs"))

        port, base_port = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen([sys.executable, "-m", "gateway_agent", "serve", "--redis-nodes",
                                       ",".join(cluster.startup_nodes), "--namespace", ns, "--listen",
                                       f"127.0.0.1:{port}", "--log-level", "WARNING"], env=env))
        procs.append(subprocess.Popen([sys.executable, "-c", BASELINE_SERVER, str(base_port)], env=env))
        wait_http(port)
        wait_http(base_port)
        time.sleep(1.0)
        idle = [cpu_seconds(p.pid) for p in procs]
        time.sleep(2.0)
        idle = [(cpu_seconds(p.pid) - before) / 2.0 * 1000 for p, before in zip(procs, idle)]
        rows.append(("server CPU while idle (2 s, no requests)", f"{idle[0]:,.0f} ms/s",
                     f"static-JSON gevent WSGI server: {idle[1]:,.0f} ms/s"))
        cpu: dict[str, list[float]] = {"ours": [], "base": []}
        for clients in (1, 8):
            ours = base = 0.0
            for _ in range(args.rounds):
                for name, proc, at in (("ours", procs[0], port), ("base", procs[1], base_port)):
                    per_second, us = served(proc, at, clients, args.seconds)
                    cpu[name].append(us)
                    if name == "ours":
                        ours = max(ours, per_second)
                    else:
                        base = max(base, per_second)
            rows.append((f"sidecar HTTP decide, {clients} client(s)", f"{ours:,.0f}/s",
                         f"static-JSON gevent WSGI server: {base:,.0f}/s (sidecar = {ours / base:.0%})"))
        ours_cpu, base_cpu = min(cpu["ours"]), min(cpu["base"])
        rows.append(("server CPU per HTTP decide (least of all rounds)", f"{ours_cpu:,.0f} µs",
                     f"static-JSON gevent WSGI server: {base_cpu:,.0f} µs (sidecar = {ours_cpu / base_cpu:.0%})"))

        r = reload_numbers(cluster, ns, 3)
        rows.append((f"full reload of {args.rules} rules", f"{r['reload'] * 1000:,.0f} ms",
                     f"bare HGETALL of the hash: {r['hgetall'] * 1000:,.0f} ms"))
        rows.append(("full reload, the same bytes held (new generation)", f"{r['warm'] * 1000:,.0f} ms",
                     f"bare HGETALL of the hash: {r['hgetall'] * 1000:,.0f} ms"))
        rows.append(("memory held by the applied set and cache", f"{r['held'] / 2**20:,.1f} MiB",
                     f"raw msgpack bytes: {r['raw'] / 2**20:,.1f} MiB"))
        store.close()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
        cluster.stop()
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure'.ljust(width)} | {'agent':>12} | baseline (same run)")
    print("-" * (width + 50))
    for name, value, baseline in rows:
        print(f"{name.ljust(width)} | {value:>12} | {baseline}")
    print(f"\n(python {sys.version.split()[0]}, {os.cpu_count()} CPUs; HTTP clients are Python threads "
          "in this process, so the 8-client rows are bounded by the client side as well)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

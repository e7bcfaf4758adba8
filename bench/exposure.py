"""Cost of the exposure counts (decisions per rule and upstream) on the request path, counters on vs off.

Agent: RuleClient.decide() on a 1,000-rule snapshot (no Redis), exposure=True vs False, interleaved rounds
(best of ROUNDS x N calls), in one thread and in 4 threads at once (the per-thread dicts never contend).
nginx: two gateways on the same 1,000-rule snapshot, "exposure": true vs false, wrk in interleaved rounds
(median req/s and gateway CPU µs per request), plus router.decide() + exposure.count() vs router.decide()
alone in the worker (best of 3 alternating x 200,000 calls, after a warm-up).

Environment: ROUNDS=5 N=200000 DURATION=5s CONNECTIONS=64 WORKERS=2; SAME=1 turns counting on in both nginx
gateways (an A/A run: the difference it shows is the machine's noise).
Run: .venv/bin/python bench/exposure.py
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import gateway as gw  # noqa: E402  bench/gateway.py: rules(), wrk(), median()

from gateway_agent import RuleClient  # noqa: E402
from rulegate.evaluator import Request  # noqa: E402
from rulegate.snapshot import make_snapshot, write_snapshot  # noqa: E402
from rulegate_dev.gateway_conf import gateway_http, rulegate_location  # noqa: E402
from rulegate_dev.nginx import NginxLauncher, free_port  # noqa: E402
from rulegate_dev.private_files import scratch_dir

ROUNDS = int(os.environ.get("ROUNDS", "5"))
SAME = os.environ.get("SAME") == "1"
N = int(os.environ.get("N", "200000"))
os.environ.setdefault("WORKERS", "2")
gw.WORKERS = int(os.environ["WORKERS"])
gw.DURATION = os.environ.get("DURATION", "5s")

COUNT_NS = """location = /__count_ns {{
            content_by_lua_block {{
                local router = require("rulegate.router")
                local exposure = require("rulegate.exposure")
                local rs = require("rulegate").ruleset()
                local req = {{ host = "app.example.com", path = "/api/v1/items", method = "GET",
                    ip = "10.0.0.1", now = ngx.now(), headers = {{ ["x-uid"] = "4242" }},
                    cookies = {{}}, args = {{}} }}
                local n = 200000
                local count = ngx.var.arg_count == "1"
                ngx.update_time()
                local t0 = ngx.now()
                if count then
                    for _ = 1, n do exposure.count(router.decide(rs, req)) end
                else
                    for _ = 1, n do router.decide(rs, req) end
                end
                ngx.update_time()
                ngx.say((ngx.now() - t0) / n * 1e9)
            }}
        }}"""


def agent(snap: Path) -> dict[str, float]:
    """Return ns/decide() for exposure off/on, one thread and 4 threads (wall time per decision)."""
    clients = {}
    for on in (False, True):
        c = RuleClient(["127.0.0.1:1"], "bench", snapshot_path=str(snap), exposure=on)
        assert c.syncer.bootstrap_from_snapshot()
        clients["on" if on else "off"] = c
    req = Request.from_dict({"host": gw.HOST, "path": gw.PATH, "headers": {"x-uid": "4242"}, "ip": "10.0.0.1"})

    def loop(c: RuleClient, n: int) -> None:
        decide = c.decide
        for _ in range(n):
            decide(req)

    def threaded(c: RuleClient) -> float:
        threads = [threading.Thread(target=loop, args=(c, N // 4)) for _ in range(4)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return (time.perf_counter() - t0) / N * 1e9

    best: dict[str, float] = {}
    for _ in range(ROUNDS):
        for name, c in clients.items():
            t0 = time.perf_counter()
            loop(c, N)
            one = (time.perf_counter() - t0) / N * 1e9
            best[f"1 thread, {name}"] = min(best.get(f"1 thread, {name}", one), one)
            four = threaded(c)
            best[f"4 threads, {name}"] = min(best.get(f"4 threads, {name}", four), four)
    counted = sum(clients["on"].exposure.totals().values())
    assert counted == ROUNDS * 2 * N, counted
    return best


def nginx(tmp: Path, snap: Path) -> tuple[dict[str, float], dict[str, float], dict[str, float], dict]:
    """Return (median req/s, median CPU µs/req, ns/decision in the worker, the 'on' gateway's status exposure)."""
    backend = NginxLauncher(gw.BACKEND, workers=gw.WORKERS, prefix=tmp / "backend", log_level="error").start()
    http = gateway_http(gw.UPSTREAMS, rulegate_location("default", proxy="PROXY"), extra_locations=COUNT_NS)
    http = http.replace("%d", str(backend.port)).replace("PROXY", gw.PROXY)
    gateways = {}
    try:
        for on in (False, True):
            opts = {"namespace": "bench", "startup_nodes": [f"127.0.0.1:{free_port()}"], "refresh_interval": 5,
                    "connect_timeout": 100, "snapshot_path": str(snap), "response_headers": False, "exposure": on or SAME}
            name = "on" if on else "off"
            gateways[name] = NginxLauncher(http, workers=gw.WORKERS, prefix=tmp / name, log_level="error",
                                           package_path=False, files={"conf/rulegate.json": json.dumps(opts)}).start()
        for g in gateways.values():
            gw.wrk(g)  # warm-up
        runs: dict[str, list] = {name: [] for name in gateways}
        for r in range(ROUNDS):
            order = list(gateways.items())
            for name, g in order[r % 2:] + order[:r % 2]:
                runs[name].append(gw.wrk(g))
        ns: dict[str, float] = {}
        for i in range(8):  # alternating; the first two (JIT warm-up) discarded
            count = str(i % 2)
            took = float(urllib.request.urlopen(gateways["on"].url(f"/__count_ns?count={count}")).read())
            name = "decide + count" if count == "1" else "decide"
            if i >= 2:
                ns[name] = min(ns.get(name, took), took)
        time.sleep(1.5)  # one flush interval: the status shows every worker's counts
        status = json.loads(urllib.request.urlopen(gateways["on"].url("/rulegate/status")).read())["exposure"]
    finally:
        for g in gateways.values():
            g.stop()
        backend.stop()
    rps = {name: gw.median([x.rps for x in rs]) for name, rs in runs.items()}
    cpu = {name: gw.median([x.cpu_us for x in rs]) for name, rs in runs.items()}
    return rps, cpu, ns, status


def main() -> int:
    tmp = scratch_dir("rulegate-bench-exposure-")
    snap = tmp / "rules1000.snap"
    write_snapshot(snap, make_snapshot("bench", "bench-gen", 1000, gw.rules(1000)))
    print(f"agent: {ROUNDS} interleaved rounds of {N:,} decide() calls, 1,000 rules", file=sys.stderr, flush=True)
    best = agent(snap)
    print(f"nginx: {ROUNDS} interleaved wrk rounds of {gw.DURATION}, workers={gw.WORKERS}", file=sys.stderr,
          flush=True)
    rps, cpu, ns, status = nginx(tmp, snap)
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; agent best of {ROUNDS} x {N:,} calls; "
          f"wrk -t{gw.THREADS} -c{gw.CONNS} -d{gw.DURATION} x {ROUNDS} rounds (median), nginx workers={gw.WORKERS}")
    print()
    print("| agent decide() | exposure off ns | exposure on ns | cost ns |")
    print("|---|---:|---:|---:|")
    for threads in ("1 thread", "4 threads"):
        off, on = best[f"{threads}, off"], best[f"{threads}, on"]
        print(f"| {threads} | {off:.0f} | {on:.0f} | {on - off:+.0f} |")
    print()
    print("| nginx | exposure off | exposure on | cost |")
    print("|---|---:|---:|---:|")
    print(f"| req/s (wrk) | {rps['off']:,.0f} | {rps['on']:,.0f} | {rps['on'] / rps['off'] - 1:+.1%} |")
    print(f"| gateway CPU µs/req | {cpu['off']:.2f} | {cpu['on']:.2f} | {cpu['on'] - cpu['off']:+.2f} |")
    print(f"| in-worker ns/decision | {ns['decide']:.0f} | {ns['decide + count']:.0f} | "
          f"{ns['decide + count'] - ns['decide']:+.0f} |")
    print()
    print(f"'on' gateway after the runs: {status['total']:,} decisions counted with {status['writes']:,} shared-dict "
          f"writes in {status['flushes']:,} flushes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

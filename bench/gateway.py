"""nginx throughput: nginx's own split_clients (the native baseline) against rulegate.

Same machine, same run, interleaved rounds so background noise hits every
configuration alike. For each configuration it prints requests/s and p99 from
wrk, and the gateway workers' CPU time per request (from /proc, utime + stime),
which is steadier than requests/s on a small shared machine.

Configurations:
  split_clients          plain nginx, split_clients "${http_x_uid}" (the baseline)
  lua_noop               the baseline plus an empty access_by_lua_block: the floor
                         of any lua-nginx-module gateway
  rulegate_N_rules       rulegate deciding from N rules, no extra response headers
                         (the same response bytes as the baseline)
  rulegate_1000+headers  rulegate with X-Rulegate-Rule / X-Rulegate-Rev added
                         through nginx variables ("response_headers": "vars")
  rulegate_1000_no_exposure  rulegate_1000_rules with exposure counting off
                         ("exposure": false): what counting decisions costs
  rulegate_1000+outcomes rulegate_1000_rules with the log phase on (outcomes=True)
                         and the benched rule's percent policy guarded, so every
                         request's outcome is counted (docs/rules.md "Outcome counts")

The rulegate gateways boot from a snapshot file: the request path never calls
Redis, so no cluster is needed (the sync timer points at a closed port).

Environment: ROUNDS=5 DURATION=8s CONNECTIONS=64 THREADS=1 WORKERS=1
  CONFIGS=lua_noop,rulegate_1000_rules   only these configurations (the first row is the baseline)
  BEFORE_TREE=/path/to/tree              adds rulegate_1000_rules_before: the same gateway running that
                                         tree's lua/ (a before/after pair in the same interleaved rounds)
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rulegate.schema import encode_rule, validate_rule
from rulegate.snapshot import make_snapshot, write_snapshot
from rulegate_dev.gateway_conf import gateway_http, rulegate_location, upstream_blocks
from rulegate_dev.nginx import NginxLauncher, free_port
from rulegate_dev.private_files import scratch_dir

ROUNDS = int(os.environ.get("ROUNDS", "5"))
DURATION = os.environ.get("DURATION", "8s")
CONNS = os.environ.get("CONNECTIONS", "64")
THREADS = os.environ.get("THREADS", "1")
WORKERS = int(os.environ.get("WORKERS", "1"))
CONFIGS = [c for c in os.environ.get("CONFIGS", "").split(",") if c]
BEFORE_TREE = os.environ.get("BEFORE_TREE")
HOST, PATH = "app.example.com", "/api/v1/items"
CLK_TCK = os.sysconf("SC_CLK_TCK")

BACKEND = """
    server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok"; }} }}
"""
UPSTREAMS = upstream_blocks(("stable", "canary", "default"), "%d", keepalive=64)
PROXY = 'proxy_http_version 1.1; proxy_set_header Connection "";'
BASELINE = UPSTREAMS + """
    split_clients "${{http_x_uid}}" $variant {{ 10% canary; * stable; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ PROXY proxy_pass http://$variant; }}
    }}
"""
LUA_NOOP = UPSTREAMS + """
    split_clients "${{http_x_uid}}" $variant {{ 10% canary; * stable; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ access_by_lua_block {{ }} PROXY proxy_pass http://$variant; }}
    }}
"""
DECIDE_NS = """location = /__decide_ns {{
            content_by_lua_block {{
                local router = require("rulegate.router")
                local rs = require("rulegate").ruleset()
                local req = {{ host = "app.example.com", path = "/api/v1/items", method = "GET",
                    ip = "10.0.0.1", now = ngx.now(), headers = {{ ["x-uid"] = "4242" }},
                    cookies = {{}}, args = {{}} }}
                local n = 200000
                ngx.update_time()
                local t0 = ngx.now()
                for _ = 1, n do router.decide(rs, req) end
                ngx.update_time()
                ngx.say((ngx.now() - t0) / n * 1e9)
            }}
        }}"""
RULEGATE = gateway_http(UPSTREAMS, rulegate_location("default", proxy="PROXY"), status=False,
                        extra_locations=DECIDE_NS)
RULEGATE_OUTCOMES = gateway_http(UPSTREAMS, rulegate_location("default", proxy="PROXY", outcomes=True), status=False,
                                 extra_locations=DECIDE_NS)
RULEGATE_HEADERS = gateway_http(UPSTREAMS, rulegate_location("default", header_vars=True, proxy="PROXY"),
                                status=False, extra_locations=DECIDE_NS)


def rules(n: int, guarded: bool = False) -> dict[str, bytes]:
    """n rules: one uid-range + percent split on the benched route (its percent policy a guarded ramp holding 10 %
    when `guarded`), the rest on other hosts and paths."""
    percent: dict = {"type": "percent", "buckets": [{"upstream": "canary", "weight": 1000}]}
    if guarded:
        start = int(time.time()) - 3600
        percent = {"type": "percent", "buckets": [{"upstream": "canary", "weight": 1}],
                   "ramp": {"start": start, "end": start + 300 * 86400, "from": 1000, "to": 1001, "mode": "linear",
                            "guard": {"control": "stable", "min_requests": 100, "max_error_increase": 0.05}}}
    out = [{"id": "bench", "kind": "split", "route": {"host": HOST, "path": "/api/"},
            "key": {"source": "header", "name": "X-Uid"},
            "policies": [{"type": "uid_range", "ranges": [[1, 100]], "upstream": "canary"}, percent],
            "default": "stable"}]
    for i in range(1, n):
        if i % 10 == 0:  # every tenth on the benched host, a longer path prefix
            route = {"host": HOST, "path": f"/api/v1/items{i}"}
        else:
            route = {"host": f"svc{i}.example.com", "path": "/"}
        out.append({"id": f"r{i:05d}", "kind": "split", "route": route,
                    "key": {"source": "cookie", "name": "uid"},
                    "policies": [{"type": "uid_suffix", "suffixes": ["7"], "upstream": "canary"}],
                    "default": "stable"})
    return {r["id"]: encode_rule(validate_rule(r)) for r in out}


@dataclass
class Run:
    rps: float
    p99_ms: float
    non_2xx: int
    cpu_us: float  # gateway workers' CPU time per request


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime of the processes, in clock ticks."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def wrk(gateway: NginxLauncher) -> Run:
    pids = gateway.worker_pids()
    before = cpu_ticks(pids)
    out = subprocess.run(
        ["wrk", "-t", THREADS, "-c", CONNS, "-d", DURATION, "--latency",
         "-H", f"Host: {HOST}", "-H", "X-Uid: 4242", gateway.url(PATH)],
        capture_output=True, text=True, check=True).stdout
    ticks = cpu_ticks(pids) - before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Run(rps, float(p99.group(1)) * scale, int(errors.group(1)) if errors else 0,
               ticks / CLK_TCK * 1e6 / max(total, 1))


def median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def main() -> int:
    tmp = scratch_dir("rulegate-bench-")
    backend = NginxLauncher(BACKEND, workers=WORKERS, prefix=tmp / "backend", log_level="error").start()
    gateways: list[tuple[str, NginxLauncher]] = []
    decide_ns: dict[str, float] = {}
    try:
        def start(name: str, http: str, opts: dict | None = None, lua: Path | None = None) -> None:
            if CONFIGS and name not in CONFIGS:
                return
            files = {"conf/rulegate.json": json.dumps(opts)} if opts else None
            if lua is not None:  # the launcher links the repo's lua/ unless the prefix has one
                (tmp / name).mkdir()
                (tmp / name / "lua").symlink_to(lua)
            http = http.replace("%d", str(backend.port)).replace("PROXY", PROXY)
            ngx = NginxLauncher(http, workers=WORKERS, prefix=tmp / name,
                                log_level="error", package_path=opts is None, files=files)
            gateways.append((name, ngx.start()))

        start("split_clients", BASELINE)
        start("lua_noop", LUA_NOOP)
        dead = free_port()
        for n in (10, 1000):
            snap = tmp / f"rules{n}.snap"
            write_snapshot(snap, make_snapshot("bench", "bench-gen", n, rules(n)))
            opts = {"namespace": "bench", "startup_nodes": [f"127.0.0.1:{dead}"], "refresh_interval": 5,
                    "connect_timeout": 100, "snapshot_path": str(snap), "response_headers": False}
            start(f"rulegate_{n}_rules", RULEGATE, opts)
            if n == 1000 and BEFORE_TREE:
                start("rulegate_1000_rules_before", RULEGATE, opts, Path(BEFORE_TREE).resolve() / "lua")
            if n == 1000:
                start("rulegate_1000+headers", RULEGATE_HEADERS, {**opts, "response_headers": "vars"})
                start("rulegate_1000_no_exposure", RULEGATE, {**opts, "exposure": False})
                snap = tmp / "rules1000-guarded.snap"
                write_snapshot(snap, make_snapshot("bench", "bench-gen", n, rules(n, guarded=True)))
                start("rulegate_1000+outcomes", RULEGATE_OUTCOMES, {**opts, "snapshot_path": str(snap)})
        print(f"warming up {len(gateways)} gateways, then {ROUNDS} rounds of {DURATION} each ...",
              file=sys.stderr, flush=True)
        for _, ngx in gateways:
            wrk(ngx)  # warm-up (JIT traces, keepalive pools), discarded
        runs: dict[str, list[Run]] = {name: [] for name, _ in gateways}
        for r in range(ROUNDS):  # interleaved, rotated rounds
            k = r % len(gateways)
            for name, ngx in gateways[k:] + gateways[:k]:
                runs[name].append(wrk(ngx))
            print(f"round {r + 1}/{ROUNDS} done", file=sys.stderr, flush=True)
        for name, ngx in gateways:
            if "_rules" in name:
                decide_ns[name] = min(float(urllib.request.urlopen(ngx.url("/__decide_ns")).read())
                                      for _ in range(3))
        for name, ngx in gateways:
            errors = [line for line in ngx.error_lines() if "sync of namespace" not in line]
            if errors:
                print(f"{name}: nginx logged errors: {errors[:3]}", file=sys.stderr)
                return 1
    finally:
        for _, ngx in gateways:
            ngx.stop()
        backend.stop()

    rows = [(name, median([r.rps for r in rs]), median([r.p99_ms for r in rs]),
             median([r.cpu_us for r in rs]), sum(r.non_2xx for r in rs)) for name, rs in runs.items()]
    base_rps, base_cpu = rows[0][1], rows[0][3]
    floor_cpu = next((r[3] for r in rows if r[0] == "lua_noop"), rows[0][3])
    print(f"wrk -t{THREADS} -c{CONNS} -d{DURATION} x {ROUNDS} interleaved rounds (median), "
          f"nginx workers={WORKERS}, {os.cpu_count()} CPUs (wrk, backend and gateway share them)")
    print()
    base_runs = runs[rows[0][0]]
    print("| config | req/s | vs baseline | per-round ratio (median, min-max) | p99 ms | gateway CPU µs/req "
          "| vs baseline | vs lua_noop | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, rps, p99, cpu, errors in rows:
        ratios = sorted(r.rps / b.rps for r, b in zip(runs[name], base_runs))  # same round: a pair
        print(f"| {name} | {rps:,.0f} | {rps / base_rps:.1%} | {median(ratios):.1%} ({ratios[0]:.1%}-{ratios[-1]:.1%})"
              f" | {p99:.2f} | {cpu:.2f} | {cpu - base_cpu:+.2f} | {cpu - floor_cpu:+.2f} | {errors} |")
    print()
    print("router.decide() alone, in the worker (best of 3 x 200,000 calls):")
    print()
    print("| config | ns/decision |")
    print("|---|---:|")
    for name, ns in decide_ns.items():
        print(f"| {name} | {ns:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

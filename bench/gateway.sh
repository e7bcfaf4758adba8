#!/usr/bin/env bash
# Throughput and p99 of nginx's own split_clients (the native baseline) against
# rulegate routing with 10 and 1,000 rules, same machine, same run. Prints a table.
# The rulegate gateways boot from a snapshot file (the request path never calls
# Redis, so no cluster is needed); the sync timer points at a closed port.
#   ROUNDS=3 DURATION=10s CONNECTIONS=64 THREADS=1 WORKERS=1 bench/gateway.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
export ROUNDS="${ROUNDS:-3}" DURATION="${DURATION:-10s}" CONNECTIONS="${CONNECTIONS:-64}" THREADS="${THREADS:-1}" WORKERS="${WORKERS:-1}"

exec python3 - <<'PY'
import os, re, subprocess, tempfile
from pathlib import Path

from gateway_agent.schema import encode_rule, validate_rule
from gateway_agent.snapshot import make_snapshot, write_snapshot
from rulegate_dev.nginx import NginxLauncher, free_port

DURATION, CONNS, THREADS = os.environ["DURATION"], os.environ["CONNECTIONS"], os.environ["THREADS"]
WORKERS = int(os.environ["WORKERS"])
ROUNDS = int(os.environ["ROUNDS"])
HOST, PATH = "app.example.com", "/api/v1/items"

BACKEND = """
    server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok"; }} }}
"""
UPSTREAMS = "\n".join(
    f"    upstream {n} {{{{ server 127.0.0.1:%d; keepalive 64; }}}}" for n in ("stable", "canary", "default"))
BASELINE = UPSTREAMS + """
    split_clients "${{http_x_uid}}" $variant {{ 10% canary; * stable; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_pass http://$variant;
        }}
    }}
"""
LUA_NOOP = UPSTREAMS + """
    split_clients "${{http_x_uid}}" $variant {{ 10% canary; * stable; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            access_by_lua_block {{ }}
            proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_pass http://$variant;
        }}
    }}
"""
RULEGATE = "    include {repo}/lua/conf/rulegate.conf;\n" + UPSTREAMS + """
    server {{
        listen 127.0.0.1:{port};
        location / {{
            set $rulegate_upstream default;
            set $rulegate_rule "";
            set $rulegate_rev "";
            access_by_lua_block {{ require("rulegate").access() }}
            add_header X-Rulegate-Rule $rulegate_rule always;
            add_header X-Rulegate-Rev $rulegate_rev always;
            proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_pass http://$rulegate_upstream;
        }}
        location = /__decide_ns {{
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
        }}
    }}
"""


def rules(n):
    """n rules: one percent split on the benched route, the rest on other hosts and paths."""
    out = [{"id": "bench", "kind": "split", "route": {"host": HOST, "path": "/api/"},
            "key": {"source": "header", "name": "X-Uid"},
            "policies": [{"type": "uid_range", "ranges": [[1, 100]], "upstream": "canary"},
                         {"type": "percent", "buckets": [{"upstream": "canary", "weight": 1000}]}],
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


def wrk(port):
    res = subprocess.run(
        ["wrk", "-t", THREADS, "-c", CONNS, "-d", DURATION, "--latency",
         "-H", f"Host: {HOST}", "-H", "X-Uid: 4242", f"http://127.0.0.1:{port}{PATH}"],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", res).group(1))
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", res)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", res)
    return rps, float(p99.group(1)) * scale, int(errors.group(1)) if errors else 0


tmp = Path(tempfile.mkdtemp(prefix="rulegate-bench-"))
backend = NginxLauncher(BACKEND, workers=WORKERS, prefix=tmp / "backend", log_level="error").start()
gateways = []
try:
    def start(name, http, files=None):
        ngx = NginxLauncher(http.replace("%d", str(backend.port)), workers=WORKERS, prefix=tmp / name,
                            log_level="error", package_path="rulegate" not in name, files=files)
        gateways.append((name, ngx.start()))

    start("split_clients", BASELINE)
    start("lua_noop+split_clients", LUA_NOOP)
    dead = free_port()
    for n in (10, 1000):
        snap = tmp / f"rules{n}.snap"
        write_snapshot(snap, make_snapshot("bench", "bench-gen", n, rules(n)))
        opts = ('{"namespace": "bench", "startup_nodes": ["127.0.0.1:%d"], "refresh_interval": 5,'
                ' "connect_timeout": 100, "snapshot_path": "%s", "response_headers": "vars"}' % (dead, snap))
        start(f"rulegate_{n}_rules", RULEGATE, files={"conf/rulegate.json": opts})
    runs = {name: [] for name, _ in gateways}
    for name, ngx in gateways:
        wrk(ngx.port)  # warm-up, discarded
    for r in range(ROUNDS):  # interleaved, rotated rounds: background noise hits every config alike
        for name, ngx in gateways[r % len(gateways):] + gateways[:r % len(gateways)]:
            runs[name].append(wrk(ngx.port))
    decide_ns = {}
    for name, ngx in gateways:
        if "rulegate" in name:
            import urllib.request
            url = f"http://127.0.0.1:{ngx.port}/__decide_ns"
            decide_ns[name] = min(float(urllib.request.urlopen(url).read()) for _ in range(3))
    for name, ngx in gateways:
        errors = [l for l in ngx.error_lines() if "sync of namespace" not in l]
        if errors:
            raise SystemExit(f"{name}: nginx logged errors: {errors[:3]}")
finally:
    for _, ngx in gateways:
        ngx.stop()
    backend.stop()


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


results = [(name, median([r[0] for r in rs]), median([r[1] for r in rs]), sum(r[2] for r in rs))
           for name, rs in runs.items()]
base = results[0][1]
print(f"wrk -t{THREADS} -c{CONNS} -d{DURATION} x {ROUNDS} interleaved rounds (median), "
      f"nginx workers={WORKERS}, {os.cpu_count()} CPUs")
print(f"{'config':<24} {'req/s':>10} {'p99 ms':>8} {'vs baseline':>12} {'non-2xx':>8}")
for name, rps, p99, errors in results:
    print(f"{name:<24} {rps:>10.0f} {p99:>8.2f} {rps / base:>11.1%} {errors:>8}")
print()
print("router.decide() alone, in the worker (best of 3 x 200,000 calls):")
for name, ns in decide_ns.items():
    print(f"{name:<24} {ns:>8.0f} ns/decision")

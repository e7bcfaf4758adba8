"""CPU instructions per request of one nginx worker: rulegate's access handler against an empty access_by_lua.

Wall-clock req/s on this shared 2-core VM moves ±10 % between runs, so a 1 % difference cannot be shown with
wrk. This bench counts instead: nginx runs as one process (`master_process off; daemon off;`) under
`setarch -R valgrind --tool=cachegrind --cache-sim=no`, a fixed client sends W warm-up requests, asks for a
full Lua GC (/__bench_gc), then sends N (one run) or 2N (another run) identical requests, one at a time over
keep-alive connections of 500 requests, and nginx is stopped. Startup, the rule set's load, the warm-up and
the shutdown are the same in both runs, so

    instructions per request = (I refs of the 2N run - I refs of the N run) / N

for each configuration of bench/gateway.py (same http blocks, same rules, same backend: a plain nginx outside
valgrind, proxied to over keep-alive). The ratio to the same run's `lua_noop` is the figure to set against the
issue's 1.01. `lua_reads` is a reference: an access handler that only reads the nginx variables rulegate
reads for this request and sets the upstream variable.

What keeps the counts repeatable:
- timers that run per second of wall time rather than per request (the sync tick, the exposure and outcome
  flushes, the notification listener's reconnects, the loop lag probe) are an hour apart or off: under
  valgrind a second holds ~200 requests, and their count would depend on how fast valgrind ran;
- the client waits 1.2 ms before each request, so nginx's cached clock has moved and rulegate's
  once-a-millisecond look at the shared dict's version (init.lua ruleset()) is made by every request, in every
  run: an upper bound (under load many requests share a millisecond);
- LuaJIT seeds its PRNG (string hashes, trace penalties) from getrandom(2): an LD_PRELOAD (built here with gcc)
  gives every run the same seed; address-space randomization is off (setarch -R);
- with the JIT on, a run now and then still carries a one-off extra of up to ~30M instructions (not traced to
  its source); extras only add, so each count is the least of --repeat runs, alternating the configurations.

    python bench/gateway_instructions.py [--requests 2000] [--warmup 1000] [--configs a,b] [--jit off]
        [--repeat 3]   # runs of each count per configuration, alternating; the least counts
        [--tree DIR]   # the Lua modules of another tree: DIR/lua
        [--before DIR] # with config rulegate_1000_rules_before: that gateway runs DIR/lua (before/after)
        [--keep DIR]   # keep the cachegrind files: cg_diff DIR/X.0.N.cg DIR/X.0.2N.cg > d; cg_annotate d

`--jit off` adds `jit.off()` to init_by_lua (LuaJIT's interpreter only: not the deployed picture, every FFI call
is dear there). LuaJIT's JIT works under valgrind (cachegrind's default --smc-check=all-non-file sees the
generated code).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway import BASELINE, HOST, LUA_NOOP, PATH, PROXY, RULEGATE, RULEGATE_HEADERS, UPSTREAMS, rules  # noqa: E402

from rulegate.snapshot import make_snapshot, write_snapshot  # noqa: E402
from rulegate_dev.gateway_conf import INCLUDE  # noqa: E402
from rulegate_dev.nginx import NginxLauncher, free_port  # noqa: E402
from rulegate_dev.private_files import scratch_dir  # noqa: E402

# a reference: what reading the nginx variables rulegate reads for this request (request target, host, the
# X-Uid header) and setting the upstream variable cost by themselves, from a function (JIT-compiled, as
# rulegate's handler is) called by the access_by_lua chunk
LUA_READS = UPSTREAMS + """
    init_by_lua_block {{
        function bench_reads()
            local var = ngx.var
            local uri, host, uid = var.request_uri, var.host, var.http_x_uid
            var.rulegate_upstream = "canary"
        end
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            set $rulegate_upstream default;
            access_by_lua_block {{ bench_reads() }}
            PROXY proxy_pass http://$rulegate_upstream;
        }}
    }}
"""
BACKEND = """
    server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok"; }} }}
"""
CONFIGS = ("split_clients", "lua_noop", "lua_reads", "rulegate_10_rules", "rulegate_1000_rules",
           "rulegate_1000+headers", "rulegate_1000_no_exposure", "rulegate_1000_rules_before")
DEFAULT_CONFIGS = ("split_clients", "lua_noop", "lua_reads", "rulegate_1000_rules")
PER_CONNECTION = 500
# between an answer and the next request: nginx's cached clock (ngx.now(), ms) always moves on, so rulegate's
# once-a-millisecond look at the shared dict's version is made by every request, in every run (an upper bound:
# under load many requests share a millisecond)
GAP = 0.0012
# after the warm-up: a full collection, so both runs start their counted requests from the same heap state
GC_LOCATION = """location = /__bench_gc {{
            content_by_lua_block {{ collectgarbage("collect") ngx.say("collected") }}
        }}"""
REQUEST = f"GET {PATH} HTTP/1.1\r\nHost: {HOST}\r\nX-Uid: 4242\r\nUser-Agent: bench\r\n\r\n".encode()


# LuaJIT seeds its PRNG (string hash seed: how often interning compares strings) from getrandom(2), so the
# counts of two runs differed by up to 2M instructions; with this LD_PRELOAD every run gets the same seed
SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <sys/syscall.h>

long syscall(long number, ...)
{
    va_list ap;
    long a[6];
    va_start(ap, number);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_getrandom) {
        unsigned char *buf = (unsigned char *)a[0];
        for (long i = 0; i < a[1]; i++)
            buf[i] = (unsigned char)(i * 37 + 11);
        return a[1];
    }
    static long (*real)(long, ...);
    if (!real)
        real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
"""


def build_shim(tmp: Path) -> Path:
    (tmp / "fixed_seed.c").write_text(SHIM)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(tmp / "fixed_seed.so"), str(tmp / "fixed_seed.c"),
                    "-ldl"], check=True)
    return tmp / "fixed_seed.so"


def send(port: int, n: int) -> None:
    """n requests, one at a time, over keep-alive connections of PER_CONNECTION requests (nginx closes one after
    keepalive_requests, 1,000); every answer must be a 200."""
    while n > 0:
        count = min(n, PER_CONNECTION)
        send_on_one(port, count)
        n -= count


def send_on_one(port: int, n: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        buf = b""
        for _ in range(n):
            time.sleep(GAP)
            s.sendall(REQUEST)
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("connection closed")
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {head[:200]!r}")
            length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
            while len(buf) < length:
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("connection closed")
                buf += chunk
            buf = buf[length:]


def collect(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        s.sendall(b"GET /__bench_gc HTTP/1.1\r\nHost: gc\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    if not answer.startswith(b"HTTP/1.1 200") or b"collected\n" not in answer:
        raise RuntimeError(f"/__bench_gc: {answer[:200]!r}")


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx under valgrind exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("nginx under valgrind did not answer")


def i_refs(ngx: NginxLauncher, out: Path, warmup: int, n: int, shim: Path) -> int:
    """I refs of one nginx process (cachegrind) that served warmup + n requests."""
    ngx.write_conf()
    log = out.with_suffix(".log")
    cmd = ["setarch", "x86_64", "-R", "valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}",
           ngx.nginx_bin, "-p", str(ngx.prefix), "-c", str(ngx.conf_path), "-g", "daemon off; master_process off;"]
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ngx.prefix,
                                env={**os.environ, "LD_PRELOAD": str(shim)})
    try:
        wait_port(ngx.port, proc)
        send(ngx.port, warmup)
        collect(ngx.port)
        if n:
            send(ngx.port, n)
    finally:
        # SIGTERM, again every 2 s: under valgrind a signal that arrives just before nginx blocks in epoll_wait
        # only sets its flag, and nothing wakes it up to see it
        for _ in range(150):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(2)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            proc.kill()
            raise RuntimeError("nginx under valgrind did not stop")
    found = re.search(r"I\s+refs:\s+([\d,]+)", log.read_text())
    if not found:
        raise RuntimeError(f"no I refs in {log}")
    errors = [line for line in ngx.error_lines() if "sync of namespace" not in line]
    if errors:
        raise RuntimeError(f"nginx logged errors: {errors[:3]}")
    return int(found.group(1).replace(",", ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="N: the runs serve N and 2N requests after warm-up")
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help="of " + ", ".join(CONFIGS))
    ap.add_argument("--jit", choices=("on", "off"), default="on")
    ap.add_argument("--tree", type=Path, default=ROOT, help="the tree whose lua/ the gateways run")
    ap.add_argument("--before", type=Path, help="the tree rulegate_1000_rules_before runs (before/after pair)")
    ap.add_argument("--repeat", type=int, default=3, help="(N, 2N) pairs per configuration; the median counts")
    ap.add_argument("--keep", type=Path,
                    help="copy the cachegrind files here (per function: cg_diff X.0.N.cg X.0.2N.cg)")
    args = ap.parse_args()
    names = args.configs.split(",")
    for name in names:
        if name not in CONFIGS:
            ap.error(f"--configs: unknown configuration {name!r}")
    tree = args.tree.resolve()
    if not (tree / "lua" / "rulegate" / "init.lua").is_file():
        ap.error(f"--tree: no lua/rulegate/init.lua under {tree}")
    if "rulegate_1000_rules_before" in names and not (args.before and (args.before / "lua").is_dir()):
        ap.error("rulegate_1000_rules_before needs --before DIR (a tree with lua/)")
    tmp = scratch_dir("rg-gw-instr-")
    shim = build_shim(tmp)
    backend = NginxLauncher(BACKEND, prefix=tmp / "backend", log_level="error").start()
    jit_off = args.jit == "off"
    include = INCLUDE
    if jit_off:  # the include with jit.off() first in its init_by_lua
        text = (ROOT / "lua" / "conf" / "rulegate.conf").read_text()
        text = text.replace("init_by_lua_block {", "init_by_lua_block {\n    jit.off()", 1)
        (tmp / "rulegate-jit-off.conf").write_text(text)
        include = f"include {tmp}/rulegate-jit-off.conf;"
    dead = free_port()
    opts: dict = {"namespace": "bench", "startup_nodes": [f"127.0.0.1:{dead}"], "refresh_interval": 3600,
                  "exposure_flush_interval": 3600, "notifications": False, "connect_timeout": 100,
                  "response_headers": False, "loop_lag_interval": False}
    for n in (10, 1000):
        snap = tmp / f"rules{n}.snap"
        write_snapshot(snap, make_snapshot("bench", "bench-gen", n, rules(n)))
    plain_jit = "init_by_lua_block { jit.off() }\n" if jit_off else ""
    setups = {
        "split_clients": (BASELINE, None),
        "lua_noop": (plain_jit.replace("{ ", "{{ ").replace(" }", " }}") + LUA_NOOP, None),
        "lua_reads": (LUA_READS.replace("init_by_lua_block {{", "init_by_lua_block {{ jit.off()")
                      if jit_off else LUA_READS, None),
        "rulegate_10_rules": (RULEGATE, {**opts, "snapshot_path": str(tmp / "rules10.snap")}),
        "rulegate_1000_rules": (RULEGATE, {**opts, "snapshot_path": str(tmp / "rules1000.snap")}),
        "rulegate_1000+headers": (RULEGATE_HEADERS, {**opts, "snapshot_path": str(tmp / "rules1000.snap"),
                                                     "response_headers": "vars"}),
        "rulegate_1000_no_exposure": (RULEGATE, {**opts, "snapshot_path": str(tmp / "rules1000.snap"),
                                                 "exposure": False}),
        "rulegate_1000_rules_before": (RULEGATE, {**opts, "snapshot_path": str(tmp / "rules1000.snap")}),
    }
    runs: dict[str, list[tuple[int, int]]] = {name: [] for name in names}
    try:
        launchers = {}
        for name in names:
            http, cfg = setups[name]
            http = http.replace("listen 127.0.0.1:{port};", "listen 127.0.0.1:{port}; " + GC_LOCATION, 1)
            http = http.replace(INCLUDE, include).replace("%d", str(backend.port)).replace("PROXY", PROXY)
            prefix = tmp / name
            prefix.mkdir()
            lua = (args.before.resolve() if name.endswith("_before") else tree) / "lua"
            (prefix / "lua").symlink_to(lua)  # the tree's modules (the launcher links its own otherwise)
            files = {"conf/rulegate.json": json.dumps(cfg)} if cfg else None
            launchers[name] = NginxLauncher(http, prefix=prefix, log_level="error", files=files,
                                            package_path=cfg is None)
        for r in range(args.repeat):  # the configurations alternate
            for name in names:
                counts = []
                for n in (args.requests, 2 * args.requests):
                    out = tmp / f"{name}.{r}.{n}.cg"
                    counts.append(i_refs(launchers[name], out, args.warmup, n, shim))
                    print(f"{name} #{r + 1}: {n} requests: {counts[-1]:,} I refs", file=sys.stderr, flush=True)
                    if args.keep:
                        args.keep.mkdir(parents=True, exist_ok=True)
                        shutil.copy(out, args.keep / out.name)
                runs[name].append((counts[0], counts[1]))
    finally:
        backend.stop()

    # a run now and then carries a one-off extra of up to ~30M instructions (nginx under valgrind, not yet
    # traced to its source: the same run repeated gives the same count otherwise): extras only add, so each
    # count is the least of its repeats
    per = {name: sorted((b - a) / args.requests for a, b in pairs) for name, pairs in runs.items()}
    med = {name: (min(b for _, b in pairs) - min(a for a, _ in pairs)) / args.requests
           for name, pairs in runs.items()}
    floor = med.get("lua_noop")
    print(f"nginx worker instructions per request (cachegrind, master_process off), JIT {args.jit}, "
          f"lua of {tree}; {args.warmup} warm-up requests, a full GC, then N={args.requests} or 2N, keep-alive "
          f"connections of {PER_CONNECTION}, sequential; {args.repeat} runs of each, alternating; per request = "
          f"(least count of the 2N runs - least of the N runs) / N")
    print()
    print("| config | per request | single pairs, min – max | vs lua_noop | over lua_noop |")
    print("|---|---:|---:|---:|---:|")
    for name, values in per.items():
        p = med[name]
        ratio = f"{p / floor:.4f}" if floor else "-"
        over = f"{p - floor:+,.0f}" if floor else "-"
        print(f"| {name} | {p:,.0f} | {values[0]:,.0f} – {values[-1]:,.0f} | {ratio} | {over} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

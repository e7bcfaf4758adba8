"""What an nginx worker's load of the shared payload costs, and what it leaves to the first request of each route.

    python bench/nginx_pending.py [--rules 10000] [--reps 5] [--lua DIR] [--baseline DIR]

Runs inside one nginx worker (bench/lua/pending_bench.lua, LuaJIT's os.clock): the syncing worker's payload of
--rules split rules (bench/reload.py's shapes: one rule a route) is written to the shared dict with this load of
the code's mark, then, --reps times: `sync.compile_current` (what every other worker, and the master, does with
it), one `router.decide` for every route (the first requests), the same again, and the heap after each (after a
full collection; the string table grown first, as a gateway's master does). Also the mean of --reps loads back to back while the previous set is held (the collector's
share included). `--lua DIR` runs the modules of another tree's lua/; `--baseline DIR` runs the same
measurement with DIR's modules first and prints both columns (before / after). No Redis is needed.
Numbers are for comparison, not assertions.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import rulegate_dev.nginx  # noqa: E402
from rulegate_dev.nginx import SYSTEM_LUA_PATHS, NginxLauncher  # noqa: E402

HTTP = """
    lua_package_path "{prefix}/lua/?.lua;{prefix}/lua/?/init.lua;BENCH_LUA/?.lua;SYSTEM;;";
    lua_shared_dict rulegate 16m;
    server {{
        listen 127.0.0.1:{port};
        location = /run {{ content_by_lua_block {{ require("pending_bench").run() }} }}
    }}
"""

ROWS = [("load (compile_current), after a full collection", "load_ms", "ms"),
        ("load, back to back with the previous set held (collector included)", "load_steady_ms", "ms"),
        ("first request to every route (router.decide, in process)", "first_ms", "ms"),
        ("the same requests again", "second_ms", "ms"),
        ("heap after the load", "heap_load_kb", "KiB"),
        ("heap after the first requests", "heap_first_kb", "KiB")]


DEFAULT_LUA = rulegate_dev.nginx.LUA_DIR


def measure(lua: Path | None, rules: int, reps: int) -> dict:
    rulegate_dev.nginx.LUA_DIR = lua.resolve() if lua is not None else DEFAULT_LUA
    # $prefix/lua links to LUA_DIR (the tree under test), not to this repository's lua/
    http = HTTP.replace("BENCH_LUA", str(ROOT / "bench" / "lua")).replace("SYSTEM", ";".join(SYSTEM_LUA_PATHS))
    gw = NginxLauncher(http, package_path=False, workers=1)
    gw.start()
    try:
        return gw.json(f"/run?rules={rules}&reps={reps}", timeout=600)
    finally:
        gw.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=10000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--lua", type=Path, help="the Lua modules of this directory (another tree's lua/)")
    parser.add_argument("--baseline", type=Path, help="also measure this directory's Lua modules, first")
    args = parser.parse_args()
    columns = []
    if args.baseline:
        columns.append((f"before ({args.baseline})", measure(args.baseline, args.rules, args.reps)))
    columns.append(("this tree" if args.lua is None else str(args.lua), measure(args.lua, args.rules, args.reps)))
    width = max(len(r[0]) for r in ROWS)
    print(f"\n{args.rules:,} rules, one a route; median of {args.reps} (the back-to-back row: mean)")
    print(f"{'measure'.ljust(width)} | " + " | ".join(name for name, _ in columns))
    print("-" * (width + 3 + sum(len(name) + 3 for name, _ in columns)))
    for label, key, unit in ROWS:
        cells = [f"{res[key]:,.1f} {unit}".rjust(len(name)) for name, res in columns]
        print(f"{label.ljust(width)} | " + " | ".join(cells))
    print(f"\n(one nginx worker, LuaJIT os.clock; {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

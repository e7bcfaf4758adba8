"""In-process agent (OS threads): how long a request thread waits while another thread reloads; prints lines.

    python bench/reload_gil.py [--rules 10000] [--runs 5] [--switch 5,1,0.5] [--slice 2]

No Redis: one thread runs what a full reload runs after the read (`CompileCache.load` +
`RuleSet.from_compiled`, yielding every `--slice` ms, GC off as in `Syncer.full_reload`), with
nothing held (cold) or the same bytes held (warm), while another thread times a request-sized loop.
`sys.setswitchinterval` is set to each `--switch` value for the reload and restored after. Per
setting: the reload thread's CPU (median), the worst gap of the request thread (median and all
runs) and how many gaps exceeded 2 and 5 ms (summed over the runs).
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.reload import make_rule  # noqa: E402
from gateway_agent.compiled import CompileCache  # noqa: E402
from rulegate.evaluator import RuleSet  # noqa: E402
from rulegate.namespace import Slicer  # noqa: E402
from rulegate.schema import encode_rule  # noqa: E402


def one_run(raw: dict[str, bytes], cache: CompileCache, switch: float, slice_s: float) -> tuple[float, list[float]]:
    """Return the reload thread's CPU and the request thread's gaps during one reload."""
    gaps: list[float] = []
    stop = threading.Event()
    out: dict[str, object] = {}

    def requests() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            for _ in range(20):
                sum(range(50))
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    def reload() -> None:
        pause, t = Slicer(slice_s), time.thread_time()
        loaded = cache.load(raw, where="bench", pause=pause)
        out["set"] = RuleSet.from_compiled(loaded.rules, 2, "bench", pause=pause)
        out["cpu"] = time.thread_time() - t

    server = threading.Thread(target=requests)
    server.start()
    time.sleep(0.05)
    before = sys.getswitchinterval()
    sys.setswitchinterval(switch)
    worker = threading.Thread(target=reload)
    worker.start()
    worker.join()
    sys.setswitchinterval(before)
    stop.set()
    server.join()
    return float(out["cpu"]), gaps  # the new set is freed here, outside the timed window


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--switch", default="5,1,0.5", help="switch intervals in ms")
    parser.add_argument("--slice", type=float, default=2.0, help="ms of work between yields")
    args = parser.parse_args()
    raw = {f"r{i:05d}": encode_rule(make_rule(i)) for i in range(args.rules)}
    gc.disable()
    for mode in ("warm", "cold"):
        for switch in (float(x) / 1000 for x in args.switch.split(",")):
            cpus, worst, over2, over5 = [], [], 0, 0
            for _ in range(args.runs):
                cache = CompileCache()
                if mode == "warm":
                    cache.load(raw, where="bench")
                cpu, gaps = one_run(raw, cache, switch, args.slice / 1000)
                cpus.append(cpu * 1000)
                worst.append(max(gaps) * 1000)
                over2 += sum(g > 0.002 for g in gaps)
                over5 += sum(g > 0.005 for g in gaps)
            print(f"{mode}, switch interval {switch * 1000:g} ms, slice {args.slice:g} ms: reload CPU "
                  f"{statistics.median(cpus):.0f} ms; worst gap {statistics.median(worst):.1f} ms "
                  f"({' / '.join(f'{w:.1f}' for w in worst)}); gaps > 2 ms: {over2}, > 5 ms: {over5}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run every benchmark and write bench/REPORT.md (tables + same-run baselines + the machine).

Run: python bench/report.py [--quick]. Each benchmark starts its own servers on loopback.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHES = [
    ("decide() in process", [sys.executable, str(HERE / "decide.py")], ["--requests", "50000"]),
    ("gateway_agent: in-process vs sidecar, reload", [sys.executable, str(HERE / "agent.py")], []),
    ("ruleadmin writes through the REST API", [sys.executable, str(HERE / "admin_write.py")], []),
    ("ruleadmin auth lookups: TTL cache on vs off", [sys.executable, str(HERE / "admin_auth.py")], []),
    ("differential fuzz: Python evaluator vs Lua router (100,000 + 10,000 HTTP cases)",
     [sys.executable, str(HERE / "differential.py")], []),
    ("nginx: split_clients baseline vs rulegate", ["bash", str(HERE / "gateway.sh")], []),
]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))) // 1024 // 1024
    return (f"{cpu}, {os.cpu_count()} cores, {mem} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def merge(report: str, sections: dict[str, str]) -> str:
    """Return report with each `## title` section replaced by sections[title] (appended when new)."""
    head, *chunks = report.split("\n## ")
    out, seen = [head], set()
    for chunk in chunks:
        title = chunk.split("\n", 1)[0]
        if title in sections:
            out.append(sections[title].lstrip("\n").removeprefix("## ").rstrip("\n") + "\n")
            seen.add(title)
        else:
            out.append(chunk)
    text = "\n## ".join(out)
    return text + "".join(body for title, body in sections.items() if title not in seen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="pass the quick flag to benchmarks that have one")
    parser.add_argument("--out", default=str(HERE / "REPORT.md"))
    parser.add_argument("--only", action="append", default=[],
                        help="run only benchmarks whose title contains this text; their sections replace the "
                             "same-titled sections of the existing report (repeatable)")
    args = parser.parse_args()
    parts = [f"# rulegate benchmark report\n\nMachine: {machine()}  \nDate: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
             "\nEvery table compares against a baseline measured in the same run on the same machine.\n"]
    failed = 0
    sections: dict[str, str] = {}
    for title, cmd, extra in BENCHES:
        if args.only and not any(o in title for o in args.only):
            continue
        print(f"running: {title} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        res = subprocess.run(cmd + extra, capture_output=True, text=True, cwd=HERE.parent)
        took = time.monotonic() - t0
        body = res.stdout.strip() or "(no output)"
        if res.returncode != 0:
            failed += 1
            body += f"\n\n**failed (exit {res.returncode})**:\n```\n{res.stderr.strip()[-2000:]}\n```"
        command = " ".join(["python" if c == sys.executable else os.path.relpath(c, HERE.parent) for c in cmd + extra])
        sections[title] = (f"\n## {title}\n\n`{command}` — _{took:.0f} s, "
                           f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}_\n\n{body}\n")
    if args.only and Path(args.out).exists():
        text = merge(Path(args.out).read_text(), sections)
    else:
        text = "".join(parts) + "".join(sections.values())
    Path(args.out).write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

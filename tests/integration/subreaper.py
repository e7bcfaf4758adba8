"""Run a command as the child of a child subreaper and report what it left running.

    python subreaper.py REPORT.json -- COMMAND...

Writes ``{"child": pid}`` to REPORT.json once the command started; when it has exited, every
descendant it left behind has been re-parented to this process (PR_SET_CHILD_SUBREAPER), so
this process lists them, SIGKILLs them (they are its own descendants), reaps everything and
rewrites REPORT.json as ``{"child": pid, "rc": status, "left": [[pid, "cmdline"], ...]}``. It
exits with the command's status. SIGTERM/SIGINT sent to this process go to the command.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def _children(me: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] not in ("Z", "X"):
            out.append(int(entry.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _reap_all() -> None:
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def main() -> int:
    report, command = Path(sys.argv[1]), sys.argv[3:]
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    child = subprocess.Popen(command)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: child.send_signal(signum))
    report.write_text(json.dumps({"child": child.pid}))
    rc = child.wait()
    me = os.getpid()
    left: list[list] = []
    seen: set[int] = set()
    deadline = time.monotonic() + 10
    while (pids := [p for p in _children(me) if p not in seen]) and time.monotonic() < deadline:
        for pid in pids:  # each orphan's own children are re-parented here once it dies
            seen.add(pid)
            left.append([pid, _cmdline(pid)])
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
        _reap_all()
    _reap_all()
    report.write_text(json.dumps({"child": child.pid, "rc": rc, "left": left}))
    return rc


if __name__ == "__main__":
    sys.exit(main())

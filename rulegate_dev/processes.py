"""Processes the launchers start, identified and stopped by pid, never by name.

A ``ProcessRecord`` keeps what identifies a process beyond its pid (its start time after boot and
its executable, from ``/proc``), so that a later ``stop`` — possibly from another shell, after the
launcher died — signals a recorded pid only while it is still the process that was recorded. A
record with ``group`` set is the leader of its own process group (started with
``start_new_session``); stopping it stops the whole group (gunicorn or nginx workers included).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat the launchers use."""

    state: str
    ppid: int
    pgrp: int
    start: int  # clock ticks after boot


def proc_stat(pid: int) -> ProcStat | None:
    """Return the stat fields of pid, or None when there is no such process (or only its zombie)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return ProcStat(fields[0], int(fields[1]), int(fields[2]), int(fields[19]))


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(PROC / str(pid) / "exe")
    except OSError:
        return None


@dataclass(frozen=True)
class ProcessRecord:
    """One process a launcher started: name, pid, start time, executable, leads its own group."""

    name: str
    pid: int
    start: int
    exe: str
    group: bool

    @classmethod
    def capture(cls, name: str, pid: int) -> "ProcessRecord | None":
        """Return the record of the running process pid (group when it leads its process group), or None."""
        stat, exe = proc_stat(pid), _exe(pid)
        if stat is None or exe is None:
            return None
        return cls(name, pid, stat.start, exe, stat.pgrp == pid)

    @classmethod
    def from_json(cls, data: dict) -> "ProcessRecord":
        """Return the record saved by to_json(); raise KeyError/TypeError/ValueError on a bad entry."""
        return cls(str(data["name"]), int(data["pid"]), int(data["start"]), str(data["exe"]), bool(data["group"]))

    def to_json(self) -> dict:
        """Return the record as a JSON-able dict."""
        return asdict(self)

    def running(self) -> bool:
        """Return True while pid is still the recorded process (same start time and executable)."""
        stat = proc_stat(self.pid)
        return stat is not None and stat.start == self.start and _exe(self.pid) == self.exe

    def members(self) -> list[int]:
        """Return the live pids of this record's process group started with or after its leader and
        running the same executable (the workers of a gunicorn or nginx master), leader excluded."""
        if not self.group:
            return []
        out = []
        for entry in PROC.iterdir():
            if not entry.name.isdigit() or int(entry.name) == self.pid:
                continue
            stat = proc_stat(int(entry.name))
            if stat and stat.pgrp == self.pid and stat.start >= self.start and _exe(int(entry.name)) == self.exe:
                out.append(int(entry.name))
        return out


def _kill(pid: int, sig: int, group: bool = False) -> None:
    try:
        (os.killpg if group else os.kill)(pid, sig)
    except ProcessLookupError:
        pass


def stop_records(records: list[ProcessRecord], timeout: float = 15.0, sig: int = signal.SIGTERM) -> list[str]:
    """Stop the recorded processes that are still ours (and their group members): sig, then SIGKILL after
    timeout seconds. Return the names of those that were running. Works from any process."""
    live = [r for r in records if r.running()]
    for rec in live:
        _kill(rec.pid, signal.SIGCONT)
        _kill(rec.pid, sig, rec.group)
    deadline = time.monotonic() + timeout
    while any(r.running() for r in live) and time.monotonic() < deadline:
        time.sleep(0.05)
    for rec in live:
        leftovers = rec.members()
        if rec.running():
            _kill(rec.pid, signal.SIGKILL, rec.group)
        for pid in leftovers:
            _kill(pid, signal.SIGKILL)
    return [r.name for r in live]


def stop_child_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Stop a child that leads its own process group: sig to the group, wait for the leader, SIGKILL what is
    left of the group (orphaned workers) while the leader's pid is still reserved, then reap the leader."""
    stop_child_groups([proc], sig, timeout)


def stop_child_groups(procs: list[subprocess.Popen], sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """stop_child_group() for several children at once: signal them all, then wait for them together."""
    live = [p for p in procs if p.returncode is None]
    for proc in live:
        _kill(proc.pid, sig, group=True)
    deadline = time.monotonic() + timeout
    while not all(_exited(p.pid) for p in live) and time.monotonic() < deadline:
        time.sleep(0.02)
    for proc in live:
        _kill(proc.pid, signal.SIGKILL, group=True)  # an exited leader is not reaped yet: the group id is still ours
        proc.wait(10)


def _exited(pid: int) -> bool:
    """Return True when our child pid has exited, without reaping it."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def stop_children(timeout: float = 5.0) -> list[int]:
    """SIGKILL (with their process groups when they lead one) the still-running children of this process and
    reap them; return their pids. A backstop after an orderly stop: a child of ours is ours."""
    me = os.getpid()
    children = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat.ppid == me:
                children.append((int(entry.name), stat.pgrp == int(entry.name)))
    for pid, leads in children:
        _kill(pid, signal.SIGKILL, leads)
    deadline = time.monotonic() + timeout
    for pid, _ in children:
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                break
            time.sleep(0.02)
    return [pid for pid, _ in children]

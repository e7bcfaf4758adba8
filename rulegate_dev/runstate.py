"""What a running demo records for ``rulegate-dev stop``: one 0600 JSON file per demo in a 0700 run directory.

The run directory is ``$RULEGATE_RUN_DIR``, else ``<tmp>/rulegate-dev-<uid>``; it must belong to the
current user. Each demo writes ``demo-<launcher pid>.json``: the launcher itself, every process it
started (rewritten after each start, so a launcher killed half-way still leaves a record), its data
directory and whether that directory is a temporary one to remove on stop.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LauncherError
from .private_files import private_dir, write_private
from .processes import ProcessRecord, stop_records

RUN_DIR_ENV = "RULEGATE_RUN_DIR"
TEMP_PREFIX = "rulegate-demo-"


def default_run_dir() -> Path:
    """Return $RULEGATE_RUN_DIR, else <tmp>/rulegate-dev-<uid>."""
    return Path(os.environ.get(RUN_DIR_ENV) or _usual_run_dir())


def _usual_run_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"rulegate-dev-{os.getuid()}"


def stop_command(run_dir: Path) -> str:
    """Return the command that stops the demos of run_dir from another shell."""
    return "rulegate-dev stop" + ("" if run_dir == _usual_run_dir() else f" --run-dir {run_dir}")


def open_run_dir(path: str | os.PathLike | None = None) -> Path:
    """Create (0700) and return the run directory; raise LauncherError when it is a symlink or not ours."""
    out = Path(path) if path else default_run_dir()
    if out.is_symlink():
        raise LauncherError(f"run directory {out} is a symlink; remove it or set {RUN_DIR_ENV}")
    try:
        private_dir(out)
    except OSError as exc:
        raise LauncherError(f"cannot create the run directory {out}: {exc.strerror}; set {RUN_DIR_ENV}") from None
    info = out.lstat()
    if info.st_uid != os.getuid() or not stat.S_ISDIR(info.st_mode):
        raise LauncherError(f"run directory {out} belongs to uid {info.st_uid}, not to you; set {RUN_DIR_ENV}")
    return out


@dataclass
class DemoState:
    """One demo's record: its launcher, the processes it started, its data directory."""

    path: Path
    launcher: ProcessRecord
    data_dir: str
    temporary: bool
    processes: list[ProcessRecord] = field(default_factory=list)

    @classmethod
    def create(cls, run_dir: Path, data_dir: str | os.PathLike, temporary: bool) -> "DemoState":
        """Record this process as a demo launcher in run_dir and return the state (already saved)."""
        me = ProcessRecord.capture("rulegate-dev demo", os.getpid())
        if me is None:
            raise LauncherError("cannot read /proc/self: the demo needs Linux's /proc to record its processes")
        state = cls(run_dir / f"demo-{os.getpid()}.json", me, str(data_dir), temporary)
        state.save()
        return state

    @classmethod
    def load(cls, path: Path) -> "DemoState":
        """Return the state saved in path; raise LauncherError when it cannot be read."""
        try:
            data = json.loads(path.read_text())
            return cls(path, ProcessRecord.from_json(data["launcher"]), str(data["data_dir"]),
                       bool(data["temporary"]), [ProcessRecord.from_json(p) for p in data["processes"]])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LauncherError(f"cannot read the demo state {path}: {exc}; remove it by hand") from None

    @staticmethod
    def all_in(run_dir: Path) -> list["DemoState"]:
        """Return the state of every demo recorded in run_dir."""
        return [DemoState.load(p) for p in sorted(run_dir.glob("demo-*.json"))]

    def save(self) -> None:
        """Write the state (0600) atomically."""
        data = {"launcher": self.launcher.to_json(), "data_dir": self.data_dir, "temporary": self.temporary,
                "processes": [p.to_json() for p in self.processes]}
        tmp = self.path.with_suffix(".tmp")
        write_private(tmp, json.dumps(data, indent=1))
        os.replace(tmp, self.path)

    def record(self, name: str, pid: int) -> None:
        """Record a process just started (when it is still running) and save."""
        rec = ProcessRecord.capture(name, pid)
        if rec is not None:
            self.processes.append(rec)
            self.save()

    def remove_data_dir(self) -> bool:
        """Remove the data directory when it is a temporary one of ours; return True when removed."""
        path = Path(self.data_dir)
        if not self.temporary or not path.name.startswith(TEMP_PREFIX) or path.is_symlink() or not path.is_dir():
            return False
        if path.lstat().st_uid != os.getuid():
            return False
        shutil.rmtree(path, ignore_errors=True)
        return not path.exists()

    def forget(self) -> None:
        """Remove the state file."""
        self.path.unlink(missing_ok=True)


def stop_demo(state: DemoState, timeout: float = 60.0) -> list[str]:
    """Stop one recorded demo from any process: SIGTERM its launcher (which stops what it started) and wait,
    then stop whatever recorded process is left, remove its temporary data dir and the state file.
    Return the names of the processes that had to be stopped here (not by the launcher)."""
    if state.launcher.running():
        os.kill(state.launcher.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while state.launcher.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if state.launcher.running():
            os.kill(state.launcher.pid, signal.SIGKILL)
        if state.path.exists():  # the launcher did not finish its own stop: what it recorded last
            state = DemoState.load(state.path)
    stopped = stop_records(state.processes)
    state.remove_data_dir()
    state.forget()
    return stopped


def running_demo(run_dir: str | os.PathLike | None = None, pid: int | None = None) -> DemoState:
    """Return the state of the running demo recorded in the run directory (the one whose launcher is pid);
    raise LauncherError when there is none or, without pid, more than one."""
    directory = open_run_dir(run_dir)
    states = [s for s in DemoState.all_in(directory) if s.launcher.running() and pid in (None, s.launcher.pid)]
    if not states:
        which = f"of pid {pid} " if pid is not None else ""
        raise LauncherError(f"no running demo {which}recorded in {directory}; start one with `rulegate-dev demo`")
    if len(states) > 1:
        pids = ", ".join(str(s.launcher.pid) for s in states)
        raise LauncherError(f"{len(states)} demos are running (launcher pids {pids}); choose one with --pid")
    return states[0]

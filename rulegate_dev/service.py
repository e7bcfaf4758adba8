"""One child process of a local deployment (ruleadmin under gunicorn, the agent sidecar), by pid."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .cluster import _tail
from .errors import LauncherError
from .processes import stop_child_group


@dataclass
class Service:
    """One child process of the system, leading its own process group (its workers included).

    ``on_spawn`` is called with ``(name, pid)`` right after the process starts."""

    name: str
    argv: list[str]
    env: dict[str, str]
    url: str
    log: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)
    on_spawn: Callable[[str, int], None] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start the process (its output appended to log) in its own session."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        if self.on_spawn is not None:
            self.on_spawn(self.name, self.proc.pid)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL it after timeout seconds (and whatever workers outlive the
        leader), reap the leader."""
        if self.proc is not None:
            stop_child_group(self.proc, timeout=timeout)

    def wait_healthy(self, path: str = "/healthz", timeout: float = 30.0) -> None:
        """Wait until url+path answers 200; raise LauncherError when the process exits or after timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise LauncherError(f"{self.name} exited; see {self.log}: {_tail(self.log)}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise LauncherError(f"{self.name} not healthy after {timeout:.0f}s; see {self.log}")


def ruleadmin_service(name: str, port: int, env: dict[str, str], log: Path, workers: int = 2) -> Service:
    """Return (not started) a `ruleadmin serve` process (gunicorn + gevent workers) on 127.0.0.1:port."""
    argv = [sys.executable, "-m", "ruleadmin.cli", "serve", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    return Service(name, argv, env, f"http://127.0.0.1:{port}", log)

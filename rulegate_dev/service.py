"""One child process of a local deployment (ruleadmin under gunicorn, the agent sidecar), by pid."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .cluster import LauncherError, _tail


@dataclass
class Service:
    """One child process of the system."""

    name: str
    argv: list[str]
    env: dict[str, str]
    url: str
    log: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def wait_healthy(self, path: str = "/healthz", timeout: float = 30.0) -> None:
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

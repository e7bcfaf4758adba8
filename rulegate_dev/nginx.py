"""A throwaway nginx (with the lua module) for tests, benches and the demo.

``NginxLauncher`` writes ``nginx.conf`` into its own prefix directory, runs
``nginx -p <prefix> -c <conf> -g 'daemon off; master_process on;'`` as a child
process on 127.0.0.1 and waits until the port answers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Callable

from .errors import LauncherError
from .ports import free_port as free_port  # re-exported: tests and benches import it from here
from .private_files import private_dir, write_private
from .processes import stop_child_group

REPO_DIR = Path(__file__).resolve().parent.parent
LUA_DIR = REPO_DIR / "lua"
MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/usr/local/nginx/modules")
SYSTEM_LUA_PATHS = ("/usr/share/lua/5.1/?.lua", "/usr/share/lua/5.1/?/init.lua")
ERROR_MARKERS = ("[error]", "[crit]", "[alert]", "[emerg]")

MAIN_TEMPLATE = """\
{load_modules}
{user}worker_processes {workers};
error_log {prefix}/logs/error.log {log_level};
pid {prefix}/logs/nginx.pid;
{thread_pool}{main_extra}

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
{http_extra}{lua_path}{http}
}}
"""


class NginxError(LauncherError):
    """nginx failed to start, reload or stop."""


def find_module(name: str) -> str | None:
    """Return the path of a dynamic nginx module, or None when it is built in."""
    for directory in MODULE_DIRS:
        path = Path(directory) / name
        if path.exists():
            return str(path)
    return None


def lua_package_path(repo_dir: Path = REPO_DIR) -> str:
    """Return the lua_package_path that finds the repo's modules, then the system's."""
    lua_dir = repo_dir / "lua"
    return ";".join([f"{lua_dir}/?.lua", f"{lua_dir}/?/init.lua", *SYSTEM_LUA_PATHS])


class NginxLauncher:
    """Run one nginx with a given ``http {}`` body; a context manager.

    ``http`` is the text inside ``http {}``; ``{port}``, ``{prefix}`` and ``{repo}``
    in it are replaced (use ``{{``/``}}`` for literal braces). ``files`` are written
    into the prefix as 0600 files (``conf/rulegate.json`` holds the Redis password), ``conf/``
    is 0700; ``$prefix/lua`` links to the repo's Lua modules, so ``lua/conf/rulegate.conf`` can
    be included as an operator would. ``http_extra`` is placed at the top of ``http {}`` as is
    (e.g. ``lua_ssl_trusted_certificate``). With ``package_path=False`` the launcher sets no
    ``lua_package_path`` (the include does). With ``new_session`` nginx runs in its own session and
    process group (a terminal's Ctrl-C does not reach it; ``stop`` also kills workers the master left
    behind); ``on_spawn`` is called with ``("nginx", pid)`` right after the master starts.
    """

    def __init__(
        self,
        http: str,
        *,
        port: int | None = None,
        prefix: str | os.PathLike[str] | None = None,
        workers: int = 1,
        log_level: str = "info",
        main_extra: str = "",
        http_extra: str = "",
        start_timeout: float = 10.0,
        nginx_bin: str = "nginx",
        extra_lua_paths: tuple[str, ...] = (),
        package_path: bool = True,
        files: dict[str, str | bytes] | None = None,
        new_session: bool = False,
        on_spawn: Callable[[str, int], None] | None = None,
        thread_pool: bool = True,
    ) -> None:
        self.port = port or free_port()
        self._own_prefix = prefix is None
        self.prefix = Path(prefix or tempfile.mkdtemp(prefix="rulegate-nginx-"))
        self.http = http
        self.workers = workers
        self.log_level = log_level
        self.main_extra = main_extra
        self.http_extra = http_extra
        self.start_timeout = start_timeout
        self.nginx_bin = shutil.which(nginx_bin) or nginx_bin
        self.extra_lua_paths = extra_lua_paths
        self.package_path = package_path
        self.files = dict(files or {})
        self.new_session = new_session
        self.on_spawn = on_spawn
        self.thread_pool = thread_pool  # `thread_pool rulegate`: where the syncing worker checks a full load
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf_path = self.prefix / "conf" / "nginx.conf"
        self.error_log = self.prefix / "logs" / "error.log"

    # -- configuration -------------------------------------------------
    def render(self, http: str | None = None) -> str:
        """Return the full nginx.conf text for ``http`` (default: the current body)."""
        modules = [find_module("ndk_http_module.so"), find_module("ngx_http_lua_module.so")]
        load = "\n".join(f"load_module {m};" for m in modules if m)
        values = {"port": self.port, "prefix": self.prefix, "repo": REPO_DIR}
        body = (http if http is not None else self.http).format(**values)
        return MAIN_TEMPLATE.format(
            load_modules=load,
            # as root, run workers as root too so they can write into the test's temp dirs
            user="user root root;\n" if os.geteuid() == 0 else "",
            workers=self.workers,
            prefix=self.prefix,
            log_level=self.log_level,
            thread_pool="thread_pool rulegate threads=1;\n" if self.thread_pool else "",
            main_extra=self.main_extra,
            http_extra="".join(f"    {line.strip()}\n" for line in self.http_extra.splitlines() if line.strip()),
            lua_path=(
                f'    lua_package_path "{";".join([*self.extra_lua_paths, lua_package_path()])};;";\n'
                if self.package_path else ""
            ),
            http=body,
        )

    def write_conf(self, http: str | None = None) -> Path:
        """Write nginx.conf (and the prefix's directories); return its path."""
        private_dir(self.prefix / "conf")
        for sub in ("logs", "tmp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        link = self.prefix / "lua"
        if not link.exists():
            link.symlink_to(LUA_DIR)  # the include finds the modules at $prefix/lua
        for name, content in self.files.items():
            target = self.prefix / name
            target.parent.mkdir(parents=True, exist_ok=True)
            write_private(target, content)
        if http is not None:
            self.http = http
        write_private(self.conf_path, self.render())
        return self.conf_path

    def test_conf(self) -> None:
        """Run ``nginx -t`` on the written configuration; raise NginxError on failure."""
        res = subprocess.run(self._cmd("-t"), capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise NginxError(f"nginx -t failed: {res.stderr.strip()}")

    def _cmd(self, *extra: str) -> list[str]:
        return [
            self.nginx_bin, "-p", str(self.prefix), "-c", str(self.conf_path),
            "-g", "daemon off; master_process on;", *extra,
        ]

    # -- lifecycle -------------------------------------------------------
    def start(self) -> NginxLauncher:
        """Start nginx and wait until its port accepts connections; return self."""
        if self.proc is not None and self.proc.poll() is None:
            raise NginxError("nginx already running")
        self.write_conf()
        log = open(self.prefix / "logs" / "stderr.log", "ab")
        self.proc = subprocess.Popen(self._cmd(), stdout=log, stderr=log, cwd=self.prefix,
                                     start_new_session=self.new_session)
        log.close()
        if self.on_spawn is not None:
            self.on_spawn("nginx", self.proc.pid)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NginxError(f"nginx exited with {self.proc.returncode}: {self._tail()}")
            if _port_open(self.port) and self.worker_pids():
                return self
            time.sleep(0.02)
        self.stop()
        raise NginxError(f"nginx did not answer on port {self.port}: {self._tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop nginx (SIGQUIT, then SIGKILL after ``timeout``) and wait for it."""
        if self.proc is None:
            return
        was_running = self.proc.poll() is None
        if self.new_session:
            stop_child_group(self.proc, signal.SIGQUIT, timeout)
        elif was_running:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc = None
        if was_running:  # (a master that never bound the port must not wait for someone else's listener)
            _wait_port_closed(self.port, timeout)

    def reload(self, http: str | None = None, timeout: float = 10.0) -> None:
        """Rewrite the config (optionally with a new http body), SIGHUP, wait for new workers."""
        if self.proc is None or self.proc.poll() is not None:
            raise NginxError("nginx is not running")
        old = set(self.worker_pids())
        self.write_conf(http)
        self.test_conf()
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = set(self.worker_pids())
            if pids and not pids & old:
                return
            time.sleep(0.05)
        raise NginxError("nginx reload did not replace its workers")

    def cleanup(self) -> None:
        """Stop nginx and remove the prefix directory when this launcher created it."""
        self.stop()
        if self._own_prefix:
            shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> NginxLauncher:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- inspection ------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """Return the master's pid, or None when not running."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def worker_pids(self) -> list[int]:
        """Return the pids of the master's live worker processes."""
        master = self.pid
        if master is None:
            return []
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == master and b"worker process" in cmdline and b"shutting" not in cmdline:
                pids.append(int(entry.name))
        return sorted(pids)

    def worker_rss_kb(self) -> dict[int, int]:
        """Return each worker's resident set size in KiB."""
        out = {}
        for pid in self.worker_pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        out[pid] = int(line.split()[1])
            except OSError:
                continue
        return out

    def log_lines(self) -> list[str]:
        """Return every line of the error log."""
        try:
            return self.error_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def error_lines(self) -> list[str]:
        """Return the error-log lines at level error or worse."""
        return [line for line in self.log_lines() if any(m in line for m in ERROR_MARKERS)]

    def url(self, path: str = "/") -> str:
        """Return http://127.0.0.1:<port><path>."""
        return f"http://127.0.0.1:{self.port}{path}"

    def json(self, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        """GET ``path`` (or POST ``body`` as JSON) and return the decoded JSON reply."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url(path), data=data, method="GET" if data is None else "POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise NginxError(f"{path} answered {exc.code}; error log: {self.error_lines()[-5:]}") from exc

    def _tail(self, n: int = 20) -> str:
        lines = self.log_lines()
        try:
            lines += (self.prefix / "logs" / "stderr.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            pass
        return "\n".join(lines[-n:])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait_port_closed(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _port_open(port):
        time.sleep(0.02)

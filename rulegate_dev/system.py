"""The whole system on loopback: ACL'd Redis Cluster, two ruleadmin instances, agent sidecar, nginx."""
from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from .acl import ADMIN_USER, OPS_USER, AclUsers
from .cluster import LocalCluster
from .errors import LauncherError
from .faults import backend_servers
from .gateway_conf import gateway_http, include_options, rulegate_location, upstream_blocks
from .nginx import NginxLauncher
from .ports import BUS_OFFSET, find_free_base, free_port, port_is_free
from .private_files import private_dir, write_private
from .processes import stop_child_groups
from .sample_rules import NAMESPACE, seed_rules
from .service import Service, ruleadmin_service

ADMIN_LOGIN = "admin"
BACKENDS = ("stable", "canary", "flaky")  # served by the demo nginx itself (rulegate_dev/faults.py)
ENDPOINTS_FILE = "endpoints.json"
log = logging.getLogger("rulegate.dev.system")
OnSpawn = Callable[[str, int], None]


@dataclass(frozen=True)
class SystemPorts:
    """The demo's ports on 127.0.0.1: the cluster's first port (6 nodes, bus ports +10000), the two
    ruleadmin instances, the agent and nginx."""

    cluster: int
    admin: tuple[int, int]
    agent: int
    nginx: int

    @classmethod
    def pick(cls, usual: bool = False, *, cluster: int | None = None, admin: tuple[int, int] | None = None,
             agent: int | None = None, nginx: int | None = None) -> "SystemPorts":
        """Return the given ports, the others picked: with usual, the usual port (7000, 8081, 8082, 9901, 8080)
        when it is free, else (and without usual) a free port outside the kernel's ephemeral range."""

        def one(port: int) -> int:
            return port if usual and port_is_free(port) else free_port()

        return cls(cluster or (7000 if usual and _free(7000, 6) else find_free_base(6)),
                   admin or (one(8081), one(8082)), agent or one(9901), nginx or one(8080))


@dataclass(frozen=True)
class DemoEndpoints:
    """What clients of a running demo (`rulegate-dev fault`, `rulegate-dev scenario`) need: its namespace, the
    ports of nginx, the agent, both ruleadmin instances, the fault control and the backends (by upstream name),
    and the demo's API token.
    Saved as ENDPOINTS_FILE (0600) in the demo's 0700 data dir once everything is up."""

    namespace: str
    nginx: int
    agent: int
    admin: tuple[int, int]
    fault_control: int
    backends: dict[str, int]
    token: str

    def save(self, directory: Path) -> Path:
        """Write the endpoints into directory as a 0600 file; return its path."""
        return write_private(directory / ENDPOINTS_FILE, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "DemoEndpoints":
        """Return the endpoints saved in directory; raise LauncherError when there are none (yet) or they are
        unreadable."""
        path = Path(directory) / ENDPOINTS_FILE
        try:
            data = json.loads(path.read_text())
            return cls(str(data["namespace"]), int(data["nginx"]), int(data["agent"]),
                       (int(data["admin"][0]), int(data["admin"][1])), int(data["fault_control"]),
                       {str(k): int(v) for k, v in data["backends"].items()}, str(data["token"]))
        except FileNotFoundError:
            raise LauncherError(f"the demo is still starting (no {path} yet); try again once it prints "
                                "its credentials") from None
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise LauncherError(f"cannot read the demo's endpoints {path}: {exc}") from None


class System:
    """Starts and stops every process of a rulegate deployment on 127.0.0.1.

    Its directory is 0700 and every file holding a secret in it is 0600; the gateways (agent
    and nginx) use the gateway user of the demo namespace."""

    def __init__(self, data_dir: str | os.PathLike, *, fixed_ports: bool = False, refresh_interval: float = 1.0,
                 ports: SystemPorts | None = None, on_spawn: OnSpawn | None = None):
        """fixed_ports: prefer the usual ports (7000, 8081, 8082, 9901, 8080) when no ports are given;
        on_spawn is called with (name, pid) right after each process starts."""
        self.dir = private_dir(data_dir)
        self.acl = AclUsers.for_namespaces(NAMESPACE)
        self.ports = ports or SystemPorts.pick(fixed_ports)
        self.on_spawn = on_spawn
        self.cluster = LocalCluster(self.dir / "cluster", self.ports.cluster, acl=self.acl, on_spawn=on_spawn,
                                    extra_config={"save": "3600 1", "appendonly": "no"})
        self.admin_ports = list(self.ports.admin)
        self.agent_port = self.ports.agent
        self.nginx_port = self.ports.nginx
        self.admin_password = secrets.token_urlsafe(12)
        self.secret_key = secrets.token_hex(32)
        self.refresh_interval = refresh_interval
        self.admins: list[Service] = []
        self.agent: Service | None = None
        self.watcher: Service | None = None
        self.nginx: NginxLauncher | None = None
        self.token = ""
        self.backend_ports = {name: free_port() for name in BACKENDS}
        self.fault_port = free_port()

    @property
    def nodes(self) -> str:
        return ",".join(self.cluster.startup_nodes)

    def admin_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(RULEADMIN_REDIS_NODES=self.nodes, RULEADMIN_REDIS_MODE="cluster",
                   RULEADMIN_REDIS_USERNAME=ADMIN_USER, RULEADMIN_REDIS_PASSWORD=self.acl.admin_password,
                   RULEADMIN_SECRET_KEY=self.secret_key, RULEADMIN_SESSION_COOKIE_SECURE="false",
                   RULEADMIN_REMEMBER_COOKIE_SECURE="false")
        return env

    def start(self, progress: Callable[[str], object] = print) -> "System":
        """Start every process and wait until each answers; return self. On any failure (or interrupt) what
        was already started is stopped before the error propagates (LauncherError for a known failure)."""
        try:
            self._start(progress)
        except BaseException:
            try:
                self.stop()
            except (OSError, subprocess.SubprocessError, LauncherError) as exc:  # the start-up error is the news
                log.warning("stopping after a failed start: %s", exc)
            raise
        return self

    def _start(self, progress: Callable[[str], object]) -> None:
        progress(f"starting a 6-node Redis Cluster with ACL users in {self.dir / 'cluster'} ...")
        self.cluster.start()
        self._seed(progress)
        for i, port in enumerate(self.admin_ports, 1):
            svc = ruleadmin_service(f"ruleadmin #{i}", port, self.admin_env(), self.dir / f"admin{i}.log")
            svc.on_spawn = self.on_spawn
            self.admins.append(svc)
            svc.start()
        self.watcher = Service("guard watcher", [sys.executable, "-m", "ruleadmin.cli", "guard-watcher", "--interval",
                                                 "1", "--namespace", NAMESPACE], self.admin_env(), "",
                               self.dir / "guard-watcher.log", on_spawn=self.on_spawn)
        self.watcher.start()
        gateway_user, gateway_password = self.acl.gateway(NAMESPACE)
        pw_file = write_private(self.dir / "gateway.password", gateway_password)
        self.agent = Service("gateway-agent", [
            sys.executable, "-m", "gateway_agent", "serve", "--redis-nodes", self.nodes, "--namespace", NAMESPACE,
            "--listen", f"127.0.0.1:{self.agent_port}", "--snapshot", str(self.dir / "agent.snap"),
            "--refresh-interval", str(self.refresh_interval), "--heartbeat-interval", "1",
            "--gateway-id", "agent-demo", "--redis-username", gateway_user, "--redis-password-file", str(pw_file),
            "--upstreams", ",".join(BACKENDS)],
            dict(os.environ), f"http://127.0.0.1:{self.agent_port}", self.dir / "agent.log", on_spawn=self.on_spawn)
        self.agent.start()
        self._start_nginx()
        for svc in self.admins + [self.agent]:
            svc.wait_healthy()
        if self.watcher.proc is not None and self.watcher.proc.poll() is not None:
            raise LauncherError(f"the guard watcher exited with {self.watcher.proc.returncode}; see {self.watcher.log}")
        self.token = self._make_token()
        self.endpoints().save(self.dir)

    def _ruleadmin_cli(self, *args: str, stdin: str | None = None) -> str:
        """Run `ruleadmin <args>` against the cluster; return its stdout; raise LauncherError when it fails."""
        res = subprocess.run([sys.executable, "-m", "ruleadmin.cli", *args], input=stdin, env=self.admin_env(),
                             capture_output=True, text=True, check=False)
        if res.returncode != 0:
            tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-3:])
            raise LauncherError(f"ruleadmin {args[0]} failed (exit {res.returncode}): {tail}")
        return res.stdout

    def _seed(self, progress: Callable[[str], object]) -> None:
        self._ruleadmin_cli("create-user", "--username", ADMIN_LOGIN, "--role", "admin", "--password-stdin",
                            stdin=self.admin_password + "\n")
        rev = seed_rules(self.cluster.startup_nodes, ADMIN_USER, self.acl.admin_password)
        progress(f"seeded the sample rules into namespace {NAMESPACE!r} (revision {rev})")

    def _make_token(self) -> str:
        return self._ruleadmin_cli("create-token", "--username", ADMIN_LOGIN, "--name", "demo").strip().splitlines()[-1]

    def credentials(self) -> list[tuple[str, str, str]]:
        """Return (who, secret, what it is for) for every credential this System created."""
        gateway_user, gateway_password = self.acl.gateway(NAMESPACE)
        return [
            (f"ruleadmin login {ADMIN_LOGIN}", self.admin_password, "web UI of both instances, role admin"),
            ("API token", self.token, f"Authorization: Bearer <token>, acts as {ADMIN_LOGIN}"),
            (f"Redis user {OPS_USER}", self.acl.ops_password, "launcher and replication, every command"),
            (f"Redis user {ADMIN_USER}", self.acl.admin_password, "ruleadmin, rg:/{rg: keys only"),
            (f"Redis user {gateway_user}", gateway_password, f"agent and nginx, namespace {NAMESPACE} only"),
        ]

    def _start_nginx(self) -> None:
        gateway_user, gateway_password = self.acl.gateway(NAMESPACE)
        opts = {"namespace": NAMESPACE, "startup_nodes": self.cluster.startup_nodes, "username": gateway_user,
                "password": gateway_password, "refresh_interval": self.refresh_interval,
                "max_stale": 30, "snapshot_path": str(self.dir / "nginx.snap"), "default_upstream": "stable",
                "gateway_id": "nginx-demo", "response_headers": True, "heartbeat_interval": 1}
        upstreams = "\n".join(upstream_blocks([name], port) for name, port in self.backend_ports.items())
        http = gateway_http(upstreams, rulegate_location("stable", outcomes=True),
                            include="include {prefix}/lua/conf/rulegate.conf;",
                            extra=backend_servers(self.backend_ports, self.fault_port))
        self.nginx = NginxLauncher(http, port=self.nginx_port, prefix=self.dir / "nginx", workers=2,
                                   log_level="warn", package_path=False, new_session=True, on_spawn=self.on_spawn,
                                   files={"conf/rulegate.json": json.dumps(include_options(opts, upstreams))})
        self.nginx.start()

    def endpoints(self) -> "DemoEndpoints":
        """Return what a client of the running demo needs (ports, namespace, the API token)."""
        return DemoEndpoints(NAMESPACE, self.nginx_port, self.agent_port, tuple(self.admin_ports), self.fault_port,
                             dict(self.backend_ports), self.token)

    def stop(self) -> None:
        """Stop everything this System started (nginx, agent, admins, cluster), each step even when an earlier
        one failed; idempotent. Raise the first failure afterwards."""
        steps = [self.nginx.stop] if self.nginx is not None else []
        # all services at once; gunicorn finishes booting its workers before it obeys SIGTERM: kill after 5 s
        services = [svc.proc for svc in [self.agent, self.watcher, *self.admins] if svc and svc.proc is not None]
        steps.append(partial(stop_child_groups, services, timeout=5.0))
        steps.append(self.cluster.stop)
        errors: list[Exception] = []
        for step in steps:
            try:
                step()
            except (OSError, subprocess.SubprocessError, LauncherError) as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> "System":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free(base: int, count: int) -> bool:
    return all(port_is_free(base + i) and port_is_free(base + i + BUS_OFFSET) for i in range(count))

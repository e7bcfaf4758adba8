"""The whole system on loopback: ACL'd Redis Cluster, two ruleadmin instances, agent sidecar, nginx."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

from .acl import ADMIN_USER, AclUsers
from .cluster import LocalCluster, port_is_free
from .gateway_conf import gateway_http, rulegate_location, upstream_blocks
from .nginx import NginxLauncher, free_port
from .private_files import private_dir, write_private
from .sample_rules import NAMESPACE, seed_rules
from .service import Service, ruleadmin_service

ADMIN_LOGIN = "admin"


class System:
    """Starts and stops every process of a rulegate deployment on 127.0.0.1.

    Its directory is 0700 and every file holding a secret in it is 0600; the gateways (agent
    and nginx) use the gateway user of the demo namespace."""

    def __init__(self, data_dir: str | os.PathLike, *, fixed_ports: bool = False, refresh_interval: float = 1.0):
        self.dir = private_dir(data_dir)
        self.acl = AclUsers.for_namespaces(NAMESPACE)
        self.cluster = LocalCluster(self.dir / "cluster", 7000 if fixed_ports and _free(7000, 6) else None,
                                    acl=self.acl, extra_config={"save": "3600 1", "appendonly": "no"})
        pick = (lambda p: p if fixed_ports and _free(p, 1) else free_port())
        self.admin_ports = [pick(8081), pick(8082)]
        self.agent_port = pick(9901)
        self.nginx_port = pick(8080)
        self.admin_password = secrets.token_urlsafe(12)
        self.secret_key = secrets.token_hex(32)
        self.refresh_interval = refresh_interval
        self.admins: list[Service] = []
        self.agent: Service | None = None
        self.nginx: NginxLauncher | None = None
        self.token = ""

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

    def start(self, progress=print) -> "System":
        progress(f"starting a 6-node Redis Cluster with ACL users in {self.dir / 'cluster'} ...")
        self.cluster.start()
        self._seed(progress)
        for i, port in enumerate(self.admin_ports, 1):
            svc = ruleadmin_service(f"ruleadmin #{i}", port, self.admin_env(), self.dir / f"admin{i}.log")
            svc.start()
            self.admins.append(svc)
        gateway_user, gateway_password = self.acl.gateway(NAMESPACE)
        pw_file = write_private(self.dir / "gateway.password", gateway_password)
        self.agent = Service("gateway-agent", [
            sys.executable, "-m", "gateway_agent", "serve", "--redis-nodes", self.nodes, "--namespace", NAMESPACE,
            "--listen", f"127.0.0.1:{self.agent_port}", "--snapshot", str(self.dir / "agent.snap"),
            "--refresh-interval", str(self.refresh_interval), "--heartbeat-interval", "1",
            "--gateway-id", "agent-demo", "--redis-username", gateway_user, "--redis-password-file", str(pw_file)],
            dict(os.environ), f"http://127.0.0.1:{self.agent_port}", self.dir / "agent.log")
        self.agent.start()
        self._start_nginx()
        for svc in self.admins + [self.agent]:
            svc.wait_healthy()
        self.token = self._make_token()
        return self

    def _seed(self, progress) -> None:
        env = self.admin_env()
        cli = [sys.executable, "-m", "ruleadmin.cli"]
        subprocess.run(cli + ["create-user", "--username", ADMIN_LOGIN, "--role", "admin", "--password-stdin"],
                       input=self.admin_password + "\n", env=env, check=True, capture_output=True, text=True)
        rev = seed_rules(self.cluster.startup_nodes, ADMIN_USER, self.acl.admin_password)
        progress(f"seeded the sample rules into namespace {NAMESPACE!r} (revision {rev})")

    def _make_token(self) -> str:
        out = subprocess.run([sys.executable, "-m", "ruleadmin.cli", "create-token", "--username", ADMIN_LOGIN,
                              "--name", "demo"], env=self.admin_env(), check=True, capture_output=True, text=True)
        return out.stdout.strip().splitlines()[-1]

    def _start_nginx(self) -> None:
        stable, canary = free_port(), free_port()
        gateway_user, gateway_password = self.acl.gateway(NAMESPACE)
        opts = {"namespace": NAMESPACE, "startup_nodes": self.cluster.startup_nodes, "username": gateway_user,
                "password": gateway_password, "refresh_interval": self.refresh_interval,
                "max_stale": 30, "snapshot_path": str(self.dir / "nginx.snap"), "default_upstream": "stable",
                "gateway_id": "nginx-demo", "response_headers": True, "heartbeat_interval": 1}
        backends = "\n".join(f"""    server {{{{
        listen 127.0.0.1:{port};
        location / {{{{ default_type text/plain; return 200 "{name}\\n"; }}}}
    }}}}""" for name, port in (("stable", stable), ("canary", canary)))
        upstreams = upstream_blocks(["stable"], stable) + "\n" + upstream_blocks(["canary"], canary)
        http = gateway_http(upstreams, rulegate_location("stable"), include="include {prefix}/lua/conf/rulegate.conf;",
                            extra=backends)
        self.nginx = NginxLauncher(http, port=self.nginx_port, prefix=self.dir / "nginx", workers=2,
                                   log_level="warn", package_path=False,
                                   files={"conf/rulegate.json": json.dumps(opts)})
        self.nginx.start()

    def stop(self) -> None:
        """Stop everything this System started (nginx, agent, admins, cluster)."""
        if self.nginx is not None:
            self.nginx.stop()
        for svc in ([self.agent] if self.agent else []) + self.admins:
            svc.stop()
        self.cluster.stop()

    def __enter__(self) -> "System":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free(base: int, count: int) -> bool:
    return all(port_is_free(base + i) and port_is_free(base + i + 10000) for i in range(count))

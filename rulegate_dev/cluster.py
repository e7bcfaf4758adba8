"""Local 6-node Redis Cluster (3 masters + 3 replicas) on loopback, for tests, demo and dev."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import redis

from .acl import OPS_USER, AclUsers
from .errors import LauncherError
from .ports import find_free_base, port_is_free
from .private_files import private_dir, write_private
from .processes import ProcessRecord

if TYPE_CHECKING:  # rulegate_dev.tls needs cryptography (a test dependency)
    from .tls import TlsFiles

log = logging.getLogger("rulegate.dev.cluster")

SLOT_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))
__all__ = ["LauncherError", "LocalCluster", "Node", "find_free_base", "load_state", "port_is_free"]


@dataclass
class Node:
    """One redis-server process started by the launcher."""

    port: int
    dir: Path
    pid: int | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class LocalCluster:
    """Starts, inspects, faults and stops a real Redis Cluster made of child processes."""

    def __init__(self, data_dir: str | os.PathLike, base_port: int | None = None, *, masters: int = 3,
                 node_timeout_ms: int = 1000, extra_config: dict[str, str] | None = None,
                 password: str | None = None, username: str | None = None, acl: "AclUsers | None" = None,
                 tls: "TlsFiles | None" = None, on_spawn: Callable[[str, int], None] | None = None):
        self.on_spawn = on_spawn  # called with (name, pid) right after each redis-server starts
        self.data_dir = Path(data_dir)
        self.base_port = base_port if base_port is not None else find_free_base(masters * 2)
        self.masters = masters
        self.node_timeout_ms = node_timeout_ms
        self.extra_config = dict(extra_config or {})
        self.username = username
        self.password = password
        self.acl = acl
        self.tls = tls  # with TLS the nodes speak only TLS: clients, cluster bus and replication
        if acl is not None:
            self.username, self.password = OPS_USER, acl.ops_password
        self.nodes = [Node(self.base_port + i, self.data_dir / str(self.base_port + i)) for i in range(masters * 2)]

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def startup_nodes(self) -> list[str]:
        """Return the "host:port" of every node."""
        return [n.address for n in self.nodes]

    def start(self, timeout: float = 30.0) -> "LocalCluster":
        """Start every node, form the cluster if new, wait until it is ready; return self.

        On any failure (or interrupt) the nodes already started are stopped before the error propagates."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise LauncherError("redis-server not found on PATH; install it: apt-get install -y redis-server")
        for node in self.nodes:
            for port in (node.port, node.port + 10000):
                if not port_is_free(port):
                    raise LauncherError(f"port {port} on 127.0.0.1 is taken; choose another --base-port")
        private_dir(self.data_dir)
        fresh = not (self.nodes[0].dir / "nodes.conf").exists()
        try:
            for node in self.nodes:
                self.start_node(node, wait=False)
            for node in self.nodes:
                self._wait_ping(node, timeout)
            if fresh:
                self._form()
            self.wait_ready(timeout)
            self._write_state()
        except BaseException:
            self.stop()
            raise
        return self

    def _config(self, node: Node) -> str:
        conf = {
            "port": str(node.port), "bind": "127.0.0.1", "protected-mode": "no", "daemonize": "no",
            "dir": str(node.dir), "logfile": str(node.dir / "redis.log"), "pidfile": str(node.dir / "redis.pid"),
            "cluster-enabled": "yes", "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": str(self.node_timeout_ms),
            "cluster-require-full-coverage": "no", "cluster-allow-reads-when-down": "yes",
            "cluster-replica-validity-factor": "0",
            "repl-diskless-sync": "yes", "repl-diskless-sync-delay": "0", "repl-ping-replica-period": "1",
            "appendonly": "no", "save": '""', "loglevel": "warning",
        }
        if self.tls is not None:
            conf.update({
                "port": "0", "tls-port": str(node.port), "tls-cluster": "yes", "tls-replication": "yes",
                "tls-cert-file": str(self.tls.cert), "tls-key-file": str(self.tls.key),
                "tls-ca-cert-file": str(self.tls.ca_cert), "tls-auth-clients": "optional",
            })
        conf.update(self.extra_config)
        users = ""
        if self.acl is not None:
            acl_conf = self.acl.config_lines()
            users = "".join(f"user {line}\n" for line in acl_conf.pop("__users__").splitlines())
            conf.update(acl_conf)
        return "".join(f"{k} {v}\n" for k, v in conf.items()) + users

    def start_node(self, node: Node, wait: bool = True) -> None:
        """(Re)start one node's redis-server with its existing data dir (0700; redis.conf 0600: it holds passwords)."""
        private_dir(node.dir)
        write_private(node.dir / "redis.conf", self._config(node))
        node.proc = subprocess.Popen(["redis-server", str(node.dir / "redis.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        node.pid = node.proc.pid
        if self.on_spawn is not None:
            self.on_spawn(f"redis-server {node.port}", node.pid)
        if wait:
            self._wait_ping(node, 15.0)

    def client(self, node: Node, timeout: float = 2.0) -> redis.Redis:
        """Return a plain client for one node (admin credentials and TLS when configured)."""
        tls = {} if self.tls is None else {"ssl": True, "ssl_ca_certs": str(self.tls.ca_cert)}
        return redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=timeout,
                           socket_connect_timeout=timeout, username=self.username,
                           password=self.password, decode_responses=True, **tls)

    def _wait_ping(self, node: Node, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if node.proc is not None and node.proc.poll() is not None:
                tail = _tail(node.dir / "redis.log")
                raise LauncherError(f"redis-server on port {node.port} exited: {tail}")
            try:
                with self.client(node, 0.5) as c:
                    c.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise LauncherError(f"redis-server on port {node.port} did not answer") from None
                time.sleep(0.05)

    def _form(self) -> None:
        first = self.nodes[0]
        for node in self.nodes[1:]:
            with self.client(node) as c:
                c.execute_command("CLUSTER", "MEET", "127.0.0.1", first.port)
        for (lo, hi), node in zip(SLOT_RANGES if self.masters == 3 else _ranges(self.masters), self.nodes):
            with self.client(node) as c:
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
        ids = [self._node_id(n) for n in self.nodes]
        for i, replica in enumerate(self.nodes[self.masters:]):
            deadline = time.monotonic() + 15
            while True:
                try:
                    with self.client(replica) as c:
                        c.execute_command("CLUSTER", "REPLICATE", ids[i])
                    break
                except redis.ResponseError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def _node_id(self, node: Node) -> str:
        with self.client(node) as c:
            return c.execute_command("CLUSTER", "MYID")

    def wait_ready(self, timeout: float = 30.0, skip: tuple[Node, ...] = ()) -> None:
        """Wait until every live node says cluster_state:ok, every replica's link is up and,
        with no node skipped, every node's CLUSTER SLOTS lists a replica for each range."""
        deadline = time.monotonic() + timeout
        while True:
            problem = self._readiness_problem(skip)
            if problem is None:
                return
            if time.monotonic() > deadline:
                raise LauncherError(f"cluster not ready after {timeout:.0f}s: {problem}")
            time.sleep(0.1)

    def _readiness_problem(self, skip: tuple[Node, ...]) -> str | None:
        masters = 0
        for node in self.nodes:
            if node in skip:
                continue
            try:
                with self.client(node, 0.5) as c:
                    info = c.execute_command("CLUSTER", "INFO")
                    if "cluster_state:ok" not in info or "cluster_slots_assigned:16384" not in info:
                        return f"{node.address} cluster_state not ok or slots unassigned"
                    repl = c.info("replication")
                    if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                        return f"{node.address} replica link not up"
                    slots = c.execute_command("CLUSTER", "SLOTS")
                    if repl.get("role") == "master" and any(int(e[2][1]) == node.port for e in slots):
                        masters += 1
                    # with every node up, each node's slot map must list a replica for
                    # every range (replica reads and WAIT must not race the gossip)
                    if not skip and any(len(e) < 4 for e in slots):
                        return f"{node.address} does not list a replica for every slot range yet"
            except redis.RedisError as exc:
                return f"{node.address} unreachable ({exc.__class__.__name__})"
        return None if masters >= 1 else "no master owns slots"

    def _write_state(self) -> None:
        state = {"base_port": self.base_port, "masters": self.masters,
                 "nodes": [_node_state(n) for n in self.nodes],
                 "acl": vars(self.acl) if self.acl else None}
        write_private(self.data_dir / "cluster.json", json.dumps(state, indent=1))

    def stop(self) -> None:
        """Stop every node this launcher started (SIGCONT first, then SIGTERM, then SIGKILL)."""
        for node in self.nodes:
            self.stop_node(node)

    def stop_node(self, node: Node, sig: int = signal.SIGTERM) -> None:
        """Stop one node by pid and wait for it to exit."""
        if node.pid is None:
            return
        _signal(node.pid, signal.SIGCONT)
        _signal(node.pid, sig)
        _wait_exit(node)
        node.pid, node.proc = None, None

    def kill(self, node: Node) -> None:
        """SIGKILL one node (no shutdown save, like a crash)."""
        self.stop_node(node, signal.SIGKILL)

    def pause(self, node: Node) -> None:
        """SIGSTOP one node: it keeps its sockets but answers nothing."""
        _signal(node.pid, signal.SIGSTOP)

    def resume(self, node: Node) -> None:
        """SIGCONT a paused node."""
        _signal(node.pid, signal.SIGCONT)

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- topology --------------------------------------------------------------------------
    def live_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.pid is not None]

    def slot_owner(self, slot: int) -> Node:
        """Return the node that currently serves `slot` as master."""
        for node in self.live_nodes():
            try:
                with self.client(node, 0.5) as c:
                    for lo, hi, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
                        if lo <= slot <= hi:
                            return self.node_at(int(master[1]))
            except redis.RedisError:
                continue
        raise LauncherError(f"no live node knows the owner of slot {slot}")

    def node_at(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def role_of(self, node: Node) -> str:
        with self.client(node, 0.5) as c:
            return c.info("replication")["role"]

    def replicas_of(self, master: Node) -> list[Node]:
        """Return the live nodes replicating `master`."""
        out = []
        for node in self.live_nodes():
            if node is master:
                continue
            try:
                with self.client(node, 0.5) as c:
                    repl = c.info("replication")
            except redis.RedisError:
                continue
            if repl.get("role") == "slave" and int(repl.get("master_port", 0)) == master.port:
                out.append(node)
        return out

    def wait_failover(self, slot: int, old: Node, timeout: float = 20.0) -> Node:
        """Wait until a node other than `old` serves `slot` as master; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                owner = self.slot_owner(slot)
                if owner is not old and self.role_of(owner) == "master":
                    return owner
            except (LauncherError, redis.RedisError):
                pass
            time.sleep(0.1)
        raise LauncherError(f"no failover of slot {slot} within {timeout}s")


def _node_state(node: Node) -> dict:
    rec = ProcessRecord.capture(f"redis-server {node.port}", node.pid) if node.pid else None
    return {"port": node.port, "pid": node.pid, "process": rec.to_json() if rec else None}


def _still_ours(saved: dict) -> int | None:
    """Return the saved node's pid while it is still the recorded redis-server, else None."""
    if not saved.get("pid"):
        return None
    if saved.get("process"):
        return saved["pid"] if ProcessRecord.from_json(saved["process"]).running() else None
    try:  # a state file written before processes were recorded: check at least the command
        return saved["pid"] if b"redis-server" in Path(f"/proc/{saved['pid']}/cmdline").read_bytes() else None
    except OSError:
        return None


def _ranges(masters: int) -> list[tuple[int, int]]:
    size = 16384 // masters
    return [(i * size, 16383 if i == masters - 1 else (i + 1) * size - 1) for i in range(masters)]


def _signal(pid: int | None, sig: int) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_exit(node: Node, timeout: float = 10.0) -> None:
    if node.proc is not None:
        try:
            node.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(5)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(node.pid, os.WNOHANG)[0] == node.pid:
                return  # our own child (started by this process), now reaped
        except ChildProcessError:
            pass
        try:
            os.kill(node.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    _signal(node.pid, signal.SIGKILL)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def load_state(data_dir: str | os.PathLike) -> LocalCluster:
    """Return a LocalCluster bound to the processes recorded in data_dir/cluster.json; a recorded pid that is
    no longer the recorded redis-server (exited, pid reused) is dropped, so stop() never signals it."""
    path = Path(data_dir) / "cluster.json"
    if not path.exists():
        raise LauncherError(f"no cluster recorded in {data_dir} (run: rulegate-dev cluster up)")
    state = json.loads(path.read_text())
    acl = AclUsers(**state["acl"]) if state.get("acl") else None
    cluster = LocalCluster(data_dir, state["base_port"], masters=state["masters"], acl=acl)
    for node, saved in zip(cluster.nodes, state["nodes"]):
        node.pid = _still_ours(saved)
    return cluster


def env_or_local_cluster(env_var: str, data_dir: Path) -> tuple[str, LocalCluster | None]:
    """Return (comma-separated nodes, None) from env_var when set, else start a LocalCluster in data_dir
    and return (its nodes, it) — the caller stops it."""
    nodes = os.environ.get(env_var)
    if nodes:
        return nodes, None
    cluster = LocalCluster(data_dir)
    cluster.start()
    return ",".join(cluster.startup_nodes), cluster

"""Rule writes/second through the REST API with 1 and 2 ruleadmin instances and 8 concurrent clients.

Scenarios: each client on its own namespace; all clients on one namespace, each editing its own rule,
conditioned on the namespace revision (If-Match: "<rev>": other clients' writes make it stale, 412s);
and the same with the rule's own ETag (If-Match: "r-<sha1>": only a change of that rule is a conflict).
Every client remembers the last value it wrote with a 2xx; at the end each rule is read back and
"lost" counts rules whose stored value is not that last acknowledged write.

Starts a throwaway 6-node Redis Cluster (or uses RULEADMIN_REDIS_NODES), gunicorn instances with
gevent workers, and prints a table. Latency is per acknowledged write and includes the WAIT for
one replica. CPU is utime+stime from /proc of the ruleadmin processes (gunicorn master and workers)
and of the cluster's redis-servers (only when the bench started the cluster), per HTTP request the
clients sent in the row (2xx, 412 and the GETs after a 428). With --baseline PATH (another checkout,
e.g. a `git worktree` of the commit before a change) each row runs against that tree's ruleadmin
and this one's, alternately, in the same run. Not an assertion: numbers depend on the machine.

    python bench/admin_write.py [--seconds 5] [--clients 8] [--workers 2] [--baseline PATH]
    python bench/admin_write.py --sequential 2000 [--rounds 5] [--workers 1] [--baseline PATH]

(--sequential: no tables; one client's PUTs in a row to one instance of each tree, ruleadmin CPU per PUT.)
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ruleadmin import create_app  # noqa: E402
from ruleadmin.config import redis_config  # noqa: E402
from rulegate.connection import RedisConfig  # noqa: E402
from rulegate.errors import AlreadyExistsError, ConflictError  # noqa: E402
from rulegate.schema import encode_rule, validate_rule  # noqa: E402
from rulegate.store import RuleStore, rule_hash  # noqa: E402
from rulegate_dev.cluster import env_or_local_cluster  # noqa: E402
from rulegate_dev.nginx import free_port  # noqa: E402
from rulegate_dev.private_files import scratch_dir
from rulegate_dev.service import Service, ruleadmin_service  # noqa: E402
from tests.admin.conftest import server_env  # noqa: E402


def rule(rule_id: str, weight: int) -> dict:
    return {"id": rule_id, "kind": "split", "route": {"host": "bench.example.com", "path": f"/{rule_id}"},
            "key": {"source": "header", "name": "x-uid"}, "default": "stable",
            "policies": [{"type": "percent", "buckets": [{"upstream": "canary", "weight": weight}]}]}


class Connection:
    """One keep-alive HTTP/1.1 connection to a ruleadmin (http.client: a quarter of requests' client CPU per
    call, which shares the 2 CPUs with the servers); reconnects once when the server closed it."""

    def __init__(self, base: str):
        self.netloc = urlsplit(base).netloc
        self.conn = http.client.HTTPConnection(self.netloc, timeout=10)

    def call(self, method: str, path: str, headers: dict[str, str], body: dict | None = None) -> tuple[int, dict, bytes]:
        """Return (status, headers, body) of one request."""
        data = None if body is None else json.dumps(body).encode()
        hdrs = headers if body is None else {**headers, "Content-Type": "application/json"}
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                return resp.status, dict(resp.getheaders()), resp.read()
            except (http.client.RemoteDisconnected, ConnectionError, http.client.CannotSendRequest):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.netloc, timeout=10)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def client_loop(urls: list[str], namespace: str, rule_id: str, token: str, stop: float, per_rule: bool,
                out: dict, idx: int) -> None:
    """Write one rule in a loop with If-Match (the namespace revision, or with per_rule the rule's ETag),
    taking the current one from a 412; record latencies, refusals, errors and the last acknowledged weight."""
    conn = Connection(urls[idx % len(urls)])
    sent = 0
    h = {"Authorization": f"Bearer {token}"}
    path = f"/api/v1/namespaces/{namespace}/rules/{rule_id}"
    tag = None  # what goes into If-Match: '"<rev>"' or '"r-<sha1>"'; None: create
    n = 0
    while time.monotonic() < stop:
        n += 1
        weight = 1 + n % 9000
        headers = dict(h) if tag is None else {**h, "If-Match": tag}
        t0 = time.perf_counter()
        status, got, body = conn.call("PUT", path, headers, rule(rule_id, weight))
        dt = time.perf_counter() - t0
        sent += 1
        if status in (200, 201):
            out["latencies"].append(dt)
            out["last"][rule_id] = weight
            answer = json.loads(body)
            tag = answer["etag"] if per_rule else f'"{answer["revision"]}"'
        elif status in (412, 428):  # 428: the rule exists (an earlier row wrote it): read its tag
            out["conflicts"].extend([1] if status == 412 else [])
            if status == 412 and "ETag" in got:
                tag = got["ETag"]
            else:
                _status, got, body = conn.call("GET", path, h)
                sent += 1
                tag = got["ETag"] if per_rule else f'"{json.loads(body)["revision"]}"'
        else:
            out["errors"].append(status)
    out["requests"].append(sent)


def lost_updates(url: str, token: str, namespace: str, last: dict[str, int]) -> int:
    """Return how many rules do not hold their writer's last acknowledged weight."""
    h = {"Authorization": f"Bearer {token}"}
    rules = requests.get(f"{url}/api/v1/namespaces/{namespace}/rules", headers=h, timeout=10).json()["rules"]
    stored = {r["id"]: r["policies"][0]["buckets"][0]["weight"] for r in rules}
    return sum(stored.get(rule_id) != weight for rule_id, weight in last.items())


def process_cpu(pid: int) -> float:
    """Return the CPU seconds (utime + stime) of a live process, 0.0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """Return the CPU seconds of pid and its live descendants (a gunicorn master and its workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        children = []
    return process_cpu(pid) + sum(tree_cpu(c) for c in children)


def cpu_now(servers: list[Service], redis_pids: list[int]) -> tuple[float, float]:
    """Return (CPU seconds of the ruleadmin process trees, of the redis-servers) so far."""
    return (sum(tree_cpu(s.proc.pid) for s in servers if s.proc is not None),
            sum(process_cpu(pid) for pid in redis_pids))


def run(urls: list[str], token: str, namespaces: list[str], clients: int, seconds: float, per_rule: bool,
        servers: list[Service] = (), redis_pids: list[int] = ()) -> dict:
    out: dict = {"latencies": [], "conflicts": [], "errors": [], "last": {}, "requests": []}
    admin0, redis0 = cpu_now(list(servers), list(redis_pids))
    client0 = time.process_time()
    stop = time.monotonic() + seconds
    threads = [threading.Thread(target=client_loop, args=(urls, namespaces[i % len(namespaces)], f"r{i}", token,
                                                          stop, per_rule, out, i))
               for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    admin1, redis1 = cpu_now(list(servers), list(redis_pids))
    client_cpu = time.process_time() - client0
    sent = max(sum(out["requests"]), 1)
    lost = sum(lost_updates(urls[0], token, ns, {f"r{i}": out["last"][f"r{i}"] for i in range(clients)
                                                  if namespaces[i % len(namespaces)] == ns and f"r{i}" in out["last"]})
               for ns in set(namespaces))
    lat = sorted(out["latencies"])
    pct = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000) if lat else (lambda p: float("nan"))
    return {"writes_s": len(lat) / elapsed, "p50": pct(0.50), "p99": pct(0.99), "conflicts": len(out["conflicts"]),
            "errors": len(out["errors"]), "lost": lost, "mean": statistics.fmean(lat) * 1000 if lat else float("nan"),
            "requests": sent, "admin_ms": (admin1 - admin0) * 1000 / sent,
            "redis_ms": (redis1 - redis0) * 1000 / sent if redis_pids else float("nan"),
            "client_ms": client_cpu * 1000 / sent}


def _store_tag(store: RuleStore, namespace: str, rule_id: str, per_rule: bool) -> int | str | None:
    """Return what a store write is conditioned on: the rule's hash (None: absent) or the namespace revision."""
    if not per_rule:
        return store.revision(namespace)
    current = store.load_raw(namespace).raw.get(rule_id)
    return rule_hash(current) if current else None


def store_loop(store: RuleStore, namespace: str, rule_id: str, stop: float, per_rule: bool, out: dict) -> None:
    """The client loop on the store itself (no HTTP): revision or rule-hash conditioned writes of one rule."""
    tag = _store_tag(store, namespace, rule_id, per_rule)
    n = 0
    while time.monotonic() < stop:
        n += 1
        body = validate_rule(rule(rule_id, 1 + n % 9000))
        try:
            if per_rule:
                store.put_rule(namespace, body, None, "bench", expected_hash=tag, create_only=tag is None)
                tag = rule_hash(encode_rule(body))
            else:
                tag = store.put_rule(namespace, body, tag, "bench").revision
        except (ConflictError, AlreadyExistsError):
            out["conflicts"].append(1)
            tag = _store_tag(store, namespace, rule_id, per_rule)
            continue
        out["latencies"].append(0.0)
        out["last"][rule_id] = 1 + n % 9000


def store_run(cfg: RedisConfig, namespaces: list[str], clients: int, seconds: float, per_rule: bool) -> dict:
    """Return writes/s, refusals and lost updates of `clients` threads writing through RuleStore directly."""
    out: dict = {"latencies": [], "conflicts": [], "errors": [], "last": {}}
    stores = [RuleStore.from_config(cfg, wait_replicas=1, wait_timeout_ms=1000) for _ in range(clients)]
    stop = time.monotonic() + seconds
    threads = [threading.Thread(target=store_loop, args=(stores[i], namespaces[i % len(namespaces)], f"r{i}", stop,
                                                         per_rule, out)) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    lost = 0
    for i, rule_id in enumerate(f"r{i}" for i in range(clients)):
        if rule_id in out["last"]:
            stored = stores[0].load(namespaces[i % len(namespaces)]).rules.get(rule_id)
            lost += stored is None or stored["policies"][0]["buckets"][0]["weight"] != out["last"][rule_id]
    for store in stores:
        store.close()
    return {"writes_s": len(out["latencies"]) / elapsed, "conflicts": len(out["conflicts"]), "lost": lost}


def scenarios(own: list[str], shared: str) -> list[tuple[str, list[str], bool]]:
    """Return (label, namespaces, per-rule If-Match) for each row."""
    return [("own namespace each", own, False), ("one namespace, If-Match revision", [shared], False),
            ("one namespace, If-Match rule ETag", [shared], True)]


def start_instance(tree: Path, index: int, config: dict, tmp: Path, workers: int) -> Service:
    """Start (and wait for) one `ruleadmin serve` running the code of tree; return it."""
    port = free_port()
    env = {**server_env(config), "PYTHONPATH": str(tree)}
    service = ruleadmin_service(f"ruleadmin {tree.name} #{index}", port, env, tmp / f"ruleadmin-{port}.log",
                                workers=workers)
    here = os.getcwd()
    os.chdir(tree)  # `python -m` puts the working directory first on sys.path: the tree's packages win
    try:
        service.start()
    finally:
        os.chdir(here)
    service.wait_healthy()
    return service


def print_rows(rows: list, args: argparse.Namespace, trees: list[Path]) -> None:
    """Print the REST table (one row per instance count, scenario and tree)."""
    print(f"\nruleadmin REST writes: {args.clients} concurrent clients, {args.seconds:.0f}s per row, "
          f"{args.workers} gevent workers per instance, WAIT 1 replica")
    print("CPU ms/req: utime+stime per HTTP request of the ruleadmin processes (admin), the redis-servers (redis) "
          "and this process's clients (client)\n")
    tree_w = max(len(t.name) for t in trees) if len(trees) > 1 else 0
    head = f"{'instances':>9} | {'scenario':<34} | " + (f"{'tree':<{tree_w}} | " if tree_w else "")
    print(head + f"{'writes/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'412s':>6} | {'errors':>6} | {'lost':>4} | "
          f"{'admin':>6} | {'redis':>6} | {'client':>6}")
    widths = (9, 34) + ((tree_w,) if tree_w else ()) + (8, 7, 7, 6, 6, 4, 6, 6, 6)
    print("-+-".join("-" * w for w in widths))
    for count, label, tree, r in rows:
        print(f"{count:>9} | {label:<34} | " + (f"{tree.name:<{tree_w}} | " if tree_w else "")
              + f"{r['writes_s']:>8.0f} | {r['p50']:>7.1f} | {r['p99']:>7.1f} | {r['conflicts']:>6} | "
              f"{r['errors']:>6} | {r['lost']:>4} | {r['admin_ms']:>6.2f} | {r['redis_ms']:>6.2f} | "
              f"{r['client_ms']:>6.2f}")


def sequential_cpu(trees: list[Path], config: dict, tmp: Path, token: str, namespace: str, puts: int,
                   rounds: int, workers: int) -> None:
    """Print the ruleadmin CPU (master + workers, /proc) per PUT of one client sending `puts` rule-ETag PUTs in
    a row to one instance of each tree, the trees taking turns for `rounds` rounds (CPU time, not wall time:
    steadier than the throughput rows on a shared machine)."""
    servers = {tree: start_instance(tree, 1, config, tmp, workers) for tree in trees}
    results: dict[Path, list[float]] = {tree: [] for tree in trees}
    try:
        for r in range(rounds):
            for tree in (trees if r % 2 == 0 else trees[::-1]):
                server = servers[tree]
                conn = Connection(server.url)
                h = {"Authorization": f"Bearer {token}"}
                path = f"/api/v1/namespaces/{namespace}/rules/seq-{tree.name}"
                status, got, _body = conn.call("GET", path, h)
                tag = got["ETag"] if status == 200 else None
                for i in range(20):  # warm-up (and the create)
                    status, got, body = conn.call("PUT", path, h if tag is None else {**h, "If-Match": tag},
                                                  rule(f"seq-{tree.name}", 1 + i))
                    tag = json.loads(body)["etag"]
                cpu0 = tree_cpu(server.proc.pid)
                for i in range(puts):
                    status, got, body = conn.call("PUT", path, {**h, "If-Match": tag},
                                                  rule(f"seq-{tree.name}", 100 + (r * puts + i) % 9000))
                    if status != 200:
                        raise SystemExit(f"PUT answered {status}: {body[:300]!r}")
                    tag = json.loads(body)["etag"]
                results[tree].append((tree_cpu(server.proc.pid) - cpu0) * 1000 / puts)
                conn.conn.close()
    finally:
        for server in servers.values():
            server.stop()
    print(f"\nruleadmin CPU ms per PUT, one client, {puts} rule-ETag PUTs in a row per round, {workers} gevent "
          f"worker(s), trees alternating:\n")
    print(f"{'tree':<16} | {'median':>6} | rounds")
    print("-" * 16 + "-+-" + "-" * 6 + "-+-" + "-" * 40)
    for tree in trees:
        print(f"{tree.name:<16} | {statistics.median(results[tree]):>6.2f} | "
              + " ".join(f"{v:.2f}" for v in results[tree]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="gevent workers per instance")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout whose ruleadmin runs each row too (alternating with this one)")
    ap.add_argument("--sequential", type=int, default=0, metavar="PUTS",
                    help="instead of the tables: ruleadmin CPU per PUT of one client sending PUTS in a row")
    ap.add_argument("--rounds", type=int, default=5, help="with --sequential: rounds per tree")
    args = ap.parse_args()
    trees = ([args.baseline.resolve()] if args.baseline else []) + [ROOT]
    tmp = scratch_dir("rg-bench-")
    nodes, cluster = env_or_local_cluster("RULEADMIN_REDIS_NODES", tmp / "cluster")
    redis_pids = [n.pid for n in cluster.nodes if n.pid is not None] if cluster is not None else []
    config = {"SECRET_KEY": uuid.uuid4().hex, "REDIS_NODES": nodes, "REDIS_MODE": "cluster",
              "WAIT_REPLICAS": 1, "WAIT_TIMEOUT_MS": 1000}
    app = create_app(config)
    b = app.extensions["ruleadmin"]
    user = "bench-" + uuid.uuid4().hex[:6]
    b.accounts.create_user(user, "editor", uuid.uuid4().hex)
    token_id, token = b.accounts.create_token(user, "bench")
    shared = "bench-" + uuid.uuid4().hex[:6]
    own = [f"{shared}-{i}" for i in range(args.clients)]
    for ns in [shared, *own]:
        b.rules.create_namespace(ns)
    if args.sequential:
        try:
            sequential_cpu(trees, config, tmp, token, shared, args.sequential, args.rounds, args.workers)
        finally:
            b.accounts.revoke_token(token_id)
            b.accounts.delete_user(user)
            b.close()
            if cluster is not None:
                cluster.stop()
        return 0
    servers: dict[Path, list[Service]] = {tree: [] for tree in trees}
    rows = []
    direct = []
    try:
        direct_ns = "bench-" + uuid.uuid4().hex[:6]
        for label, namespaces, per_rule in scenarios([f"{direct_ns}-{i}" for i in range(args.clients)], direct_ns):
            direct.append((label, store_run(redis_config(app.config), namespaces, args.clients, args.seconds,
                                            per_rule)))
        for count in (1, 2):
            for tree in trees:
                while len(servers[tree]) < count:
                    servers[tree].append(start_instance(tree, len(servers[tree]) + 1, config, tmp, args.workers))
            for i, (label, namespaces, per_rule) in enumerate(scenarios(own, shared)):
                for tree in (trees if i % 2 == 0 else trees[::-1]):  # alternate which tree goes first
                    res = run([s.url for s in servers[tree]], token, namespaces, args.clients, args.seconds,
                              per_rule, servers[tree], redis_pids)
                    rows.append((count, label, tree, res))
    finally:
        for group in servers.values():
            for s in group:
                s.stop()
        b.accounts.revoke_token(token_id)
        b.accounts.delete_user(user)
        b.close()
        if cluster is not None:
            cluster.stop()
    rows.sort(key=lambda row: (row[0], [label for label, _n, _p in scenarios(own, shared)].index(row[1]),
                               trees.index(row[2])))
    print_rows(rows, args, trees)
    print("\nthe same scenarios through RuleStore in this process (no HTTP, no ruleadmin), one thread a client:\n")
    print(f"{'scenario':<34} | {'writes/s':>8} | {'412s':>6} | {'lost':>4}")
    print("-" * 34 + "-+-" + "-+-".join("-" * w for w in (8, 6, 4)))
    for label, r in direct:
        print(f"{label:<34} | {r['writes_s']:>8.0f} | {r['conflicts']:>6} | {r['lost']:>4}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What one rule change and one full reload cost a gateway (Python agent and nginx); prints a table.

    python bench/reload.py [--rules 1000,10000] [--changes 10] [--workers 1] [--nginx-only] [--lua DIR]

Starts a private 6-node cluster (rulegate_dev.LocalCluster), one sidecar child process and one
nginx (--workers workers, default 1) per size; all are stopped (by pid) at the end. Per size:

- Redis bytes read per gateway for a one-rule change: the slot master's `total_net_output_bytes`
  (Redis 7 counts no replication in it) around the gateway's sync, minus the same window without
  a gateway (the commit's own reply and the INFO calls).
- CPU per change: agent = thread CPU of `Syncer.sync_once()`; nginx = the worker's utime+stime
  (/proc) over `--changes` changes minus an idle window of the same length, per change.
- Full-reload CPU: agent = thread CPU of `Syncer.full_reload()` holding none of the bytes read (its
  compile cache emptied) and again holding all of them (what a new generation id costs); nginx = worker
  CPU around a forced full reload, minus the worker's own idle rate (each worker's: the syncing one's timers
  do more): every rule's bytes rewritten first (none of the served set reusable), and a new generation id
  with one rule's bytes new (the rest held). The window ends when every worker serves the new set: every
  20 ms, each other worker gets one request (as traffic would: a worker takes a new set on a request, or on
  its refresh tick, 15-30 s away here) and is asked for /rulegate/status (~0.1 ms of its CPU each); the
  syncing worker gets neither (with one worker, it answers the status polls). Before 2026-12-02 the bench
  polled the syncing worker every 250 ms until another worker's tick: a window of ~20 s whose polls and
  idle-rate error added ~25 ms to the syncing worker's rows (the no-full-reload row read 28.7 ms for
  ~1 ms of work). With several
  workers: the syncing worker's CPU, then the others' (they place what it published pending;
  bench/nginx_pending.py measures what that leaves to each route's first request). A worker's CPU counts
  all its threads: the syncing worker's event loop (its main thread) is also shown alone, without the
  thread pool where it has a full load's rules checked (`thread_pool rulegate`, lua/rulegate/rule_check.lua).
  Beside it, how long the workers' event loops (main threads, all workers summed) sat runnable but waiting for a
  CPU during the reload (schedstat's run-queue wait): what a request on a busy machine waits on top of the
  loop's own work.
- A new generation of exactly the same rules (same digest): taken without a full reload; CPU as above (the
  agent's also with the Redis bytes its check read).
- Request latency: sequential keep-alive requests (sidecar POST /v1/decide, nginx GET) for 2 s at
  rest and during a forced full reload (new generation id and one rule's bytes new, until every worker
  serves it; for the sidecar
  and nginx also with every rule's bytes rewritten first); max and p50. With several nginx workers the
  requests go round-robin over one keep-alive connection per worker.
  The reload's Redis writes run in a forked child, the rewritten bytes encoded before the window: in
  the sampling process they held the GIL and were counted as request latency (bench/REPORT.md).
- nginx event loop lag: the workers' probe (lua/rulegate/loop_lag.lua, here every millisecond) counts how late
  each worker's loop ran a timer; the latency windows run on a second nginx with that probe, the CPU rows on
  one without it (an idle worker pays ~30 ms a second for it, a busy one less: its idle rate would be
  subtracted from a reload's CPU wrongly); per latency window, the largest lag counted and the largest of those during
  which the worker itself ran (it held its loop: its own work, not the machine), as /rulegate/status's buckets.
- `--lua DIR` runs nginx with the Lua modules of DIR (another tree's lua/: before/after with one script).
- `--repeat N` measures each kind of full reload N times (nginx and the agent) and prints the medians of their CPU.
Numbers are for comparison, not assertions.
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
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

import rulegate_dev.nginx  # noqa: E402
from gateway_agent import RuleClient  # noqa: E402
from gateway_agent.compiled import CompileCache  # noqa: E402
from rulegate.connection import RedisConfig  # noqa: E402
from rulegate.digest import content_digest  # noqa: E402
from rulegate.keyspace import Keys  # noqa: E402
from rulegate.schema import encode_rule, validate_rule  # noqa: E402
from rulegate.store import RuleStore  # noqa: E402
from rulegate_dev.cluster import LocalCluster  # noqa: E402
from rulegate_dev.gateway_conf import gateway_http, rulegate_location, upstream_blocks  # noqa: E402
from rulegate_dev.nginx import NginxLauncher, free_port  # noqa: E402
from rulegate_dev.private_files import scratch_dir


def make_rule(i: int, upstream: str | None = None) -> dict:
    """Return a split rule; hosts and paths spread over 100 x 100 routes (as bench/agent.py)."""
    return validate_rule({
        "id": f"r{i:05d}", "kind": "split",
        "route": {"host": f"svc{i % 100}.example.com", "path": f"/api/v{i // 100}"},
        "key": {"source": "header", "name": "x-uid"},
        "policies": [{"type": "uid_suffix", "suffixes": ["1", "7"], "upstream": "canary"}],
        "default": upstream or "stable"})


def load_rules(store: RuleStore, ns: str, count: int) -> None:
    for lo in range(0, count, 500):
        changes = [(f"r{i:05d}", encode_rule(make_rule(i))) for i in range(lo, min(count, lo + 500))]
        store.commit(ns, changes, None, "bench", op="import")


class Master:
    """The slot master of a namespace, for INFO byte counters."""

    def __init__(self, cluster: LocalCluster, ns: str):
        rc = redis.RedisCluster.from_url(f"redis://{cluster.startup_nodes[0]}")
        node = rc.get_node_from_key(Keys(ns).rev)
        self.client = redis.Redis(host=node.host, port=node.port)
        rc.close()

    def out_bytes(self) -> int:
        return int(self.client.info("stats")["total_net_output_bytes"])

    def info_overhead(self) -> int:
        """Return the bytes one out_bytes() call itself adds (its INFO reply)."""
        samples = []
        for _ in range(3):
            a = self.out_bytes()
            samples.append(self.out_bytes() - a)
        return min(samples)


def change(store: RuleStore, ns: str, n: int) -> int:
    return store.put_rule(ns, make_rule(1, upstream="canary" if n % 2 else "stable"), None, "bench").revision


def worker_cpu(pid: int, main_only: bool = False) -> float:
    """Seconds of CPU process pid has run so far: the scheduler's nanosecond count of its threads
    (/proc/PID/task/*/schedstat; a thread that exited is no longer in it), or utime + stime in clock ticks
    (10 ms) on a kernel without schedstat. With `main_only`, its main thread's alone (an nginx worker's event
    loop, without its thread pool's threads)."""
    total, seen = 0, False
    try:
        tasks = [Path(f"/proc/{pid}/task/{pid}")] if main_only else list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        tasks = []
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
            seen = True
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    if seen:
        return total / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loop_wait(pid: int) -> float:
    """Seconds the main thread of process pid (an nginx worker's event loop) has spent runnable but waiting for a
    CPU (/proc/PID/task/PID/schedstat, second field); 0.0 on a kernel without schedstat."""
    try:
        return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return 0.0


def latencies(send, seconds: float, until=None) -> list[float]:
    """Return the latency of each sequential request over `seconds` (or until until() is true)."""
    out = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop or (until is not None and not until() and time.monotonic() < stop + 30):
        t = time.perf_counter()
        send()
        out.append(time.perf_counter() - t)
    return out


def during_reload(send, trigger, done) -> list[float]:
    """Return request latencies from just before a forced full reload until it is applied."""
    samples: list[float] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            send()
            samples.append(time.perf_counter() - t)

    thread = threading.Thread(target=loop)
    thread.start()
    time.sleep(0.2)
    trigger()
    deadline = time.monotonic() + 60
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    stop.set()
    thread.join()
    return samples


def ms(samples: list[float]) -> str:
    return f"{max(samples) * 1000:.1f} ms (p50 {statistics.median(samples) * 1000:.2f})"


def agent_numbers(cluster: LocalCluster, store: RuleStore, ns: str, master: Master, repeat: int = 1) -> dict:
    """The agent's figures; its full reloads (each dropping the set it replaces, as a real one does) are the
    median of `repeat` runs of each kind."""
    client = RuleClient(cluster.startup_nodes, ns, notifications=False)
    s = client.syncer
    s.slots.refresh(client.budget, s.pool)
    s.full_reload()
    fulls, warms = [], []
    for _ in range(repeat):
        t = time.thread_time()
        s.current, s.compiled = None, CompileCache()  # nothing held: every rule decoded and compiled
        s.full_reload()
        fulls.append(time.thread_time() - t)
        t = time.thread_time()
        s.current = None  # the same bytes again (a new generation id, a reconnect): the cache has them
        s.full_reload()
        warms.append(time.thread_time() - t)
    full, warm = statistics.median(fulls), statistics.median(warms)
    cpu, sent = [], []
    for n in range(5):
        change(store, ns, n)
        before = master.out_bytes()
        t = time.thread_time()
        s.sync_once()
        cpu.append(time.thread_time() - t)
        sent.append(master.out_bytes() - before - master.info_overhead())
    new_generation(cluster, ns, 0)  # the same rules: taken without a full reload
    fulls = s.stats.full_reloads
    before = master.out_bytes()
    t = time.thread_time()
    s.sync_once()
    same = time.thread_time() - t
    same_bytes = master.out_bytes() - before - master.info_overhead()
    if s.stats.full_reloads != fulls or s.current.generation != master.client.hget(Keys(ns).meta, "gen").decode():
        raise SystemExit("agent: the new generation of the same rules was not taken without a full reload")
    s.pool.close()
    return {"bytes": statistics.median(sent), "cpu": statistics.median(cpu), "full": full, "warm": warm,
            "same": same, "same_bytes": same_bytes}


def sidecar_latency(cluster: LocalCluster, ns: str, count: int, tmp: str) -> dict:
    import subprocess
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gateway_agent", "serve", "--redis-nodes",
                             ",".join(cluster.startup_nodes), "--namespace", ns, "--listen", f"127.0.0.1:{port}",
                             "--snapshot", f"{tmp}/{ns}.snap", "--refresh-interval", "0.2"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        deadline = time.monotonic() + 60
        while True:
            try:
                conn.request("GET", "/healthz")
                if json.loads(conn.getresponse().read()).get("rules") == count:
                    break
            except OSError:
                conn.close()
            if time.monotonic() > deadline:
                raise RuntimeError("sidecar did not load")
            time.sleep(0.1)
        body = json.dumps({"host": "svc7.example.com", "path": "/api/v7/x", "headers": {"x-uid": "3"}})

        def send() -> None:
            conn.request("POST", "/v1/decide", body=body, headers={"Content-Type": "application/json"})
            conn.getresponse().read()

        probe = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def generation() -> str:
            probe.request("GET", "/healthz")
            return json.loads(probe.getresponse().read())["generation"]

        def applied(before: str) -> Callable[[], bool]:
            return lambda: generation() != before  # the new set is installed (its snapshot follows)

        rest = latencies(send, 2.0)
        busy = during_reload(send, in_child(new_generation, cluster, ns), applied(generation()))
        prepared = rewritten(count)
        cold = during_reload(send, in_child(new_generation, cluster, ns, 0, prepared), applied(generation()))
        for child in CHILDREN:
            child.join()
        return {"rest": rest, "busy": busy, "cold": cold}
    finally:
        proc.terminate()
        proc.wait(10)


def rewritten(rewrite: int) -> tuple[dict[str, bytes], str]:
    """Return new bytes (a new description) for rules r00000.. r<rewrite-1> and their content digest."""
    raw = {}
    for i in range(rewrite):
        rule = make_rule(i)
        rule["description"] = f"rewritten {time.time()}"
        raw[f"r{i:05d}"] = encode_rule(rule)
    return raw, content_digest(raw)


def new_generation(cluster: LocalCluster, ns: str, rewrite: int = 1,
                   prepared: tuple[dict[str, bytes], str] | None = None) -> None:
    """Give ns a new generation id and send the notification a commit would.

    `rewrite` rules (r00000 ..) first get new bytes and meta the digest of the new content: a full reload whose
    bytes the gateways hold but for those (`prepared`, rewritten()'s result of every rule: none held). With
    rewrite=0 the rules and their digest stay: the gateways take the new generation without a full reload."""
    master = Master(cluster, ns)
    keys = Keys(ns)
    if prepared:
        master.client.hset(keys.rules, mapping=prepared[0])
        master.client.hset(keys.meta, "digest", prepared[1])
    elif rewrite:
        master.client.hset(keys.rules, mapping=rewritten(rewrite)[0])
        whole = {k.decode(): v for k, v in master.client.hgetall(keys.rules).items()}
        master.client.hset(keys.meta, "digest", content_digest(whole))
    master.client.hset(keys.meta, "gen", f"bench-{time.time()}")
    master.client.execute_command("SPUBLISH", keys.events, f"rev {int(master.client.get(keys.rev) or 0)}")
    master.client.close()


def in_child(fn: Callable[..., None], *args) -> Callable[[], None]:
    """Return a trigger running fn(*args) in a forked child process, started when called, joined at exit.

    The latency samples are taken by a thread of this process: encoding and sending 10,000 rules here
    would hold the GIL and delay the sampler's own reads (5 ms switch interval), counted as nginx's wait."""
    import multiprocessing

    proc = multiprocessing.get_context("fork").Process(target=fn, args=args)
    CHILDREN.append(proc)
    return proc.start


CHILDREN: list = []


def loaded_nginx(cluster: LocalCluster, ns: str, prefix: Path, workers: int, rules: int,
                 extra_locations: str = "", **options) -> NginxLauncher:
    """Start nginx (rulegate on namespace ns, in front of an echo server; --lua's modules when set; options: more
    rulegate options) and return it once it serves `rules` rules (bench/nginx_memory.py, nginx_hup.py,
    nginx_start.py)."""
    echo = free_port()
    http = gateway_http(upstream_blocks(["canary", "default", "stable"], echo, keepalive=8),
                        rulegate_location("default"),
                        extra=f"server {{{{ listen 127.0.0.1:{echo}; location / {{{{ return 200 ok; }}}} }}}}",
                        extra_locations=extra_locations)
    options = {"namespace": ns, "startup_nodes": list(cluster.startup_nodes), "refresh_interval": 0.5, **options}
    gw = NginxLauncher(http, prefix=prefix, package_path=False, workers=workers,
                       files={"conf/rulegate.json": json.dumps(options)})
    gw.start()
    deadline = time.monotonic() + 180
    while gw.json("/rulegate/status").get("rules") != rules:
        if time.monotonic() > deadline:
            gw.stop()
            raise RuntimeError("nginx did not load the namespace")
        time.sleep(0.2)
    return gw


def pinned_connections(port: int, workers: int) -> list[http.client.HTTPConnection]:
    """Return one keep-alive connection per nginx worker (each connection stays on the worker that accepted it)."""
    by_pid: dict[int, http.client.HTTPConnection] = {}
    for _ in range(50 * workers):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/rulegate/status")
        pid = json.loads(conn.getresponse().read())["worker"]["pid"]
        if pid in by_pid:
            conn.close()
        else:
            by_pid[pid] = conn
        if len(by_pid) == workers:
            break
    return list(by_pid.values())


LAG_INTERVAL = 0.001  # the nginx workers' loop lag probe (loop_lag.lua) looks every millisecond here


def lag_window(before: dict, after: dict) -> str:
    """The largest loop lag counted between two readings of /rulegate/status's loop_lag, all workers, and the
    largest of those the worker held itself (it ran for half the lag or more), as bucket bounds."""
    if not before or not after:
        return "not measured (no loop_lag in the status)"
    bounds = after["bounds"]

    def top(kind: str) -> str:
        added = [a - b for a, b in zip(after[kind], before[kind])]
        slot = max((i for i, n in enumerate(added) if n > 0), default=None)
        if slot is None:
            return "none"
        return f"<= {bounds[slot] * 1000:g} ms" if slot < len(bounds) else f"> {bounds[-1] * 1000:g} ms"
    ticks = sum(after["late"]) - sum(before["late"])
    return f"{top('late')} (held by the worker: {top('held')}; {ticks:,} looks)"


class BenchGateway:
    """nginx (rulegate on namespace ns, `workers` workers) started for nginx_numbers, its syncing worker known."""

    def __init__(self, cluster: LocalCluster, ns: str, prefix: Path, workers: int, lag_interval: float | bool):
        echo = free_port()
        http_body = gateway_http(
            upstream_blocks(["canary", "default", "stable"], echo, keepalive=8),
            rulegate_location("default", header_vars=True, proxy="proxy_set_header X-Upstream $rulegate_upstream;"),
            extra=f"server {{{{ listen 127.0.0.1:{echo}; location / {{{{ return 200 ok; }}}} }}}}")
        options = {"namespace": ns, "startup_nodes": list(cluster.startup_nodes), "refresh_interval": 30,
                   "response_headers": "vars", "gateway_id": f"bench-{ns}", "loop_lag_interval": lag_interval}
        self.workers = workers
        self.gw = NginxLauncher(http_body, prefix=prefix, package_path=False, workers=workers,
                                files={"conf/rulegate.json": json.dumps(options)})
        self.gw.start()
        try:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=30)
            st = self.wait(lambda st: st["worker"]["revision"] == st["store_revision"] and st["rules"] > 0)
            time.sleep(1.5)  # the listener subscribed; every worker compiled its first set
            self.pid = int(self.status()["listener"] or st["worker"]["pid"])  # the syncing worker
            self.others = [p for p in self.gw.worker_pids() if p != self.pid]
            for conn in pinned_connections(self.gw.port, workers):  # a worker takes its first set on a request
                conn.request("GET", "/api/v7/x", headers={"Host": "svc7.example.com"})  # (or its 30 s tick):
                conn.getresponse().read()  # not in a window measured below
                conn.close()
        except BaseException:
            self.gw.stop()
            raise

    def status(self, conn: http.client.HTTPConnection | None = None) -> dict:
        conn = conn or self.conn
        conn.request("GET", "/rulegate/status")
        return json.loads(conn.getresponse().read())

    def wait(self, pred) -> dict:
        deadline = time.monotonic() + 60
        while True:
            self.conn.request("GET", "/api/v7/x", headers={"Host": "svc7.example.com"})  # lets the worker
            self.conn.getresponse().read()  # pick up a new set (before: on a request or its 30 s tick)
            st = self.status()
            if pred(st) or time.monotonic() > deadline:
                return st
            time.sleep(0.01)

    def all_serve(self, before: dict, reloaded: bool = True, conn: http.client.HTTPConnection | None = None) -> bool:
        """True when the syncing worker applied the new generation and every other worker compiled it (or,
        not `reloaded`: applied its empty delta); the status asked through conn (a worker's; the shared dict's
        counters are every worker's)."""
        s = self.status(conn)
        count = "worker_compiles" if reloaded else "worker_deltas"
        return s["generation"] != before["generation"] and s[count] >= before[count] + len(self.others)

    def stop(self) -> None:
        self.conn.close()
        self.gw.stop()


def nginx_cpu(cluster: LocalCluster, store: RuleStore, ns: str, master: Master, control: int, changes: int,
              gw: BenchGateway, count: int, repeat: int) -> dict:
    """Bytes read and CPU per change, CPU per full reload of each kind (a gateway without the loop lag probe)."""
    pid, others = gw.pid, gw.others
    sent = []
    for n in range(3):
        before = master.out_bytes()
        rev = change(store, ns, n)
        gw.wait(lambda st: st["worker"]["revision"] == rev)
        time.sleep(0.1)
        sent.append(master.out_bytes() - before - control)
    idle0 = {p: worker_cpu(p) for p in [pid, *others]}  # each worker's own: the syncing one's timers do more
    t0 = time.monotonic()
    time.sleep(0.3 * changes)
    idle = {p: worker_cpu(p) - idle0[p] for p in idle0}
    idle_s = time.monotonic() - t0
    cpu0 = worker_cpu(pid)
    t0 = time.monotonic()
    for n in range(changes):
        rev = change(store, ns, n)
        gw.wait(lambda st: st["worker"]["revision"] == rev)
        time.sleep(max(0.0, 0.3 - 0.001))
    busy_s = time.monotonic() - t0
    per_change = max(0.0, (worker_cpu(pid) - cpu0) - idle[pid] * busy_s / idle_s) / changes
    st = gw.status()

    nudges = [conn for conn in pinned_connections(gw.gw.port, gw.workers)
              if gw.status(conn)["worker"]["pid"] != pid]  # one keep-alive connection per other worker

    def nudge() -> None:
        """One request to each other worker: it takes a new set on a request (as under traffic)."""
        for conn in nudges:
            conn.request("GET", "/api/v7/x", headers={"Host": "svc7.example.com"})
            conn.getresponse().read()

    def reload_cpu(rewrite: int) -> list[float]:
        """CPU of each worker (syncing first) for one new generation: a full reload, but for rewrite=0."""
        gen_before = gw.status()
        poll = nudges[0] if nudges else None  # the status from another worker: the syncing one's CPU stays its own
        cpu0 = {p: worker_cpu(p) for p in [pid, *others]}
        loop0 = worker_cpu(pid, main_only=True)
        wait0 = sum(loop_wait(p) for p in cpu0)
        t0 = time.monotonic()
        new_generation(cluster, ns, rewrite)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.02)
            nudge()
            if gw.all_serve(gen_before, rewrite > 0, poll):
                break
        idled = (time.monotonic() - t0) / idle_s
        loop = max(0.0, worker_cpu(pid, main_only=True) - loop0 - idle[pid] * idled)
        waited = sum(loop_wait(p) for p in cpu0) - wait0
        return [max(0.0, worker_cpu(p) - cpu0[p] - idle[p] * idled) for p in cpu0] + [loop, waited]

    def median_of(rewrite: int) -> list[float]:
        """Per worker (and the event loop), the median over `repeat` forced full reloads."""
        runs = [reload_cpu(rewrite) for _ in range(repeat)]
        return [statistics.median(col) for col in zip(*runs)]

    fulls = gw.status()["full_reloads"]
    full = median_of(1)
    cold_cpu = median_of(count)
    same = median_of(0)
    for conn in nudges:
        conn.close()
    if gw.status()["full_reloads"] != fulls + 2 * repeat:
        raise SystemExit(f"nginx: {gw.status()['full_reloads'] - fulls} full reloads, {2 * repeat} expected")
    return {"bytes": statistics.median(sent), "cpu": per_change, "full": full, "cold_cpu": cold_cpu, "same": same,
            "reloads": st.get("full_reloads"), "deltas": st.get("deltas_applied")}


def nginx_latency(cluster: LocalCluster, ns: str, gw: BenchGateway, count: int) -> dict:
    """Request latency and the workers' loop lag at rest and during full reloads (a gateway probing every ms)."""
    clients = pinned_connections(gw.gw.port, gw.workers)
    turn = [0]

    def send() -> None:
        client = clients[turn[0] % len(clients)]
        turn[0] += 1
        client.request("GET", "/api/v7/x", headers={"Host": "svc7.example.com", "X-Uid": "3"})
        client.getresponse().read()

    def lag_now() -> dict:
        time.sleep(1.1)  # every worker flushed its counts (loop_lag.lua FLUSH_EVERY)
        return gw.status().get("loop_lag")  # None: a --lua tree without the probe

    try:
        lag0 = lag_now()
        rest = latencies(send, 2.0)
        lag1 = lag_now()
        gen_before = gw.status()
        # the writes run in a child process, their bytes prepared before the window (see in_child)
        busy = during_reload(send, in_child(new_generation, cluster, ns), lambda: gw.all_serve(gen_before))
        lag2 = lag_now()
        prepared = rewritten(count)
        gen_before = gw.status()
        cold = during_reload(send, in_child(new_generation, cluster, ns, 0, prepared),
                             lambda: gw.all_serve(gen_before))
        lag3 = lag_now()
        for proc in CHILDREN:
            proc.join()
    finally:
        for conn in clients:
            conn.close()
    return {"rest": rest, "busy": busy, "cold": cold,
            "lag": [lag_window(lag0, lag1), lag_window(lag1, lag2), lag_window(lag2, lag3)]}


def nginx_numbers(cluster: LocalCluster, store: RuleStore, ns: str, master: Master, control: int,
                  changes: int, tmp: str, workers: int = 1, count: int = 0, repeat: int = 1) -> dict:
    """nginx_cpu's figures, from a gateway without the loop lag probe (its cost depends on how busy the worker
    is: an idle worker wakes for each look, a busy one finds the timer due, so subtracting its idle rate
    understates a reload), then nginx_latency's, from another that probes every millisecond."""
    gw = BenchGateway(cluster, ns, Path(tmp) / f"nginx-{ns}-cpu", workers, False)
    try:
        out = nginx_cpu(cluster, store, ns, master, control, changes, gw, count, repeat)
    finally:
        gw.stop()
    gw = BenchGateway(cluster, ns, Path(tmp) / f"nginx-{ns}-lag", workers, LAG_INTERVAL)
    try:
        out.update(nginx_latency(cluster, ns, gw, count))
    finally:
        gw.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", default="1000,10000")
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="nginx worker processes")
    parser.add_argument("--nginx-only", action="store_true", help="skip the Python agent and sidecar")
    parser.add_argument("--repeat", type=int, default=1,
                        help="full reloads of each kind measured, nginx and agent (the CPU rows show their median)")
    parser.add_argument("--lua", type=Path, help="run nginx with this directory's Lua modules (another tree's lua/)")
    args = parser.parse_args()
    if args.lua:
        rulegate_dev.nginx.LUA_DIR = args.lua.resolve()
    tmp = str(scratch_dir("rulegate-reload-"))
    cluster = LocalCluster(Path(tmp) / "cluster")
    cluster.start()
    rows = []
    try:
        store = RuleStore.from_config(RedisConfig(nodes=list(cluster.startup_nodes)))
        for count in [int(x) for x in args.rules.split(",")]:
            ns = f"reload{count}"
            load_rules(store, ns, count)
            master = Master(cluster, ns)
            controls = []
            for n in range(3):  # the window's own bytes without a gateway reading
                before = master.out_bytes()
                change(store, ns, n)
                controls.append(master.out_bytes() - before)
            control = min(controls)
            if args.nginx_only:
                a = {"bytes": 0, "cpu": 0.0, "full": 0.0, "warm": 0.0, "same": 0.0}
                side = {"rest": [0.0], "busy": [0.0], "cold": [0.0]}
            else:
                a = agent_numbers(cluster, store, ns, master, args.repeat)
                side = sidecar_latency(cluster, ns, count, tmp)
            g = nginx_numbers(cluster, store, ns, master, control, args.changes, tmp, args.workers, count,
                              args.repeat)
            rows += [
                (f"{count} rules, one-rule change: Redis bytes read", f"{a['bytes']:,.0f} B", f"{g['bytes']:,.0f} B"),
                (f"{count} rules, one-rule change: CPU", f"{a['cpu'] * 1000:.2f} ms", f"{g['cpu'] * 1000:.1f} ms"),
                (f"{count} rules, full reload: CPU", f"{a['full'] * 1000:.0f} ms",
                 " / ".join(f"{c * 1000:.0f} ms" for c in g["cold_cpu"][:-2])),
                (f"{count} rules, full reload of bytes held (new generation): CPU", f"{a['warm'] * 1000:.0f} ms",
                 " / ".join(f"{c * 1000:.0f} ms" for c in g["full"][:-2])),
                (f"{count} rules, ... the syncing worker's event loop alone", "",
                 f"{g['cold_cpu'][-2] * 1000:.0f} ms (bytes held: {g['full'][-2] * 1000:.0f} ms)"),
                (f"{count} rules, ... the event loops' wait for a CPU (runnable, not running)", "",
                 f"{g['cold_cpu'][-1] * 1000:.1f} ms (bytes held: {g['full'][-1] * 1000:.1f} ms)"),
                (f"{count} rules, new generation of the same rules (no full reload): CPU",
                 f"{a['same'] * 1000:.1f} ms, {a.get('same_bytes', 0):,.0f} B read",
                 " / ".join(f"{c * 1000:.1f} ms" for c in g["same"][:-2])),
                (f"{count} rules, request latency at rest: max", ms(side["rest"]), ms(g["rest"])),
                (f"{count} rules, request latency during a full reload: max", ms(side["busy"]), ms(g["busy"])),
                (f"{count} rules, ... every rule's bytes new: max", ms(side["cold"]), ms(g["cold"])),
                (f"{count} rules, nginx event loop lag at rest: max", "", g["lag"][0]),
                (f"{count} rules, nginx event loop lag during a full reload: max", "", g["lag"][1]),
                (f"{count} rules, nginx event loop lag, every rule's bytes new: max", "", g["lag"][2]),
                (f"{count} rules, nginx counters after the changes", "", f"full_reloads={g['reloads']} "
                                                                          f"deltas_applied={g['deltas']}"),
            ]
        store.close()
    finally:
        cluster.stop()
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure'.ljust(width)} | {'python agent':>26} | nginx ({args.workers} worker"
          f"{'s: syncing / others' if args.workers > 1 else ''})")
    print("-" * (width + 60))
    for name, py, ng in rows:
        print(f"{name.ljust(width)} | {py:>26} | {ng}")
    print(f"\n(python {sys.version.split()[0]}, {os.cpu_count()} CPUs; agent CPU is the sync thread's; nginx CPU "
          "is the worker's run time from /proc/PID/schedstat)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

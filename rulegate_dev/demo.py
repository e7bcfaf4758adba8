"""The demo: the whole system on loopback, sample rules, and `--check` that asserts the split."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import NoReturn

import redis

from rulegate.errors import RulegateError

from .errors import LauncherError
from .private_files import private_dir
from .processes import stop_children, stop_records
from .runstate import TEMP_PREFIX, DemoState, open_run_dir, stop_command, stop_demo
from .system import NAMESPACE, System, SystemPorts

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=5) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def check(system: System, n: int = 2000) -> list[str]:
    """Send traffic through nginx and the agent; return the failed expectations (empty = OK)."""
    failures = []
    base = f"http://127.0.0.1:{system.nginx_port}"
    deadline = time.monotonic() + 10
    while _get(base + "/", {"Host": "shop.localhost", "X-Uid": "1500"})[1].strip() != "canary":
        if time.monotonic() > deadline:
            return ["nginx never applied the seeded rules"]
        time.sleep(0.1)
    counts = Counter()
    for i in range(n):
        status, body, _ = _get(base + "/", {"Host": "shop.localhost", "X-Uid": f"user{i}"})
        counts[body.strip() if status == 200 else f"HTTP {status}"] += 1
    share = counts["canary"] / n
    print(f"nginx split over {n} users: {dict(counts)} -> canary {share:.1%} (expected 10% +- 3%)")
    if not 0.07 <= share <= 0.13 or counts["stable"] + counts["canary"] != n:
        failures.append(f"split off: {dict(counts)}")
    status, body, _ = _get(base + "/", {"Host": "shop.localhost", "X-Uid": "1500"})
    if (status, body.strip()) != (200, "canary"):
        failures.append(f"grey uid 1500 -> {status} {body!r}")
    status, body, _ = _get(base + "/checkout/pay", {"Host": "shop.localhost"})
    if status != 503 or "maintenance" not in body:
        failures.append(f"checkout degrade -> {status} {body!r}")
    status, body, _ = _get(base + "/pay", {"Host": "shop.localhost"})
    if (status, body.strip()) != (200, "flaky"):
        failures.append(f"/pay (split to the flaky backend) -> {status} {body!r}")
    status, _, headers = _get(base + "/old/x", {"Host": "shop.localhost"})
    if status != 301 or headers.get("Location") != "/":
        failures.append(f"redirect -> {status} {headers.get('Location')}")
    agent = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{system.agent_port}/v1/decide", method="POST",
        data=json.dumps({"host": "shop.localhost", "path": "/", "headers": {"x-uid": "1500"}}).encode(),
        headers={"Content-Type": "application/json"}), timeout=5).read())
    if agent.get("upstream") != "canary":
        failures.append(f"agent decision for uid 1500: {agent}")
    failures += _check_live_change(system, base)
    return failures


def _check_live_change(system: System, base: str) -> list[str]:
    """Shift the canary to 100% through the admin API and watch nginx follow."""
    api = f"http://127.0.0.1:{system.admin_ports[1]}/api/v1/namespaces/{NAMESPACE}/rules/shop-canary"
    auth = {"Authorization": f"Bearer {system.token}"}
    with urllib.request.urlopen(urllib.request.Request(api, headers=auth), timeout=5) as resp:
        etag, rule = resp.headers["ETag"], json.loads(resp.read())
    rule = rule.get("rule", rule)
    rule["policies"][-1]["buckets"][0]["weight"] = 10000
    for k in ("updated_at", "updated_by"):
        rule.pop(k, None)
    req = urllib.request.Request(api, method="PUT", data=json.dumps(rule).encode(),
                                 headers={**auth, "If-Match": etag, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        written = json.loads(resp.read())
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5:
        status, body, _ = _get(base + "/", {"Host": "shop.localhost", "X-Uid": "user7"})
        if body.strip() == "canary":
            print(f"admin write {written.get('revision')} (replicated={written.get('replicated')}) "
                  f"reached nginx in {(time.monotonic() - t0) * 1000:.0f} ms")
            return []
        time.sleep(0.05)
    return ["a 100% canary written through the admin API never reached nginx"]


class StopRequested(BaseException):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) arrived; like KeyboardInterrupt, no `except Exception` catches it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise StopRequested(signum)


def _already_stopping(signum: int, frame: FrameType | None) -> None:
    os.write(2, f"{signal.Signals(signum).name}: already stopping everything the demo started\n".encode())


def _banner(system: System, state: DemoState) -> str:
    where = "a temporary dir, removed on stop" if state.temporary else "kept after stop"
    return f"""
rulegate demo is up (state and logs in {system.dir}: 0700, {where})
  Redis Cluster     {system.nodes}   (ACL users; default user off)
  ruleadmin #1      http://127.0.0.1:{system.admin_ports[0]}/
  ruleadmin #2      http://127.0.0.1:{system.admin_ports[1]}/   (same users, shares nothing but Redis)
  gateway-agent     http://127.0.0.1:{system.agent_port}/healthz   POST /v1/decide
  nginx gateway     curl -H 'Host: shop.localhost' -H 'X-Uid: 1500' http://127.0.0.1:{system.nginx_port}/
  nginx status      http://127.0.0.1:{system.nginx_port}/rulegate/status
  backends          stable, canary, flaky (served by nginx; `rulegate-dev fault on|off|slow` fails flaky)
  guard watcher     ruleadmin guard-watcher --namespace {NAMESPACE}   (halts failing guarded ramps)
  pids recorded in  {state.path}   (stop from another shell: {stop_command(state.path.parent)})
"""


def credentials_block(system: System) -> str:
    """Return the block listing every credential the demo created (printed once, at start)."""
    rows = system.credentials()
    width = max(len(who) for who, _, _ in rows)
    lines = [f"  {who.ljust(width)}  {secret}   ({what})" for who, secret, what in rows]
    return ("credentials created for this demo (printed only here, once; the Redis passwords and the API token "
            "also sit in the 0700 data dir until stop):\n" + "\n".join(lines) + "\n")


def scenarios_line() -> str:
    """Return the line listing the scenarios to run against this demo."""
    return ("scenarios (from another shell): rulegate-dev scenario ramp|breaker|guard|kill-switch|all   "
            "(fault injection: rulegate-dev fault on|off|slow --ms N)")


def demo_ports(args: argparse.Namespace) -> SystemPorts:
    """Return the ports asked for on the command line, the others picked (the usual ones unless --check)."""
    return SystemPorts.pick(not args.check, cluster=args.base_port, admin=args.admin_ports, agent=args.agent_port,
                            nginx=args.nginx_port)


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo until a stop signal (or, with --check, check it); stop everything it started on any exit.
    Return 0 when stopped on request or the check passed, 1 when start-up or the check failed."""
    state = _record_demo(args)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in STOP_SIGNALS}
    system: System | None = None
    rc, up = 1, False
    try:
        system = System(state.data_dir, ports=demo_ports(args), on_spawn=state.record)
        system.start()
        up = True
        print(_banner(system, state), flush=True)
        print(credentials_block(system), flush=True)
        print(scenarios_line() + "\n", flush=True)
        rc = _check(system) if args.check else _wait_for_stop()
    except StopRequested as exc:
        print(f"\n{exc}: stopping everything the demo started ...", flush=True)
        rc = 1 if args.check else 0
    except (LauncherError, RulegateError, redis.RedisError, OSError, subprocess.SubprocessError) as exc:
        what = "" if isinstance(exc, LauncherError) else f"{exc.__class__.__name__}: "
        print(f"rulegate-dev demo: {what}{exc}", file=sys.stderr, flush=True)
        print("rulegate-dev demo: " + ("failed" if up else "start-up failed") + "; stopping what was already started"
              + (" (use --data-dir DIR to keep the logs)" if state.temporary else ""), file=sys.stderr, flush=True)
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, _already_stopping)
        try:
            _shutdown(system, state)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return rc


def _record_demo(args: argparse.Namespace) -> DemoState:
    """Create the data dir (0700; a new temp dir without --data-dir) and this demo's record in the run dir."""
    run_dir = open_run_dir(args.run_dir)
    temporary = args.data_dir is None
    try:
        data_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX)) if temporary else private_dir(args.data_dir)
    except OSError as exc:
        raise LauncherError(f"cannot use {'a temp dir' if temporary else '--data-dir'} {exc.filename}: "
                            f"{exc.strerror}") from None
    try:
        return DemoState.create(run_dir, data_dir, temporary)
    except BaseException:
        if temporary:
            data_dir.rmdir()
        raise


def _check(system: System) -> int:
    failures = check(system)
    print("demo check: " + ("OK" if not failures else "FAILED\n  " + "\n  ".join(failures)), flush=True)
    return 1 if failures else 0


def _wait_for_stop() -> NoReturn:
    print("running; press Ctrl-C (or run `rulegate-dev stop`) to stop everything", flush=True)
    while True:
        time.sleep(3600)


def _shutdown(system: System | None, state: DemoState) -> None:
    """Stop the System, then anything still running that this demo started; remove its temp dir and state."""
    try:
        if system is not None:
            system.stop()
    except (OSError, subprocess.SubprocessError, LauncherError) as exc:
        print(f"rulegate-dev demo: stopping: {exc}; killing what is left", file=sys.stderr, flush=True)
    finally:
        left = stop_children() + stop_records(state.processes, timeout=5)
        if left:
            print(f"rulegate-dev demo: killed {len(left)} process(es) that outlived the orderly stop", file=sys.stderr)
        removed = state.remove_data_dir()
        state.forget()
    print(f"stopped {len(state.processes)} process(es)" + (f"; removed {state.data_dir}" if removed else ""),
          flush=True)


def stop_all(run_dir: str | None) -> int:
    """Stop every demo recorded in the run directory (another shell's included); return 0."""
    directory = open_run_dir(run_dir)
    states = DemoState.all_in(directory)
    if not states:
        print(f"no demo recorded in {directory}; nothing to stop")
    for state in states:
        print(f"stopping the demo of pid {state.launcher.pid} ({len(state.processes)} process(es) recorded) ...",
              flush=True)
        killed = stop_demo(state)
        extra = f"; stopped {len(killed)} left behind: {', '.join(killed)}" if killed else ""
        print(f"demo of pid {state.launcher.pid} stopped{extra}", flush=True)
    return 0

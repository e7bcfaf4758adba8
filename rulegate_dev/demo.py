"""The demo: the whole system on loopback, sample rules, and `--check` that asserts the split."""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from collections import Counter

from .system import NAMESPACE, System


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


def run_demo(args: argparse.Namespace) -> int:
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="rulegate-demo-")  # 0700; System keeps it so
    system = System(data_dir, fixed_ports=not args.check)
    try:
        system.start()
        print(f"""
rulegate demo is up (state and logs in {data_dir})
  Redis Cluster     {system.nodes}   (ACL users rg-admin / {system.acl.gateway(NAMESPACE)[0]}; default user off)
  ruleadmin #1      http://127.0.0.1:{system.admin_ports[0]}/   login: admin / {system.admin_password}
  ruleadmin #2      http://127.0.0.1:{system.admin_ports[1]}/   (same users, shares nothing but Redis)
  API token         {system.token}
  gateway-agent     http://127.0.0.1:{system.agent_port}/healthz   POST /v1/decide
  nginx gateway     curl -H 'Host: shop.localhost' -H 'X-Uid: 1500' http://127.0.0.1:{system.nginx_port}/
  nginx status      http://127.0.0.1:{system.nginx_port}/rulegate/status
""", flush=True)
        if args.check:
            failures = check(system)
            print("demo check: " + ("OK" if not failures else "FAILED\n  " + "\n  ".join(failures)))
            return 1 if failures else 0
        print("running; press Ctrl-C to stop everything")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping ...")
        return 0
    finally:
        system.stop()

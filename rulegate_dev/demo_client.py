"""A client of the running demo for `rulegate-dev fault` and `rulegate-dev scenario`: traffic through nginx and the
agent sidecar, ruleadmin's REST API with the demo's token, nginx's status and the fault control."""
from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from .faults import fault_request
from .runstate import running_demo
from .system import DemoEndpoints

HOST = "shop.localhost"


class ScenarioFailed(Exception):
    """What a scenario expected did not happen (the message names it)."""


class NotAvailable(Exception):
    """The feature a scenario shows is not in this build (the message names it)."""


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, body text, headers (lower-case names) and when it was sent and received."""

    status: int
    body: str
    headers: dict[str, str]
    sent: float
    received: float

    def json(self) -> Any:
        """Return the body decoded as JSON; raise ScenarioFailed when it is not."""
        try:
            return json.loads(self.body)
        except ValueError:
            raise ScenarioFailed(f"expected JSON, got HTTP {self.status} {self.body[:200]!r}") from None


def request(port: int, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
            timeout: float = 10.0) -> Reply:
    """Send one request to 127.0.0.1:port on a new connection (so nginx's workers share the traffic); return the
    Reply; raise ScenarioFailed when the server cannot be reached."""
    data = None if body is None else json.dumps(body).encode()
    hdrs = dict(headers or {})
    if data is not None:
        hdrs["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    sent = time.time()
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
        return Reply(resp.status, text, {k.lower(): v for k, v in resp.getheaders()}, sent, time.time())
    except OSError as exc:
        raise ScenarioFailed(f"cannot reach 127.0.0.1:{port} ({method} {path}): {exc}") from None
    finally:
        conn.close()


@dataclass(frozen=True)
class DemoClient:
    """The running demo, through its endpoints."""

    ep: DemoEndpoints

    @classmethod
    def find(cls, run_dir: str | None = None, pid: int | None = None) -> "DemoClient":
        """Return a client of the running demo recorded in run_dir; raise LauncherError when there is none."""
        return cls(DemoEndpoints.load(running_demo(run_dir, pid).data_dir))

    @property
    def namespace(self) -> str:
        return self.ep.namespace

    def gateway(self, path: str, uid: str | None = None) -> Reply:
        """Send GET path for shop.localhost through nginx (with X-Uid when uid is given)."""
        return request(self.ep.nginx, "GET", path, headers={"Host": HOST, **({"X-Uid": uid} if uid else {})})

    def nginx_status(self) -> dict:
        """Return nginx's /rulegate/status (of the worker that answered)."""
        return request(self.ep.nginx, "GET", "/rulegate/status").json()

    def decide(self, path: str, uid: str | None = None) -> dict:
        """Return the agent sidecar's decision for GET shop.localhost path."""
        req = {"host": HOST, "path": path, "headers": {"x-uid": uid} if uid else {}}
        reply = request(self.ep.agent, "POST", "/v1/decide", body=req)
        if reply.status != 200:
            raise ScenarioFailed(f"the agent's /v1/decide answered {reply.status}: {reply.body[:200]}")
        return reply.json()

    def api(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
            instance: int = 0) -> Reply:
        """Call ruleadmin's REST API (/api/v1 + path, {ns} filled in) with the demo's token."""
        auth = {"Authorization": f"Bearer {self.ep.token}", **(headers or {})}
        return request(self.ep.admin[instance], method, "/api/v1" + path.format(ns=self.namespace), body=body,
                       headers=auth)

    def api_json(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        """Call the REST API and return its JSON; raise ScenarioFailed on a status other than 2xx."""
        reply = self.api(method, path, body, headers)
        if not 200 <= reply.status < 300:
            raise ScenarioFailed(f"{method} {path.format(ns=self.namespace)} answered {reply.status}: "
                                 f"{reply.body[:300]}")
        return reply.json()

    def rule(self, rule_id: str) -> tuple[dict, str] | None:
        """Return (rule, etag) of a rule as the admin API has it, or None when there is no such rule."""
        reply = self.api("GET", f"/namespaces/{{ns}}/rules/{rule_id}")
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise ScenarioFailed(f"GET rule {rule_id} answered {reply.status}: {reply.body[:300]}")
        data = reply.json()
        return data.get("rule", data), reply.headers.get("etag", "")

    def revision(self) -> int:
        """Return the namespace's current revision (from the admin API)."""
        return int(self.api_json("GET", "/namespaces/{ns}/rules?limit=1")["revision"])

    def ui(self, path: str) -> str:
        """Return the URL of a page of ruleadmin #1's web UI."""
        return f"http://127.0.0.1:{self.ep.admin[0]}{path.format(ns=self.namespace)}"

    def fault(self, mode: str | None = None, ms: int | None = None) -> dict:
        """Set (or, with mode None, read) the flaky backend's fault; return {"mode", "ms"}."""
        return fault_request(self.ep.fault_control, mode, ms)

    def backend(self, upstream: str, path: str) -> Reply:
        """Send GET path straight to the backend of an upstream (what a gateway does with a proxy decision)."""
        return request(self.ep.backends[upstream], "GET", path, headers={"Host": HOST})

    def report(self, decision: dict, status: int, latency_ms: float) -> None:
        """Report the outcome of an agent decision to the sidecar's /v1/report; raise NotAvailable when the
        sidecar has no such endpoint, ScenarioFailed when it refuses the report."""
        body = {"rule_id": decision.get("rule_id"), "upstream": decision.get("upstream"),
                "breaker": decision.get("breaker"), "status": status, "latency_ms": round(latency_ms, 3)}
        reply = request(self.ep.agent, "POST", "/v1/report", body=body)
        if reply.status == 404:
            raise NotAvailable("the agent sidecar has no POST /v1/report (outcome reports) in this build")
        if reply.status != 204:
            raise ScenarioFailed(f"the agent's /v1/report answered {reply.status}: {reply.body[:200]}")


class Steps:
    """Prints a scenario's numbered steps with the seconds since it began."""

    def __init__(self, name: str, out: Callable[[str], object] = print):
        self.name, self.out, self.n, self.t0 = name, out, 0, time.monotonic()

    def __call__(self, text: str) -> None:
        self.n += 1
        self.out(f"[{self.name} +{time.monotonic() - self.t0:5.1f}s] {self.n}. {text}")

    def note(self, text: str) -> None:
        """Print an indented detail line of the current step."""
        self.out(f"{' ' * (len(self.name) + 12)}{text}")


def pct(units: int) -> str:
    """Return a share in basis points as percent text."""
    return f"{units / 100:g}%"


def iso(ts: float) -> str:
    """Return epoch seconds as ISO 8601 UTC."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

"""Every decision vector through real HTTP requests to nginx, rules synced from the real cluster."""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import pytest

from rulegate.evaluator import Request, RuleSet, decide
from rulegate.schema import validate_rule
from rulegate.store import RuleStore
from tests.conftest import VECTORS, load_vectors

from .conftest import Gateway
from .decide_harness import HttpClient, RawRequest

pytestmark = pytest.mark.integration

CASES = load_vectors()


def vector_upstreams() -> tuple[str, ...]:
    names: set[str] = set()
    for path in VECTORS.glob("*.json"):
        names |= set(re.findall(r'"(?:upstream|default)": "([^"]+)"', path.read_text()))
    return tuple(sorted(names))


@pytest.fixture(scope="module")
def vector_gateways(cluster: Any, tmp_path_factory: pytest.TempPathFactory, redis_config: Any):
    """Per vector file: a namespace holding its rules and a gateway synced to it (lazy)."""
    started: dict[tuple[str, Any], tuple[Gateway, int]] = {}
    store = RuleStore.from_config(redis_config)

    def get(file: str, data: dict, header_mode: Any) -> tuple[Gateway, int]:
        if (file, header_mode) not in started:
            ns = "vec-" + re.sub(r"[^a-z0-9]", "-", file.lower()) + "-" + tmp_path_factory.mktemp("n").name[-4:]
            rev = 0
            for rule in data["rules"]:
                rev = store.put_rule(ns, validate_rule(rule), None, "vectors").revision
            gw = Gateway({"namespace": ns, "startup_nodes": list(cluster.startup_nodes),
                          "refresh_interval": 0.2, "ip_header": "X-Test-Ip", "now_header": "X-Test-Now", "request_id_header": "X-Test-Request-Id",
                          "response_headers": header_mode},
                         upstreams=vector_upstreams(), prefix=tmp_path_factory.mktemp("gw"))
            gw.start()
            gw.wait_revision(rev)
            started[(file, header_mode)] = (gw, rev)
        return started[(file, header_mode)]

    yield get
    for gw, _ in started.values():
        gw.stop()
    store.close()


@pytest.mark.parametrize("header_mode", ["vars", True])
@pytest.mark.parametrize("file,data,case", CASES, ids=[f"{f}:{c['name']}" for f, _, c in CASES])
def test_vector_over_http(vector_gateways, file: str, data: dict, case: dict, header_mode: Any) -> None:
    """nginx answers the vector request, sent as raw bytes, exactly as the Python evaluator decides it."""
    gw, rev = vector_gateways(file, data, header_mode)
    raw = RawRequest.from_case(case["request"])
    client = HttpClient(gw.port)
    try:
        r = client.send(raw)
    finally:
        client.close()
    check_response(r, expected(data, case, rev), raw, rev)
    assert gw.error_lines() == []


def expected(data: dict, case: dict, rev: int) -> dict:
    """The Python evaluator's decision for a vector case (to_dict shape)."""
    rules = [validate_rule(r) for r in data["rules"]]
    return decide(RuleSet(rules, rev), Request.from_dict(case["request"])).to_dict()


def check_response(r: Any, want: dict, raw: RawRequest, rev: int) -> None:
    """nginx's answer r is the decision want (revision, rule, upstream or the response itself)."""
    assert r.headers.get("x-rulegate-rev") == str(rev)
    assert r.headers.get("x-rulegate-rule", "") == (want["rule_id"] or "")
    if want["action"] in ("proxy", "pass"):
        assert r.status == 200, r
        expected_upstream = want["upstream"] if want["action"] == "proxy" else "default"
        assert r.headers.get("x-echo-upstream") == expected_upstream
    else:
        assert r.status == want["status"]
        for k, v in want["headers"].items():
            assert r.headers.get(k.lower()) == v
        if want["status"] in (204, 205, 304):
            assert "content-type" not in r.headers, r.headers
        if raw.method != "HEAD":
            assert r.body == want["body"].encode()


def pinned_clients(gw: Gateway) -> dict[int, HttpClient]:
    """One keep-alive connection per nginx worker (a connection stays on the worker that accepted it), by pid.

    Connections are opened in bursts, all connected before any request: one at a time, an idle gateway's
    connections may all go to the worker the kernel wakes first."""
    status = RawRequest(b"app.example.com", b"/rulegate/status")
    clients: dict[int, HttpClient] = {}
    for _ in range(20):
        burst = [HttpClient(gw.port) for _ in range(16)]
        for client in burst:
            client.sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        for client in burst:
            pid = json.loads(client.send(status).body)["worker"]["pid"]
            if pid in clients:
                client.close()
            else:
                clients[pid] = client
        if len(clients) == gw.workers:
            break
    return clients


@pytest.mark.parametrize("file", sorted({f for f, _, _ in CASES}))
def test_every_worker_decides_every_vector(vector_gateways, file: str) -> None:
    """Each nginx worker (the one that reads the rules, and the other, which places them pending and compiles a route on
    its first request) answers every vector as the Python evaluator decides it."""
    cases = [(data, case) for f, data, case in CASES if f == file]
    gw, rev = vector_gateways(file, cases[0][0], "vars")
    clients = pinned_clients(gw)
    try:
        assert len(clients) == 2, "a connection on each of the gateway's 2 workers"
        for data, case in cases:
            raw = RawRequest.from_case(case["request"])
            want = expected(data, case, rev)
            for client in clients.values():
                check_response(client.send(raw), want, raw, rev)
        assert gw.status_when(lambda st: st["worker_compiles"] >= 1, "the other worker's set")
    finally:
        for client in clients.values():
            client.close()
    assert gw.error_lines() == []

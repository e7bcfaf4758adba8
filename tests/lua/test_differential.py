"""Differential fuzz: the Python evaluator and the Lua router in nginx decide every seeded case alike.

Most cases go in batches through tests/lua/decide_harness.lua (rules as stored msgpack, requests
as raw bytes built by rulegate.request.from_raw); a share goes as raw HTTP requests through the
documented include to a gateway synced from the real cluster, so nginx's own request reading
($host, $http_*, the query string) is compared too. RULEGATE_FUZZ_SETS scales the batch part.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from rulegate.schema import encode_rule
from rulegate.store import RuleStore
from tests.differential import UPSTREAMS, fuzz_set, http_disagreement

from .conftest import Gateway
from .decide_harness import DecideHarness, HttpClient, python_decisions

BATCH_SETS = int(os.environ.get("RULEGATE_FUZZ_SETS", "250"))
BATCH_REQUESTS = 40
HTTP_SETS, HTTP_REQUESTS = 20, 60

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DecideHarness]:
    """An nginx deciding batches with the Lua modules."""
    with DecideHarness(tmp_path_factory.mktemp("diff")) as h:
        yield h


def test_batches_agree(harness: DecideHarness) -> None:
    """Seeded rule sets x raw requests (lenient forms too): Lua and Python decisions are identical."""
    cases, disagreements = 0, []
    for seed in range(BATCH_SETS):
        fs = fuzz_set(seed, BATCH_REQUESTS, http=False)
        lua = harness.batch(fs.rules, seed, fs.requests)
        py = python_decisions(fs.rules, seed, fs.requests)
        cases += len(py)
        disagreements += [(seed, i, fs.requests[i], py[i], lua[i]) for i in range(len(py)) if py[i] != lua[i]]
    assert cases >= BATCH_SETS * BATCH_REQUESTS
    assert disagreements == [], f"{len(disagreements)}/{cases} disagree, first: {disagreements[:3]}"
    assert harness.error_lines() == []


@pytest.fixture(scope="module")
def fuzz_gateway(cluster: Any, redis_config: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """A gateway on a fresh namespace (test headers carry the client IP and the clock) and a store."""
    ns = "fuzz-" + tmp_path_factory.mktemp("ns").name[-6:].lower().replace("_", "-")
    store = RuleStore.from_config(redis_config)
    gw = Gateway({"namespace": ns, "startup_nodes": list(cluster.startup_nodes), "refresh_interval": 0.2,
                  "ip_header": "X-Test-Ip", "now_header": "X-Test-Now", "request_id_header": "X-Test-Request-Id", "response_headers": "vars"},
                 upstreams=UPSTREAMS, prefix=tmp_path_factory.mktemp("gw"))
    gw.start()
    yield ns, store, gw
    gw.stop()
    store.close()


def test_http_requests_agree(fuzz_gateway: tuple) -> None:
    """Raw HTTP requests through the include: nginx answers each as the Python evaluator decides."""
    ns, store, gw = fuzz_gateway
    held: set[str] = set()
    rev, cases, disagreements = None, 0, []
    client = HttpClient(gw.port)
    try:
        for seed in range(10_000, 10_000 + HTTP_SETS):
            fs = fuzz_set(seed, HTTP_REQUESTS, http=True)
            ids = {r["id"] for r in fs.rules}
            changes = [(r["id"], encode_rule(r)) for r in fs.rules] + [(i, b"") for i in held - ids]
            rev = store.commit(ns, changes, rev, "fuzz", op="put").revision
            held = ids
            gw.wait_revision(rev)
            want = python_decisions(fs.rules, rev, fs.requests)
            for req, w in zip(fs.requests, want):
                why = http_disagreement(w, client.send(req), req.method)
                cases += 1
                if why:
                    disagreements.append((seed, req, w, why))
    finally:
        client.close()
    assert cases == HTTP_SETS * HTTP_REQUESTS
    assert disagreements == [], f"{len(disagreements)}/{cases} disagree, first: {disagreements[:3]}"
    assert gw.error_lines() == []

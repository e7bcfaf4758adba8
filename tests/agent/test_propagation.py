"""A rule written through the store reaches a running client and a sidecar quickly."""
from __future__ import annotations

import statistics
import time

import requests

from .conftest import make_client, request, split_rule


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def test_client_applies_store_writes_with_notifications(cluster, store, namespace):
    """With pub/sub, a committed change is applied long before the 5 s poll would (p99 typically < 10 ms; the bound
    is generous for a loaded CI machine: speed is measured by bench/, not here)."""
    store.put_rule(namespace, split_rule("checkout", "v0"), None, "test")
    with make_client(cluster, namespace, refresh_interval=5.0) as client:
        assert client.revision == 1
        lags = []
        for i in range(1, 61):
            t0 = time.perf_counter()
            w = store.put_rule(namespace, split_rule("checkout", f"v{i}"), None, "test")
            assert client.wait_for_revision(w.revision, 2.0)
            lags.append(time.perf_counter() - t0)
        assert client.decide(request()).upstream == "v60"
        p50, p99 = _percentiles(lags)
        print(f"\npropagation store->client (notifications): p50={p50 * 1000:.1f}ms p99={p99 * 1000:.1f}ms")
        assert p99 < 1.0


def test_client_applies_store_writes_by_polling(cluster, store, namespace):
    """Without notifications the rev poll applies every change (within refresh_interval + ~100 ms; the bound is
    generous for a loaded machine)."""
    store.put_rule(namespace, split_rule("checkout", "v0"), None, "test")
    with make_client(cluster, namespace, refresh_interval=0.2, notifications=False) as client:
        lags = []
        for i in range(1, 16):
            t0 = time.perf_counter()
            w = store.put_rule(namespace, split_rule("checkout", f"v{i}"), None, "test")
            assert client.wait_for_revision(w.revision, 2.0)
            lags.append(time.perf_counter() - t0)
        p50, p99 = _percentiles(lags)
        print(f"\npropagation store->client (polling 0.2s): p50={p50 * 1000:.1f}ms p99={p99 * 1000:.1f}ms")
        assert max(lags) < 1.0


def test_sidecar_applies_store_writes(cluster, store, namespace, sidecar_factory):
    """The sidecar serves the new decision shortly after the commit; health, rules and metrics agree."""
    store.put_rule(namespace, split_rule("checkout", "v0"), None, "test")
    sidecar = sidecar_factory(cluster.startup_nodes, namespace)
    session = requests.Session()
    lags = []
    for i in range(1, 31):
        t0 = time.perf_counter()
        w = store.put_rule(namespace, split_rule("checkout", f"v{i}"), None, "test")
        while session.get(sidecar.url + "/healthz", timeout=2).json()["revision"] != w.revision:
            assert time.perf_counter() - t0 < 2.0
        lags.append(time.perf_counter() - t0)
        assert session.post(sidecar.url + "/v1/decide", json=request(), timeout=2).json()["upstream"] == f"v{i}"
    p50, p99 = _percentiles(lags)
    print(f"\npropagation store->sidecar (HTTP, notifications): p50={p50 * 1000:.1f}ms p99={p99 * 1000:.1f}ms")
    assert p99 < 1.0
    health = session.get(sidecar.url + "/healthz").json()
    assert health["revision"] == 31 and health["redis"] == "ok" and health["stale"] is False
    assert session.get(sidecar.url + "/v1/rules").json()["rules"]["checkout"]["default"] == "v30"
    metrics = session.get(sidecar.url + "/metrics").text
    assert 'rulegate_agent_decisions_total{action="proxy"}' in metrics
    assert "rulegate_agent_revision 31.0" in metrics
    assert sidecar.stop() == 0

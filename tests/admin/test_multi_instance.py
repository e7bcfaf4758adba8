"""Two gunicorn instances on two ports edit the same rule concurrently through the real cluster."""
from __future__ import annotations

import threading

import pytest
import requests

from .conftest import split_rule

pytestmark = pytest.mark.integration

ROUNDS = 15
WRITERS_PER_INSTANCE = 3


def test_concurrent_writers_one_winner_per_revision(servers, users, ns, backend):
    """Writers on both instances race on one rule: one wins per revision, the rest get 412, history shows each win once."""
    h = users["editor"].headers
    first = requests.put(f"{servers[0].url}/api/v1/namespaces/{ns}/rules/web", json=split_rule("web"),
                         headers=h, timeout=5)
    assert first.status_code == 201
    wins: list[tuple[int, int]] = []
    losses: list[int] = []
    lock = threading.Lock()
    for round_no in range(ROUNDS):
        rev = backend.store.revision(ns)
        barrier = threading.Barrier(len(servers) * WRITERS_PER_INSTANCE)

        def write(server, weight):
            barrier.wait()
            r = requests.put(f"{server.url}/api/v1/namespaces/{ns}/rules/web", timeout=10,
                             json=split_rule("web", weight), headers={**h, "If-Match": f'"{rev}"'})
            with lock:
                if r.status_code == 200:
                    wins.append((r.json()["revision"], weight))
                else:
                    assert r.status_code == 412, r.text
                    assert r.json()["current_revision"] == rev + 1
                    losses.append(weight)

        threads = [threading.Thread(target=write, args=(s, 1 + round_no * 10 + i * len(servers) + k))
                   for i in range(WRITERS_PER_INSTANCE) for k, s in enumerate(servers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(wins) == ROUNDS and len(losses) == ROUNDS * (len(servers) * WRITERS_PER_INSTANCE - 1)
    assert sorted(r for r, _ in wins) == list(range(2, ROUNDS + 2))
    history = requests.get(f"{servers[1].url}/api/v1/namespaces/{ns}/history?limit=100", headers=h,
                           timeout=5).json()["entries"]
    accepted = sorted((e["revision"], e["changes"][0]["after"]["policies"][0]["buckets"][0]["weight"])
                      for e in history if e["revision"] > 1)
    assert accepted == sorted(wins)


def test_both_instances_share_sessions_and_tokens(servers, users):
    """A token works on either instance (state lives only in Redis)."""
    for s in servers:
        r = requests.get(f"{s.url}/api/v1/whoami", headers=users["viewer"].headers, timeout=5)
        assert r.status_code == 200 and r.json()["username"] == users["viewer"].username

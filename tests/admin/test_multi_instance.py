"""Two gunicorn instances on two ports edit the same rule concurrently through the real cluster."""
from __future__ import annotations

import re
import threading

import pytest
import requests

from .conftest import PASSWORD, split_rule

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


def _session(server, username: str) -> requests.Session:
    s = requests.Session()
    page = s.get(f"{server.url}/login", timeout=5)
    r = s.post(f"{server.url}/login", timeout=5, allow_redirects=False,
               data={"username": username, "password": PASSWORD, "csrf_token": _csrf(page.content)})
    assert r.status_code == 302
    return s


def _csrf(html: bytes) -> str:
    return re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1).decode()


def test_concurrent_form_edits_one_wins_other_sees_conflict_page(servers, users, ns, backend):
    """Two admins on two instances save the same rule's edit form at once: one saves, one gets the conflict page."""
    backend.rules.put_rule(ns, split_rule("web"), None, "seed")
    sessions = [_session(s, users["editor"].username) for s in servers]
    pages = [s.get(f"{srv.url}/ns/{ns}/rules/web/edit", timeout=5) for s, srv in zip(sessions, servers)]
    barrier = threading.Barrier(2)
    results = [None, None]

    def save(i):
        data = {"csrf_token": _csrf(pages[i].content), "expected_rev": "1", "id": "web", "host": "shop.example.com",
                "path": "/", "enabled": "y", "key_source": "header", "key_name": "x-uid", "default": "stable",
                "policies-0-type": "percent", "policies-0-buckets": f"canary {1 + i}%", "action": "save"}
        barrier.wait()
        results[i] = sessions[i].post(f"{servers[i].url}/ns/{ns}/rules/web/edit", data=data, timeout=10,
                                      allow_redirects=False)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert codes == [302, 409]
    loser = next(r for r in results if r.status_code == 409)
    assert b'id="conflict"' in loser.content and users["editor"].username.encode() in loser.content
    assert backend.store.revision(ns) == 2

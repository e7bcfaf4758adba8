"""Exposure counts: the agent's decisions per rule and target reach its fleet heartbeat and /metrics."""
from __future__ import annotations

import threading

from gateway_agent.exposure import ExposureCounter
from gateway_agent.metrics import AgentMetrics
from rulegate.evaluator import Decision
from rulegate.fleet import MAX_EXPOSURE_KEYS, read_fleet

from .conftest import HOST, make_client, split_rule

PER_THREAD = 150


def _decide_in_threads(client, requests: list[dict], threads: int = 2) -> None:
    def run() -> None:
        for _ in range(PER_THREAD):
            for req in requests:
                client.decide(req)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()


def test_decisions_show_up_per_rule_and_upstream_in_heartbeat_and_metrics(cluster, store, namespace):
    """Two threads' decisions are summed per (rule, upstream) and pass in the next heartbeat and in metrics."""
    store.put_rule(namespace, split_rule("web", "v1"), None, "test")
    store.put_rule(namespace, split_rule("shop", "v2", path="/shop"), None, "test")
    with make_client(cluster, namespace, heartbeat_interval=3600, gateway_id="gw-exposure") as client:
        assert client.wait_for_revision(2, 5.0)
        _decide_in_threads(client, [{"host": HOST, "path": "/", "ip": "10.0.0.1"},
                                    {"host": HOST, "path": "/shop", "ip": "10.0.0.1"},
                                    {"host": "other.example.com", "path": "/", "ip": "10.0.0.1"}])
        assert client.syncer.heartbeat_now()
        beat = read_fleet(store.client, namespace)["gw-exposure"]
        body = AgentMetrics(client).render()[0].decode()
    exposure = beat.exposure
    assert exposure is not None and exposure.window > 0 and exposure.other == 0
    assert sorted(exposure.counts) == [("", "@pass", 2 * PER_THREAD), ("shop", "v2", 2 * PER_THREAD),
                                       ("web", "v1", 2 * PER_THREAD)]
    assert set(exposure.last_match) == {"web", "shop"}
    assert exposure.last_match["web"] >= exposure.since
    assert f'rulegate_agent_rule_decisions_total{{rule="web",target="v1"}} {2 * PER_THREAD}.0' in body
    assert f'rulegate_agent_rule_decisions_total{{rule="",target="@pass"}} {2 * PER_THREAD}.0' in body


def test_roll_reports_the_window_since_the_previous_roll_and_keeps_last_match():
    """A second roll reports only what came after the first; last-match times stay; ended threads still count."""
    clock = [1000.0]
    counter = ExposureCounter(wall=lambda: clock[0])
    web = Decision("proxy", upstream="v1", rule_id="web")
    block = Decision("respond", status=503, rule_id="block")
    worker = threading.Thread(target=lambda: [counter.count(web) for _ in range(7)])
    worker.start()
    worker.join()
    counter.count(block)
    clock[0] = 1010.0
    first = counter.roll()
    assert first.window == 10.0 and sorted(first.counts) == [("block", "@respond", 1), ("web", "v1", 7)]
    assert first.per_minute(7) == 42.0
    counter.count(web)
    clock[0] = 1015.0
    second = counter.roll()
    assert second.window == 5.0 and second.counts == (("web", "v1", 1),)
    assert second.last_match == {"web": 1015.0, "block": 1010.0}
    assert counter.totals() == {("web", "v1"): 8, ("block", "@respond"): 1}


def test_roll_caps_the_keys_and_counts_the_rest_as_other():
    """More than MAX_EXPOSURE_KEYS keys: the largest are kept, the rest summed into `other`."""
    counter = ExposureCounter()
    for i in range(MAX_EXPOSURE_KEYS + 5):
        d = Decision("proxy", upstream="u", rule_id=f"r{i}")
        for _ in range(2 if i < MAX_EXPOSURE_KEYS else 1):
            counter.count(d)
    out = counter.roll()
    assert len(out.counts) == MAX_EXPOSURE_KEYS and out.other == 5
    assert all(n == 2 for _rule, _target, n in out.counts)
    assert len(out.last_match) == MAX_EXPOSURE_KEYS


GEVENT_SCRIPT = """
from gevent import monkey; monkey.patch_all()
import gevent
from gateway_agent.exposure import ExposureCounter
from rulegate.evaluator import Decision
c = ExposureCounter()
d = Decision("proxy", upstream="v1", rule_id="web")
def work():
    for _ in range(100):
        c.count(d)
        gevent.sleep(0)
gevent.joinall([gevent.spawn(work) for _ in range(20)])
print(c.totals()[("web", "v1")], len(c._threads))
"""


def test_gevent_greenlets_share_their_os_threads_counts():
    """Under gevent's monkey-patching (the sidecar) 20 greenlets count into one dict, exactly."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", GEVENT_SCRIPT], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2000", "1"]

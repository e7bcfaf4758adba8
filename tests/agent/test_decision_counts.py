"""The sidecar's decisions-by-action counter: plain per-thread counts, exact across threads, same exposition."""
from __future__ import annotations

import threading

from gateway_agent import RuleClient
from gateway_agent.metrics import AgentMetrics


def test_decision_counts_are_exact_across_threads():
    metrics = AgentMetrics(RuleClient(["127.0.0.1:1"], "counts"))

    def serve(action: str, n: int) -> None:
        for _ in range(n):
            metrics.decisions[action].inc()

    threads = [threading.Thread(target=serve, args=(a, 5000)) for a in ("proxy", "proxy", "pass")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    metrics.decisions["proxy"].inc()  # this thread's own dict, added to the ended threads' counts
    text = metrics.render()[0].decode()
    assert 'rulegate_agent_decisions_total{action="proxy"} 10001.0' in text
    assert 'rulegate_agent_decisions_total{action="pass"} 5000.0' in text
    assert 'rulegate_agent_decisions_total{action="respond"} 0.0' in text
    assert 'rulegate_agent_decisions_created{action="redirect"}' in text

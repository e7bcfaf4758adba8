"""Deterministic tests of the Redis operation budget (injected clock, sleep and random source)."""
from __future__ import annotations

import pytest
import redis
from redis.exceptions import MovedError

from gateway_agent.budget import Budget, BudgetConfig, BudgetExhausted, JitterBackoff


class FakeClock:
    """A clock that only moves when sleep() is called (or a test advances it)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make(clock: FakeClock, rand: float = 1.0, **cfg) -> Budget:
    return Budget(BudgetConfig(**cfg), clock=clock, sleep=clock.sleep, rand=lambda: rand)


def test_backoff_is_capped_exponential_with_jitter():
    """JitterBackoff computes min(cap, rand * base * 2**failures) like redis-py's."""
    b = JitterBackoff(cap=0.5, base=0.05, rand=lambda: 0.5)
    assert [b.compute(n) for n in range(1, 6)] == [0.05, 0.1, 0.2, 0.4, 0.5]


def test_success_needs_one_attempt():
    """A successful call is made once, without sleeping."""
    clock = FakeClock()
    budget = make(clock)
    assert budget.run("op", lambda op: "ok") == "ok"
    assert budget.stats.snapshot()["attempts"] == 1 and clock.sleeps == []


def test_retryable_errors_use_at_most_max_attempts_with_backoff():
    """Three connection errors exhaust the default budget after two backoff sleeps."""
    clock = FakeClock()
    budget = make(clock, backoff_base=0.05, backoff_cap=0.5)
    calls = []

    def fail(op):
        calls.append(op.attempt)
        raise redis.ConnectionError("refused")

    with pytest.raises(BudgetExhausted, match="3 attempt"):
        budget.run("op", fail)
    assert calls == [1, 2, 3]
    assert clock.sleeps == [0.1, 0.2]
    stats = budget.stats.snapshot()
    assert stats["attempts"] == 3 and stats["failed_operations"] == 1


def test_deadline_stops_retries_early():
    """When each attempt eats the deadline, no further attempt is made."""
    clock = FakeClock()
    budget = make(clock, deadline=1.0)
    calls = []

    def slow(op):
        calls.append(1)
        clock.now += 0.95
        raise redis.TimeoutError("timeout")

    with pytest.raises(BudgetExhausted):
        budget.run("op", slow)
    assert len(calls) == 1


def test_connection_cap_is_hard():
    """An operation may not open a third connection, whatever the attempts left."""
    clock = FakeClock()
    budget = make(clock, max_attempts=10, max_connections=2)

    def reconnects(op):
        op.open_connection()
        raise redis.ConnectionError("reset")

    with pytest.raises(BudgetExhausted, match="connection cap"):
        budget.run("op", reconnects)
    stats = budget.stats.snapshot()
    assert stats["connections_opened"] == 2
    assert stats["max_connections_in_operation"] == 2
    assert stats["attempts"] == 3


def test_redirects_are_counted_and_retried():
    """MOVED replies count as redirects and are retried within the attempt budget."""
    clock = FakeClock()
    budget = make(clock)
    seen = []

    def moved_once(op):
        if not seen:
            seen.append(1)
            raise MovedError("3999 127.0.0.1:7001")
        return "ok"

    assert budget.run("op", moved_once) == "ok"
    assert budget.stats.snapshot()["redirects"] == 1


def test_moved_storm_stays_bounded():
    """An endless MOVED storm costs exactly max_attempts attempts."""
    clock = FakeClock()
    budget = make(clock)

    def storm(op):
        raise MovedError("3999 127.0.0.1:7001")

    with pytest.raises(BudgetExhausted):
        budget.run("op", storm)
    stats = budget.stats.snapshot()
    assert stats["attempts"] == 3 and stats["redirects"] == 3


def test_non_retryable_errors_are_raised_at_once():
    """A plain error reply (not a topology/timeout error) is not retried."""
    budget = make(FakeClock())
    calls = []

    def wrongtype(op):
        calls.append(1)
        raise redis.ResponseError("WRONGTYPE")

    with pytest.raises(redis.ResponseError):
        budget.run("op", wrongtype)
    assert calls == [1]


NODES = """\
aaa 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
bbb 127.0.0.1:7001@17001 master,fail? - 0 0 2 connected 5461-10922 [5500->-ccc]
ccc 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383
ddd 127.0.0.1:7003@17003 slave bbb 0 0 2 connected
eee 127.0.0.1:7004@17004 slave,fail bbb 0 0 2 disconnected
fff 127.0.0.1:7005@17005 slave aaa 0 0 1 connected
"""


@pytest.mark.parametrize("slot, master, replicas", [
    (0, "127.0.0.1:7000", ["127.0.0.1:7005"]),
    (5500, "127.0.0.1:7001", ["127.0.0.1:7003"]),
    (16383, "127.0.0.1:7002", []),
])
def test_parse_cluster_nodes(slot, master, replicas):
    """The slot's master (even if only suspected down) and its healthy connected replicas are found."""
    from gateway_agent.budget import parse_cluster_nodes
    assert parse_cluster_nodes(NODES.encode(), slot) == (master, replicas)

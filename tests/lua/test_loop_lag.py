"""The event-loop lag probe of the nginx gateway (lua/rulegate/loop_lag.lua): a worker whose own work holds its
loop shows a held lag, a worker the machine does not run (here: stopped by SIGSTOP) a lag that is not held, and
both reach /rulegate/status and /rulegate/metrics."""

from __future__ import annotations

import os
import signal
import time
from typing import Any, Callable

import pytest

from rulegate_dev.nginx import NginxError

from .conftest import Gateway, wait_for


def lags(gw: Gateway) -> dict[str, Any]:
    """Return the status's loop_lag (every worker's flushed counts)."""
    lag = gw.status()["loop_lag"]
    assert lag is not None, "the probe is not running"
    return lag


def added_from(before: dict[str, Any], after: dict[str, Any], kind: str, seconds: float) -> int:
    """Return how many lags of `kind` (late or held) over `seconds` were counted between two readings."""
    bounds = after["bounds"]
    return sum(after[kind][i] - before[kind][i] for i in range(len(after[kind]))
               if i == len(bounds) or bounds[i] > seconds)


def counted(gw: Gateway, before: dict[str, Any], kind: str, seconds: float) -> dict[str, Any]:
    """Wait for a flush that counted a lag of `kind` over `seconds` since `before`; return that reading."""
    def check() -> dict[str, Any] | None:
        lag = lags(gw)
        return lag if added_from(before, lag, kind, seconds) else None
    return wait_for(check, f"a {kind} lag over {seconds} s", timeout=5)


def first_flush(gw: Gateway) -> dict[str, Any]:
    """Wait until the workers flushed counts of the probe; return that reading."""
    def check() -> dict[str, Any] | None:
        lag = lags(gw)
        return lag if lag["samples"] > 0 else None
    return wait_for(check, "the first flush")


def test_a_worker_holding_its_loop_shows_a_held_lag_in_status_and_metrics(
    make_gateway: Callable[..., Gateway], redis_nodes: list[str]
) -> None:
    gw = make_gateway("lag-hold", redis_nodes, workers=1, loop_lag_interval=0.005)
    before = first_flush(gw)
    assert before["interval"] == 0.005
    assert gw.get("/lua-hold?ms=120").status == 200
    after = counted(gw, before, "held", 0.05)
    assert added_from(before, after, "late", 0.05) >= 1
    assert after["sum"] - before["sum"] >= 0.05
    text = gw.get("/rulegate/metrics").body
    assert "# TYPE rulegate_nginx_loop_lag_seconds histogram" in text
    assert "# TYPE rulegate_nginx_loop_held_seconds histogram" in text
    held = {line.split('le="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("rulegate_nginx_loop_held_seconds_bucket")}
    assert held["+Inf"] > held["0.05"], held  # the hold, counted in a bucket above 50 ms
    assert "rulegate_nginx_loop_lag_seconds_sum" in text


def test_a_worker_the_machine_does_not_run_lags_without_holding(
    make_gateway: Callable[..., Gateway], redis_nodes: list[str]
) -> None:
    gw = make_gateway("lag-stop", redis_nodes, workers=1, loop_lag_interval=0.005)
    before = first_flush(gw)
    pid = gw.status()["worker"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(0.15)
    finally:
        os.kill(pid, signal.SIGCONT)
    after = counted(gw, before, "late", 0.1)
    assert added_from(before, after, "held", 0.05) == 0, after


def test_the_probe_runs_by_default_every_100_ms(make_gateway: Callable[..., Gateway], redis_nodes: list[str]) -> None:
    gw = make_gateway("lag-default", redis_nodes, workers=1)
    lag = first_flush(gw)
    assert lag["interval"] == 0.1
    assert len(lag["late"]) == len(lag["held"]) == len(lag["bounds"]) + 1


def test_the_probe_can_be_turned_off(make_gateway: Callable[..., Gateway], redis_nodes: list[str]) -> None:
    gw = make_gateway("lag-off", redis_nodes, workers=1, loop_lag_interval=False)
    assert gw.status()["loop_lag"] is None
    assert "rulegate_nginx_loop_lag_seconds" not in gw.get("/rulegate/metrics").body


@pytest.mark.parametrize("interval", [0.0001, 61, "fast", True])
def test_a_bad_interval_stops_nginx_naming_the_option(make_gateway: Callable[..., Gateway], interval: Any) -> None:
    with pytest.raises(NginxError) as failed:
        make_gateway("cfg", ["127.0.0.1:1"], loop_lag_interval=interval)
    assert "opts.loop_lag_interval must be 0.001-60 seconds" in str(failed.value)

"""ruleadmin/guards.py: sliding windows from cumulative heartbeat readings, and the guard's verdicts."""
from types import SimpleNamespace

from ruleadmin.guards import FleetOutcomes, judge
from rulegate.outcomes import N_LATENCY, OutcomeCounts, Outcomes, latency_bucket, status_class

T0 = 1_800_000_000.0


def oc(ok=0, err=0, ms=3.0, err_ms=None):
    classes, latency = [0] * 6, [0] * N_LATENCY
    classes[status_class(200)] += ok
    classes[status_class(503)] += err
    latency[latency_bucket(ms)] += ok
    latency[latency_bucket(ms if err_ms is None else err_ms)] += err
    return OutcomeCounts(tuple(classes), tuple(latency))


def beat(at, since, counts):
    return SimpleNamespace(heartbeat_at=at, outcomes=Outcomes(since, counts))


def policy(**guard):
    guard = {"control": "stable", "min_requests": 100, "window": 60, "on_breach": "revert", **guard}
    return {"type": "percent", "buckets": [{"upstream": "canary", "weight": 1}],
            "ramp": {"start": int(T0) - 100, "end": int(T0) + 1000, "from": 0, "to": 10000, "mode": "linear",
                     "guard": guard}}


def test_windows_count_what_counters_gained_between_readings():
    fo = FleetOutcomes()
    key = ("r", "canary")
    fo.observe({"g1": beat(T0, T0 - 5, {key: oc(ok=10)})}, T0)          # fresh counters: counted whole
    fo.observe({"g1": beat(T0, T0 - 5, {key: oc(ok=10)})}, T0 + 1)      # the same heartbeat again: nothing
    fo.observe({"g1": beat(T0 + 2, T0 - 5, {key: oc(ok=15, err=2)})}, T0 + 2)
    assert fo.window(60, T0 + 2)[key] == oc(ok=15, err=2)
    assert fo.window(1, T0 + 2)[key] == oc(ok=5, err=2)                 # only the last reading's gain
    fo.observe({"g1": beat(T0 + 3, T0 + 3, {key: oc(ok=4)})}, T0 + 3)  # restarted (new since): counted whole
    assert fo.window(60, T0 + 3)[key] == oc(ok=19, err=2)
    assert fo.window(60, T0 + 200) == {}                               # everything slid out


def test_first_reading_of_an_old_gateway_is_only_a_baseline():
    fo = FleetOutcomes()
    key = ("r", "stable")
    fo.observe({"old": beat(T0, T0 - 3600, {key: oc(ok=10_000)}), "dead": None}, T0)
    assert fo.window(60, T0) == {}
    fo.observe({"old": beat(T0 + 1, T0 - 3600, {key: oc(ok=10_030)})}, T0 + 1)
    assert fo.window(60, T0 + 1)[key].requests == 30


def fleet(canary, control, at=T0):
    fo = FleetOutcomes()
    fo.observe({"g": beat(at, at - 1, {("r", "canary"): canary, ("r", "stable"): control})}, at)
    return fo


def test_error_increase_breaches_only_beyond_the_margin_and_with_enough_samples():
    p = policy(max_error_increase=0.05)
    assert judge("r", 0, p, fleet(oc(ok=90, err=10), oc(ok=100)), T0).state == "breach"
    assert judge("r", 0, p, fleet(oc(ok=96, err=4), oc(ok=100)), T0).state == "ok"
    assert judge("r", 0, p, fleet(oc(ok=96, err=10), oc(ok=95, err=5)), T0).state == "ok"   # 9.4% vs 5%: +4.4
    short = judge("r", 0, p, fleet(oc(ok=40, err=40), oc(ok=100)), T0)
    assert short.state == "insufficient" and "80 of 100" in short.reason
    v = judge("r", 0, p, fleet(oc(ok=90, err=10), oc(ok=100)), T0)
    assert "canary error ratio 10.00% vs stable 0.00%" in v.reason and v.canary.requests == 100
    assert v.share == 1000 * 0 + (10000 * 100) // 1100                   # E(now) of the linear ramp


def test_p95_ratio_uses_the_histograms():
    p = policy(max_p95_ratio=1.5)
    assert judge("r", 0, p, fleet(oc(ok=100, ms=300), oc(ok=100, ms=30)), T0).state == "breach"
    assert judge("r", 0, p, fleet(oc(ok=100, ms=40), oc(ok=100, ms=30)), T0).state == "ok"


def test_all_bucket_upstreams_together_are_the_canary():
    p = policy(max_error_increase=0.1)
    p["buckets"] = [{"upstream": "a", "weight": 1}, {"upstream": "b", "weight": 1}]
    fo = FleetOutcomes()
    fo.observe({"g": beat(T0, T0, {("r", "a"): oc(ok=50), ("r", "b"): oc(ok=30, err=20), ("r", "stable"): oc(ok=100)})},
               T0)
    v = judge("r", 0, p, fo, T0)
    assert v.state == "breach" and v.canary.upstream == "a+b" and v.canary.errors == 20

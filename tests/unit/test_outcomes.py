"""rulegate/outcomes.py: status classes, latency buckets, windows from cumulative readings, the wire form."""
import msgpack

from rulegate.outcomes import (
    LAT_BOUNDS_MS,
    N_LATENCY,
    OutcomeCounts,
    Outcomes,
    decode_outcomes,
    latency_bucket,
    status_class,
    total,
)


def counts(statuses_and_ms):
    classes, latency = [0] * 6, [0] * N_LATENCY
    for status, ms in statuses_and_ms:
        classes[status_class(status)] += 1
        latency[latency_bucket(ms)] += 1
    return OutcomeCounts(tuple(classes), tuple(latency))


def test_status_classes_and_failures():
    assert [status_class(s) for s in (100, 200, 299, 302, 404, 500, 599, 0, 600, -1, 99)] == \
        [1, 2, 2, 3, 4, 5, 5, 0, 0, 0, 0]


def test_latency_buckets_are_half_open_at_each_bound():
    assert latency_bucket(0) == 0 and latency_bucket(-3) == 0 and latency_bucket(4.99) == 0
    assert latency_bucket(5) == 1 and latency_bucket(9.9) == 1 and latency_bucket(10) == 2
    assert latency_bucket(10_000) == len(LAT_BOUNDS_MS) and latency_bucket(1e9) == N_LATENCY - 1


def test_ratios_and_quantiles():
    c = counts([(200, 3)] * 90 + [(503, 40)] * 5 + [(0, 2000)] * 5)
    assert c.requests == 100 and c.errors == 10 and c.error_ratio() == 0.1
    assert c.quantile_ms(0.5) == 5.0          # 3 ms lies in [0, 5)
    assert c.quantile_ms(0.95) == 50.0        # the 95th of 100 is the last 503 at 40 ms: bucket [25, 50)
    assert c.quantile_ms(0.99) == 2500.0
    assert OutcomeCounts().error_ratio() is None and OutcomeCounts().quantile_ms(0.95) is None
    assert counts([(200, 50_000)]).quantile_ms(0.95) == 20_000.0


def test_window_from_two_cumulative_readings_and_reset():
    early = counts([(200, 1)] * 10)
    later = early.plus(counts([(500, 1)] * 3))
    window = later.minus(early)
    assert window.requests == 3 and window.errors == 3
    assert early.minus(later) == early  # a counter went down: the gateway restarted, take the reading whole
    assert total([early, window]) == later


def test_wire_round_trip_through_msgpack_and_garbage():
    o = Outcomes(1700000000.5, {("r1", "canary"): counts([(200, 7), (502, 30)]), ("r1", "stable"): counts([(200, 1)])})
    back = decode_outcomes(msgpack.unpackb(msgpack.packb(o.to_wire())))
    assert back == o
    for bad in (None, [], {"counts": [["r", "u", [1, 2], [0] * N_LATENCY]]}, {"counts": [["r", "u"]]},
                {"counts": [["r", "u", [-1, 0, 0, 0, 0, 0], [0] * N_LATENCY]]}, {"since": "x"}):
        assert decode_outcomes(bad) is None
    assert decode_outcomes({}) == Outcomes(0.0, {})

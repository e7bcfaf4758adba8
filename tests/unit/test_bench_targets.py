"""bench/targets.py reads the figures the benches print (samples of their real output) and judges each target."""
from __future__ import annotations

from bench import targets

RELOAD = """
measure                                                      |               python agent | nginx (2 workers)
10000 rules, one-rule change: Redis bytes read               |                      768 B | 1,268 B
10000 rules, full reload: CPU                                |                     117 ms | 230 ms / 90 ms
10000 rules, full reload of bytes held (new generation): CPU |                      16 ms | 80 ms / 100 ms
10000 rules, ... the syncing worker's event loop alone       |                            | 86 ms (bytes held: 52 ms)
10000 rules, request latency at rest: max                    |         31.8 ms (p50 0.37) | 3.5 ms (p50 0.57)
10000 rules, request latency during a full reload: max       |         13.9 ms (p50 0.36) | 4.1 ms (p50 0.37)
10000 rules, ... every rule's bytes new: max                 |          5.5 ms (p50 0.34) | 4.9 ms (p50 0.32)
"""

ADMIN = """
instances | scenario                           | writes/s |  p50 ms |  p99 ms |   412s | errors | lost |  admin
----------+------------------------------------+----------+---------+---------+--------+--------+------+-------
        1 | own namespace each                 |     1274 |     5.3 |    17.7 |      0 |      0 |    0 |   1.02
        1 | one namespace, If-Match rule ETag  |     1204 |     6.0 |    16.2 |      0 |      0 |    0 |   1.13
        2 | own namespace each                 |      958 |     7.4 |    21.8 |      0 |      0 |    0 |   1.50
        2 | one namespace, If-Match rule ETag  |     1040 |     6.8 |    20.9 |      0 |      0 |    2 |   1.43

scenario                           | writes/s |   412s | lost
own namespace each                 |     2835 |      0 |    0
one namespace, If-Match rule ETag  |     3236 |      0 |    0
"""

MEMORY = """
20,000 rules, raw stored size 4.2 MiB (baseline), nginx with 2 workers: after the first load and 5 deltas
| 7427 (syncing) | 18.9 | 4.5x | 46.0 | 10.9x | 4.4 / 33.8 / 0.8 / 6.8 | 37.0 |
20,000 rules, raw stored size 4.2 MiB (baseline), nginx with 2 workers: after full reload 2 (every rule's bytes new)
| 7427 (syncing) | 18.8 | 4.5x | 69.5 | 16.5x | 10.0 / 51.9 / 0.8 / 6.8 | 57.5 |
| 7428 (other) | 17.1 | 4.1x | 66.4 | 15.8x | 9.9 / 48.9 / 0.8 / 6.8 | 64.4 |
"""


def test_nginx_full_load_is_judged_by_its_slowest_worker_and_waits_by_the_worst_reload():
    rows = {r.target: r for r in targets.reload(RELOAD)}
    cpu = rows["nginx: 10,000 rules load ≤ 100 ms CPU per worker (every rule's bytes new)"]
    assert (cpu.figure, cpu.baseline, cpu.met) == ("230 ms / 90 ms (syncing / other)", "bytes held: 80 ms / 100 ms",
                                                   False)
    loop = rows["nginx: the syncing worker's event loop during that load ≤ 100 ms CPU (its check in the thread pool)"]
    assert (loop.figure, loop.met) == ("86 ms (bytes held: 52 ms)", True)
    assert loop.baseline == "the worker's CPU, all threads: 230 ms"
    agent = rows["Python agent: whole full reload of 10,000 rules (read included) ≤ 100 ms CPU"]
    assert (agent.figure, agent.met) == ("117 ms", False)
    waits = rows["nginx: no request waits > 5 ms during a full reload"]
    assert waits.met is True and waits.baseline == "at rest 3.5 ms (p50 0.57)"


def test_rest_rows_need_the_rate_and_no_lost_write():
    one_ns, own = targets.admin_write(ADMIN)
    assert one_ns.figure == "1 instance 1204/s, 2 instances 1040/s, lost 2"
    assert one_ns.met is True  # the target is the one-instance row's; the lost write is in the two-instance row
    assert one_ns.baseline == "RuleStore in process: 3236/s"
    assert (own.figure, own.met) == ("958/s, lost 0", False)


def test_nginx_memory_reads_the_last_table_and_every_worker_must_fit():
    (row,) = targets.nginx_memory(MEMORY)
    assert row.figure == "syncing: PSS 57.5, RSS 69.5 MiB; other: PSS 64.4, RSS 66.4 MiB"
    assert row.met is False  # 64.4 > 64
    assert row.baseline == "raw stored size 4.2 MiB"


def test_python_figures_and_thresholds():
    (load,) = targets.cold_load("10000 rules, nothing held: 100.4 ms thread CPU (best of 5)\n"
                                "10000 rules, all held: 18.7 ms thread CPU (best of 5)")
    assert (load.figure, load.baseline, load.met) == ("100.4 ms", "the same bytes held: 18.7 ms", False)
    (decide,) = targets.decide("| 1,000 | 0.07 (1x) | 0.58 (9x) | 1.43 (22x) | 1.48 (23x) |")
    assert decide.met is True and decide.baseline == "dict lookup 0.07 µs; decide() alone 0.58 µs"
    rows = targets.agent_memory("| 10,000 | 2.04 MiB | 3.08 MiB | 4.99 MiB | 0.00 MiB | 8.06 MiB | 3.95x | +1 | +1 |\n"
                                "| 20,000 | 4.09 MiB | 6.16 MiB | 9.93 MiB | 0.00 MiB | 16.50 MiB | 4.03x | +1 | +1 |")
    assert [(r.figure, r.met) for r in rows] == [("8.06 MiB (3.95x)", True), ("16.50 MiB (4.03x)", False)]
    (placed,) = targets.agent_memory("| 10,000 | 2.04 MiB | 3.08 MiB | 2.69 MiB | 0.00 MiB | 5.77 MiB | 2.83x "
                                     "| +2.37 MiB | +0.89 MiB | 8.14 MiB | 3.99x |")
    assert "every route decided" in placed.target and placed.met is True
    assert placed.figure == "8.14 MiB (3.99x); after the load 5.77 MiB (2.83x)"
    (over,) = targets.agent_memory("| 10,000 | 2.04 MiB | 3.08 MiB | 2.69 MiB | 0.00 MiB | 5.77 MiB | 2.83x "
                                   "| +2.37 MiB | +0.89 MiB | 8.40 MiB | 4.12x |")
    assert over.met is False  # judged with every route compiled, not after the load alone


def test_an_output_without_the_figure_is_not_judged():
    assert [r.met for r in targets.reload("")] == [None]
    assert [r.met for r in targets.gateway("wrk: connection refused")] == [None]
    assert [r.met for r in targets.reload_wait("")] == [None]

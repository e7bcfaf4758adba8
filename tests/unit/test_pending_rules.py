"""A full load places the rules it checked without compiling them; each route's first request compiles its rules
(`rulegate.evaluator.place_rule`), and the set decides exactly as one compiled from the rules (docs/design.md,
"Pending rules")."""
from __future__ import annotations

import random
import sys
import threading

import msgpack

from gateway_agent.compiled import CompileCache
from rulegate.evaluator import PENDING_MAX, Request, RuleSet, decide, find_route
from rulegate.schema import decode_rule, encode_rule, validate_rule
from tests.conftest import placed_ruleset
from tests.unit.test_applied_memory import REQUESTS, loaded_client, vector_rules


def split(rule_id: str, path: str, default: str = "stable", **extra) -> dict:
    return validate_rule({"id": rule_id, "kind": "split", "route": {"host": "a.example.com", "path": path, **extra},
                          "key": {"source": "header", "name": "x-uid"},
                          "policies": [{"type": "uid_suffix", "suffixes": ["7"], "upstream": "canary"}],
                          "default": default})


def shed(rule_id: str, path: str) -> dict:
    return validate_rule({"id": rule_id, "kind": "degrade", "route": {"host": "a.example.com", "path": path},
                          "percent": 100, "action": {"type": "reject", "status": 503}})


def req(path: str, uid: str = "1", method: str = "GET") -> Request:
    return Request(host="a.example.com", path=path, method=method, headers={"x-uid": uid})


def routes(rs: RuleSet) -> list:
    return [route for index in rs._indexes() for route in index.by_path.values()]


def item_ids(route) -> list[str]:
    return [item.rule_id for item in (*route.degrades, *route.all_splits(), *(route.pending or ()))]


def test_a_load_compiles_no_rule_and_each_routes_first_request_compiles_its_own() -> None:
    """After a load every route is pending; a request compiles the routes it looks at and no other."""
    rules = [split(f"r{i}", f"/p{i}") for i in range(20)] + [shed("s3", "/p3")]
    rs = placed_ruleset(rules, 4)
    assert all(route.pending and not route.degrades and not route.all_splits() for route in routes(rs))
    assert decide(rs, req("/p3/x", "7")).to_dict() == {"action": "respond", "rule_id": "s3", "revision": 4,
                                                        "status": 503, "headers": {}, "body": ""}
    compiled = [route for route in routes(rs) if route.pending is None]
    assert len(compiled) == 1 and sorted(item_ids(compiled[0])) == ["r3", "s3"]
    d = decide(rs, req("/p5", "7"))
    assert (d.upstream, d.rule_id, d.revision) == ("canary", "r5", 4)
    assert sum(route.pending is None for route in routes(rs)) == 2
    eager = RuleSet(rules, 4)
    for i in range(20):
        for uid in ("1", "7"):
            assert decide(rs, req(f"/p{i}/y", uid)) == decide(eager, req(f"/p{i}/y", uid))


def test_a_route_of_more_than_pending_max_rules_is_compiled_at_load() -> None:
    """No first request compiles more than PENDING_MAX rules: a larger route is compiled when the set is built."""
    small = [split(f"a{i}", "/small", methods=[m]) for i, m in enumerate(["GET", "PUT"])]
    big = [split(f"b{i:03d}", "/big", methods=["GET"]) for i in range(PENDING_MAX + 1)]
    rs = placed_ruleset(small + big, 2)
    by_len = {len(item_ids(route)): route for route in routes(rs)}
    assert by_len[2].pending and by_len[PENDING_MAX + 1].pending is None
    assert decide(rs, req("/big")).rule_id == "b000" and decide(rs, req("/small", method="PUT")).rule_id == "a1"


def test_a_large_route_compiled_at_load_pauses_between_rules() -> None:
    """Compiling a large route when its set is built yields like the rest of the load (every 4 rules)."""
    rules = [split(f"b{i:03d}", "/big", methods=["GET"]) for i in range(400)]
    raw = {r["id"]: encode_rule(r) for r in rules}
    loaded = CompileCache().load(raw, where="test")
    calls = []
    rs = RuleSet.from_compiled(loaded.rules, 1, pause=lambda: calls.append(1))
    assert len(calls) >= 100 + 400 // 64 and all(route.pending is None for route in routes(rs))


def test_bytes_not_in_canonical_form_compile_as_the_validator_reads_them() -> None:
    """A rule stored in another form (foreign writer: keys reordered, host in capitals) is compiled from what
    the full validator makes of it, as a load compiling it would."""
    rule = split("r1", "/p", default="blue")
    odd = {**{k: rule[k] for k in reversed(list(rule))}, "route": {"host": "A.Example.COM", "path": "/p"}}
    value = msgpack.packb(odd)
    assert value != encode_rule(rule) and decode_rule(value) == rule
    loaded = CompileCache().load({"r1": value}, where="test")
    rs = RuleSet.from_compiled(loaded.rules, 3)
    (route,) = routes(rs)
    assert route.pending[0].canonical is False and route.pending[0].value == value
    assert decide(rs, req("/p/x")).upstream == "blue" and route.pending is None


def test_a_delta_keeps_untouched_routes_pending_and_shared_and_decides_like_a_compile() -> None:
    """A change to a rule of a pending route keeps that route's other rules pending; untouched routes stay pending
    and shared with the old set, which is not changed; both sets decide as compiled ones, each with its revision."""
    rules = {r["id"]: r for r in [split("a", "/a"), split("b", "/a", methods=["POST"]), split("c", "/c")]}
    old = placed_ruleset(list(rules.values()), 5)
    new = old.with_changes({"b": split("b", "/a", default="blue", methods=["POST"])}, [], 6, "")
    (a_route,) = [route for route in routes(new) if "a" in item_ids(route)]
    assert [item.rule_id for item in a_route.pending] == ["a"] and a_route.splits[0].rule_id == "b"
    c_old = [route for route in routes(old) if "c" in item_ids(route)][0]
    assert c_old.pending and c_old in routes(new)
    assert decide(new, req("/c")).revision == 6 and c_old.pending is None  # compiled for the new set, shared
    assert decide(old, req("/c")).revision == 5
    final = {**rules, "b": split("b", "/a", default="blue", methods=["POST"])}
    for rs, want in ((new, RuleSet(final.values(), 6)), (old, RuleSet(rules.values(), 5))):
        for path in ("/a", "/c", "/x"):
            for method in ("GET", "POST"):
                assert decide(rs, req(path, "1", method)) == decide(want, req(path, "1", method))
    gone = new.with_changes({}, ["a"], 7, "")
    assert decide(gone, req("/a")).action == "pass" and decide(gone, req("/a", method="POST")).upstream == "blue"


def test_a_reload_over_a_partly_compiled_set_reuses_both_kinds() -> None:
    """The compile cache gives back compiled and still pending rules alike; the set built from them decides the
    same and leaves pending what no request compiled."""
    rules = vector_rules()
    raw = {i: encode_rule(r) for i, r in rules.items()}
    cache = CompileCache()
    loaded = cache.load(raw, where="ns")
    rs = loaded.ruleset(1, "g")
    cache.hold(loaded.raw, rs, loaded.guarded, loaded.digest)
    for r in REQUESTS[: len(REQUESTS) // 2]:
        decide(rs, r)
    assert any(route.pending for route in routes(rs)) and any(route.pending is None for route in routes(rs))
    again = cache.load({i: bytes(v) for i, v in raw.items()}, where="ns")
    assert cache.misses == len(raw) and cache.hits == len(raw)
    reloaded = RuleSet.from_compiled(again.rules, 2)
    assert any(route.pending for route in routes(reloaded))
    eager = RuleSet(rules.values(), 2)
    assert [decide(reloaded, r) for r in REQUESTS] == [decide(eager, r) for r in REQUESTS]


def test_the_agents_full_load_leaves_its_routes_to_their_first_requests(tmp_path) -> None:
    """The agent's load (here from its snapshot file) places every enabled rule; RuleClient.decide compiles."""
    rules = vector_rules()
    client = loaded_client(tmp_path, rules)
    rs = client.syncer.current.ruleset
    enabled = sum(r.get("enabled", True) is not False for r in rules.values())
    placed = [item for route in routes(rs) for item in route.pending or ()]
    assert len(placed) == enabled
    eager = RuleSet(rules.values(), 5, "gen")
    assert [client.decide(r) for r in REQUESTS] == [decide(eager, r) for r in REQUESTS]
    assert find_route(rs, REQUESTS[0]).pending is None


def test_threads_compiling_one_route_at_once_agree_and_place_each_rule_once() -> None:
    """First requests from several threads at once (the in-process library): every decision is the compiled
    set's and every route ends with each of its rules exactly once."""
    rng = random.Random(7)
    rules = [split(f"r{i:03d}", f"/p{i % 40}", default=rng.choice(["x", "y"]),
                   methods=rng.choice([["GET"], ["POST"], ["GET", "POST"]])) for i in range(200)]
    rules += [shed(f"s{i}", f"/p{i}") for i in range(0, 40, 7)]
    rules += [split(f"q{i:02d}", f"/q{i}", default=rng.choice(["x", "y"])) for i in range(30)]  # one rule a route
    rules += [shed(f"t{i:02d}", f"/t{i}") for i in range(10)]
    eager = RuleSet(rules, 9)
    requests = [req(f"/{'pqt'[i % 3]}{i % 40}/z", str(i % 10), rng.choice(["GET", "POST", "PUT"]))
                for i in range(400)]  # every route of every kind
    want = [decide(eager, r) for r in requests]
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(20):
            rs = placed_ruleset(rules, 9)
            bad: list[int] = []

            def run(offset: int) -> None:
                for n in range(len(requests)):
                    k = (n + offset) % len(requests)
                    if decide(rs, requests[k]) != want[k]:
                        bad.append(k)

            threads = [threading.Thread(target=run, args=(i * 50,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert bad == []
            for route in routes(rs):
                ids = item_ids(route)
                assert route.pending is None and len(ids) == len(set(ids))
            assert sum(len(item_ids(route)) for route in routes(rs)) == len(rules)
    finally:
        sys.setswitchinterval(before)

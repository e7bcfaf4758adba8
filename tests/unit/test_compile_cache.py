"""A full reload re-uses the compiled form of stored bytes it has seen, and only of exactly those bytes."""
from __future__ import annotations

import msgpack
import pytest

from gateway_agent.compiled import CompileCache
from rulegate.digest import content_digest
from rulegate.errors import CorruptDataError
from rulegate.evaluator import Request, RuleSet, decide
from rulegate.schema import encode_rule, validate_rule
from rulegate.snapshot import encode_snapshot, make_snapshot
from tests.unit.test_applied_memory import REQUESTS, vector_rules


def split(rule_id: str, default: str) -> dict:
    return validate_rule({"id": rule_id, "kind": "split", "route": {"host": "a.example.com", "path": "/"},
                          "key": {"source": "header", "name": "x-uid"},
                          "policies": [{"type": "uid_suffix", "suffixes": ["7"], "upstream": "canary"}],
                          "default": default})


def upstream(loaded, revision: int) -> str | None:
    rs = RuleSet.from_compiled(loaded.rules, revision)
    return decide(rs, Request(host="a.example.com", path="/x", headers={"x-uid": "1"})).upstream


def test_reload_of_the_same_bytes_decides_as_a_fresh_compile():
    """Cached rules compiled at revision 1 give exactly RuleSet(rules, 2)'s decisions, revision included."""
    rules = vector_rules()
    raw = {i: encode_rule(r) for i, r in rules.items()}
    cache = CompileCache()
    cache.load(raw, 1, where="ns")
    again = cache.load({i: bytes(v) for i, v in raw.items()}, 2, where="ns")
    assert cache.hits == len(raw) and again.digest == content_digest(raw)
    fresh, cached = RuleSet(rules.values(), 2), RuleSet.from_compiled(again.rules, 2)
    for req in REQUESTS:
        assert decide(cached, req) == decide(fresh, req)


def test_changed_bytes_are_validated_and_compiled_again():
    """A rule whose stored bytes changed is decoded again: its new content decides."""
    cache = CompileCache()
    assert upstream(cache.load({"r1": encode_rule(split("r1", "stable"))}, 1, where="ns"), 1) == "stable"
    loaded = cache.load({"r1": encode_rule(split("r1", "blue"))}, 2, where="ns")
    assert (cache.hits, cache.misses) == (0, 2) and upstream(loaded, 2) == "blue"


@pytest.mark.parametrize("bad", [
    b"\xc1garbage",
    msgpack.packb({**split("r1", "stable"), "default": "not an upstream!"}),
], ids=["undecodable", "invalid"])
def test_corrupt_bytes_are_refused_though_the_rule_was_cached_valid(bad):
    """A rule cached valid under other bytes is refused once its stored bytes are corrupt; the cache stays."""
    good = encode_rule(split("r1", "stable"))
    cache = CompileCache()
    cache.load({"r1": good, "r2": encode_rule(split("r2", "stable"))}, 1, where="namespace 'ns'")
    with pytest.raises(CorruptDataError, match="namespace 'ns' rule 'r1'"):
        cache.load({"r1": bad, "r2": encode_rule(split("r2", "stable"))}, 2, where="namespace 'ns'")
    assert len(cache) == 2
    cache.load({"r1": good}, 3, where="ns")
    assert (cache.hits, cache.misses) == (1, 2)  # the refused load counts nothing


def test_cached_bytes_under_another_id_are_refused():
    """Bytes cached for r1 stored under r2 are refused (stored under another id), as without a cache."""
    value = encode_rule(split("r1", "stable"))
    cache = CompileCache()
    cache.load({"r1": value}, 1, where="ns")
    with pytest.raises(CorruptDataError, match="'r2': stored under another id"):
        cache.load({"r2": value}, 2, where="ns")


def test_snapshot_encoded_rule_by_rule_is_the_same_file():
    """encode_snapshot with a pause gives the bytes of the one-call encoding."""
    snap = make_snapshot("ns", "gen", 7, {i: encode_rule(r) for i, r in vector_rules().items()})
    pauses = []
    assert encode_snapshot(snap, lambda: pauses.append(1)) == encode_snapshot(snap)
    assert len(pauses) == len(snap.raw_rules)


def test_rules_stored_before_canonical_forms_load_through_the_full_validator():
    """Bytes of a valid rule not in canonical form (an older ruleadmin) skip the fast check and decide as the
    canonical rule does; the digest is still that of the bytes read."""
    written = {"id": "r1", "kind": "split", "route": {"host": "A.Example.COM.", "path": "/"},
               "key": {"source": "header", "name": "X-Uid"},
               "policies": [{"type": "uid_suffix", "suffixes": ["7"], "upstream": "canary"}], "default": "stable"}
    raw = {"r1": msgpack.packb(written, use_bin_type=True)}
    loaded = CompileCache().load(raw, 1, where="ns")
    assert loaded.digest == content_digest(raw)
    rs = RuleSet.from_compiled(loaded.rules, 1)
    for uid, want in (("17", "canary"), ("18", "stable")):
        got = decide(rs, Request(host="a.example.com", path="/x", headers={"x-uid": uid}))
        assert got == decide(RuleSet([validate_rule(written)], 1), Request(host="a.example.com", path="/x",
                                                                             headers={"x-uid": uid}))
        assert got.upstream == want

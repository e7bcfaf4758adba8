"""A full reload re-uses the compiled form of stored bytes it has seen, and only of exactly those bytes."""
from __future__ import annotations

import gc

import msgpack
import pytest

from gateway_agent import compiled
from gateway_agent.compiled import CompileCache
from gateway_agent.outcomes import guarded_after, guarded_ids
from rulegate.digest import content_digest
from rulegate.errors import CorruptDataError
from rulegate.evaluator import Request, RuleSet, decide
from rulegate.schema import encode_rule, validate_rule
from rulegate.snapshot import encode_snapshot, make_snapshot
from tests.unit.test_applied_memory import REQUESTS, SKIP, loaded_client, vector_rules


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
    cache.load(raw, where="ns")
    again = cache.load({i: bytes(v) for i, v in raw.items()}, where="ns")
    assert cache.hits == len(raw) and again.digest == content_digest(raw)
    fresh, cached = RuleSet(rules.values(), 2), RuleSet.from_compiled(again.rules, 2)
    for req in REQUESTS:
        assert decide(cached, req) == decide(fresh, req)


def test_changed_bytes_are_validated_and_compiled_again():
    """A rule whose stored bytes changed is decoded again: its new content decides."""
    cache = CompileCache()
    assert upstream(cache.load({"r1": encode_rule(split("r1", "stable"))}, where="ns"), 1) == "stable"
    loaded = cache.load({"r1": encode_rule(split("r1", "blue"))}, where="ns")
    assert (cache.hits, cache.misses) == (0, 2) and upstream(loaded, 2) == "blue"


@pytest.mark.parametrize("bad", [
    b"\xc1garbage",
    msgpack.packb({**split("r1", "stable"), "default": "not an upstream!"}),
], ids=["undecodable", "invalid"])
def test_corrupt_bytes_are_refused_though_the_rule_was_cached_valid(bad):
    """A rule cached valid under other bytes is refused once its stored bytes are corrupt; the cache stays."""
    good = encode_rule(split("r1", "stable"))
    cache = CompileCache()
    cache.load({"r1": good, "r2": encode_rule(split("r2", "stable"))}, where="namespace 'ns'")
    with pytest.raises(CorruptDataError, match="namespace 'ns' rule 'r1'"):
        cache.load({"r1": bad, "r2": encode_rule(split("r2", "stable"))}, where="namespace 'ns'")
    assert len(cache) == 2
    cache.load({"r1": good}, where="ns")
    assert (cache.hits, cache.misses) == (1, 2)  # the refused load counts nothing


def test_cached_bytes_under_another_id_are_refused():
    """Bytes cached for r1 stored under r2 are refused (stored under another id), as without a cache."""
    value = encode_rule(split("r1", "stable"))
    cache = CompileCache()
    cache.load({"r1": value}, where="ns")
    with pytest.raises(CorruptDataError, match="'r2': stored under another id"):
        cache.load({"r2": value}, where="ns")


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
    loaded = CompileCache().load(raw, where="ns")
    assert loaded.digest == content_digest(raw)
    rs = RuleSet.from_compiled(loaded.rules, 1)
    for uid, want in (("17", "canary"), ("18", "stable")):
        got = decide(rs, Request(host="a.example.com", path="/x", headers={"x-uid": uid}))
        assert got == decide(RuleSet([validate_rule(written)], 1), Request(host="a.example.com", path="/x",
                                                                             headers={"x-uid": uid}))
        assert got.upstream == want


def _reachable(*roots: object) -> dict[int, object]:
    """Return the objects reachable from roots by id (classes, modules and code skipped)."""
    found: dict[int, object] = {}
    todo = list(roots)
    while todo:
        obj = todo.pop()
        if id(obj) in found or isinstance(obj, SKIP):
            continue
        found[id(obj)] = obj
        todo.extend(gc.get_referents(obj))
    return found


def _applied(cache: CompileCache, raw: dict[str, bytes], revision: int):
    """Load raw as Syncer._full_reload does and tell the cache what is applied; return (raw held, set, loaded)."""
    loaded = cache.load(raw, where="ns")
    rs = RuleSet.from_compiled(loaded.rules, revision)
    cache.hold(loaded.raw, rs, loaded.guarded, loaded.digest)
    return loaded.raw, rs, loaded


def test_the_cache_holds_nothing_beyond_the_applied_set(tmp_path):
    """Once told what the agent applied, the cache holds no object of its own (no compiled rule, no key, no
    hash): it re-uses the applied set's raw map and routes (issue 14: the agent's memory)."""
    client = loaded_client(tmp_path, vector_rules())  # bootstrap from the snapshot: Syncer tells the cache
    syncer = client.syncer
    cur = syncer.current
    shared = _reachable(cur.raw, cur.ruleset, cur.guarded, cur.digest)
    own = [o for i, o in _reachable(syncer.compiled).items() if i not in shared]
    assert len(cur.raw) == len(syncer.compiled) == len(vector_rules())
    assert [type(o).__name__ for o in own if o is not syncer.compiled and type(o) is not int] == []


def test_a_reload_of_held_bytes_reuses_them_and_holds_the_ids_once():
    """Bytes read again (new objects, new id strings) re-use every held rule; the raw map to hold is keyed by
    the strings the compiled rules hold, and the load decides as a fresh compile."""
    rules = vector_rules()
    cache = CompileCache()
    held, _, _ = _applied(cache, {i: encode_rule(r) for i, r in rules.items()}, 1)
    again = {i.encode().decode(): bytes(bytearray(v)) for i, v in held.items()}
    loaded = cache.load(again, where="ns")
    assert cache.hits == len(rules) and loaded.digest == content_digest(again)
    assert all(a is b for a, b in zip(loaded.raw, held)) and list(loaded.raw.values()) == list(again.values())
    assert [r.rule_id for r in loaded.rules] == list(loaded.raw)
    fresh, cached = RuleSet(rules.values(), 2), RuleSet.from_compiled(loaded.rules, 2)
    for req in REQUESTS:
        assert decide(cached, req) == decide(fresh, req)


@pytest.mark.parametrize("copy_on_write", [64, 0], ids=["set copy-on-write", "set rule by rule"])
@pytest.mark.parametrize("changes", [1, 60], ids=["few changed", "most changed"])
def test_after_deltas_the_cache_reuses_the_applied_rules(changes, copy_on_write, monkeypatch):
    """After deltas (with_changes, as Syncer._apply_delta), a full reload re-uses the delta's compiled rules and
    recompiles only other bytes; digest, guarded ids and decisions are those of a fresh load, whichever way the
    digest of the held rules is found (few or most rules not held) and the new set is built."""
    monkeypatch.setattr(compiled, "COPY_ON_WRITE_MAX", copy_on_write)
    rules = vector_rules()
    ids = sorted(rules)
    cache = CompileCache()
    raw, rs, loaded = _applied(cache, {i: encode_rule(r) for i, r in rules.items()}, 1)
    changed = {ids[0]: validate_rule({**rules[ids[0]], "enabled": not rules[ids[0]].get("enabled", True)})}
    removed = {ids[1]}
    rs = rs.with_changes(changed, removed, 2, "")
    raw = {i: v for i, v in raw.items() if i not in removed} | {i: encode_rule(r) for i, r in changed.items()}
    guarded = guarded_after(loaded.guarded, changed, removed)
    cache.hold(raw, rs, guarded, content_digest(raw))
    now = {i: validate_rule(msgpack.unpackb(v)) for i, v in raw.items()}
    for i in ids[2:2 + changes]:  # stored again, changed (a new default)
        now[i] = validate_rule({**now[i], "default": "other"}) if now[i]["kind"] == "split" else now[i]
    del now[ids[-1]]  # deleted, and one added, since the deltas
    now["zz-new"] = split("zz-new", "blue")
    read = {i: encode_rule(r) for i, r in now.items()}
    hits = sum(1 for i, v in read.items() if raw.get(i) == v)
    reloaded = cache.load(read, where="ns")
    assert (cache.hits, reloaded.digest) == (hits, content_digest(read))
    assert reloaded.guarded == guarded_ids(now.values()) and reloaded.raw == read
    fresh = RuleSet(now.values(), 3)
    agent, cached = reloaded.ruleset(3, ""), RuleSet.from_compiled(reloaded.rules, 3)  # copy-on-write; all rules
    assert [r.rule_id for r in reloaded.rules] == list(read) and len(agent) == len(cached) == len(now)
    for req in REQUESTS + [Request(host="a.example.com", path="/x", headers={"x-uid": "1"})]:
        assert decide(agent, req) == decide(cached, req) == decide(fresh, req)

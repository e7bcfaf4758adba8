"""The agent's applied set holds no decoded rule dicts, yet gives the rules and deltas it gave before (issue 14)."""
from __future__ import annotations

import gc
import random
import types

from gateway_agent import RuleClient
from rulegate.evaluator import place_of, Request, RuleSet, decide
from rulegate.schema import encode_rule, validate_rule
from rulegate.snapshot import make_snapshot, write_snapshot
from tests.conftest import load_vectors

CASES = load_vectors()
REQUESTS = [Request.from_dict(c["request"]) for _, _, c in CASES]
SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType, types.MethodType)


def vector_rules() -> dict[str, dict]:
    """Return every rule of the vectors by id (the last of an id wins)."""
    seen = set()
    out: dict[str, dict] = {}
    for _, data, _ in CASES:
        if id(data) not in seen:
            seen.add(id(data))
            out.update((r["id"], r) for r in (validate_rule(r) for r in data["rules"]))
    return out


def rule_dicts_reachable(root: object) -> list[dict]:
    """Return the dicts shaped like a rule (id, kind, route) reachable from root's object graph."""
    found, seen, todo = [], set(), [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, SKIP):
            continue
        seen.add(id(obj))
        if isinstance(obj, dict) and {"id", "kind", "route"} <= obj.keys():
            found.append(obj)
        todo.extend(gc.get_referents(obj))
    return found


def decisions(rs: RuleSet) -> list[dict]:
    return [decide(rs, req).to_dict() for req in REQUESTS]


def loaded_client(tmp_path, rules: dict[str, dict]) -> RuleClient:
    """Return a RuleClient (never started) that applied rules from a snapshot, as at a gateway's start."""
    path = str(tmp_path / "snap.bin")
    write_snapshot(path, make_snapshot("ns", "gen", 5, {i: encode_rule(r) for i, r in rules.items()}))
    client = RuleClient(["127.0.0.1:1"], "ns", snapshot_path=path)
    assert client.syncer.bootstrap_from_snapshot()
    return client


def test_applied_set_keeps_no_rule_dicts_but_rules_decode_the_same(tmp_path) -> None:
    """No rule dict is reachable from the applied set; RuleClient.rules equals the rules applied (new dicts each call)."""
    rules = vector_rules()
    client = loaded_client(tmp_path, rules)
    applied = client.syncer.current
    assert rule_dicts_reachable(applied) == []
    assert client.rules == rules
    first = client.rules
    first[next(iter(first))]["default"] = "changed by the caller"
    assert client.rules == rules
    assert decisions(applied.ruleset) == decisions(RuleSet(rules.values(), 5, "gen"))
    assert len(applied.ruleset) == len(rules) and applied.ruleset.placement == {
        i: place_of(r) for i, r in rules.items()}


def test_deltas_keep_no_rule_dicts_and_decide_like_a_full_compile(tmp_path) -> None:
    """with_changes from the placement alone (route moves, disables, deletes) matches a full compile."""
    rules = vector_rules()
    applied = loaded_client(tmp_path, rules).syncer.current
    rs, held = applied.ruleset, dict(rules)
    rng = random.Random(14)
    pool = list(rules.values())
    for rev in range(6, 40):
        changed: dict[str, dict] = {}
        for _ in range(rng.randint(1, 3)):
            rule = dict(rng.choice(pool))
            if rng.random() < 0.3 and "scope" not in rule:  # move it to another rule's route (scope namespace: * /)
                rule["route"] = rng.choice(pool)["route"]
            if rng.random() < 0.2:
                rule["enabled"] = not rule.get("enabled", True)
            changed[rule["id"]] = validate_rule(rule)
        removed = {rng.choice(list(held))} - set(changed) if held and rng.random() < 0.5 else set()
        rs = rs.with_changes(changed, removed, rev, "gen")
        for rule_id in removed:
            held.pop(rule_id)
        held.update(changed)
        assert decisions(rs) == decisions(RuleSet(held.values(), rev, "gen")), f"revision {rev}"
        assert set(rs.placement) == set(held)
        assert rule_dicts_reachable(rs) == []


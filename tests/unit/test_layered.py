"""rulegate.layered: maps derived in O(changes) read exactly like copies, and never write what they share."""
from __future__ import annotations

import random

import pytest

from rulegate import layered
from rulegate.evaluator import Request, RuleSet, decide
from rulegate.layered import Layered, derive
from rulegate.schema import validate_rule


def check_equal(m: Layered, model: dict) -> None:
    assert len(m) == len(model)
    assert sorted(m) == sorted(model) and list(m.flat()) == list(m)  # a key removed and put again keeps its place
    assert dict(m.items()) == model and m.flat() == model
    assert list(m.items()) == [(k, m[k]) for k in m] and list(m.values()) == [m[k] for k in m]
    assert len(m.items()) == len(model) and (next(iter(model.items()), None) in m.items() if model else True)
    for key in list(model)[:20] + ["never-there"]:
        assert (key in m) == (key in model)
        assert m.get(key, "dflt") == model.get(key, "dflt")


@pytest.mark.parametrize("flatten_min", [0, 3, 64, 10**9])
def test_a_chain_of_derived_maps_reads_like_dict_copies(monkeypatch: pytest.MonkeyPatch, flatten_min: int) -> None:
    """Each map of a chain of derive() + random puts and deletes equals the dict a copy would give, and no
    earlier map (nor the shared base) changes when a later one is written or flattened."""
    monkeypatch.setattr(layered, "FLATTEN_MIN", flatten_min)
    rng = random.Random(flatten_min)
    base = {f"k{i}": i for i in range(200)}
    chain: list[tuple[Layered | dict, dict]] = [(base, dict(base))]
    for step in range(300):
        prev, prev_model = chain[-1]
        m, model = derive(prev), dict(prev_model)
        for _ in range(rng.randint(1, 4)):
            key = f"k{rng.randint(0, 260)}"
            if key in model and rng.random() < 0.4:
                del m[key]
                del model[key]
            elif rng.random() < 0.1:
                assert m.pop(key, None) == model.pop(key, None)
            else:
                m[key] = model[key] = step * 1000 + rng.randint(0, 999)
        check_equal(m, model)
        chain.append((m, model))
    for m, model in chain[1:]:
        check_equal(m, model)  # still what it was when derived
    assert base == {f"k{i}": i for i in range(200)}


def test_deleting_a_missing_key_raises_and_changes_nothing() -> None:
    m = derive({"a": 1})
    with pytest.raises(KeyError):
        del m["b"]
    del m["a"]
    with pytest.raises(KeyError):
        del m["a"]
    with pytest.raises(KeyError):
        m["a"]  # noqa: B018 - the lookup is the test
    assert len(m) == 0 and list(m) == [] and m.get("a") is None


def test_derive_copies_only_the_own_layer_until_it_flattens() -> None:
    """A derived map shares its base while its changes are few; past FLATTEN_MIN and an eighth of the base
    the next derive makes a new base holding everything."""
    base = {i: i for i in range(1000)}
    m = derive(base)
    assert m.shares_base_with(base)
    for i in range(layered.FLATTEN_MIN + 1):
        m = derive(m)
        m[10_000 + i] = i
        assert m.shares_base_with(base), i
    i = 0
    while m.layers()[1] * 8 <= 1000:
        m = derive(m)
        m[i] = -i
        i += 1
    assert m.layers()[1] == 1000 // 8 + 1 and m.shares_base_with(base)
    flat = derive(m)
    assert not flat.shares_base_with(base) and flat.layers() == (len(m), 0)
    assert dict(flat.items()) == dict(m.items())


def rule(n: int) -> dict:
    return validate_rule({"id": f"r{n}", "kind": "split", "route": {"host": f"h{n}.example.com", "path": "/"},
                          "key": {"source": "header", "name": "x-uid"},
                          "policies": [{"type": "percent", "salt": "s", "buckets": [
                              {"upstream": f"u{n}", "weight": 5000}, {"upstream": "v", "weight": 5000}]}],
                          "default": "base"})


def test_a_one_rule_change_does_not_copy_the_host_or_placement_maps() -> None:
    """with_compiled over 2,000 hosts keeps the old set's maps as its base (O(change)), and decides like a full
    compile through a chain long enough to flatten several times."""
    rules = {f"r{n}": rule(n) for n in range(2000)}
    rs = RuleSet(rules.values(), 1, "g")
    first = rs
    rng = random.Random(3)
    for rev in range(2, 700):
        n = rng.randint(0, 2100)
        if rng.random() < 0.3 and f"r{n}" in rules:
            del rules[f"r{n}"]
            rs = rs.with_changes({}, [f"r{n}"], rev, "g")
        else:
            rules[f"r{n}"] = rule(n)
            rs = rs.with_changes({f"r{n}": rules[f"r{n}"]}, (), rev, "g")
        if rev == 2:
            assert type(rs.exact) is Layered and rs.exact.shares_base_with(first.exact)
            assert type(rs.placement) is Layered and rs.placement.shares_base_with(first.placement)
            assert rs.exact.layers()[1] <= 1 and rs.placement.layers()[1] == 1
    assert not rs.exact.shares_base_with(first.exact)  # flattened on the way
    full = RuleSet(rules.values(), rev, "g")
    assert len(rs) == len(full) and dict(rs.placement.items()) == full.placement
    for n in range(0, 2101, 7):
        req = Request.from_dict({"host": f"h{n}.example.com", "path": "/x", "headers": {"x-uid": str(n)}})
        assert decide(rs, req) == decide(full, req), n
    assert decide(first, Request.from_dict({"host": "h5.example.com", "path": "/"})).revision == 1

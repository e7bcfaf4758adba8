"""The pure rule evaluator: compile a rule set once, then `decide()` per request with no I/O.

Semantics (mirrored by lua/rulegate/router.lua and pinned by tests/vectors/):
route = most specific matching rules (exact host > longest wildcard suffix > '*', then longest
path prefix; methods filter); inside the route an active degrade rule covering the request's
bucket wins (rule id order), else the split rule (first matching policy, then `default`),
else `pass` (the gateway uses its own default upstream).
"""
from __future__ import annotations

import operator
import time
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Iterable, Mapping, MutableMapping, Protocol

from msgspec import UNSET

from .layered import derive
from .request import Request
from .rule_items import Decision, _compile_split, _Degrade, _Split, _split_inactive, _text, bucket_of
from .schema import NAMESPACE_SCOPE
from .schema_fast import StoredRule, decode_known_canonical, decode_rule

__all__ = ["CompiledRule", "Decision", "Request", "RuleSet", "bucket_of", "compile_rule", "decide", "find_route",
           "place_of", "place_rule", "place_stored"]

_RULE_ID = operator.attrgetter("rule_id")
_new = object.__new__
PENDING_MAX = 32  # a route with more rules than this is compiled when its set is built, not by its first request
# The place of a degrade rule of scope namespace: tried before routing (decide), never a route of its own (no route
# host is empty: _host_key puts it in the set's ns_index, which find_route never looks at).
NAMESPACE_PLACE = ("", "/")


class _Pending:
    """An enabled rule placed in its route but not compiled: its id, the stored bytes it was checked from and
    whether they are canonical (rulegate/schema_fast.py: they decode to the validated rule itself).

    The route's first request compiles it (`_Route.compile`); see `place_rule`."""

    __slots__ = ("rule_id", "value", "canonical")


def _compile_pending(item: _Pending, revision: int) -> "_Split | _Degrade":
    value = item.value  # it passed the check when loaded: canonical bytes are not checked again
    rule = decode_known_canonical(value) if item.canonical else decode_rule(value, where=f"rule {item.rule_id!r}")
    rule["id"] = item.rule_id
    return _compile_split(rule, revision) if rule["kind"] == "split" else _Degrade(rule, revision)


class _Route:
    """The rules of one (host, path): lists while being built, tuples once `finish()`ed.

    A finished route whose only rule is a split without methods or window holds it in `fast` only
    (`splits` is then empty: no 1-tuple, 48 B a route); `all_splits()` gives the splits either way.
    A route holding pending rules (`pending`, see `place_rule`) is compiled by `compile()` before it
    is asked anything: `_method_matches` does so.
    """

    __slots__ = ("degrades", "splits", "fast", "pending")

    def __init__(self) -> None:
        self.degrades: list[_Degrade] | tuple[_Degrade, ...] = []
        self.splits: list[_Split] | tuple[_Split, ...] = []
        self.fast: _Split | None = None  # the only split, no methods, no window, no degrade
        self.pending: list[_Pending] | tuple[_Pending, ...] | None = None  # rules placed, not compiled yet

    def all_splits(self) -> "list[_Split] | tuple[_Split, ...]":
        return self.splits if self.fast is None else (self.fast,)

    def size(self) -> int:
        return len(self.degrades) + len(self.all_splits()) + len(self.pending or ())

    def compiled_items(self, pending: "tuple[_Pending, ...] | list[_Pending] | None") -> "tuple[list, list]":
        """Return (degrades, splits) compiled, as new lists, without the rules of `pending` (what the caller read
        as this route's `pending`, before this call).

        Another thread may be compiling this route (a request, in the in-process library): it assigns the
        compiled lists, then clears `pending`; so a rule the caller read pending may already be here compiled
        too, and is left out (the caller compiles or carries it), never counted twice."""
        degrades, splits = list(self.degrades), list(self.all_splits())
        if pending:
            ids = {item.rule_id for item in pending}
            degrades = [item for item in degrades if item.rule_id not in ids]
            splits = [item for item in splits if item.rule_id not in ids]
        return degrades, splits

    def compile(self, revision: int, pause: Callable[[], None] | None = None) -> None:
        """Compile the pending rules in place, their decisions stamped `revision` (`pause`, when given, is
        called every 4 rules); the route then holds what it would had its rules been compiled when placed
        (several threads may do it at once: each assigns complete, equal results, `pending` last)."""
        pending = self.pending
        if not pending:
            return
        if len(pending) == 1 and not self.degrades and not self.splits and self.fast is None:  # most routes
            item = _compile_pending(pending[0], revision)
            if type(item) is _Degrade:
                self.degrades, self.splits = (item,), ()
            elif item.methods is None and item.start is None and item.end is None:
                self.degrades, self.splits, self.fast = (), (), item
            else:
                self.degrades, self.splits = (), (item,)
            self.pending = None
            return
        route = _Route()
        route.degrades, route.splits = self.compiled_items(pending)
        for n, item in enumerate(pending):
            if pause is not None and not n & 3:
                pause()
            compiled = _compile_pending(item, revision)
            (route.degrades if type(compiled) is _Degrade else route.splits).append(compiled)
        route.finish()
        self.degrades, self.splits, self.fast = route.degrades, route.splits, route.fast
        self.pending = None

    def finish(self) -> None:
        if self.pending:  # compiled by its first request: degrades and splits hold what is compiled already
            self.pending = tuple(self.pending)
            if self.degrades or self.splits or self.fast is not None:
                self.degrades, self.splits = tuple(self.degrades), tuple(self.all_splits())
                self.fast = None
            else:
                self.degrades = self.splits = ()
            return
        self.pending = None
        splits = self.splits
        if len(splits) == 1 and not self.degrades and self.fast is None:  # most routes: one split
            split = splits[0]
            if split.methods is None and split.start is None and split.end is None:
                self.degrades, self.splits, self.fast = (), (), split
                return
        degrades, splits = self.degrades, self.all_splits() if not self.splits else self.splits
        self.degrades = tuple(sorted(degrades, key=_RULE_ID)) if len(degrades) > 1 else tuple(degrades)
        self.splits = tuple(sorted(splits, key=_RULE_ID)) if len(splits) > 1 else tuple(splits)
        self.fast = None
        if not self.degrades and len(self.splits) == 1 and self.splits[0].methods is None \
                and self.splits[0].start is None and self.splits[0].end is None:
            self.fast = self.splits[0]
            self.splits = ()

    def without(self, ids: set[str]) -> "_Route":
        """Return an unfinished copy without the items of rules in ids (self is not changed); pending
        rules stay pending."""
        route = _Route()
        pending = self.pending
        degrades, splits = self.compiled_items(pending)
        route.degrades = [item for item in degrades if item.rule_id not in ids]
        route.splits = [item for item in splits if item.rule_id not in ids]
        if pending:
            route.pending = [item for item in pending if item.rule_id not in ids] or None
        return route


class _HostIndex:
    """Routes of one host pattern, looked up by path prefix length (longest first)."""

    __slots__ = ("by_path", "lengths")

    def __init__(self) -> None:
        self.by_path: dict[str, _Route] = {}
        self.lengths: tuple[int, ...] = ()

    def finish(self, revision: int, pause: Callable[[], None] | None = None) -> None:
        self.lengths = tuple(sorted({len(p) for p in self.by_path}, reverse=True))
        for route in self.by_path.values():
            route.finish()
            if route.pending and route.size() > PENDING_MAX:  # no first request compiles more than PENDING_MAX
                route.compile(revision, pause)


def _host_key(host: str) -> tuple[str, str]:
    """Return (table, key) of a route host: exact, wildcard (suffix from the dot), any, or namespace (the place of
    the namespace-scope degrade rules, NAMESPACE_PLACE)."""
    if not host:
        return "namespace", ""
    if host == "*":
        return "any", ""
    if host.startswith("*."):
        return "wildcard", _text(host[1:])
    return "exact", host


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One rule compiled for a RuleSet: where it sits, its route item (None: disabled), its `breaker`.

    Immutable, so any number of sets (and a cache of them, gateway_agent/compiled.py) can share it.
    """

    rule_id: str
    place: tuple[str, str]  # (host, path) of its route, interned
    item: "_Split | _Degrade | _Pending | None"  # _Pending: placed by place_rule, compiled by a request
    breaker: dict | None


class _NewCompiledRule:
    """CompiledRule's slots without the frozen __setattr__ (see rule_items._proxy)."""

    __slots__ = CompiledRule.__slots__


assert _NewCompiledRule.__slots__ == tuple(f.name for f in fields(CompiledRule)), "compile_rule() sets every field"


def compile_rule(rule: dict, revision: int = 0) -> CompiledRule:
    """Return a validated rule compiled with its decisions stamped `revision` (a set re-stamps them)."""
    item = None
    if rule.get("enabled", True):
        item = _compile_split(rule, revision) if rule["kind"] == "split" else _Degrade(rule, revision)
    return _placed(rule["id"], place_of(rule), rule.get("breaker"), item)


def place_of(rule: dict) -> tuple[str, str]:
    """Return where a set places a validated rule: (host, path) of its route, or NAMESPACE_PLACE for a degrade rule
    of scope namespace (the schema's only scope)."""
    if "scope" in rule:
        return NAMESPACE_PLACE
    route = rule["route"]
    return _text(route["host"]), _text(route["path"])


def _placed(rule_id: str, place: tuple[str, str], breaker: dict | None,
            item: "_Split | _Degrade | _Pending | None") -> CompiledRule:
    out = _NewCompiledRule()  # CompiledRule(...) without the frozen dataclass's __init__ (see rule_items._proxy)
    out.rule_id = rule_id
    out.place = place
    out.item = item
    out.breaker = breaker
    out.__class__ = CompiledRule
    return out


def _pending(rule_id: str, value: bytes, canonical: bool) -> _Pending:
    item = _new(_Pending)
    item.rule_id = rule_id
    item.value = value if type(value) is bytes else bytes(value)  # never a buffer its owner may change
    item.canonical = canonical
    return item


def place_rule(rule: dict, value: bytes, canonical: bool = False) -> CompiledRule:
    """Return a validated rule placed but not compiled: what `compile_rule` gives, its item pending.

    `value` is the stored bytes rule was decoded and checked from (`canonical`: by
    `schema_fast.decode_canonical`, which returned the decoded bytes themselves); the first request that reaches the
    rule's route decodes them again and compiles the route's rules (`_Route.compile`, ~5 µs a rule), so a
    load pays for checking every rule but compiles none, and routes no request reaches are never compiled
    (docs/design.md, "Pending rules"). A disabled rule is placed as compile_rule places it (no item)."""
    item = _pending(rule["id"], value, canonical) if rule.get("enabled", True) else None
    return _placed(rule["id"], place_of(rule), rule.get("breaker"), item)


def place_stored(rule: StoredRule, value: bytes) -> CompiledRule:
    """Return `place_rule(decode_canonical(value), value, True)` for the rule `schema_fast.stored_rule(value)`
    returned: the same placement, read from the typed rule (a load builds no dict of it)."""
    rule_id = rule.id
    if rule.scope is not UNSET:
        place = NAMESPACE_PLACE
    else:
        route = rule.route
        place = _text(route.host), _text(route.path)
    breaker = rule.breaker
    return _placed(rule_id, place, None if breaker is UNSET else breaker,
                   _pending(rule_id, value, True) if rule.enabled else None)


class RuleSet:
    """An immutable compiled rule set of one namespace at one revision.

    It keeps no rule dicts: only the compiled routes and, per rule id, the (host, path) the rule
    occupies (`placement`, what `with_changes` needs). Whoever needs the rules themselves keeps
    them, or their stored bytes (the agent's `Applied.raw`).
    """

    def __init__(self, rules: Iterable[dict], revision: int = 0, generation: str = "",
                 pause: Callable[[], None] | None = None):
        """Compile rules (the last of an id wins); `pause`, when given, is called between rules."""
        self._init(revision, generation, {})
        for rule in {r["id"]: r for r in rules}.values():
            if pause is not None:
                pause()
            self._put(compile_rule(rule, revision))
        self._finish(pause)

    @classmethod
    def from_compiled(cls, compiled: Iterable["CompiledRule"], revision: int = 0, generation: str = "",
                      pause: Callable[[], None] | None = None) -> "RuleSet":
        """Return the set of rules compiled earlier (`compile_rule`, any revision; one per id).

        decide() gives what RuleSet(the same rules, revision) would: decisions compiled at another
        revision are re-stamped on their way out. `pause` is called every 64 rules."""
        new = object.__new__(cls)
        new._init(revision, generation, {})
        routes: dict[tuple[str, str], _Route] = {}
        put = new._put
        for n, entry in enumerate(compiled):
            if pause is not None and not n & 63:
                pause()
            put(entry, routes)
        new._finish(pause)
        return new

    def _finish(self, pause: Callable[[], None] | None) -> None:
        for index in self._indexes():
            if pause is not None:
                pause()
            index.finish(self.revision, pause)

    def _init(self, revision: int, generation: str, placement: MutableMapping[str, tuple[str, str]],
              breakers: dict[str, dict] | None = None) -> None:
        self.revision = revision
        self.generation = generation
        self.placement = placement  # rule id -> (host, path) of its route, disabled rules included
        # exact host -> its index, wildcard suffix ('.example.com') -> its index: dicts, or Layered after a delta
        self.breakers: dict[str, dict] = {} if breakers is None else breakers  # rule id -> its `breaker` (few)
        self.exact: MutableMapping[str, _HostIndex] = {}
        self.wildcard: MutableMapping[str, _HostIndex] = {}
        self.any_host: _HostIndex | None = None
        self.ns_index: _HostIndex | None = None  # the degrade rules of scope namespace, at NAMESPACE_PLACE
        self.pass_decision = Decision("pass", revision=revision)
        self.route_cache: dict[tuple[str, str, str], _Route | None] = {}
        self.stamped: dict[int, Decision] = {}

    def with_changes(self, changed: Mapping[str, dict], removed: Iterable[str], revision: int,
                     generation: str, pause: Callable[[], None] | None = None) -> "RuleSet":
        """Return this set with `changed` rules put and `removed` ids dropped, at `revision`.

        Copy-on-write: only the routes the changes touch are rebuilt; the rest is shared with self,
        which is not modified. decide() gives what RuleSet(all rules, revision) would. `pause`, when given,
        is called before each changed rule is compiled and each touched route is rebuilt.
        """
        compiled = {}
        for rule_id, rule in changed.items():
            if pause is not None:
                pause()
            compiled[rule_id] = compile_rule(rule, revision)
        return self.with_compiled(compiled, removed, revision, generation, pause)

    def with_compiled(self, changed: Mapping[str, CompiledRule], removed: Iterable[str], revision: int,
                      generation: str, pause: Callable[[], None] | None = None) -> "RuleSet":
        """`with_changes` of rules compiled earlier (`compile_rule`, any revision: decisions compiled at
        another one are re-stamped, as after `from_compiled`); `removed` is iterated twice.

        O(changes): the placement and host maps are derived (rulegate/layered.py), not copied."""
        placement = derive(self.placement)
        ids = set(changed) | set(removed)
        touched: dict[tuple[str, str], set[str]] = {}  # (table, host key) -> paths
        for rule_id in ids:
            routes = [placement.get(rule_id)]
            if rule_id in changed:
                routes.append(changed[rule_id].place)
            for route in routes:
                if route is not None:
                    touched.setdefault(_host_key(route[0]), set()).add(route[1])
        for rule_id in removed:
            placement.pop(rule_id, None)
        breakers = {rule_id: b for rule_id, b in self.breakers.items() if rule_id not in ids}
        new = object.__new__(RuleSet)
        new._init(revision, generation, placement, breakers)
        new.exact, new.wildcard, new.any_host = derive(self.exact), derive(self.wildcard), self.any_host
        new.ns_index = self.ns_index
        for (table, key), paths in touched.items():
            old = self._index(table, key)
            index = _HostIndex()
            if old is not None:
                index.by_path = dict(old.by_path)
            for path in paths:
                if pause is not None:
                    pause()
                route = index.by_path.get(path)
                index.by_path[path] = route.without(ids) if route is not None else _Route()
            new._set_index(table, key, index)
        for n, entry in enumerate(changed.values()):
            if pause is not None and not n & 15:
                pause()
            new._put(entry)
        for (table, key), paths in touched.items():
            index = new._index(table, key)
            for path in paths:
                if pause is not None:
                    pause()
                route = index.by_path[path]
                if route.degrades or route.splits or route.pending:
                    route.finish()
                    if route.pending and route.size() > PENDING_MAX:
                        route.compile(revision)
                else:
                    del index.by_path[path]
            index.lengths = tuple(sorted({len(p) for p in index.by_path}, reverse=True))
            if not index.by_path:
                new._set_index(table, key, None)
        return new

    def _index(self, table: str, key: str) -> _HostIndex | None:
        if table == "any":
            return self.any_host
        if table == "namespace":
            return self.ns_index
        return (self.exact if table == "exact" else self.wildcard).get(key)

    def _set_index(self, table: str, key: str, index: _HostIndex | None) -> None:
        if table == "any":
            self.any_host = index
            return
        if table == "namespace":
            self.ns_index = index
            return
        target = self.exact if table == "exact" else self.wildcard
        if index is None:
            target.pop(key, None)
        else:
            target[key] = index

    def restamp(self, decision: Decision) -> Decision:
        """Return decision carrying this set's revision (a rule compiled at an earlier one)."""
        out = self.stamped.get(id(decision))
        if out is None or out.revision != self.revision:
            out = replace(decision, revision=self.revision)
            self.stamped[id(decision)] = out
        return out

    def parts(self) -> list:
        """Return this set's placement, its routes, then its host indexes: what holds most of its objects.

        Dropping them one by one from the end once nothing else holds the set frees it in slices
        (gateway_agent/sync.py; ~15 ms in one block at 10,000 rules otherwise)."""
        indexes = self._indexes()
        out: list = [self.placement]
        for index in indexes:
            out += index.by_path.values()
        return out + indexes

    def compiled_rules(self, pause: Callable[[], None] | None = None) -> dict[str, CompiledRule]:
        """Return each rule of this set by id as `compile_rule` gave it (the same route item, place and
        `breaker`; decisions stamped with the revision they were compiled at): what `from_compiled` takes.

        A rule no request has compiled yet is given as placed (`place_rule`: its item pending).
        Built from the routes and the placement (the set keeps no CompiledRule); `pause` every 64 rules."""
        items: dict[str, _Split | _Degrade | _Pending] = {}
        n = 0
        for index in self._indexes():
            for route in index.by_path.values():
                n += 1
                if pause is not None and not n & 63:
                    pause()
                pending = route.pending
                for item in route.degrades:
                    items[item.rule_id] = item
                for item in route.all_splits():
                    items[item.rule_id] = item
                for item in pending or ():
                    items[item.rule_id] = item
        out: dict[str, CompiledRule] = {}
        breakers = self.breakers
        for n, (rule_id, place) in enumerate(self.placement.items()):
            if pause is not None and not n & 63:
                pause()
            rule = _NewCompiledRule()  # CompiledRule(...) without the frozen dataclass's __init__ (see rule_items._proxy)
            rule.rule_id = rule_id
            rule.place = place
            rule.item = items.get(rule_id)  # None: disabled
            rule.breaker = breakers.get(rule_id)
            rule.__class__ = CompiledRule
            out[rule_id] = rule
        return out

    def _indexes(self) -> list[_HostIndex]:
        out = list(self.exact.values()) + list(self.wildcard.values())
        return out + [index for index in (self.any_host, self.ns_index) if index is not None]

    def _put(self, entry: "CompiledRule", routes: dict[tuple[str, str], _Route] | None = None) -> None:
        """Record where a compiled rule sits and add it to its (unfinished) route when enabled.

        `routes`, when given, remembers the route of each (host, path) seen (a whole set's build)."""
        place = entry.place
        self.placement[entry.rule_id] = place
        if entry.breaker is not None:
            self.breakers[entry.rule_id] = entry.breaker
        item = entry.item
        if item is None:
            return
        route = routes.get(place) if routes is not None else None
        if route is None:
            host = place[0]
            if host.startswith("*") or not host:  # '*', '*.suffix' (an exact host never starts with '*'), namespace
                table, key = _host_key(host)
                index = self._index(table, key)
                if index is None:
                    index = _HostIndex()
                    self._set_index(table, key, index)
            else:
                index = self.exact.get(host)
                if index is None:
                    index = self.exact[host] = _HostIndex()
            route = index.by_path.get(place[1])
            if route is None:
                route = index.by_path[place[1]] = _Route()
            if routes is not None:
                routes[place] = route
        kind = type(item)
        if kind is _Pending:
            if route.pending is None:
                route.pending = []
            route.pending.append(item)
        elif kind is not _Degrade:
            route.splits.append(item)
        else:
            route.degrades.append(item)

    def __len__(self) -> int:
        """Return the number of rules, disabled ones included."""
        return len(self.placement)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self.placement


def _route_in(index: _HostIndex, req: Request, revision: int) -> _Route | None:
    path = req.path
    by_path = index.by_path
    for n in index.lengths:
        route = by_path.get(path[:n]) if len(path) >= n else None
        if route is not None and _method_matches(route, req.method, revision):
            return route
    return None


def _method_matches(route: _Route, method: str, revision: int) -> bool:
    if route.fast is not None:
        return True
    if route.pending is not None:  # the route's first request: its rules compiled now (`place_rule`)
        route.compile(revision)
        if route.fast is not None:
            return True
    for degrade in route.degrades:
        if degrade.methods is None or method in degrade.methods:
            return True
    for split in route.splits:
        if split.methods is None or method in split.methods:
            return True
    return False


class BreakerState(Protocol):
    """What decide() asks about breaker rules (rulegate.breaker.Breakers)."""

    def admit(self, rule_id: str, config: Mapping[str, Any], t: float) -> bool:
        """Return True when the rule applies to a request decided at t."""


def find_route(rs: RuleSet, req: Request) -> _Route | None:
    """Return the most specific route matching the request, or None."""
    host = req.host
    index = rs.exact.get(host)
    if index is not None:
        route = _route_in(index, req, rs.revision)
        if route is not None:
            return route
    if rs.wildcard:
        dot = host.find(".")
        while dot != -1:
            index = rs.wildcard.get(host[dot:])
            if index is not None:
                route = _route_in(index, req, rs.revision)
                if route is not None:
                    return route
            dot = host.find(".", dot + 1)
    if rs.any_host is not None:
        return _route_in(rs.any_host, req, rs.revision)
    return None


ROUTE_CACHE_SIZE = 20_000
_MISS = object()


def decide(rs: RuleSet, req: Request, breakers: BreakerState | None = None) -> Decision:
    """Return the Decision for one request; never raises on request content.

    Pure (no I/O, no state) unless a rule has a `breaker`: then `breakers.admit()` says whether it applies
    (without `breakers` every breaker counts as closed: the rule does not apply)."""
    if rs.ns_index is not None:  # degrade rules of scope namespace, before routing
        decision = _namespace_degrade(rs, rs.ns_index, req)
        if decision is not None:
            return decision
    cache_key = (req.host, req.path, req.method)
    route = rs.route_cache.get(cache_key, _MISS)
    if route is _MISS:
        route = find_route(rs, req)
        if len(rs.route_cache) >= ROUTE_CACHE_SIZE:
            rs.route_cache.clear()
        rs.route_cache[cache_key] = route
    if route is None:
        return rs.pass_decision
    fast = route.fast
    if fast is not None:
        decision = fast.pick(req)
        return decision if decision.revision == rs.revision else rs.restamp(decision)
    method = req.method
    if route.degrades:
        now = req.now if req.now is not None else time.time()
        passed = None
        for degrade in route.degrades:
            methods = degrade.methods
            if (methods is None or method in methods) and degrade.applies(req, now):
                if degrade.breaker is not None and (
                        breakers is None or not breakers.admit(degrade.rule_id, degrade.breaker, now)):
                    passed = passed or degrade.rule_id
                    continue
                decision = degrade.decision  # a later degrade answering: no outcome to report
                return decision if decision.revision == rs.revision else rs.restamp(decision)
        if passed is not None:
            return replace(_split_decision(rs, route, req, method), breaker=passed)
    return _split_decision(rs, route, req, method)


def _namespace_degrade(rs: RuleSet, index: _HostIndex, req: Request) -> Decision | None:
    """Return the decision of the first active degrade rule of scope namespace accepting the method, or None."""
    route = index.by_path.get("/")
    if route is None:
        return None
    if route.pending is not None:
        route.compile(rs.revision)
    method = req.method
    now = req.now if req.now is not None else time.time()
    for degrade in route.degrades:  # no breaker: the schema refuses one with scope namespace
        methods = degrade.methods
        if (methods is None or method in methods) and degrade.applies(req, now):
            decision = degrade.decision
            return decision if decision.revision == rs.revision else rs.restamp(decision)
    return None


def _split_decision(rs: RuleSet, route: _Route, req: Request, method: str) -> Decision:
    for split in route.splits:
        methods = split.methods
        if methods is None or method in methods:
            if (split.start is not None or split.end is not None) and _split_inactive(split, req):
                continue
            decision = split.pick(req)
            return decision if decision.revision == rs.revision else rs.restamp(decision)
    return rs.pass_decision

"""A map derived from another in O(its changes): a shared, never-mutated base dict and its own changes on top.

The maps a change replaces (a RuleSet's host and placement maps, the agent's raw bytes by rule id) were
copied whole on every delta: O(rules) for a one-rule change. `derive(m)` instead gives a new map that
shares m's base dict and copies only the changes layered on it so far; writes go to the new map's own
layer (a removed base key is a tombstone). Once the own layer holds more than `FLATTEN_MIN` keys and
more than an eighth of the base, the next `derive` flattens both into a new base: an O(n) copy once
every ~n/8 changes, O(1) amortized a change. lua/rulegate/router.lua does the same for nginx's host map.

Reads cost one extra dict lookup for keys the own layer does not hold; nothing on a request path reads
these maps more than once per (host, path, method) of a RuleSet (evaluator.decide caches routes).
"""
from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping, MutableMapping, ValuesView
from typing import Any, TypeVar

__all__ = ["FLATTEN_MIN", "Layered", "derive"]

K = TypeVar("K")
V = TypeVar("V")

FLATTEN_MIN = 64  # own keys beyond which (and beyond an eighth of the base) derive() flattens

_GONE: Any = object()  # own-layer tombstone: the base's key is removed
_ABSENT: Any = object()


class Layered(MutableMapping[K, V]):
    """A dict-like map: `base` (shared with other maps, never written) under `own` (this map's changes).

    Iterates in the base's order (a replaced key keeps its place, also when removed and put again: unlike a
    dict), then the keys only the own layer has, in the order first put. Not thread-safe while written: build
    it, then publish it and only read it.
    """

    __slots__ = ("_base", "_own", "_len")

    def __init__(self, base: dict[K, V], own: dict[K, Any] | None = None, length: int | None = None):
        self._base = base
        self._own: dict[K, Any] = {} if own is None else own
        self._len = len(base) if length is None else length

    def get(self, key: K, default: Any = None) -> Any:
        value = self._own.get(key, _ABSENT)
        if value is _ABSENT:
            return self._base.get(key, default)
        return default if value is _GONE else value

    def __getitem__(self, key: K) -> V:
        value = self._own.get(key, _ABSENT)
        if value is _ABSENT:
            return self._base[key]
        if value is _GONE:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        value = self._own.get(key, _ABSENT)  # type: ignore[call-overload]
        if value is _ABSENT:
            return key in self._base
        return value is not _GONE

    def __setitem__(self, key: K, value: V) -> None:
        if key not in self:
            self._len += 1
        self._own[key] = value

    def __delitem__(self, key: K) -> None:
        if key not in self:
            raise KeyError(key)
        if key in self._base:
            self._own[key] = _GONE
        else:
            del self._own[key]
        self._len -= 1

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[K]:
        own = self._own
        if not own:
            yield from self._base
            return
        for key in self._base:
            if own.get(key, _ABSENT) is not _GONE:
                yield key
        base = self._base
        for key, value in own.items():
            if value is not _GONE and key not in base:
                yield key

    def items(self) -> "_Items[K, V]":
        return _Items(self)

    def values(self) -> "_Values[V]":
        return _Values(self)

    def __repr__(self) -> str:
        return f"Layered({dict(self.items())!r})"

    def layers(self) -> tuple[int, int]:
        """Return (keys in the base, keys in the own layer, tombstones included): what derive() weighs."""
        return len(self._base), len(self._own)

    def shares_base_with(self, other: Mapping) -> bool:
        """True when other is this map's base or another map layered on the same base."""
        return other is self._base or (type(other) is Layered and other._base is self._base)

    def flat(self) -> dict[K, V]:
        """Return a new plain dict of this map's content, in its iteration order."""
        out = dict(self._base)
        for key, value in self._own.items():
            if value is _GONE:
                del out[key]
            else:
                out[key] = value
        return out


class _Items(ItemsView):
    """Layered.items(): the pairs in the map's order, walked without a lookup per key through __getitem__."""

    _mapping: Layered

    def __iter__(self) -> Iterator[tuple]:
        m = self._mapping
        own, base = m._own, m._base
        if not own:
            yield from base.items()
            return
        for key, value in base.items():
            mine = own.get(key, _ABSENT)
            if mine is _ABSENT:
                yield key, value
            elif mine is not _GONE:
                yield key, mine
        for key, value in own.items():
            if value is not _GONE and key not in base:
                yield key, value


class _Values(ValuesView):
    """Layered.values(), in the map's order."""

    _mapping: Layered

    def __iter__(self) -> Iterator:
        for _key, value in _Items(self._mapping):
            yield value


def derive(source: Mapping[K, V]) -> Layered[K, V]:
    """Return a writable map with source's content that copies O(source's own changes), not O(len(source)).

    source must not be written afterwards: a plain dict becomes the shared base as it is (not copied),
    another Layered shares its base. Flattens into a new base when source's own layer has outgrown it."""
    if type(source) is Layered:
        own = source._own
        if len(own) > FLATTEN_MIN and len(own) * 8 > len(source._base):
            return Layered(source.flat())
        return Layered(source._base, dict(own), source._len)
    return Layered(source if type(source) is dict else dict(source))

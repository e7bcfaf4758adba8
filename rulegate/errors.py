"""Exception hierarchy shared by the agent, the store and the admin."""
from __future__ import annotations


class RulegateError(Exception):
    """Base class of every error rulegate raises on purpose."""


class ValidationError(RulegateError):
    """A rule (or request) failed validation; `errors` maps field path -> reason."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        first = next(iter(self.errors.items()), ("", "invalid"))
        more = f" (+{len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(f"{first[0] or '<root>'}: {first[1]}{more}")


class StoreError(RulegateError):
    """Redis could not be reached or answered unexpectedly within the retry budget."""


class CorruptDataError(StoreError):
    """Bytes stored in Redis (or on disk) cannot be decoded into a valid rule set."""


class ConflictError(RulegateError):
    """A compare-and-set write saw a revision other than the one the writer expected."""

    def __init__(self, expected: int | None, current: int):
        self.expected = expected
        self.current = current
        super().__init__(f"stale revision: expected {expected}, current is {current}")


class LimitError(RulegateError):
    """A namespace limit (for example the rule count) would be exceeded."""


class SnapshotError(RulegateError):
    """A snapshot file is missing, truncated or fails its checksum."""


class AlreadyExistsError(RulegateError):
    """A create-only write found the rule already present."""


class NotFoundError(RulegateError):
    """The rule (or namespace) does not exist."""

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


class RuleConflictError(ConflictError):
    """A write conditioned on one rule's content hash found that rule changed or absent (hash None)."""

    def __init__(self, rule_id: str, current_hash: str | None, current: int):
        self.rule_id, self.current_hash = rule_id, current_hash
        super().__init__(None, current)
        state = f"its content hash is now {current_hash}" if current_hash else "it does not exist"
        self.args = (f"rule {rule_id!r} is not the version you sent: {state} (namespace revision {current})",)


class LimitError(RulegateError):
    """A namespace limit (for example the rule count) would be exceeded."""


class NamespaceLimitError(LimitError):
    """A write would take a namespace past its rule-count ("rules") or encoded-size ("bytes") limit."""

    def __init__(self, ns: str, limit: str, maximum: int, current: int, after: int):
        self.ns, self.limit, self.maximum, self.current, self.after = ns, limit, maximum, current, after
        what = "rules" if limit == "rules" else "bytes of rules"
        super().__init__(f"namespace {ns!r} would hold {after} {what}; the limit is {maximum} "
                         f"(it holds {current} now)")


class SnapshotError(RulegateError):
    """A snapshot file is missing, truncated or fails its checksum."""


class AlreadyExistsError(RulegateError):
    """A create-only write found the rule already present."""


class NotFoundError(RulegateError):
    """The rule (or namespace) does not exist."""

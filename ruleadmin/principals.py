"""Who is asking: roles, the authenticated principal (session user or token), and account input errors."""
from __future__ import annotations

from dataclasses import dataclass

ROLES = ("viewer", "editor", "admin")


@dataclass(frozen=True)
class UserState:
    """What a stored user record says about access: role, session version, disabled."""

    role: str
    session_version: int
    disabled: bool

    @classmethod
    def from_record(cls, rec: dict) -> "UserState | None":
        """Return the state of a decoded record, or None when its role is unknown."""
        if rec.get("role") not in ROLES:
            return None
        return cls(rec["role"], int(rec.get("sv") or 0), bool(rec.get("disabled")))


@dataclass(frozen=True)
class User:
    """An authenticated principal: name, effective role, and its session version or token (id, scope, expiry)."""

    username: str
    role: str
    session_version: int = 0
    token_id: str | None = None
    namespaces: frozenset[str] | None = None
    expires_at: int | None = None
    disabled: bool = False

    # Flask-Login protocol
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        """Return False for a disabled user (Flask-Login refuses to log it in)."""
        return not self.disabled

    def get_id(self) -> str:
        """Return "<username>:<session version>": a session ends when the stored version moves on."""
        return f"{self.username}:{self.session_version}"

    def can(self, role: str) -> bool:
        """Return True when this user's role is at least `role`."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def in_scope(self, ns: str) -> bool:
        """Return True when this principal may reach namespace ns (tokens may be limited to some)."""
        return self.namespaces is None or ns in self.namespaces


class AccountError(ValueError):
    """A user or token request is invalid; `field` names the input at fault."""

    def __init__(self, message: str, field: str = "username"):
        super().__init__(message)
        self.field = field


def lower_role(a: str, b: str) -> str:
    """Return the lower of two roles."""
    return a if ROLES.index(a) <= ROLES.index(b) else b

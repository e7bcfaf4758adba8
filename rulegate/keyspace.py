"""Redis key names of one namespace. All keys share the hash tag {rg:<ns>} (one slot)."""
from __future__ import annotations

from dataclasses import dataclass

from redis.crc import key_slot

NAMESPACES_KEY = "rg:namespaces"


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys and the sharded pub/sub channel of one namespace."""

    namespace: str

    @property
    def tag(self) -> str:
        return "{rg:" + self.namespace + "}"

    @property
    def rules(self) -> str:
        return self.tag + ":rules"

    @property
    def rev(self) -> str:
        return self.tag + ":rev"

    @property
    def log(self) -> str:
        return self.tag + ":log"

    @property
    def meta(self) -> str:
        return self.tag + ":meta"

    @property
    def fleet(self) -> str:
        return self.tag + ":fleet"

    @property
    def upstreams(self) -> str:
        """Return the key of the admin-declared upstream names (a msgpack list, written by ruleadmin)."""
        return self.tag + ":upstreams"

    @property
    def killswitch(self) -> str:
        """Return the key of the engaged kill switches' records (a hash: switch id -> JSON, written by ruleadmin)."""
        return self.tag + ":killswitch"

    @property
    def events(self) -> str:
        return self.tag + ":events"

    @property
    def slot(self) -> int:
        """Return the cluster slot every key of this namespace lives in."""
        return key_slot(self.rules.encode())

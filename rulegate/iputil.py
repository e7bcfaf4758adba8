"""The one IP grammar of rulegate, for rule CIDRs and request IPs (lua/rulegate/iputil.lua mirrors it).

IPv4: four decimal octets 0..255 without leading zeros. IPv6: RFC 4291 text (groups of 1-4 hex
digits, one '::' standing for one or more zero groups, an optional IPv4 tail), no zone id, no
brackets, no spaces. Anything else is not an address. docs/rules.md "IP addresses" is the spec.
"""
from __future__ import annotations

MAX_TEXT = 45  # the longest valid form: 6 groups of 4 hex digits + an IPv4 tail
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
BITS = {4: 32, 6: 128}


def _v4(s: str) -> int | None:
    parts = s.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not 1 <= len(part) <= 3 or any(c not in _DIGITS for c in part) or (len(part) > 1 and part[0] == "0"):
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return value


def _groups(s: str, tail: bool) -> list[int] | None:
    """Return the 16-bit groups of s ('' has none); with tail, the last part may be an IPv4 address."""
    if s == "":
        return []
    parts = s.split(":")
    out: list[int] = []
    for i, part in enumerate(parts):
        if tail and i == len(parts) - 1 and "." in part:
            v4 = _v4(part)
            if v4 is None:
                return None
            out += (v4 >> 16, v4 & 0xFFFF)
        elif 1 <= len(part) <= 4 and all(c in _HEX for c in part):
            out.append(int(part, 16))
        else:
            return None
    return out


def _v6(s: str) -> int | None:
    gap = s.find("::")
    if gap == -1:
        groups = _groups(s, True)
        if groups is None or len(groups) != 8:
            return None
    else:
        if s.find("::", gap + 1) != -1:
            return None
        head, tail = _groups(s[:gap], False), _groups(s[gap + 2:], True)
        if head is None or tail is None or len(head) + len(tail) > 7:
            return None
        groups = head + [0] * (8 - len(head) - len(tail)) + tail
    value = 0
    for g in groups:
        value = value << 16 | g
    return value


def parse_ip(text: object) -> tuple[int, int] | None:
    """Return (4 or 6, the address as an integer) for a valid address, else None; never raises."""
    if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
        return None
    if ":" in text:
        value = _v6(text)
        return None if value is None else (6, value)
    value = _v4(text)
    return None if value is None else (4, value)


def format_ip(family: int, value: int) -> str:
    """Return the canonical text of an address: dotted quad, or RFC 5952 (lower-case, longest zero run as '::')."""
    if family == 4:
        return ".".join(str(value >> shift & 0xFF) for shift in (24, 16, 8, 0))
    groups = [value >> (112 - 16 * i) & 0xFFFF for i in range(8)]
    best, best_len, i = -1, 1, 0
    while i < 8:
        if groups[i] == 0:
            j = i
            while j < 8 and groups[j] == 0:
                j += 1
            if j - i > best_len:
                best, best_len = i, j - i
            i = j
        else:
            i += 1
    text = [f"{g:x}" for g in groups]
    if best == -1:
        return ":".join(text)
    return ":".join(text[:best]) + "::" + ":".join(text[best + best_len:])


def _prefix_of(family: int, text: str) -> int:
    if 1 <= len(text) <= 3 and all(c in _DIGITS for c in text):
        prefix = int(text)
        if prefix > BITS[family]:
            raise ValueError(f"the prefix length must be 0..{BITS[family]}")
        return prefix
    mask = parse_ip(text) if family == 4 else None
    if mask is None or mask[0] != 4:
        raise ValueError(f"the prefix must be a length 0..{BITS[family]}" + (" or a netmask" if family == 4 else ""))
    ones = bin(mask[1]).count("1")
    if mask[1] != (0xFFFFFFFF << (32 - ones)) & 0xFFFFFFFF:
        raise ValueError("the netmask is not contiguous")
    return ones


def canonical_cidr(text: str) -> str:
    """Return text as a canonical 'address/prefix'; raise ValueError saying why it is not a CIDR.

    Accepted and canonicalized: a bare address (/32, /128), an IPv4 netmask (/255.0.0.0 -> /8),
    leading zeros in the prefix length, upper-case hex. Refused: host bits set, zone ids, brackets.
    """
    if "%" in text:
        raise ValueError("zone ids ('%') are not allowed")
    addr_text, slash, prefix_text = text.partition("/")
    addr = parse_ip(addr_text)
    if addr is None:
        raise ValueError(f"{addr_text!r} is not an IPv4 or IPv6 address")
    family, value = addr
    prefix = _prefix_of(family, prefix_text) if slash else BITS[family]
    host_bits = (1 << (BITS[family] - prefix)) - 1
    if value & host_bits:
        raise ValueError(f"host bits are set (the network is {format_ip(family, value & ~host_bits)}/{prefix})")
    return f"{format_ip(family, value)}/{prefix}"


def parse_cidr(text: str) -> tuple[int, int, int]:
    """Return (family, prefix, network) of a canonical CIDR; raise ValueError otherwise."""
    addr_text, _, prefix_text = text.partition("/")
    addr = parse_ip(addr_text)
    if addr is None or not prefix_text.isdigit():
        raise ValueError(f"{text!r} is not a CIDR")
    return addr[0], int(prefix_text), addr[1]


def contains(net: tuple[int, int, int], addr: tuple[int, int]) -> bool:
    """Return True when the address lies in the network (same family only)."""
    family, prefix, network = net
    if addr[0] != family:
        return False
    shift = BITS[family] - prefix
    return addr[1] >> shift == network >> shift

"""The namespace size limits' settings: bounds checked at startup, defaults sized against nginx's shared dict."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from ruleadmin.config import DEFAULTS, ConfigError, check
from rulegate.schema import MAX_RULES_PER_NAMESPACE

ROOT = Path(__file__).resolve().parents[2]
UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _config(**overrides) -> dict:
    return {**DEFAULTS, "SECRET_KEY": "s", **overrides}


def test_default_byte_limit_leaves_the_default_shared_dict_two_thirds_free():
    """NAMESPACE_MAX_BYTES (plus ~7 bytes of payload framing per rule) is at most 1/3 of `lua_shared_dict
    rulegate` in lua/conf/rulegate.conf, which holds the whole payload next to its other keys."""
    conf = (ROOT / "lua/conf/rulegate.conf").read_text()
    size, unit = re.search(r"^lua_shared_dict rulegate (\d+)([kKmMgG]?);", conf, re.M).groups()
    dict_bytes = int(size) * UNITS[unit.lower()]
    payload = DEFAULTS["NAMESPACE_MAX_BYTES"] + 7 * DEFAULTS["NAMESPACE_MAX_RULES"] + 1024
    assert payload * 3 <= dict_bytes


def test_default_rule_limit_is_the_schema_limit():
    """The configurable rule count defaults to (and may not exceed) MAX_RULES_PER_NAMESPACE."""
    assert DEFAULTS["NAMESPACE_MAX_RULES"] == MAX_RULES_PER_NAMESPACE
    check(_config(), debug=False)


@pytest.mark.parametrize("name,value", [
    ("NAMESPACE_MAX_RULES", MAX_RULES_PER_NAMESPACE + 1), ("NAMESPACE_MAX_RULES", 0),
    ("NAMESPACE_MAX_RULES", "100"), ("NAMESPACE_MAX_RULES", True),
    ("NAMESPACE_MAX_BYTES", 1023), ("NAMESPACE_MAX_BYTES", 2**41), ("NAMESPACE_MAX_BYTES", 1.5e6),
])
def test_out_of_range_limits_refuse_to_start(name, value):
    """A limit that is not an integer in range is a ConfigError naming the RULEADMIN_ setting."""
    with pytest.raises(ConfigError, match=f"RULEADMIN_{name}"):
        check(_config(**{name: value}), debug=False)

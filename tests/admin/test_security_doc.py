"""docs/security.md's Redis ACL table says exactly what rulegate_dev/acl.py gives each Redis user."""
from __future__ import annotations

import re

from rulegate_dev.acl import AclUsers

from .conftest import ROOT

NS = "nsx"  # a namespace name standing for <ns> in the table


def _doc_table() -> dict[str, tuple[set[str], set[str], set[str]]]:
    """Return {user: (key patterns, channel patterns, commands)} from the "## Redis ACL" table."""
    text = (ROOT / "docs" / "security.md").read_text()
    section = text.split("\n## Redis ACL\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        user, keys, channels, commands = ([t.replace("\\|", "|").replace("<ns>", NS)
                                           for t in re.findall(r"`([^`]+)`", c)] for c in cells)
        rows[user[0]] = (set(keys), set(channels), set(commands) - {"off"})
    return rows


def _code_table() -> dict[str, tuple[set[str], set[str], set[str]]]:
    """Return the same shape from the user lines the launcher writes into redis.conf."""
    lines = AclUsers.for_namespaces(NS).config_lines()["__users__"].splitlines()
    rows = {}
    for line in lines:
        name, *rules = line.split()
        rules = [r for r in rules if not r.startswith(">")]
        keys = {r for r in rules if r.startswith(("~", "%R~", "%W~", "%RW~"))}
        channels = {r for r in rules if r.startswith("&")}
        commands = {r[1:] for r in rules if r.startswith("+")}
        rows[name] = (keys, channels, commands)
    return rows


def test_acl_table_matches_the_code():
    """Every Redis user, key pattern, channel pattern and allowed command in the doc is in the code, and back."""
    doc, code = _doc_table(), _code_table()
    assert set(doc) == set(code), "the table lists other users than rulegate_dev/acl.py"
    for user in code:
        for what, documented, actual in zip(("keys", "channels", "commands"), doc[user], code[user]):
            assert documented == actual, (f"{user} {what}: only in the doc {sorted(documented - actual)}, "
                                          f"only in the code {sorted(actual - documented)}")


def test_default_user_is_off():
    """The doc says the default user is off; so does the code."""
    default = next(line for line in AclUsers().config_lines()["__users__"].splitlines() if line.startswith("default"))
    assert " off " in f" {default} " and "+" not in default

"""The nginx configuration of a rulegate gateway, as the launcher, the tests and the benches write it.

Every function returns an ``http {}`` fragment in ``NginxLauncher``'s template syntax:
``{port}``, ``{prefix}`` and ``{repo}`` are filled in by the launcher, braces are doubled.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

INCLUDE = "include {repo}/lua/conf/rulegate.conf;"
STATUS_LOCATION = """location = /rulegate/status {{
            content_by_lua_block {{ require("rulegate").status() }}
        }}
        location = /rulegate/metrics {{
            content_by_lua_block {{ require("rulegate").metrics() }}
        }}"""


_UPSTREAM_BLOCK = re.compile(r"^\s*upstream\s+(\S+)\s*\{", re.MULTILINE)


def upstream_blocks(names: Iterable[str], port: int | str, keepalive: int = 0) -> str:
    """Return one ``upstream`` block per name, each pointing at 127.0.0.1:port."""
    extra = f" keepalive {keepalive};" if keepalive else ""
    return "\n".join(f"    upstream {n} {{{{ server 127.0.0.1:{port};{extra} }}}}" for n in names)


def upstream_names(blocks: str) -> list[str]:
    """Return the sorted names of the ``upstream {}`` blocks in an http fragment (as upstream_blocks writes)."""
    return sorted(set(_UPSTREAM_BLOCK.findall(blocks)))


def include_options(options: Mapping[str, Any], blocks: str) -> dict[str, Any]:
    """Return the include's options (``conf/rulegate.json``) with ``upstreams``: the names of the
    ``upstream {}`` blocks in ``blocks``, which the gateway reports in its fleet heartbeat."""
    return {**options, "upstreams": upstream_names(blocks)}


def rulegate_location(default: str, *, header_vars: bool = False, proxy: str = "", outcomes: bool = False) -> str:
    """Return ``location /`` routed by rulegate (``$rulegate_upstream``, default when no rule matches).

    With ``header_vars`` the decision's rule id and revision go out as X-Rulegate-Rule/-Rev
    through ``$rulegate_rule``/``$rulegate_rev`` (the include's ``"response_headers": "vars"``).
    ``proxy`` is extra directives placed before ``proxy_pass``. With ``outcomes`` a ``log_by_lua``
    handler records the outcomes of requests that need them: breaker rules' (docs/rules.md, "Breakers")
    and guarded rules' ("Outcome counts"); it is opt-in because a log phase handler costs every request a
    few µs (bench/REPORT.md).
    """
    lines = [f"set $rulegate_upstream {default};"]
    if header_vars:
        lines += ['set $rulegate_rule "";', 'set $rulegate_rev "";']
    lines.append('access_by_lua_block {{ require("rulegate").access() }}')
    if header_vars:
        lines += ["add_header X-Rulegate-Rule $rulegate_rule always;",
                  "add_header X-Rulegate-Rev $rulegate_rev always;"]
    if proxy:
        lines.append(proxy)
    lines.append("proxy_pass http://$rulegate_upstream;")
    if outcomes:
        lines.append('log_by_lua_block {{ require("rulegate").log() }}')
    body = "\n".join("            " + line for line in lines)
    return "location / {{\n" + body + "\n        }}"


def gateway_http(upstreams: str, location: str, *, include: str = INCLUDE, status: bool = True,
                 extra_locations: str = "", extra: str = "") -> str:
    """Return the http body of a gateway: the include, upstreams, ``extra``, one server on ``{port}``."""
    locations = [location] + ([STATUS_LOCATION] if status else []) + ([extra_locations] if extra_locations else [])
    joined = "\n        ".join(locations)
    return f"""
    {include}
{upstreams}
{extra}
    server {{{{
        listen 127.0.0.1:{{port}};
        {joined}
    }}}}
"""

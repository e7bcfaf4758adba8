"""The demo's backends served by its nginx (`stable`, `canary`, and `flaky`, whose failures can be switched on),
and `rulegate-dev fault on|off|slow`, which switches them through a control port on loopback.

`flaky` answers 200 "flaky" normally; with the fault `on` it answers 500, with `slow` it waits `ms` milliseconds
before answering 200. The mode lives in a `lua_shared_dict` of the demo nginx (all workers see it at once);
the control server (`GET /fault` reads it, `POST /fault?mode=on|off|slow[&ms=N]` sets it) listens on its own
127.0.0.1 port, so no request routed through the gateway can reach it.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

FAULT_MODES = ("on", "off", "slow")
MAX_SLOW_MS = 60_000  # below nginx's default proxy_read_timeout (60 s)

# NginxLauncher template syntax: braces doubled; the ports are filled in by backend_servers()
_STATIC = """    server {{
        listen 127.0.0.1:@PORT@;
        location / {{ default_type text/plain; return 200 "@NAME@\\n"; }}
    }}"""

_FLAKY = """    lua_shared_dict rulegate_demo_fault 1m;
    server {{
        listen 127.0.0.1:@FLAKY@;
        default_type text/plain;
        location / {{
            content_by_lua_block {{
                local fault = ngx.shared.rulegate_demo_fault
                local mode = fault:get("mode")
                if mode == "on" then
                    ngx.status = 500
                    ngx.say("flaky: injected failure")
                    return
                elseif mode == "slow" then
                    ngx.sleep((fault:get("ms") or 0) / 1000)
                end
                ngx.say("flaky")
            }}
        }}
    }}
    server {{
        listen 127.0.0.1:@CONTROL@;
        default_type application/json;
        location = /fault {{
            content_by_lua_block {{
                local cjson = require("cjson")
                local fault = ngx.shared.rulegate_demo_fault
                local method = ngx.req.get_method()
                if method == "POST" then
                    local args = ngx.req.get_uri_args()
                    local mode, ms = args.mode, tonumber(args.ms)
                    if mode ~= "on" and mode ~= "off" and mode ~= "slow" then
                        ngx.status = 400
                        ngx.say(cjson.encode({{error = "mode must be on, off or slow"}}))
                        return
                    end
                    if mode == "slow" and (not ms or ms < 1 or ms > @MAX_MS@ or ms % 1 ~= 0) then
                        ngx.status = 400
                        ngx.say(cjson.encode({{error = "ms must be a whole number 1-@MAX_MS@ with mode slow"}}))
                        return
                    end
                    fault:set("mode", mode)
                    fault:set("ms", mode == "slow" and ms or 0)
                elseif method ~= "GET" then
                    ngx.status = 405
                    ngx.say(cjson.encode({{error = "use GET or POST"}}))
                    return
                end
                ngx.say(cjson.encode({{mode = fault:get("mode") or "off", ms = fault:get("ms") or 0}}))
            }}
        }}
    }}"""


def backend_servers(ports: dict[str, int], control: int) -> str:
    """Return the demo's backend servers (an http {} fragment in NginxLauncher's template syntax): `stable` and
    `canary` answer their name, `flaky` answers "flaky" or fails as the fault switched on the control port says.
    ports maps each backend name (stable, canary, flaky) to its port."""
    static = [_STATIC.replace("@PORT@", str(port)).replace("@NAME@", name)
              for name, port in ports.items() if name != "flaky"]
    flaky = (_FLAKY.replace("@FLAKY@", str(ports["flaky"])).replace("@CONTROL@", str(control))
             .replace("@MAX_MS@", str(MAX_SLOW_MS)))
    return "\n".join(static + [flaky])


class FaultError(Exception):
    """The fault control port refused a change or could not be reached."""


def fault_request(port: int, mode: str | None = None, ms: int | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """Set the fault (mode on/off/slow, ms with slow) or, with mode None, read it; return {"mode", "ms"}.
    Raise FaultError when the control server refuses or cannot be reached."""
    url = f"http://127.0.0.1:{port}/fault"
    data = None
    if mode is not None:
        url += f"?mode={mode}" + (f"&ms={ms}" if ms is not None else "")
        data = b""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST" if data is not None
                                                           else "GET"), timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise FaultError(f"the fault control refused {mode!r}: {exc.read().decode(errors='replace').strip()}") \
            from None
    except (urllib.error.URLError, OSError) as exc:
        raise FaultError(f"cannot reach the fault control on 127.0.0.1:{port}: {getattr(exc, 'reason', exc)}") \
            from None


def describe(state: dict[str, Any]) -> str:
    """Return a fault state as a sentence."""
    if state.get("mode") == "on":
        return "flaky answers 500 to every request"
    if state.get("mode") == "slow":
        return f"flaky answers after {state.get('ms')} ms"
    return "flaky answers 200 \"flaky\" (no fault)"

"""Fixtures for the nginx/Lua tests: a spec-runner nginx and an nginx factory."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rulegate_dev.gateway_conf import gateway_http, rulegate_location, upstream_blocks
from rulegate_dev.nginx import NginxLauncher, free_port

HERE = Path(__file__).resolve().parent

HARNESS_HTTP = """
    lua_shared_dict rulegate 4m;
    client_body_buffer_size 4m;
    client_max_body_size 16m;
    lua_socket_log_errors off;
    server {{
        listen 127.0.0.1:{port};
        location = /spec {{
            content_by_lua_block {{
                local res = require("spec_runner").run("spec." .. ngx.var.arg_name)
                ngx.say(require("cjson").encode(res))
            }}
        }}
        location = /slots {{
            content_by_lua_block {{
                local cjson = require("cjson")
                local crc16 = require("rulegate.crc16")
                ngx.req.read_body()
                local out = {{}}
                for i, k in ipairs(cjson.decode(ngx.req.get_body_data())) do
                    out[i] = crc16.slot(k)
                end
                ngx.say(cjson.encode(out))
            }}
        }}
        location = /decide {{
            content_by_lua_block {{
                require("cluster_harness").decide()
            }}
        }}
        location = /call {{
            content_by_lua_block {{
                require("cluster_harness").call()
            }}
        }}
    }}
"""


@pytest.fixture(scope="module")
def lua_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxLauncher]:
    """An nginx that runs Lua spec files and cluster-client calls on request."""
    prefix = tmp_path_factory.mktemp("lua-harness")
    ngx = NginxLauncher(
        HARNESS_HTTP, prefix=prefix, extra_lua_paths=(f"{HERE}/?.lua",), workers=1
    )
    with ngx:
        yield ngx


ECHO_SERVER = """
    lua_shared_dict rulegate_test 1m;
    server {{
        listen 127.0.0.1:ECHO_PORT;
        location / {{
            if ($http_x_echo_fail) {{
                return 500 "fail";
            }}
            add_header X-Echo-Upstream $http_x_upstream always;
            return 200 "$http_x_upstream";
        }}
    }}"""
LUA_MEMORY = """location = /lua-memory {{
            content_by_lua_block {{
                collectgarbage()
                ngx.say(require("cjson").encode({{ pid = ngx.worker.pid(), kb = collectgarbage("count") }}))
            }}
        }}
        location = /lua-hold {{
            content_by_lua_block {{
                -- a test hook: hold this worker's event loop for ?ms= milliseconds of its CPU
                -- (not of wall time: on a busy machine the worker runs only part of a wall-time hold)
                local stop = os.clock() + (tonumber(ngx.var.arg_ms) or 0) / 1000
                while os.clock() < stop do
                end
                ngx.say(ngx.worker.pid())
            }}
        }}
        location = /api/v7/unyielding {{
            # a test hook: rulegate's decide() in a phase that cannot yield (svc7's rules route /api/v7)
            set_by_lua_block $rulegate_unyielding {{
                local d = require("rulegate").decide()
                return d and (d.upstream or d.action) or "none"
            }}
            return 200 $rulegate_unyielding;
        }}"""

UPSTREAMS = ("default", "stable", "canary", "a", "b", "c", "v1", "v2", "fallback")


class Gateway(NginxLauncher):
    """An nginx with lua/conf/rulegate.conf included, in front of an echo upstream (which answers 500 to a
    request carrying X-Echo-Fail)."""

    def __init__(self, options: dict[str, Any], upstreams: tuple[str, ...] = UPSTREAMS, **kw: Any) -> None:
        self.echo_port = free_port()
        http = gateway_http(
            upstream_blocks(sorted(set(upstreams) | {"default"}), self.echo_port, keepalive=8),
            rulegate_location("default", header_vars=True, proxy="proxy_set_header X-Upstream $rulegate_upstream;",
                              outcomes=True),
            extra=ECHO_SERVER.replace("ECHO_PORT", str(self.echo_port)), extra_locations=LUA_MEMORY)
        self.options = options
        super().__init__(http, package_path=False, workers=kw.pop("workers", 2),
                         files={"conf/rulegate.json": json.dumps(options)}, **kw)

    def write_conf(self, http: str | None = None) -> Path:
        self.files["conf/rulegate.json"] = json.dumps(self.options)
        return super().write_conf(http)

    def status(self) -> dict[str, Any]:
        """Return /rulegate/status."""
        return self.json("/rulegate/status")

    def status_when(self, pred: Callable[[dict[str, Any]], Any], what: str, timeout: float = 10.0) -> dict[str, Any]:
        """Return /rulegate/status once pred(status) holds (wait_for's polling); fail naming `what`."""
        def check() -> dict[str, Any] | None:
            st = self.status()
            return st if pred(st) else None
        return wait_for(check, what, timeout)

    def wait_revision(self, rev: int, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the gateway serves revision ``rev``; return the status."""
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = self.status()
            if st["revision"] == rev:
                return st
            time.sleep(0.02)
        raise AssertionError(f"gateway still at revision {st.get('revision')} (want {rev}): {st}")

    def get(self, path: str = "/", host: str = "app.example.com", headers: dict[str, str] | None = None,
            method: str = "GET", conn: http.client.HTTPConnection | None = None) -> Response:
        """Send one request (on ``conn`` when given, keep-alive) and return the response."""
        own = conn is None
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            hdrs = {"Host": host, **(headers or {})}
            c.request(method, path, headers=hdrs)
            r = c.getresponse()
            body = r.read().decode(errors="replace")
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, body)
        finally:
            if own:
                c.close()


@dataclass
class Response:
    """An HTTP response, header names lowercased."""

    status: int
    headers: dict[str, str]
    body: str


@pytest.fixture(scope="session")
def redis_nodes(cluster: Any) -> list[str]:
    """The session cluster's startup nodes."""
    return list(cluster.startup_nodes)


@pytest.fixture()
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """A factory of started Gateways (stopped at teardown); kwargs are rulegate options, but workers (nginx's)
    and thread_pool (False: no `thread_pool rulegate` in nginx.conf)."""
    started: list[Gateway] = []

    def make(namespace: str, nodes: list[str], prefix: Path | None = None, workers: int = 2,
             thread_pool: bool = True, **options: Any) -> Gateway:
        opts = {"namespace": namespace, "startup_nodes": nodes, "refresh_interval": 0.2,
                "response_headers": "vars",
                "gateway_id": f"test-{namespace}-{len(started)}", **options}
        gw = Gateway(opts, prefix=prefix or tmp_path / f"nginx{len(started)}", workers=workers,
                     thread_pool=thread_pool)
        started.append(gw)
        return gw.start()

    yield make
    for gw in started:
        gw.stop()
    for gw in started:
        leaks = [line for line in gw.log_lines() if "writing a global Lua variable" in line]
        assert leaks == [], leaks


def wait_for(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Return check()'s first truthy value, polling every 50 ms; fail naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")

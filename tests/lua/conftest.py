"""Fixtures for the nginx/Lua tests: a spec-runner nginx and an nginx factory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rulegate_dev.nginx import NginxLauncher

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

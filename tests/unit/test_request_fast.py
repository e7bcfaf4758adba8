"""Request.from_dict / from_environ: the fast path for the common shape builds what the general path builds."""
from __future__ import annotations

from types import MappingProxyType

import pytest

from rulegate.request import Request

COMMON = {"host": "a.example.com", "path": "/x", "method": "GET", "ip": "10.0.0.1", "headers": {"x-uid": "17"}}
VARIANTS = [
    {},
    {"host": "A.Example.COM.:8080"}, {"host": "[::1]:80"}, {"host": 5}, {"host": ""},
    {"path": "/x?a=1&b=2"}, {"path": ""}, {"path": 7}, {"path": "/caf\u00e9"},
    {"method": "get"}, {"method": ""}, {"method": None}, {"method": "PURGE"},
    {"ip": 4}, {"ip": ""},
    {"headers": {}}, {"headers": {"X-Uid": "17"}}, {"headers": {"cookie": "a=1; b=2"}}, {"headers": {"x-uid": 17}},
    {"headers": {"x-uid": "1", "x-b": "2"}}, {"headers": [["x-uid", "17"]]}, {"headers": {"123": "4"}},
    {"headers": {"\u00c9t\u00e9": "x"}}, {"headers": None},
]


@pytest.mark.parametrize("change", VARIANTS, ids=[repr(v) for v in VARIANTS])
def test_from_dict_fast_path_equals_general_path(change: dict) -> None:
    data = {**COMMON, **change}
    for _ in range(2):  # cold, then with the host, method and header-name caches warm
        fast, general = Request.from_dict(data), Request._from_mapping(data)
        assert fast == general
        assert type(fast.headers) is type(general.headers)
        assert [type(k) for k in fast.headers] == [type(k) for k in general.headers]
        assert (fast.cookies, fast.args, fast.now, fast.request_id) == (general.cookies, general.args, None, "")
    assert data["headers"] is not fast.headers


def test_from_dict_fast_path_copies_the_headers() -> None:
    data = {**COMMON, "headers": {"x-uid": "17"}}
    req = Request.from_dict(data)
    data["headers"]["x-uid"] = "18"
    assert req.headers == {"x-uid": "17"}


ENVIRON = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/x", "QUERY_STRING": "", "REMOTE_ADDR": "10.0.0.1",
           "HTTP_HOST": "a.example.com", "HTTP_X_UID": "17"}
ENV_VARIANTS = [
    {}, {"HTTP_HOST": "A.Example.COM:80"}, {"HTTP_HOST": "caf\u00c3\u00a9.example"}, {"HTTP_HOST": ""},
    {"PATH_INFO": ""}, {"PATH_INFO": "/caf\u00c3\u00a9"}, {"SCRIPT_NAME": "/app"}, {"QUERY_STRING": "a=1"},
    {"REQUEST_METHOD": "get"}, {"REQUEST_METHOD": ""}, {"RAW_URI": "/raw?q=1"}, {"REQUEST_URI": "/req"},
    {"HTTP_COOKIE": "a=1"},
]


@pytest.mark.parametrize("change", ENV_VARIANTS, ids=[repr(v) for v in ENV_VARIANTS])
@pytest.mark.parametrize("ip", [None, "192.0.2.1"])
def test_from_environ_fast_path_equals_general_path(change: dict, ip: str | None) -> None:
    environ = {**ENVIRON, **change}
    for _ in range(2):  # a read-only proxy is not a dict: it takes the general path
        fast = Request.from_environ(environ, ip=ip, now=5.0, request_id="r")
        general = Request.from_environ(MappingProxyType(environ), ip=ip, now=5.0, request_id="r")
        assert fast == general
        assert fast.headers.environ is environ


@pytest.mark.parametrize("missing", ["SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_METHOD", "HTTP_HOST",
                                     "REMOTE_ADDR"])
def test_from_environ_missing_keys(missing: str) -> None:
    environ = {k: v for k, v in ENVIRON.items() if k != missing}
    assert Request.from_environ(environ) == Request.from_environ(MappingProxyType(environ))

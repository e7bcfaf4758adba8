"""The sidecar answers 200 or 400 for any JSON body, whatever strings it holds (never 500)."""
from __future__ import annotations

import io
import json
from collections import defaultdict
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_agent.sidecar import SidecarApp
from rulegate.evaluator import RuleSet, decide
from rulegate.schema import validate_rule

RULES = [validate_rule(r) for r in (
    {"id": "pc", "kind": "split", "route": {"host": "*", "path": "/"}, "key": {"source": "header", "name": "x-uid"},
     "policies": [{"type": "uid_range", "ranges": [[1, 9]], "upstream": "a"},
                  {"type": "uid_suffix", "suffixes": ["7"], "upstream": "b"},
                  {"type": "ip_cidr", "cidrs": ["10.0.0.0/8"], "upstream": "c"},
                  {"type": "cookie", "name": "beta", "values": ["on"], "upstream": "c"},
                  {"type": "arg", "name": "v", "values": ["x"], "upstream": "c"},
                  {"type": "percent", "buckets": [{"upstream": "a", "weight": 5000}]}], "default": "stable"},
    {"id": "shed", "kind": "degrade", "route": {"host": "*", "path": "/shed"}, "action": {"type": "reject"},
     "percent": 50, "key": {"source": "cookie", "name": "sid"}},
)]


class StubClient:
    """Decides from a fixed rule set, as a loaded RuleClient would."""

    def __init__(self) -> None:
        self.ruleset = RuleSet(RULES, 1)

    def decide(self, request):
        return decide(self.ruleset, request)


def app() -> SidecarApp:
    counters = defaultdict(lambda: SimpleNamespace(inc=lambda: None))
    return SidecarApp(StubClient(), SimpleNamespace(decisions=counters))  # type: ignore[arg-type]


def post(sidecar: SidecarApp, body: bytes) -> tuple[int, dict]:
    seen = {}
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/decide", "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body)}
    out = b"".join(sidecar(environ, lambda status, headers: seen.setdefault("status", status)))
    return int(seen["status"].split()[0]), json.loads(out)


surrogates = st.integers(0xD800, 0xDFFF).map(chr)  # hypothesis never draws them itself
any_text = st.text(st.one_of(st.characters(), surrogates), max_size=12)
str_maps = st.dictionaries(any_text, any_text, max_size=4)
requests = st.fixed_dictionaries({"host": st.one_of(st.just("a.example.com"), any_text.filter(bool))}, optional={
    "path": st.one_of(st.sampled_from(["/", "/shed", "/?v=x", "/?v=%ff"]), any_text),
    "method": any_text, "ip": st.one_of(st.sampled_from(["10.0.0.1", "fe80::1%eth0"]), any_text),
    "headers": st.one_of(str_maps, st.lists(st.lists(any_text, min_size=2, max_size=2), max_size=4)),
    "cookies": str_maps, "args": str_maps,
    "now": st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False))})


@settings(max_examples=80, deadline=None)
@given(requests)
def test_any_strings_get_a_decision(body):
    """A well-formed body with any strings (lone surrogates, odd hosts, odd IPs) gets a 200 decision."""
    status, payload = post(app(), json.dumps(body).encode())
    assert status == 200, payload
    assert payload["action"] in ("proxy", "respond", "redirect", "pass")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | any_text,
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(any_text, c, max_size=3), max_leaves=12)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["host", "path", "method", "ip", "headers", "cookies", "args", "now", "x"]),
                       json_values, max_size=6))
def test_any_json_object_gets_200_or_400(body):
    """Any JSON object (wrong types, NaN, nesting) is answered 200 or 400, never 500."""
    status, payload = post(app(), json.dumps(body).encode())
    assert status in (200, 400), payload


def test_lone_surrogate_key_is_hashed_not_refused():
    """A header value holding an escaped lone surrogate is hashed like the bytes it stands for."""
    status, payload = post(app(), b'{"host": "a.example.com", "headers": {"x-uid": "\\udcff"}}')
    assert status == 200 and payload["rule_id"] == "pc"

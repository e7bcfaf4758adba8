"""GET /v1/rules on the sidecar: one applied set's rules, revision and digest; built once per set; never one block."""
from __future__ import annotations

import json

import pytest

from gateway_agent import sidecar, sync
from gateway_agent.sidecar import SidecarApp
from rulegate.digest import content_digest
from rulegate.schema import encode_rule, validate_rule

from .conftest import make_client, split_rule


def get(app: SidecarApp, **headers: str) -> tuple[str, dict, bytes]:
    out: dict = {}
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/v1/rules",
               **{f"HTTP_{k.upper()}": v for k, v in headers.items()}}
    body = b"".join(app(environ, lambda status, hdrs: out.update(status=status, headers=dict(hdrs))))
    return out["status"], out["headers"], body


def test_rules_view_is_one_set_cached_per_set_and_conditional(cluster, store, namespace, monkeypatch):
    """The body's revision, generation and digest are those of the rules it lists (the digest recomputed from
    them); a second GET and an If-None-Match GET decode nothing; a change gives a new ETag and the new rules."""
    for i in range(3):  # validated: stored in the canonical form, so the rules listed re-encode to the same bytes
        rev = store.put_rule(namespace, validate_rule(split_rule(f"r{i}", f"v{i}", path=f"/{i}")), None,
                             "test").revision
    with make_client(cluster, namespace, refresh_interval=0.1) as client:
        assert client.wait_for_revision(rev, 10.0)
        app = SidecarApp(client)
        status, headers, body = get(app)
        data = json.loads(body)
        assert status == "200 OK" and headers["ETag"].startswith('"')
        applied = client.syncer.current
        assert (data["namespace"], data["revision"], data["generation"], data["digest"]) == (
            namespace, rev, applied.generation, applied.digest)
        assert data["rules"] == client.rules
        assert content_digest({i: encode_rule(r) for i, r in data["rules"].items()}) == data["digest"]

        def no_decode(*_args, **_kwargs):
            raise AssertionError("decoded again")

        with monkeypatch.context() as m:
            m.setattr(sync, "decode_rule", no_decode)  # where Applied.each_rule decodes
            assert get(app) == (status, headers, body)  # the same set: the body kept
            status304, headers304, empty = get(app, if_none_match=f'W/"x", {headers["ETag"]}')
            assert status304 == "304 Not Modified" and headers304["ETag"] == headers["ETag"] and empty == b""

        rev = store.put_rule(namespace, split_rule("r1", "changed", path="/1"), None, "test").revision
        assert client.wait_for_revision(rev, 10.0)
        status, new_headers, body = get(app, if_none_match=headers["ETag"])
        assert status == "200 OK" and new_headers["ETag"] != headers["ETag"]
        data = json.loads(body)
        assert data["revision"] == rev and data["rules"]["r1"]["default"] == "changed"


def test_rules_view_yields_between_rules(cluster, store, namespace, monkeypatch):
    """Decoding and encoding 300 rules calls the reload's pause between rules (json.dumps of the whole set ran in
    one block: ~250 ms at 20,000 rules with every other sidecar request waiting)."""
    rules = [split_rule(f"r{i}", f"v{i}", path=f"/{i}") for i in range(300)]
    store.commit(namespace, [(r["id"], encode_rule(r)) for r in rules], None, "test", op="put")
    pauses = []
    monkeypatch.setattr(sidecar, "slicer", lambda: lambda: pauses.append(1))
    with make_client(cluster, namespace, refresh_interval=0.1) as client:
        status, _headers, body = get(SidecarApp(client))
    assert status == "200 OK" and len(json.loads(body)["rules"]) == 300
    assert len(pauses) >= 300


@pytest.mark.parametrize("header,expected", [(None, False), ("", False), ('"a"', True), ('W/"a"', True),
                                             ('"b", "a"', True), ("*", True), ('"b"', False)])
def test_if_none_match_forms(header, expected):
    assert sidecar._etag_matches(header, '"a"') is expected

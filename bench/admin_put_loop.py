"""N rule PUTs through one tree's ruleadmin in this process, for deterministic instruction counts per PUT.

Each PUT replaces one rule with If-Match (its ETag, or with --if-match revision the namespace revision), the way
bench/admin_write.py's clients do, and is sent straight into the WSGI app (environ + start_response, as gunicorn
calls it) or, with --via test, through Flask's test client; --view noop sends the same PUTs to an empty JSON view
that only the app-wide hooks run around (the floor of any JSON PUT). Auth and known-upstream caches are held for
the run. Needs a running cluster (RULEADMIN_REDIS_NODES). Instructions per PUT are the difference of two runs:

    for n in 20 120; do valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        python bench/admin_put_loop.py --tree TREE --puts $n; done     # (I refs of 120 - of 20) / 100
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rule(weight: int) -> dict:
    return {"id": "r1", "kind": "split", "route": {"host": "bench.example.com", "path": "/r1"},
            "key": {"source": "header", "name": "x-uid"}, "default": "stable",
            "policies": [{"type": "percent", "buckets": [{"upstream": "canary", "weight": weight}]}]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose ruleadmin runs (default: this one)")
    ap.add_argument("--puts", type=int, default=100)
    ap.add_argument("--if-match", choices=("etag", "revision"), default="etag")
    ap.add_argument("--via", choices=("wsgi", "test"), default="wsgi")
    ap.add_argument("--view", choices=("put_rule", "noop"), default="put_rule")
    args = ap.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    import os

    from flask import jsonify

    from ruleadmin import create_app
    from ruleadmin.extensions import csrf

    app = create_app({"SECRET_KEY": uuid.uuid4().hex, "REDIS_NODES": os.environ["RULEADMIN_REDIS_NODES"],
                      "REDIS_MODE": "cluster", "WAIT_REPLICAS": 1, "WAIT_TIMEOUT_MS": 1000,
                      "AUTH_CACHE_SECONDS": 3600.0, "UPSTREAMS_CACHE_SECONDS": 3600.0})
    if args.view == "noop":
        def noop(ns: str, rule_id: str):
            return jsonify(rule={"id": rule_id}, etag="x", revision=1)
        app.add_url_rule("/noop/<ns>/<rule_id>", "noop", csrf.exempt(noop), methods=["PUT"])
    b = app.extensions["ruleadmin"]
    user = "loop-" + uuid.uuid4().hex[:6]
    b.accounts.create_user(user, "editor", uuid.uuid4().hex)
    token_id, token = b.accounts.create_token(user, "loop")
    ns = "loop-" + uuid.uuid4().hex[:6]
    b.rules.create_namespace(ns)
    path = f"/api/v1/namespaces/{ns}/rules/r1" if args.view == "put_rule" else f"/noop/{ns}/r1"
    client = app.test_client()
    base = {"REQUEST_METHOD": "PUT", "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "", "RAW_URI": path,
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_USER_AGENT": "Python-urllib/3.11", "HTTP_ACCEPT_ENCODING": "identity",
            "HTTP_AUTHORIZATION": f"Bearer {token}", "CONTENT_TYPE": "application/json",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.multithread": False,
            "wsgi.multiprocess": True, "wsgi.run_once": False, "SERVER_SOFTWARE": "gunicorn"}

    def put(weight: int, tag: str | None) -> tuple[int, bytes]:
        body = json.dumps(rule(weight)).encode()
        if args.via == "test":
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            r = client.put(path, data=body, headers=headers if tag is None else {**headers, "If-Match": tag})
            return r.status_code, r.get_data()
        environ = dict(base, CONTENT_LENGTH=str(len(body)))
        if tag is not None:
            environ["HTTP_IF_MATCH"] = tag
        environ["wsgi.input"] = io.BytesIO(body)
        status = []
        chunks = app(environ, lambda s, h, exc_info=None: status.append(int(s[:3])))
        data = b"".join(chunks)
        getattr(chunks, "close", lambda: None)()
        return status[0], data

    def step(weight: int, tag: str | None) -> str:
        status, data = put(weight, tag)
        if status not in (200, 201):
            raise SystemExit(f"PUT answered {status}: {data[:300]!r}")
        answer = json.loads(data)
        return answer["etag"] if args.if_match == "etag" else f'"{answer["revision"]}"'

    try:
        tag = step(1, None)
        for i in range(5):  # warm-up: caches, pooled connections, the commit script on its node
            tag = step(2 + i, tag)
        for i in range(args.puts):
            tag = step(100 + i, tag)
    finally:
        b.accounts.revoke_token(token_id)
        b.accounts.delete_user(user)
        b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

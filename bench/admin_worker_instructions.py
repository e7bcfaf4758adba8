"""Instructions a real `ruleadmin serve` gevent worker executes for N rule PUTs (cachegrind), one tree at a time.

Starts `ruleadmin serve --workers 1` of --tree under `valgrind --tool=cachegrind --cache-sim=no --trace-children=yes`
on the cluster of RULEADMIN_REDIS_NODES, sends 10 warm-up PUTs and then --puts rule-ETag PUTs over one keep-alive
connection, stops the server and prints the I refs of each process (the worker is the larger). Per PUT: the
difference of the worker's I refs between two runs (e.g. --puts 220 and --puts 20) over the difference in PUTs.
The worker's startup and idle ticks are in both runs; gunicorn's HTTP parsing and gevent are in the difference.

    RULEADMIN_REDIS_NODES=h:p,... python bench/admin_worker_instructions.py --tree TREE --puts 220
"""
from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from admin_put_loop import rule  # noqa: E402  (bench/ is sys.path[0]: the same rule as the in-process loop)

from ruleadmin import create_app  # noqa: E402
from rulegate_dev.nginx import free_port  # noqa: E402
from rulegate_dev.private_files import scratch_dir  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=ROOT)
    ap.add_argument("--puts", type=int, default=100)
    args = ap.parse_args()
    tree = args.tree.resolve()
    config = {"SECRET_KEY": uuid.uuid4().hex, "REDIS_NODES": os.environ["RULEADMIN_REDIS_NODES"],
              "REDIS_MODE": "cluster", "WAIT_REPLICAS": 1, "WAIT_TIMEOUT_MS": 1000, "AUTH_CACHE_SECONDS": 3600,
              "UPSTREAMS_CACHE_SECONDS": 3600}
    app = create_app(config)
    b = app.extensions["ruleadmin"]
    user = "wi-" + uuid.uuid4().hex[:6]
    b.accounts.create_user(user, "editor", uuid.uuid4().hex)
    token_id, token = b.accounts.create_token(user, "bench")
    ns = "wi-" + uuid.uuid4().hex[:6]
    b.rules.create_namespace(ns)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RULEADMIN_")}
    env.update({"RULEADMIN_" + k: str(v) for k, v in config.items()}, PYTHONPATH=str(tree))
    out = scratch_dir("rg-worker-cg-")
    proc = subprocess.Popen(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--trace-children=yes",
                             f"--cachegrind-out-file={out}/cg.%p", sys.executable, "-m", "ruleadmin.cli", "serve",
                             "--bind", f"127.0.0.1:{port}", "--workers", "1"],
                            env=env, cwd=tree, stdout=open(out / "log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"the server did not come up; see {out}/log") from None
                time.sleep(1)
        conn = http.client.HTTPConnection(f"127.0.0.1:{port}", timeout=60)
        h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        tag = None
        for i in range(10 + args.puts):
            conn.request("PUT", f"/api/v1/namespaces/{ns}/rules/r1", body=json.dumps(rule(i + 1)).encode(),
                         headers=h if tag is None else {**h, "If-Match": tag})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status not in (200, 201):
                raise SystemExit(f"PUT answered {resp.status}: {body[:300]!r}")
            tag = json.loads(body)["etag"]
        conn.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(120)
        b.accounts.revoke_token(token_id)
        b.accounts.delete_user(user)
        b.close()
    time.sleep(1)
    for name in sorted(glob.glob(f"{out}/cg.*")):
        found = re.search(r"^summary:\s+(\d+)", open(name).read(), re.M)
        print(f"{tree.name} puts={args.puts} {Path(name).name} I refs {int(found.group(1)) if found else 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Throughput, p99 and gateway CPU per request of nginx's own split_clients (the
# native baseline) against rulegate with 10 and 1,000 rules, same machine, same
# run; prints Markdown tables. See bench/gateway.py for the configurations.
#   ROUNDS=5 DURATION=8s CONNECTIONS=64 THREADS=1 WORKERS=1 bench/gateway.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
PY="python3"
[ -x .venv/bin/python ] && PY=".venv/bin/python"
exec "$PY" bench/gateway.py "$@"

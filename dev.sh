#!/usr/bin/env bash
# rulegate developer entry point. As root on Debian 12:
#   ./dev.sh demo   install everything (idempotent), run the demo until Ctrl-C / SIGTERM / ./dev.sh stop
#   ./dev.sh stop   stop the running demo(s) from another shell (rulegate-dev stop)
#   ./dev.sh test   install everything (idempotent), run the whole test suite
#   ./dev.sh deps   install only
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(python3 python3-venv python3-pip redis-server redis-tools nginx libnginx-mod-http-lua
  lua-nginx-redis lua-resty-core lua-messagepack lua-cjson wrk chromium ca-certificates docker-compose)
VENV=${RULEGATE_VENV:-.venv}

log() { printf '[dev.sh] %s\n' "$*" >&2; }

install_system() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "apt: installing ${missing[*]}"
    [ "$(id -u)" = 0 ] || { log "need root for apt-get (run as root or install: ${missing[*]})"; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # never pull the standalone `luajit` package: it replaces libluajit2, which the nginx lua module needs
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # the packaged nginx service is not used (tests and the demo start their own on loopback)
  command -v systemctl >/dev/null && systemctl disable --now nginx redis-server >/dev/null 2>&1 || true
}

install_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.rulegate-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    log "pip: installing rulegate[test] into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[test]'
    touch "$stamp"
  fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
  deps) install_system; install_python ;;
  demo) install_system; install_python; exec "$VENV/bin/rulegate-dev" demo "$@" ;;
  stop) exec "$VENV/bin/rulegate-dev" stop "$@" ;;
  test) install_system; install_python
    # one pytest process per CPU, at most 4 (each starts its own clusters and nginx on free loopback ports);
    # RULEGATE_TEST_WORKERS=0 runs in one process, and `-n N` after `test` overrides it
    workers=${RULEGATE_TEST_WORKERS:-$(nproc 2>/dev/null || echo 1)}
    ((workers > 4)) && workers=4
    ((workers < 2)) && workers=0
    exec "$VENV/bin/python" -m pytest -n "$workers" "$@" ;;
  *) sed -n '2,6p' "$0"; exit 2 ;;
esac

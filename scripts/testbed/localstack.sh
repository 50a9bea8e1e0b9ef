#!/usr/bin/env bash
# LocalStack's KMS (PyPI localstack-core, pinned with every dependency in localstack-requirements.txt)
# as the AWS KMS emulator for the checks moto cannot answer: LocalStack implements KMS itself with
# `cryptography` (real RSAES_OAEP_SHA_256 decrypt, GetParametersForImport / ImportKeyMaterial with
# RSAES_OAEP_SHA_* and RSA_AES_KEY_WRAP_SHA_*). It runs in host mode (no Docker) from a cached
# virtualenv made with a Python 3.13 interpreter (the pyenv one on this kind of machine, or
# KEYPORT_PYTHON313: although it declares Requires-Python >=3.10, 2026.3.0 uses PEP 695 generics, a
# SyntaxError on 3.11, and warnings.deprecated, an ImportError on 3.12), with SERVICES=kms on 127.0.0.1 only; state is in memory (a restart forgets every
# key). LocalStack accepts any credentials; tests pass test/test explicitly so no real AWS profile is used.
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

REQS="$TB_ROOT/scripts/testbed/localstack-requirements.txt"
VENV="$KEYPORT_CACHE/venv-localstack-py313"
STATE="$TB_STATE/localstack"
PIDFILE="$STATE/localstack.pid"
REGION=us-east-1

# the Python 3.13 interpreter: KEYPORT_PYTHON313, python3.13 on PATH, or pyenv's 3.13.x
python313() {
  local c
  for c in "${KEYPORT_PYTHON313:-}" "$(command -v python3.13 2>/dev/null || true)" \
    "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13 /root/.pyenv/versions/3.13*/bin/python3.13; do
    [[ -n $c && -x $c ]] || continue
    if "$c" -c 'import sys, venv, ensurepip, ssl, sqlite3; sys.exit(0 if sys.version_info[:2] == (3, 13) else 1)' 2>/dev/null; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

stamp() { echo "$VENV/.keyport-installed-$(md5sum <"$REQS" | cut -c1-12)"; }

install() {
  [[ -f $(stamp) ]] && return 0
  tb_install_lock localstack
  [[ -f $(stamp) ]] && return 0
  local py
  py=$(python313) || tb_unavailable "localstack: no Python 3.13 interpreter (localstack-core 2026.3.0 runs here only on 3.13: set KEYPORT_PYTHON313 or install pyenv's 3.13)"
  tb_log "installing localstack-core (pinned in $REQS) into $VENV with $py"
  rm -rf "$VENV"
  "$py" -m venv "$VENV" >&2 || tb_unavailable "localstack: could not create a virtualenv with $py"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r "$REQS" >&2 || tb_unavailable "localstack: pip install of the pinned localstack-core failed"
  "$VENV/bin/pip" check >&2 || tb_unavailable "localstack: the pinned requirements are inconsistent (pip check)"
  "$VENV/bin/python" -c 'import localstack.aws.components, localstack.services.kms.provider' >&2 ||
    tb_unavailable "localstack: localstack-core does not import in $VENV"
  touch "$(stamp)"
}

env_lines() {
  local port; port=$(cat "$STATE/port")
  echo "LOCALSTACK_ENDPOINT=http://127.0.0.1:$port"
  echo "LOCALSTACK_REGION=$REGION"
  echo "AWS_REGION=$REGION"
  # LocalStack accepts any credentials (its default account 000000000000 for these)
  echo "LOCALSTACK_ACCESS_KEY_ID=test"
  echo "LOCALSTACK_SECRET_ACCESS_KEY=test"
  echo "LOCALSTACK_VERSION=$(cat "$STATE/version" 2>/dev/null || echo unknown)"
  echo "LOCALSTACK_LOG=$STATE/server.log"
}

# kms_ready PORT: the health endpoint answers and lists kms as available (or running)
kms_ready() {
  "$VENV/bin/python" - "$1" <<'PY' 2>/dev/null
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/_localstack/health", timeout=2) as r:
    h = json.load(r)
sys.exit(0 if h.get("services", {}).get("kms") in ("available", "running") else 1)
PY
}

running() { tb_pid_alive "$PIDFILE" && [[ -f $STATE/port ]] && kms_ready "$(cat "$STATE/port")"; }

start() {
  mkdir -p "$STATE"
  tb_lock localstack
  install
  if running; then env_lines; return 0; fi
  tb_stop_pid "$PIDFILE"
  local port; port=$(tb_free_port)
  echo "$port" >"$STATE/port"
  rm -rf "$STATE/fs"
  "$VENV/bin/python" -c 'from importlib.metadata import version; print(version("localstack-core"))' >"$STATE/version"
  # OVERRIDE_IN_DOCKER=0: host mode even inside a container (else it writes to /var/lib/localstack);
  # GATEWAY_SERVER=hypercorn: its default server (twisted) binds IPv4 on every interface whatever the
  # host in GATEWAY_LISTEN; hypercorn binds the given 127.0.0.1. DNS_ADDRESS=0: no DNS server on port 53;
  # no certificate download, no analytics (the machine is offline)
  OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$STATE/fs" GATEWAY_LISTEN="127.0.0.1:$port" \
    LOCALSTACK_HOST="127.0.0.1:$port" GATEWAY_SERVER=hypercorn SERVICES=kms EAGER_SERVICE_LOADING=1 PERSISTENCE=0 \
    DNS_ADDRESS=0 SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 \
    tb_daemon "$PIDFILE" "$STATE/server.log" "$VENV/bin/python" -m localstack.runtime.main
  local i
  for ((i = 0; i < 600; i++)); do
    kms_ready "$port" && break
    tb_pid_alive "$PIDFILE" || break
    sleep 0.1
  done
  if ! kms_ready "$port"; then
    tail -5 "$STATE/server.log" >&2 || true
    tb_stop_pid "$PIDFILE"
    tb_unavailable "localstack: LocalStack did not report kms available on 127.0.0.1:$port within 60 s"
  fi
  env_lines
}

stop() {
  mkdir -p "$STATE"
  tb_lock localstack
  tb_stop_pid "$PIDFILE"
}

case "${1:-}" in
  install) mkdir -p "$STATE"; tb_lock localstack; install ;;
  start) start ;;
  stop) stop ;;
  env) running && env_lines || { echo "localstack: not running" >&2; exit 1; } ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac

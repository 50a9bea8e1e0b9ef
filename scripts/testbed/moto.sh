#!/usr/bin/env bash
# moto server (PyPI `moto[server]`, pinned) as the AWS KMS and Secrets Manager emulator for the awskms:
# driver and the awssm: store. It runs from a cached virtualenv on 127.0.0.1 (in-memory state: a
# restart forgets every key and secret). moto does not check credentials; any key id/secret works.
# What moto really implements for KMS (see test/kms/aws.test.ts): real ECDSA/RSA signatures and
# public keys, aliases, key states, tags; symmetric and "RSA" Encrypt/Decrypt are its own AES-GCM
# format (not KMS-compatible), ListKeys returns every key in one page, no GetParametersForImport /
# ImportKeyMaterial.
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

MOTO_PIN=(moto[server]==5.2.5)
STATE="$TB_STATE/moto"
PIDFILE="$STATE/moto.pid"
VENV="$KEYPORT_CACHE/venv-moto"
STAMP="$VENV/.keyport-installed-$(echo "${MOTO_PIN[*]}" | md5sum | cut -c1-12)"
REGION=us-east-1

install() {
  [[ -f $STAMP ]] && return 0
  tb_install_lock moto
  [[ -f $STAMP ]] && return 0
  command -v python3 >/dev/null || tb_unavailable "moto: python3 is not installed"
  python3 -c 'import venv, ensurepip' 2>/dev/null || tb_apt python3-venv || tb_unavailable "moto: python3-venv is missing"
  tb_log "installing ${MOTO_PIN[*]} into $VENV"
  local v; v=$(tb_venv moto)
  "$v/bin/pip" install -q --disable-pip-version-check "${MOTO_PIN[@]}" >&2 || tb_unavailable "moto: pip install failed"
  [[ -x $v/bin/moto_server ]] || tb_unavailable "moto: moto_server was not installed"
  touch "$STAMP"
}

env_lines() {
  echo "MOTO_ENDPOINT=http://127.0.0.1:$(cat "$STATE/port")"
  echo "MOTO_REGION=$REGION"
  echo "AWS_REGION=$REGION"
  # moto accepts any credentials; tests pass these explicitly so no real AWS profile is ever used
  echo "MOTO_ACCESS_KEY_ID=testing"
  echo "MOTO_SECRET_ACCESS_KEY=testing"
  echo "MOTO_LOG=$STATE/server.log"
}

start() {
  install
  mkdir -p "$STATE"
  tb_lock moto
  if tb_pid_alive "$PIDFILE" && [[ -f $STATE/port ]] && tb_port_open "$(cat "$STATE/port")"; then env_lines; return 0; fi
  tb_stop_pid "$PIDFILE"
  local port; port=$(tb_port_for "$STATE")
  echo "$port" >"$STATE/port"
  tb_daemon "$PIDFILE" "$STATE/server.log" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port"
  if ! tb_wait_port "$port" 60; then
    tail -5 "$STATE/server.log" >&2 || true
    tb_stop_pid "$PIDFILE"
    tb_unavailable "moto: moto_server did not start on 127.0.0.1:$port"
  fi
  env_lines
}

stop() {
  tb_lock moto
  tb_stop_pid "$PIDFILE"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  env) tb_pid_alive "$PIDFILE" && env_lines || { echo "moto: not running" >&2; exit 1; } ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac

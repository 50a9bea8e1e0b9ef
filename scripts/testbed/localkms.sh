#!/usr/bin/env bash
# nsmithuk/local-kms (a KMS emulator with real RSA-OAEP decrypt and BYOK import), built from the Go
# module proxy. local-kms has no Go-compatible release tags (its v3.x tags lack a /v3 module path), so
# only pseudo-versions exist; the pinned one can be overridden with KEYPORT_LOCALKMS_VERSION.
# On this workplace the module proxy refuses every local-kms version it was asked for (403 "This module
# version is not available", also for @latest and @v/list), so start exits 3 with that reason.
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

LOCALKMS_VERSION="${KEYPORT_LOCALKMS_VERSION:-v0.0.0-20230108155039-ce4561e0cb19}"
GODIR="$KEYPORT_CACHE/go"
BIN="$KEYPORT_CACHE/bin/local-kms-$LOCALKMS_VERSION"
STATE="$TB_STATE/localkms"
PIDFILE="$STATE/local-kms.pid"
REGION=eu-west-2

install() {
  [[ -x $BIN ]] && return 0
  command -v go >/dev/null || tb_unavailable "localkms: go is not installed"
  mkdir -p "$KEYPORT_CACHE/bin" "$GODIR"
  tb_log "building local-kms $LOCALKMS_VERSION from the Go module proxy (cached in $GODIR)"
  export GOPATH="$GODIR" GOMODCACHE="$GODIR/mod" GOCACHE="$GODIR/cache" GOFLAGS=-mod=mod GOTOOLCHAIN=local
  local dir out
  # exact version only: `go install …@latest` would also ask for the version list
  if ! out=$(go mod download -json "github.com/nsmithuk/local-kms@$LOCALKMS_VERSION" 2>&1); then
    tb_unavailable "localkms: the Go module proxy does not serve github.com/nsmithuk/local-kms@$LOCALKMS_VERSION ($(echo "$out" | grep -o '"Error": *"[^"]*' | head -1 | cut -c1-200))"
  fi
  dir=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') || tb_unavailable "localkms: go mod download gave no directory"
  (cd "$dir" && go build -trimpath -o "$BIN.tmp" .) >&2 || tb_unavailable "localkms: go build failed"
  mv "$BIN.tmp" "$BIN"
}

env_lines() {
  echo "LOCALKMS_ENDPOINT=http://127.0.0.1:$(cat "$STATE/port")"
  echo "LOCALKMS_REGION=$REGION"
  echo "LOCALKMS_ACCOUNT_ID=111122223333"
}

start() {
  tb_lock localkms
  install
  mkdir -p "$STATE/data"
  if tb_pid_alive "$PIDFILE" && [[ -f $STATE/port ]] && tb_port_open "$(cat "$STATE/port")"; then env_lines; return 0; fi
  tb_stop_pid "$PIDFILE"
  local port; port=$(tb_free_port)
  echo "$port" >"$STATE/port"
  # local-kms binds 0.0.0.0:PORT; nothing else on this machine is reachable from outside anyway
  PORT=$port KMS_DATA_PATH="$STATE/data" KMS_REGION=$REGION KMS_ACCOUNT_ID=111122223333 \
    tb_daemon "$PIDFILE" "$STATE/server.log" "$BIN"
  if ! tb_wait_port "$port" 30; then
    tail -5 "$STATE/server.log" >&2 || true
    tb_stop_pid "$PIDFILE"
    tb_unavailable "localkms: local-kms did not start on port $port"
  fi
  env_lines
}

case "${1:-}" in
  install) tb_lock localkms; install ;;
  start) start ;;
  stop) tb_lock localkms; tb_stop_pid "$PIDFILE" ;;
  env) tb_pid_alive "$PIDFILE" && env_lines || { echo "localkms: not running" >&2; exit 1; } ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac

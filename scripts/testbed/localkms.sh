#!/usr/bin/env bash
# nsmithuk/local-kms (a Go KMS emulator: real RSAES_OAEP_SHA_1/SHA_256 Encrypt/Decrypt, ECDSA and RSA
# Sign/Verify, symmetric GetParametersForImport + ImportKeyMaterial), built from the Go module proxy
# with `go build` and cached as $KEYPORT_CACHE/bin/local-kms-<version>. local-kms has no
# Go-compatible release tags (its v3.x tags lack a /v3 module path), so only pseudo-versions exist;
# the pinned one (master of 2026-02-28) is served by the proxy. Override with KEYPORT_LOCALKMS_VERSION.
# An older pseudo-version, v0.0.0-20230108155039-ce4561e0cb19, was refused by the proxy here (403).
#
# local-kms cannot be told which address to listen on: src/server.go does net.Listen("tcp", ":"+PORT),
# i.e. every interface (it logs "started on 0.0.0.0:PORT"). The port is a fresh free one per start and
# the data (goleveldb) lives in the checkout's .testbed/localkms/data, emptied at each start.
# local-kms checks no credentials (no SigV4 verification).
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

LOCALKMS_VERSION="${KEYPORT_LOCALKMS_VERSION:-v0.0.0-20260228092603-2a5e92d09ab6}"
GODIR="$KEYPORT_CACHE/go"
BIN="$KEYPORT_CACHE/bin/local-kms-$LOCALKMS_VERSION"
STATE="$TB_STATE/localkms"
PIDFILE="$STATE/local-kms.pid"
REGION=eu-west-2
ACCOUNT=111122223333

install() {
  [[ -x $BIN ]] && return 0
  tb_install_lock localkms
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
  # the module cache is read-only: build from there, write the binary into the cache's bin
  (cd "$dir" && go build -trimpath -o "$BIN.tmp" .) >&2 || { rm -f "$BIN.tmp"; tb_unavailable "localkms: go build of local-kms $LOCALKMS_VERSION failed"; }
  mv "$BIN.tmp" "$BIN"
}

env_lines() {
  echo "LOCALKMS_ENDPOINT=http://127.0.0.1:$(cat "$STATE/port")"
  echo "LOCALKMS_REGION=$REGION"
  echo "LOCALKMS_ACCOUNT_ID=$ACCOUNT"
  # local-kms checks no credentials; tests pass these explicitly so no real AWS profile is used
  echo "LOCALKMS_ACCESS_KEY_ID=test"
  echo "LOCALKMS_SECRET_ACCESS_KEY=test"
  echo "LOCALKMS_VERSION=$LOCALKMS_VERSION"
  echo "LOCALKMS_LOG=$STATE/server.log"
}

# kms_ready PORT: a ListKeys call answers with JSON (not just an open port)
kms_ready() {
  python3 - "$1" <<'PY' 2>/dev/null
import json, sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/", data=b"{}", method="POST",
    headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.ListKeys"})
with urllib.request.urlopen(req, timeout=2) as r:
    sys.exit(0 if "Keys" in json.load(r) else 1)
PY
}

running() { tb_pid_alive "$PIDFILE" && [[ -f $STATE/port ]] && kms_ready "$(cat "$STATE/port")"; }

start() {
  mkdir -p "$STATE"
  tb_lock localkms
  install
  if running; then env_lines; return 0; fi
  tb_stop_pid "$PIDFILE"
  local port; port=$(tb_free_port)
  echo "$port" >"$STATE/port"
  rm -rf "$STATE/data"
  mkdir -p "$STATE/data"
  # KMS_SEED_PATH: a file that does not exist, so no /init/seed.yaml of the machine is loaded
  PORT=$port KMS_DATA_PATH="$STATE/data" KMS_SEED_PATH="$STATE/no-seed.yaml" KMS_REGION=$REGION KMS_ACCOUNT_ID=$ACCOUNT \
    tb_daemon "$PIDFILE" "$STATE/server.log" "$BIN"
  local i
  for ((i = 0; i < 300; i++)); do
    kms_ready "$port" && break
    tb_pid_alive "$PIDFILE" || break
    sleep 0.1
  done
  if ! kms_ready "$port"; then
    tail -5 "$STATE/server.log" >&2 || true
    tb_stop_pid "$PIDFILE"
    tb_unavailable "localkms: local-kms did not answer ListKeys on port $port within 30 s"
  fi
  env_lines
}

case "${1:-}" in
  install) mkdir -p "$STATE"; tb_lock localkms; install ;;
  start) start ;;
  stop) mkdir -p "$STATE"; tb_lock localkms; tb_stop_pid "$PIDFILE" ;;
  env) running && env_lines || { echo "localkms: not running" >&2; exit 1; } ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac

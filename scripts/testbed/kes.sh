#!/usr/bin/env bash
# MinIO KES v0.24.0, built from the Go module proxy: a real KES server on an FS keystore (the peer for
# compatibility tests and benchmarks) and the `kes` CLI (a real client of keyport server).
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

KES_VERSION=v0.24.0
GODIR="$KEYPORT_CACHE/go"
BIN="$KEYPORT_CACHE/bin/kes-$KES_VERSION"
STATE="$TB_STATE/kes"
PIDFILE="$STATE/kes.pid"

install() {
  [[ -x $BIN ]] && return 0
  tb_install_lock kes
  [[ -x $BIN ]] && return 0
  command -v go >/dev/null || tb_unavailable "kes: go is not installed"
  mkdir -p "$KEYPORT_CACHE/bin" "$GODIR"
  tb_log "building kes $KES_VERSION from the Go module proxy (cached in $GODIR)"
  # `go install pkg@version` also asks the proxy for the module's version list (deprecation notice),
  # which the proxy here refuses; download the exact version and build it in place instead
  export GOPATH="$GODIR" GOMODCACHE="$GODIR/mod" GOCACHE="$GODIR/cache" GOFLAGS=-mod=mod GOTOOLCHAIN=local
  local dir
  dir=$(go mod download -json "github.com/minio/kes@$KES_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') ||
    tb_unavailable "kes: go mod download failed"
  (cd "$dir" && go build -trimpath -o "$BIN.tmp" ./cmd/kes) >&2 || tb_unavailable "kes: go build failed"
  mv "$BIN.tmp" "$BIN"
}

env_lines() {
  echo "KES_BIN=$BIN"
  echo "KES_SERVER=https://127.0.0.1:$(cat "$STATE/port")"
  echo "KES_API_KEY=$(cat "$STATE/admin.apikey")"
  echo "KES_IDENTITY=$(cat "$STATE/admin.identity")"
  echo "KES_CLIENT_CERT=$STATE/client.crt"
  echo "KES_CLIENT_KEY=$STATE/client.key"
  echo "KES_FS_DIR=$STATE/keys"
  echo "KES_CA=$STATE/server.crt"
  echo "KES_CONFIG=$STATE/config.yml"
}

identities() {
  umask 077
  mkdir -p "$STATE/keys"
  if [[ ! -f $STATE/server.crt ]]; then
    "$BIN" identity new --key "$STATE/server.key" --cert "$STATE/server.crt" --ip 127.0.0.1 --dns localhost localhost >/dev/null
  fi
  if [[ ! -f $STATE/admin.apikey ]]; then
    "$BIN" identity new 2>/dev/null | grep -o 'kes:v1:[A-Za-z0-9+/=]*' | head -1 >"$STATE/admin.apikey"
    [[ -s $STATE/admin.apikey ]] || tb_unavailable "kes: could not create an API key"
    "$BIN" identity of "$(cat "$STATE/admin.apikey")" 2>/dev/null | grep -oE '[0-9a-f]{64}' | head -1 >"$STATE/admin.identity"
    [[ -s $STATE/admin.identity ]] || tb_unavailable "kes: could not compute the admin identity"
  fi
  if [[ ! -f $STATE/client.crt ]]; then
    # the admin API key as a client certificate, for clients other than the kes CLI (node https, curl):
    # the key is the API key's Ed25519 seed (PKCS#8 = fixed prefix ‖ seed); KES ignores CA certificates
    # when it picks the client certificate, so CA:FALSE
    local ak; ak=$(cat "$STATE/admin.apikey")
    { printf '\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20'; echo "${ak#kes:v1:}" | base64 -d | tail -c 32; } |
      openssl pkey -inform DER -out "$STATE/client.key.tmp" || tb_unavailable "kes: openssl cannot read the API key"
    openssl req -x509 -new -key "$STATE/client.key.tmp" -subj /CN=keyport-testbed-kes-admin -days 3650 \
      -addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=clientAuth -out "$STATE/client.crt.tmp" 2>/dev/null ||
      tb_unavailable "kes: openssl cannot make the client certificate"
    [[ $("$BIN" identity of "$STATE/client.crt.tmp" 2>/dev/null | grep -oE '[0-9a-f]{64}' | head -1) == "$(cat "$STATE/admin.identity")" ]] ||
      tb_unavailable "kes: the client certificate does not carry the admin identity"
    mv "$STATE/client.key.tmp" "$STATE/client.key"
    mv "$STATE/client.crt.tmp" "$STATE/client.crt"
  fi
}

start() {
  install
  tb_lock kes
  identities
  if tb_pid_alive "$PIDFILE" && tb_port_open "$(cat "$STATE/port")"; then env_lines; return 0; fi
  local port; port=$(tb_port_for "$STATE")
  echo "$port" >"$STATE/port"
  cat >"$STATE/config.yml" <<YAML
version: v1
address: 127.0.0.1:$port
admin:
  identity: $(cat "$STATE/admin.identity")
tls:
  key: $STATE/server.key
  cert: $STATE/server.crt
cache:
  expiry:
    any: 5m
    unused: 20s
log:
  error: on
  audit: off
keystore:
  fs:
    path: $STATE/keys
YAML
  tb_daemon "$PIDFILE" "$STATE/kes.log" "$BIN" server --config "$STATE/config.yml"
  tb_wait_port "$port" 30 || { tail -5 "$STATE/kes.log" >&2; tb_unavailable "kes: server did not start"; }
  env_lines
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) tb_stop_pid "$PIDFILE" ;;
  env) env_lines ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# A real MinIO server and the `mc` client, built from the Go module proxy (source-only releases: pseudo-versions
# of the release commits), for the MinIO suite: MinIO with a KES-API KMS (keyport server or real KES) in front.
#   install          build minio + mc into the shared cache (cold: one build of MinIO's ~1,300 packages, see below)
#   start            start MinIO on loopback with the KMS given by the environment (below); print env lines
#   stop | env
# start reads: MINIO_TB_KMS_ENDPOINT (https://127.0.0.1:PORT), MINIO_TB_KMS_API_KEY (a kes:v1: API key the KMS knows), or
# MINIO_TB_KMS_KEY_FILE + MINIO_TB_KMS_CERT_FILE (a client certificate), MINIO_TB_KMS_CA (the KMS's server certificate),
# MINIO_TB_KMS_DEFAULT_KEY (default key name), MINIO_TB_STATE (a state directory; default .testbed/minio), MINIO_TB_PORT
# (reuse a port across restarts). The MinIO release of 2025-10-15 is refused by the module proxy here; 2025-09-07 is not.
#
# Cold build cost: mc is the mc module MinIO's own go.mod pins (MinIO imports mc's packages), built inside MinIO's
# module with MinIO's dependency versions, so every package mc needs is one MinIO's build compiles anyway: mc costs a
# link, not a second ~580-package compile (a separately released mc pins other golang.org/x versions, which
# recompiles nearly all of it). Both are built by one `go build` (-p from MINIO_TB_GO_P, default 2) with
# -trimpath -ldflags='-s -w' as MinIO's release builds do (no DWARF: a faster, smaller link). Measured cold (empty
# module and build caches, 2 cores): 250 s user + 48 s system CPU for the whole install, i.e. a few minutes of
# compiling plus the module downloads (was: a second, separate ~580-package mc compile and a -p 1 build, ~32 min
# wall under load). scripts/test.mjs starts this install in the background when the run begins.
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

# RELEASE.2025-09-07T16-13-09Z (its release commit) and the mc commit its go.mod requires
MINIO_VERSION=v0.0.0-20250907161309-07c3a429bfed
MC_VERSION=v0.0.0-20250313080218-cf909e1063a9
GODIR="$KEYPORT_CACHE/go"
MINIO_BIN="$KEYPORT_CACHE/bin/minio-$MINIO_VERSION"
MC_BIN="$KEYPORT_CACHE/bin/mc-$MC_VERSION"
STATE="${MINIO_TB_STATE:-$TB_STATE/minio}"
PIDFILE="$STATE/minio.pid"

install() {
  [[ -x $MINIO_BIN && -x $MC_BIN ]] && return 0
  tb_install_lock minio
  [[ -x $MINIO_BIN && -x $MC_BIN ]] && return 0
  command -v go >/dev/null || tb_unavailable "minio: go is not installed"
  mkdir -p "$KEYPORT_CACHE/bin" "$GODIR"
  export GOPATH="$GODIR" GOMODCACHE="$GODIR/mod" GOCACHE="$GODIR/cache" GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
  local dir pinned out
  dir=$(go mod download -json "github.com/minio/minio@$MINIO_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') ||
    tb_unavailable "minio: go mod download github.com/minio/minio@$MINIO_VERSION failed"
  pinned=$(cd "$dir" && go list -m -f '{{.Version}}' github.com/minio/mc) || tb_unavailable "minio: cannot resolve MinIO's mc requirement"
  [[ $pinned == "$MC_VERSION" ]] || tb_unavailable "minio: MinIO $MINIO_VERSION requires mc $pinned, this script expects $MC_VERSION"
  tb_log "building minio $MINIO_VERSION and mc $MC_VERSION (cached in $GODIR)"
  out=$(mktemp -d "$KEYPORT_CACHE/bin/.minio-build.XXXXXX")
  (cd "$dir" && go build -p "${MINIO_TB_GO_P:-2}" -trimpath -buildvcs=false -ldflags='-s -w' -o "$out/" . github.com/minio/mc) >&2 ||
    { rm -rf "$out"; tb_unavailable "minio: go build failed"; }
  mv "$out/mc" "$MC_BIN"
  mv "$out/minio" "$MINIO_BIN"
  rm -rf "$out"
}

env_lines() {
  echo "MINIO_BIN=$MINIO_BIN"
  echo "MC_BIN=$MC_BIN"
  echo "MINIO_ENDPOINT=http://127.0.0.1:$(cat "$STATE/port")"
  echo "MINIO_ROOT_USER=keyportadmin"
  echo "MINIO_ROOT_PASSWORD=$(cat "$STATE/root.password")"
  echo "MINIO_STATE=$STATE"
}

start() {
  install
  mkdir -p "$STATE/data"
  tb_lock minio
  if tb_pid_alive "$PIDFILE" && tb_port_open "$(cat "$STATE/port")"; then env_lines; return 0; fi
  : "${MINIO_TB_KMS_ENDPOINT:?minio: MINIO_TB_KMS_ENDPOINT is not set}"
  local port=${MINIO_TB_PORT:-}
  [[ -n $port ]] || port=$(tb_port_for "$STATE")
  echo "$port" >"$STATE/port"
  [[ -s $STATE/root.password ]] || (umask 077; openssl rand -hex 16 >"$STATE/root.password")
  # MinIO's KES client: endpoint, a client key + certificate, the server's CA and the default key (SSE-S3 and
  # the object-encryption key of the IAM/config data)
  local auth=()
  if [[ -n ${MINIO_TB_KMS_API_KEY:-} ]]; then auth=(MINIO_KMS_KES_API_KEY="$MINIO_TB_KMS_API_KEY")
  else auth=(MINIO_KMS_KES_KEY_FILE="$MINIO_TB_KMS_KEY_FILE" MINIO_KMS_KES_CERT_FILE="$MINIO_TB_KMS_CERT_FILE"); fi
  tb_daemon "$PIDFILE" "$STATE/minio.log" env -u MINIO_TB_KMS_API_KEY \
    MINIO_ROOT_USER=keyportadmin MINIO_ROOT_PASSWORD="$(cat "$STATE/root.password")" \
    MINIO_KMS_KES_ENDPOINT="$MINIO_TB_KMS_ENDPOINT" "${auth[@]}" MINIO_KMS_KES_CAPATH="$MINIO_TB_KMS_CA" \
    MINIO_KMS_KES_KEY_NAME="${MINIO_TB_KMS_DEFAULT_KEY:-minio-default}" \
    MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CI_CD=1 \
    "$MINIO_BIN" server --quiet --address "127.0.0.1:$port" "$STATE/data"
  # every MinIO this checkout started, wherever its state lives: `stop` without MINIO_TB_STATE (the test runner's
  # final clean-up) stops them all, so a suite that ended without its own clean-up leaves no MinIO running
  cat "$PIDFILE" >>"$TB_STATE/minio-started.pids"
  tb_wait_port "$port" 60 || { tail -20 "$STATE/minio.log" >&2; tb_unavailable "minio: server did not start"; }
  env_lines
}

stop() {
  tb_stop_pid "$PIDFILE"
  [[ -z ${MINIO_TB_STATE:-} && -f $TB_STATE/minio-started.pids ]] || return 0
  local pid
  while read -r pid; do
    # only a process that is still this MinIO binary (a pid may have been reused)
    [[ -n $pid ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$MINIO_BIN server" || continue
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
  done <"$TB_STATE/minio-started.pids"
  rm -f "$TB_STATE/minio-started.pids"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  env) env_lines ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac

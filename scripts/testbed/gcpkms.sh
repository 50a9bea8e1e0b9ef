#!/usr/bin/env bash
# GCP Cloud KMS emulator: NONE CAN BE HAD ON THIS KIND OF MACHINE (checked when this was written).
#
#  - The Go module proxy reachable here refuses the independently written Cloud KMS emulators
#    (github.com/blackwell-systems/gcp-kms-emulator v0.1.0-v0.3.0, github.com/winor30/fake-cloud-kms:
#    403 "This module version is not available"), while it serves other modules (cloud.google.com/go/kms).
#  - No PyPI or npm package implements google.cloud.kms.v1.KeyManagementService (the GCP emulator
#    bundles there - cloudbox, gcplocal - have no KMS); Google ships no KMS emulator; Docker is not
#    available.
#
# So `start` exits 3, unless a Cloud KMS gRPC endpoint is given from outside in
# KEYPORT_GCPKMS_ENDPOINT (host:port of a plaintext emulator someone runs), which it then reports.
# test/kms/gcp.test.ts does NOT gate on this script (a missing service would fail CI): its emulator
# tests run only when KEYPORT_GCPKMS_ENDPOINT is set.
#
# `install` re-checks the proxy for the pinned candidate, so the day it is served this file is where to
# add the build and start steps (note: that emulator binds every interface, not only 127.0.0.1).
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

CANDIDATE=github.com/blackwell-systems/gcp-kms-emulator
CANDIDATE_VERSION=v0.3.0
STATE="$TB_STATE/gcpkms"

env_lines() {
  echo "GCPKMS_ENDPOINT=$KEYPORT_GCPKMS_ENDPOINT"
  echo "GCPKMS_PROJECT=${KEYPORT_GCPKMS_PROJECT:-keyport-test}"
  echo "GCPKMS_LOCATION=${KEYPORT_GCPKMS_LOCATION:-global}"
}

install() {
  command -v go >/dev/null || tb_unavailable "gcpkms: no Cloud KMS emulator here (go is not installed, and no PyPI/npm package implements Cloud KMS)"
  mkdir -p "$KEYPORT_CACHE/go"
  local out
  if ! out=$(GOPATH="$KEYPORT_CACHE/go" GOMODCACHE="$KEYPORT_CACHE/go/mod" GOCACHE="$KEYPORT_CACHE/go/cache" GOTOOLCHAIN=local GOFLAGS=-mod=mod \
    timeout 60 go mod download -json "$CANDIDATE@$CANDIDATE_VERSION" 2>&1); then
    tb_unavailable "gcpkms: no Cloud KMS emulator can be had here: the Go module proxy refuses $CANDIDATE@$CANDIDATE_VERSION and no PyPI/npm package implements Cloud KMS; set KEYPORT_GCPKMS_ENDPOINT=host:port to test against one run elsewhere"
  fi
  tb_unavailable "gcpkms: $CANDIDATE@$CANDIDATE_VERSION is now served by the module proxy, but this script has no build/start steps for it yet: add them (it binds every interface; keep it to 127.0.0.1)"
}

case "${1:-}" in
  install)
    [[ -n ${KEYPORT_GCPKMS_ENDPOINT:-} ]] && exit 0
    install
    ;;
  start)
    tb_lock gcpkms
    if [[ -n ${KEYPORT_GCPKMS_ENDPOINT:-} ]]; then
      host=${KEYPORT_GCPKMS_ENDPOINT#http://}
      port=${host##*:}
      [[ $port =~ ^[0-9]+$ ]] || tb_unavailable "gcpkms: KEYPORT_GCPKMS_ENDPOINT='$KEYPORT_GCPKMS_ENDPOINT' is not host:port"
      [[ ${host%:*} == 127.0.0.1 || ${host%:*} == localhost ]] && ! tb_port_open "$port" &&
        tb_unavailable "gcpkms: nothing listens on KEYPORT_GCPKMS_ENDPOINT=$KEYPORT_GCPKMS_ENDPOINT"
      env_lines
      exit 0
    fi
    install
    ;;
  env)
    [[ -n ${KEYPORT_GCPKMS_ENDPOINT:-} ]] || tb_unavailable "gcpkms: not running (no emulator can be had here)"
    env_lines
    ;;
  stop)
    # nothing of ours runs: an endpoint from KEYPORT_GCPKMS_ENDPOINT belongs to whoever started it
    rm -rf "$STATE"
    ;;
  *)
    echo "usage: $0 install|start|stop|env" >&2
    exit 2
    ;;
esac

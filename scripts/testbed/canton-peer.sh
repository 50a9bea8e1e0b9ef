#!/usr/bin/env bash
# The independent Canton topology reader used by test/canton: Google's protobuf runtime (PyPI `protobuf`)
# and `grpcio-tools` (protoc, to compile test/canton/peer/canton_v30.proto) in a cached virtualenv. Nothing
# runs in the background: `start` installs if needed and prints the interpreter and the peer script.
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

PIN=(grpcio-tools==1.85.1 protobuf==7.36.2)
VENV="$KEYPORT_CACHE/venv-canton-peer"
STAMP="$VENV/.keyport-installed-$(echo "${PIN[*]}" | md5sum | cut -c1-12)"

install() {
  [[ -f $STAMP ]] && return 0
  tb_install_lock canton-peer
  [[ -f $STAMP ]] && return 0
  command -v python3 >/dev/null || tb_unavailable "canton-peer: python3 is not installed"
  python3 -c 'import venv, ensurepip' 2>/dev/null || tb_apt python3-venv || tb_unavailable "canton-peer: python3-venv is missing"
  command -v openssl >/dev/null || tb_apt openssl || tb_unavailable "canton-peer: openssl is missing"
  tb_log "installing ${PIN[*]} into $VENV"
  local v; v=$(tb_venv canton-peer)
  "$v/bin/pip" install -q --disable-pip-version-check "${PIN[@]}" >&2 || tb_unavailable "canton-peer: pip install failed"
  "$v/bin/python" -c 'import grpc_tools.protoc, google.protobuf' || tb_unavailable "canton-peer: protobuf not importable"
  touch "$STAMP"
}

env_lines() {
  echo "CANTON_PEER_PYTHON=$VENV/bin/python"
  echo "CANTON_PEER_SCRIPT=$TB_ROOT/test/canton/peer/canton_peer.py"
}

case "${1:-}" in
  install) install ;;
  start) install; env_lines ;;
  stop) ;;
  env) [[ -f $STAMP ]] && env_lines || { echo "canton-peer: not installed" >&2; exit 1; } ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac

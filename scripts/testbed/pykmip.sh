#!/usr/bin/env bash
# PyKMIP server (PyPI `pykmip`, pinned) as the real KMIP peer for the kmip: driver. It runs in a cached
# virtualenv, with its own throw-away PKI (EC P-256 CA, server and client certificates; the client
# certificate carries extendedKeyUsage=clientAuth, which PyKMIP's enable_tls_client_auth demands, and
# its CN is the owner identity PyKMIP records on every object), TLS 1.2 only (PyKMIP's TLS1.2 auth
# suite) with ECDHE-ECDSA AES-GCM suites, and a SQLite database under $TB_STATE/pykmip.
# A second, self-signed client certificate the server does not trust is made for negative tests.
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

# pinned: the server, and the dependency versions this script was verified with on Python 3.11
PYKMIP_PIN=(pykmip==0.11.0 cryptography==50.0.2 SQLAlchemy==2.1.9 six==1.17.0 requests==2.34.2)
STATE="$TB_STATE/pykmip"
PIDFILE="$STATE/pykmip.pid"
VENV="$KEYPORT_CACHE/venv-pykmip"
STAMP="$VENV/.keyport-installed-$(echo "${PYKMIP_PIN[*]}" | md5sum | cut -c1-12)"

install() {
  [[ -f $STAMP ]] && return 0
  tb_install_lock pykmip
  [[ -f $STAMP ]] && return 0
  command -v python3 >/dev/null || tb_unavailable "pykmip: python3 is not installed"
  command -v openssl >/dev/null || tb_apt openssl || tb_unavailable "pykmip: openssl is not installed"
  python3 -c 'import venv, ensurepip' 2>/dev/null || tb_apt python3-venv || tb_unavailable "pykmip: python3-venv is missing"
  tb_log "installing ${PYKMIP_PIN[*]} into $VENV"
  local v; v=$(tb_venv pykmip)
  "$v/bin/pip" install -q --disable-pip-version-check "${PYKMIP_PIN[@]}" >&2 || tb_unavailable "pykmip: pip install failed"
  "$v/bin/python" -c 'import kmip.services.server' >&2 || tb_unavailable "pykmip: the server module does not import"
  touch "$STAMP"
}

# make_pki: CA, server cert (SAN IP 127.0.0.1 + localhost), client cert (clientAuth), rogue client cert
make_pki() {
  local d="$STATE/pki"
  [[ -f $d/done ]] && return 0
  rm -rf "$d" && mkdir -p "$d" && chmod 700 "$d"
  (
    cd "$d"
    ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
    ec ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=keyport test KMIP CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt
    ec server.key
    openssl req -new -key server.key -subj "/CN=127.0.0.1" -out server.csr
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 -extfile server.ext -out server.crt 2>/dev/null
    ec client.key
    openssl req -new -key client.key -subj "/CN=keyport-test-client" -out client.csr
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\nextendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 -extfile client.ext -out client.crt 2>/dev/null
    # a client the server does not trust: self-signed, otherwise identical
    ec rogue.key
    openssl req -x509 -new -key rogue.key -sha256 -days 3650 -subj "/CN=keyport-test-client" \
      -addext "extendedKeyUsage=clientAuth" -out rogue.crt
    rm -f ./*.csr ./*.ext ./*.srl
    chmod 600 ./*.key
    touch done
  ) >&2 || tb_unavailable "pykmip: could not create the test PKI with openssl"
}

env_lines() {
  echo "KMIP_HOST=127.0.0.1"
  echo "KMIP_PORT=$(cat "$STATE/port")"
  echo "KMIP_CERT=$STATE/pki/client.crt"
  echo "KMIP_KEY=$STATE/pki/client.key"
  echo "KMIP_CA=$STATE/pki/ca.crt"
  echo "KMIP_ROGUE_CERT=$STATE/pki/rogue.crt"
  echo "KMIP_ROGUE_KEY=$STATE/pki/rogue.key"
  echo "KMIP_LOG=$STATE/server.log"
  echo "KMIP_PYTHON=$VENV/bin/python"
}

start() {
  install
  mkdir -p "$STATE"
  tb_lock pykmip
  if tb_pid_alive "$PIDFILE" && [[ -f $STATE/port ]] && tb_port_open "$(cat "$STATE/port")"; then env_lines; return 0; fi
  tb_stop_pid "$PIDFILE"
  make_pki
  mkdir -p "$STATE/policies"
  local port; port=$(tb_port_for "$STATE")
  echo "$port" >"$STATE/port"
  cat >"$STATE/server.conf" <<CONF
[server]
hostname=127.0.0.1
port=$port
certificate_path=$STATE/pki/server.crt
key_path=$STATE/pki/server.key
ca_path=$STATE/pki/ca.crt
auth_suite=TLS1.2
tls_cipher_suites=
    TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
policy_path=$STATE/policies
enable_tls_client_auth=True
logging_level=INFO
database_path=$STATE/pykmip.db
CONF
  # 9>&-: the server must not inherit (and so hold forever) the start lock
  setsid "$VENV/bin/pykmip-server" -f "$STATE/server.conf" -l "$STATE/server.log" >"$STATE/stdout.log" 2>&1 </dev/null 8>&- 9>&- &
  echo $! >"$PIDFILE"
  if ! tb_wait_port "$port" 60; then
    tail -5 "$STATE/stdout.log" "$STATE/server.log" >&2 2>/dev/null || true
    tb_stop_pid "$PIDFILE"
    tb_unavailable "pykmip: server did not start"
  fi
  env_lines
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) tb_stop_pid "$PIDFILE" ;;
  env) env_lines ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac

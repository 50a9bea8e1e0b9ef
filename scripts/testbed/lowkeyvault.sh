#!/usr/bin/env bash
# lowkey-vault (an independent Azure Key Vault emulator, a Spring Boot fat jar) for the azurekv: driver.
# The jar is taken from Maven Central (com.github.nagyesta.lowkey-vault:lowkey-vault-app, pinned), or from
# LOWKEY_VAULT_JAR=/path/to/lowkey-vault-app.jar when set. It runs with the machine's java on 127.0.0.1
# and a free port, with its built-in self-signed certificate (SAN localhost, 127.0.0.1), which this
# script fetches from the running server into $STATE/cert.pem for the driver's ca= parameter.
# lowkey-vault accepts any bearer token after the usual Key Vault auth challenge (the driver's
# dev-token=true). Its default vaults include https://localhost:<server.port>.
#
# Availability: Maven Central as this machine's registry proxy serves lowkey-vault-client and
# lowkey-vault-testcontainers but answers 404 for every lowkey-vault-app version (checked 2026-11), so
# without LOWKEY_VAULT_JAR this script exits 3 here.
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

LKV_VERSION="${LOWKEY_VAULT_VERSION:-7.1.13}"
STATE="$TB_STATE/lowkeyvault"
PIDFILE="$STATE/lowkeyvault.pid"
CACHE_DIR="$KEYPORT_CACHE/lowkey-vault"
MAVEN_BASE="https://repo1.maven.org/maven2/com/github/nagyesta/lowkey-vault/lowkey-vault-app"

jar_path() {
  if [[ -n ${LOWKEY_VAULT_JAR:-} ]]; then echo "$LOWKEY_VAULT_JAR"; else echo "$CACHE_DIR/lowkey-vault-app-$LKV_VERSION.jar"; fi
}

need_java() {
  command -v java >/dev/null || tb_apt openjdk-17-jre-headless || tb_unavailable "lowkeyvault: java is not installed and openjdk-17-jre-headless could not be installed"
}

# the class-file major version the jar's application classes need vs what this java runs
check_java_level() {
  local jar=$1 want have
  want=$(python3 -c 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).read("META-INF/MANIFEST.MF").decode())' "$jar" 2>/dev/null | tr -d '\r' | sed -n 's/^Build-Jdk-Spec: *//p' | head -1)
  have=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | head -1)
  if [[ -n $want && -n $have ]] && ((${want%%.*} > ${have%%.*})); then
    tb_unavailable "lowkeyvault: $jar was built for Java $want but this machine runs Java $have: set LOWKEY_VAULT_VERSION to an older release or install a newer JRE"
  fi
}

install() {
  need_java
  local jar; jar=$(jar_path)
  if [[ ! -s $jar ]]; then
    [[ -n ${LOWKEY_VAULT_JAR:-} ]] && tb_unavailable "lowkeyvault: LOWKEY_VAULT_JAR=$LOWKEY_VAULT_JAR does not exist"
    mkdir -p "$CACHE_DIR"
    tb_log "downloading lowkey-vault-app $LKV_VERSION from Maven Central"
    local url="$MAVEN_BASE/$LKV_VERSION/lowkey-vault-app-$LKV_VERSION.jar" code
    code=$(curl -sS -L -m 300 -o "$jar.part" -w '%{http_code}' "$url" || echo 000)
    if [[ $code != 200 ]]; then
      rm -f "$jar.part"
      tb_unavailable "lowkeyvault: lowkey-vault-app $LKV_VERSION cannot be downloaded from Maven Central here (HTTP $code); set LOWKEY_VAULT_JAR=/path/to/lowkey-vault-app.jar"
    fi
    # Maven Central publishes a SHA-1 beside every artifact
    local sha; sha=$(curl -sS -m 60 "$url.sha1" 2>/dev/null | cut -c1-40 || true)
    if [[ -n $sha ]] && [[ $(sha1sum "$jar.part" | cut -c1-40) != "$sha" ]]; then
      rm -f "$jar.part"
      tb_unavailable "lowkeyvault: checksum mismatch for lowkey-vault-app $LKV_VERSION"
    fi
    mv "$jar.part" "$jar"
  fi
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).testzip()' "$jar" >/dev/null 2>&1 || tb_unavailable "lowkeyvault: $jar is not a readable jar"
  check_java_level "$jar"
}

env_lines() {
  local port; port=$(cat "$STATE/port")
  echo "AZURE_VAULT_URL=https://localhost:$port"
  echo "LOWKEY_VAULT_PORT=$port"
  echo "LOWKEY_VAULT_CA=$STATE/cert.pem"
  echo "LOWKEY_VAULT_LOG=$STATE/server.log"
}

running() { tb_pid_alive "$PIDFILE" && [[ -f $STATE/port ]] && [[ -s $STATE/cert.pem ]] && tb_port_open "$(cat "$STATE/port")"; }

start() {
  mkdir -p "$STATE"
  tb_lock lowkeyvault
  if running; then env_lines; return 0; fi
  install
  tb_stop_pid "$PIDFILE"
  rm -f "$STATE/cert.pem"
  local port; port=$(tb_free_port)
  echo "$port" >"$STATE/port"
  tb_daemon "$PIDFILE" "$STATE/server.log" java -Xmx512m -jar "$(jar_path)" \
    --server.port="$port" --server.address=127.0.0.1 --LOWKEY_VAULT_RELAXED_PORTS=true
  # Spring Boot needs some seconds; give up at once if the JVM exits
  local ok=0
  for _ in $(seq 600); do
    tb_pid_alive "$PIDFILE" || break
    if tb_port_open "$port" && curl -sk -m 2 -o /dev/null "https://127.0.0.1:$port/ping"; then ok=1; break; fi
    sleep 0.2
  done
  if ((ok == 0)); then
    tail -20 "$STATE/server.log" >&2 || true
    tb_stop_pid "$PIDFILE"
    tb_unavailable "lowkeyvault: the server did not come up on 127.0.0.1:$port"
  fi
  # the served certificate is the trust anchor for tests (self-signed, SAN localhost + 127.0.0.1)
  command -v openssl >/dev/null || tb_apt openssl
  openssl s_client -connect "127.0.0.1:$port" -servername localhost </dev/null 2>/dev/null | openssl x509 -outform PEM >"$STATE/cert.pem" 2>/dev/null || true
  if [[ ! -s $STATE/cert.pem ]]; then
    tb_stop_pid "$PIDFILE"
    tb_unavailable "lowkeyvault: could not read the server certificate"
  fi
  env_lines
}

stop() {
  mkdir -p "$STATE"
  tb_lock lowkeyvault
  tb_stop_pid "$PIDFILE"
}

case "${1:-}" in
  install) mkdir -p "$STATE"; tb_lock lowkeyvault; install ;;
  start) start ;;
  stop) stop ;;
  env) running && env_lines || { echo "lowkeyvault: not running" >&2; exit 1; } ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac

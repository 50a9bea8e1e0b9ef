#!/usr/bin/env bash
# SoftHSM2 (Debian `softhsm2`) as the real PKCS#11 token for the pkcs11: driver. Nothing listens on a
# port: `start` makes sure a private SoftHSM config (SOFTHSM2_CONF) and token directory exist under
# $TB_STATE/softhsm and that a token labelled `keyport` is initialised there, then prints where the
# module, config, token and test PIN are. opensc (pkcs11-tool) is installed too: tests pre-generate keys
# with it (test/cli/register-check.test.ts), and it helps debugging:
#   SOFTHSM2_CONF=… pkcs11-tool --module "$PKCS11_MODULE" --token-label keyport --login --pin … -O
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

STATE="$TB_STATE/softhsm"
CONF="$STATE/softhsm2.conf"
TOKENS="$STATE/tokens"
LABEL=keyport
# fixed test values: this token holds nothing but test keys
SO_PIN=keyport-so-1234
USER_PIN=keyport-user-1234

module_path() {
  local m
  for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    [[ -f $m ]] && { echo "$m"; return 0; }
  done
  return 1
}

install() {
  if ! command -v softhsm2-util >/dev/null || ! module_path >/dev/null; then
    tb_log "installing softhsm2 (and opensc for pkcs11-tool)"
    tb_apt softhsm2 || tb_unavailable "softhsm: apt-get install softhsm2 failed"
  fi
  # pkcs11-tool makes the keys keyport must adopt without having made them (registration tests, manual
  # node init): part of this service, so a token without it is unavailable (a failure in CI), not a skip
  if ! command -v pkcs11-tool >/dev/null; then
    tb_apt opensc || tb_unavailable "softhsm: apt-get install opensc (pkcs11-tool) failed"
  fi
  command -v pkcs11-tool >/dev/null || tb_unavailable "softhsm: pkcs11-tool not found after installing opensc"
  module_path >/dev/null || tb_unavailable "softhsm: libsofthsm2.so not found after install"
}

token_exists() {
  SOFTHSM2_CONF="$CONF" softhsm2-util --show-slots 2>/dev/null | grep -Eq "^[[:space:]]*Label:[[:space:]]+$LABEL[[:space:]]*$"
}

ensure_token() {
  mkdir -p "$TOKENS"
  chmod 700 "$STATE" "$TOKENS"
  if [[ ! -f $CONF ]]; then
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$TOKENS" >"$CONF"
  fi
  if ! token_exists; then
    tb_log "initialising SoftHSM token '$LABEL' in $TOKENS"
    SOFTHSM2_CONF="$CONF" softhsm2-util --init-token --free --label "$LABEL" --so-pin "$SO_PIN" --pin "$USER_PIN" >&2 \
      || tb_unavailable "softhsm: softhsm2-util --init-token failed"
    token_exists || tb_unavailable "softhsm: token '$LABEL' not visible after init"
  fi
}

env_lines() {
  echo "SOFTHSM2_CONF=$CONF"
  echo "PKCS11_MODULE=$(module_path)"
  echo "PKCS11_TOKEN=$LABEL"
  echo "PKCS11_PIN=$USER_PIN"
  echo "PKCS11_SO_PIN=$SO_PIN"
  echo "PKCS11_TOOL=$(command -v pkcs11-tool)"
}

case "${1:-}" in
  install)
    tb_lock softhsm
    install
    ;;
  start)
    tb_lock softhsm
    install
    ensure_token
    env_lines
    ;;
  env)
    [[ -f $CONF ]] && token_exists || tb_unavailable "softhsm: not started (run $0 start)"
    env_lines
    ;;
  stop)
    # nothing runs; the token stays (keys are test keys with unique names). `stop --clean` wipes it.
    if [[ ${2:-} == --clean ]]; then
      tb_lock softhsm
      rm -rf "$STATE"
    fi
    ;;
  *)
    echo "usage: $0 install|start|stop [--clean]|env" >&2
    exit 2
    ;;
esac

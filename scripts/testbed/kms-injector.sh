#!/usr/bin/env bash
# The KMS latency and quota injector (test/support/kms-injector.ts) in front of a real AWS-KMS-protocol
# emulator of this test bed: local-kms (default), moto or LocalStack, chosen by
# KEYPORT_KMSINJECT_TARGET=localkms|moto|localstack. The target is started through its own script
# (and left running at stop: other tests may use it; stop it with its script). The injector is a node
# process on 127.0.0.1 that forwards every AWS KMS request to the target, waits the configured latency,
# answers AWS's own ThrottlingException when an operation's token bucket is empty, and counts calls per
# operation. Configure it at start with KEYPORT_KMSINJECT_CONFIG (JSON InjectorConfig, e.g.
# '{"latencyMs":20,"defaultRate":100}', or `aws` for AWS KMS's own quotas; default: no latency, no
# quota), or while it runs: POST $KMSINJECT_ENDPOINT/__injector/config with the same JSON,
# GET …/__injector/stats, POST …/__injector/reset.
#
# KMSINJECT_KMS is a ready awskms: connection through the injector, with the target's documented import
# limits as its import= setting (local-kms imports symmetric keys only; moto imports nothing).
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

TARGET="${KEYPORT_KMSINJECT_TARGET:-localkms}"
case "$TARGET" in
  localkms) PFX=LOCALKMS IMPORT=";import=aes256" ;;
  moto) PFX=MOTO IMPORT=";import=none" ;;
  localstack) PFX=LOCALSTACK IMPORT="" ;;
  *) echo "kms-injector: KEYPORT_KMSINJECT_TARGET must be localkms, moto or localstack, not '$TARGET'" >&2; exit 2 ;;
esac
STATE="$TB_STATE/kms-injector-$TARGET"
PIDFILE="$STATE/injector.pid"

env_lines() {
  local port; port=$(cat "$STATE/port")
  # shellcheck disable=SC1091
  source "$STATE/target.env"
  echo "KMSINJECT_ENDPOINT=http://127.0.0.1:$port"
  echo "KMSINJECT_TARGET=$TARGET"
  echo "KMSINJECT_TARGET_ENDPOINT=$T_ENDPOINT"
  echo "KMSINJECT_REGION=$T_REGION"
  echo "KMSINJECT_ACCESS_KEY_ID=$T_AKID"
  echo "KMSINJECT_SECRET_ACCESS_KEY=$T_SECRET"
  echo "KMSINJECT_KMS=awskms:region=$T_REGION;endpoint=http://127.0.0.1:$port;access-key-id=$T_AKID;secret-access-key=$T_SECRET$IMPORT"
  echo "KMSINJECT_LOG=$STATE/injector.log"
}

# injector_ready PORT: its control API answers (not just an open port)
injector_ready() { curl -fsS --max-time 2 "http://127.0.0.1:$1/__injector/stats" >/dev/null 2>&1; }

# the target's endpoint, region and credentials, from its own script (started if needed)
target_env() {
  local out
  out=$(bash "$TB_ROOT/scripts/testbed/$TARGET.sh" start) || exit $?
  v() { echo "$out" | sed -n "s/^${PFX}_$1=//p" | head -1; }
  {
    echo "T_ENDPOINT='$(v ENDPOINT)'"
    echo "T_REGION='$(v REGION)'"
    echo "T_AKID='$(v ACCESS_KEY_ID)'"
    echo "T_SECRET='$(v SECRET_ACCESS_KEY)'"
  } >"$STATE/target.env.new"
  [[ -n $(v ENDPOINT) ]] || tb_unavailable "kms-injector: $TARGET.sh gave no ${PFX}_ENDPOINT"
}

running() { tb_pid_alive "$PIDFILE" && [[ -f $STATE/port ]] && injector_ready "$(cat "$STATE/port")"; }

start() {
  mkdir -p "$STATE"
  tb_lock "kms-injector-$TARGET"
  command -v node >/dev/null || tb_unavailable "kms-injector: node is not installed"
  [[ -e $TB_ROOT/node_modules/tsx ]] || tb_unavailable "kms-injector: tsx is not installed in $TB_ROOT/node_modules"
  target_env
  # a running injector forwarding to the same target instance is reused; a restarted target (local-kms
  # takes a new port at each start) gets a new injector
  if running && cmp -s "$STATE/target.env" "$STATE/target.env.new"; then
    rm -f "$STATE/target.env.new"
    # a configuration given now applies to the running injector too
    if [[ -n ${KEYPORT_KMSINJECT_CONFIG:-} ]]; then
      local cfg=$KEYPORT_KMSINJECT_CONFIG
      [[ $cfg == aws ]] && cfg='{"awsQuotas":true}'
      curl -fsS --max-time 5 -X POST --data "$cfg" "http://127.0.0.1:$(cat "$STATE/port")/__injector/config" >/dev/null ||
        tb_unavailable "kms-injector: the running injector refused the configuration"
    fi
    env_lines
    return 0
  fi
  tb_stop_pid "$PIDFILE"
  mv "$STATE/target.env.new" "$STATE/target.env"
  # shellcheck disable=SC1091
  source "$STATE/target.env"
  local port; port=$(tb_port_for "$STATE")
  echo "$port" >"$STATE/port"
  (cd "$TB_ROOT" && export KMSINJECT_PORT=$port && tb_daemon "$PIDFILE" "$STATE/injector.log" \
    node --import tsx test/support/kms-injector.ts "$T_ENDPOINT" ${KEYPORT_KMSINJECT_CONFIG:+"$KEYPORT_KMSINJECT_CONFIG"})
  local i
  for ((i = 0; i < 300; i++)); do
    injector_ready "$port" && break
    tb_pid_alive "$PIDFILE" || break
    sleep 0.1
  done
  if ! injector_ready "$port"; then
    tail -5 "$STATE/injector.log" >&2 || true
    tb_stop_pid "$PIDFILE"
    tb_unavailable "kms-injector: the injector did not answer on 127.0.0.1:$port within 30 s"
  fi
  env_lines
}

case "${1:-}" in
  install) bash "$TB_ROOT/scripts/testbed/$TARGET.sh" install ;;
  start) start ;;
  stop) mkdir -p "$STATE"; tb_lock "kms-injector-$TARGET"; tb_stop_pid "$PIDFILE" ;;
  env) running && env_lines || { echo "kms-injector ($TARGET): not running" >&2; exit 1; } ;;
  *) echo "usage: [KEYPORT_KMSINJECT_TARGET=localkms|moto|localstack] [KEYPORT_KMSINJECT_CONFIG=JSON|aws] $0 install|start|stop|env" >&2; exit 2 ;;
esac

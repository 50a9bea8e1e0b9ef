# Shared helpers for scripts/testbed/<service>.sh. Source it; do not run it.
#
# Every service script takes one subcommand:
#   install  download/build what it needs into the cache (idempotent; cached under $KEYPORT_CACHE)
#   start    install if needed, start on 127.0.0.1 unless already running, print KEY=VALUE env lines
#   stop     stop it if running
#   env      print the KEY=VALUE lines of a running instance
# Exit 3 from start/install means "cannot be had on this machine" (reason on stderr).
set -euo pipefail

TB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# downloads and builds survive across runs and clones; per-run state lives in the checkout
KEYPORT_CACHE="${KEYPORT_CACHE:-$HOME/.cache/keyport-testbed}"
TB_STATE="${KEYPORT_TESTBED_STATE:-$TB_ROOT/.testbed}"
mkdir -p "$KEYPORT_CACHE" "$TB_STATE"

tb_log() { echo "[testbed] $*" >&2; }
tb_unavailable() { echo "$*" >&2; exit 3; }

# tb_lock NAME: serialise install/start of one service across concurrent test processes
tb_lock() {
  exec 9>"$TB_STATE/$1.lock"
  flock -w 1200 9 || tb_unavailable "$1: could not take the start lock"
}

# tb_wait_port PORT [SECONDS]: wait until something listens on 127.0.0.1:PORT
tb_wait_port() {
  local port=$1 secs=${2:-60} i
  for ((i = 0; i < secs * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# tb_port_open PORT: true if something listens now
tb_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# tb_free_port: an unused TCP port on 127.0.0.1
tb_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# tb_pid_alive FILE: the pid in FILE is running
tb_pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# tb_stop_pid FILE: stop the process group started with setsid, then remove FILE
tb_stop_pid() {
  local f=$1
  if tb_pid_alive "$f"; then
    local pid; pid=$(cat "$f")
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# tb_apt PKG...: install Debian packages if missing (apt-get update once per cache lifetime/day)
tb_apt() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]} == 0)) && return 0
  local stamp="$KEYPORT_CACHE/apt-updated"
  # several services install at once when tests start them in parallel: wait for dpkg's lock
  if [[ ! -f $stamp ]] || [[ -n $(find "$stamp" -mmin +1440 2>/dev/null) ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 update -qq >&2 && touch "$stamp"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# tb_install_lock NAME: serialize installs into the shared cache — parallel test files start the same
# service (or two services share one venv, moto and motoauth), and other checkouts share the cache too.
# Held on fd 8 until the script exits; tb_daemon does not pass it on. Re-check "installed?" after it.
tb_install_lock() {
  exec 8>"$KEYPORT_CACHE/.install-$1.lock"
  flock -w 1800 8 || tb_unavailable "$1: could not take the install lock"
}

# tb_venv NAME: a cached python virtualenv at $KEYPORT_CACHE/venv-NAME; prints its path
tb_venv() {
  local v="$KEYPORT_CACHE/venv-$1"
  [[ -x $v/bin/python ]] || python3 -m venv "$v" >&2
  echo "$v"
}

# tb_daemon PIDFILE LOGFILE CMD...: start CMD in its own session, in the background, WITHOUT the start
# and install locks' file descriptors (a daemon that inherits fd 8 or 9 would hold that lock for as long as it runs)
tb_daemon() {
  local pidfile=$1 log=$2
  shift 2
  setsid "$@" >"$log" 2>&1 </dev/null 8>&- 9>&- &
  echo $! >"$pidfile"
}

# tb_port_for DIR: the port this service used last time (DIR/port) if it is free again, else a new one;
# a service that comes back on the same address keeps the URIs (wrapper keys, catalogs) that name it
tb_port_for() {
  local f="$1/port" p=""
  [[ -f $f ]] && p=$(cat "$f")
  if [[ -z $p ]] || tb_port_open "$p"; then p=$(tb_free_port); fi
  echo "$p"
}

#!/usr/bin/env bash
# PostgreSQL from Debian (the distribution's `postgresql` package): a private cluster for keyport's
# shared store tests. Never the system-wide cluster or service: our own data directory under
# $TB_STATE/pg, our own postmaster on 127.0.0.1 and a free port, password (scram) auth everywhere,
# a `keyport` role owning a `keyport` database. initdb runs once per state directory.
# postgres refuses to run as root, so as root the cluster belongs to the `postgres` system user.
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

STATE="$TB_STATE/pg"
DATA="$STATE/data"

pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [[ -n $d && -x $d/initdb && -x $d/pg_ctl ]] && echo "$d"
}

install() {
  if [[ -z $(pg_bindir) ]]; then
    tb_log "installing Debian postgresql"
    # installing the package must not start the system cluster here (no init system in containers;
    # where there is one, policy-rc.d keeps the service down)
    tb_apt postgresql || tb_unavailable "postgres: apt-get install postgresql failed"
  fi
  [[ -n $(pg_bindir) ]] || tb_unavailable "postgres: no server binaries under /usr/lib/postgresql/*/bin"
}

# the OS user that owns and runs the cluster
RUN_USER=$(id -un)
as_pg() {
  if [[ $RUN_USER == "$(id -un)" ]]; then (cd "$STATE" && "$@"); else (cd "$STATE" && runuser -u "$RUN_USER" -- "$@"); fi
}

setup_user() {
  [[ $(id -u) -eq 0 ]] || return 0
  RUN_USER=postgres
  if ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash --user-group postgres ||
      tb_unavailable "postgres: could not create the postgres system user"
  fi
  mkdir -p "$STATE"
  chown postgres: "$STATE"
  chmod 700 "$STATE"
  # the postgres user must be able to reach the state directory
  runuser -u postgres -- test -w "$STATE" ||
    tb_unavailable "postgres: user postgres cannot reach $STATE (set KEYPORT_TESTBED_STATE to a directory it can traverse)"
}

env_lines() {
  local port pw
  port=$(cat "$STATE/port")
  pw=$(cat "$STATE/keyport.password")
  echo "PG_URL=postgresql://keyport:$pw@127.0.0.1:$port/keyport"
  echo "PG_HOST=127.0.0.1"
  echo "PG_PORT=$port"
  echo "PG_USER=keyport"
  echo "PG_PASSWORD=$pw"
  echo "PG_DATABASE=keyport"
}

running() {
  [[ -f $STATE/port ]] && [[ -f $DATA/postmaster.pid ]] &&
    as_pg "$(pg_bindir)/pg_ctl" status -D "$DATA" >/dev/null 2>&1 && tb_port_open "$(cat "$STATE/port")"
}

# psql as the cluster's superuser over TCP (unix sockets are off)
super_psql() {
  PGPASSWORD=$(cat "$STATE/super.password") "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$(cat "$STATE/port")" -U postgres -d postgres "$@"
}

rand_pw() { python3 -c 'import secrets; print(secrets.token_hex(16))'; }

start() {
  install
  mkdir -p "$STATE"
  tb_lock postgres
  setup_user
  local bin; bin=$(pg_bindir)
  if running; then env_lines; return 0; fi

  if [[ ! -f $DATA/PG_VERSION ]]; then
    tb_log "initdb $DATA"
    rm -rf "$DATA"
    [[ -f $STATE/super.password ]] || rand_pw >"$STATE/super.password"
    [[ -f $STATE/keyport.password ]] || rand_pw >"$STATE/keyport.password"
    chmod 600 "$STATE/super.password" "$STATE/keyport.password"
    [[ $RUN_USER == postgres && $(id -u) -eq 0 ]] && chown postgres: "$STATE/super.password"
    as_pg "$bin/initdb" -D "$DATA" -U postgres --pwfile="$STATE/super.password" --auth=scram-sha-256 \
      --encoding=UTF8 --locale=C --no-sync >"$STATE/initdb.log" 2>&1 ||
      { tail -5 "$STATE/initdb.log" >&2; tb_unavailable "postgres: initdb failed"; }
    rm -f "$STATE/provisioned"
  fi

  # the same port as last time when it is free (connection strings stay valid across a restart)
  local port=""
  [[ -f $STATE/port ]] && port=$(cat "$STATE/port")
  if [[ -z $port ]] || tb_port_open "$port"; then port=$(tb_free_port); fi
  echo "$port" >"$STATE/port"
  # a stale pid file from a killed postmaster would block the start
  if [[ -f $DATA/postmaster.pid ]] && ! as_pg "$bin/pg_ctl" status -D "$DATA" >/dev/null 2>&1; then rm -f "$DATA/postmaster.pid"; fi
  # (9>&-: the postmaster must not inherit the start lock, or the next start waits for it forever)
  # TCP on 127.0.0.1 only, no unix socket; test-grade durability (fsync off) for speed
  as_pg "$bin/pg_ctl" start -D "$DATA" -w -t 60 -l "$STATE/postgres.log" \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    >"$STATE/pg_ctl.log" 2>&1 </dev/null 9>&- ||
    { tail -5 "$STATE/postgres.log" >&2 2>/dev/null; tb_unavailable "postgres: pg_ctl start failed"; }
  tb_wait_port "$port" 30 || tb_unavailable "postgres: server is not listening on 127.0.0.1:$port"

  if [[ ! -f $STATE/provisioned ]]; then
    local pw; pw=$(cat "$STATE/keyport.password")
    super_psql -v pw="$pw" >&2 <<'SQL' || tb_unavailable "postgres: could not create the keyport role and database"
SELECT format('CREATE ROLE keyport LOGIN PASSWORD %L', :'pw') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'keyport') \gexec
SELECT format('ALTER ROLE keyport PASSWORD %L', :'pw') \gexec
SELECT 'CREATE DATABASE keyport OWNER keyport' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'keyport') \gexec
SQL
    touch "$STATE/provisioned"
  fi
  env_lines
}

stop() {
  local bin; bin=$(pg_bindir) || return 0
  [[ -n $bin && -f $DATA/postmaster.pid ]] || return 0
  # wait for a concurrent start, but a stop must never hang: go ahead after a minute
  exec 9>"$TB_STATE/postgres.lock"
  flock -w 60 9 || tb_log "postgres: stopping without the start lock"
  [[ $(id -u) -eq 0 ]] && RUN_USER=postgres
  as_pg "$bin/pg_ctl" stop -D "$DATA" -m fast -w -t 60 >/dev/null 2>&1 || true
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  env) env_lines ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac

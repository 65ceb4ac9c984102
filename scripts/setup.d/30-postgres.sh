#!/bin/sh
# A throwaway PostgreSQL for the Postgres store's tests and benchmark.
#   install test   ensure the server binaries (initdb, pg_ctl, postgres) exist
#   start          initdb a cluster into $AIRLOCK_TEST_STATE/postgres, start it on a unix socket
#                  and a free loopback port, append AIRLOCK_TEST_DATABASE_URL to $AIRLOCK_TEST_ENV
#   stop           stop that cluster (and only it) and remove it
# When AIRLOCK_TEST_DATABASE_URL is already set, that database is used and nothing is started.
# The cluster trusts local connections and runs without fsync: it holds test data only.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/lib.sh"

# The directory holding initdb and pg_ctl: PATH first, then Debian's versioned layout.
pg_bindir() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"
    return 0
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
  done
  return 1
}

# initdb and postgres refuse to run as root: run them as the `postgres` user (made if missing).
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

state_dir() {
  if [ -z "${AIRLOCK_TEST_STATE:-}" ]; then
    say "30-postgres: AIRLOCK_TEST_STATE is not set (run through scripts/test.sh or scripts/bench.sh)"
    exit 1
  fi
  echo "$AIRLOCK_TEST_STATE/postgres"
}

case ${1:-} in
  install)
    [ "${2:-demo}" = test ] || exit 0
    pg_bindir >/dev/null || apt_install postgresql
    pg_bindir >/dev/null || { say "30-postgres: no initdb/pg_ctl found after installing postgresql"; exit 1; }
    ;;
  start)
    if [ -n "${AIRLOCK_TEST_DATABASE_URL:-}" ]; then
      [ -z "${AIRLOCK_TEST_ENV:-}" ] || echo "AIRLOCK_TEST_DATABASE_URL=$AIRLOCK_TEST_DATABASE_URL" >>"$AIRLOCK_TEST_ENV"
      exit 0
    fi
    dir=$(state_dir)
    bin=$(pg_bindir) || { say "30-postgres: PostgreSQL server binaries missing; run scripts/setup.sh test"; exit 1; }
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
      useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin postgres
    fi
    # The postgres user must reach its data dir inside the (root-only) state dir.
    chmod 711 "$AIRLOCK_TEST_STATE"
    mkdir -p "$dir"
    [ "$(id -u)" != 0 ] || chown postgres: "$dir"
    chmod 700 "$dir"
    port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
    as_pg "$bin/initdb" --pgdata="$dir/data" --username=postgres --auth=trust --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 300
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    as_pg "$bin/pg_ctl" --pgdata="$dir/data" --log="$dir/postgres.log" --wait --timeout=60 start >/dev/null ||
      { cat "$dir/postgres.log" >&2; exit 1; }
    head -n1 "$dir/data/postmaster.pid" >"$dir/pid"
    echo "$bin" >"$dir/bindir"
    say "postgres $(cat "$dir/pid") on 127.0.0.1:$port (data $dir/data)"
    [ -z "${AIRLOCK_TEST_ENV:-}" ] || echo "AIRLOCK_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres" >>"$AIRLOCK_TEST_ENV"
    ;;
  stop)
    [ -n "${AIRLOCK_TEST_STATE:-}" ] || exit 0
    dir="$AIRLOCK_TEST_STATE/postgres"
    [ -f "$dir/pid" ] || exit 0
    bin=$(cat "$dir/bindir")
    as_pg "$bin/pg_ctl" --pgdata="$dir/data" --mode=fast --wait --timeout=30 stop >/dev/null 2>&1 || {
      pid=$(cat "$dir/pid")
      kill -KILL "$pid" 2>/dev/null || true
    }
    rm -rf "$dir"
    ;;
esac

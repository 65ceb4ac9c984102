#!/bin/sh
# Entrypoint of airlock-postgres: on first start, makes a cluster in $PGDATA whose superuser is
# AIRLOCK_POSTGRES_USER (default airlock) with AIRLOCK_POSTGRES_PASSWORD (required), and a
# database AIRLOCK_POSTGRES_DB (default airlock); then runs postgres, listening on every address
# of the container with password (scram-sha-256) authentication. Arguments go to postgres.
set -eu
user=${AIRLOCK_POSTGRES_USER:-airlock}
db=${AIRLOCK_POSTGRES_DB:-airlock}
# The unix socket goes to $PGHOST (set by the image), a dir the postgres user owns.
mkdir -p "$PGHOST"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  [ -n "${AIRLOCK_POSTGRES_PASSWORD:-}" ] || { echo "airlock-postgres: set AIRLOCK_POSTGRES_PASSWORD for the new cluster" >&2; exit 1; }
  pwfile=$(mktemp)
  printf '%s\n' "$AIRLOCK_POSTGRES_PASSWORD" >"$pwfile"
  initdb --pgdata="$PGDATA" --username="$user" --pwfile="$pwfile" --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  # Local connections as the OS user postgres map to the cluster's superuser.
  printf 'local all all peer map=owner\n' | cat - "$PGDATA/pg_hba.conf" >"$PGDATA/pg_hba.conf.new" && mv "$PGDATA/pg_hba.conf.new" "$PGDATA/pg_hba.conf"
  printf 'owner postgres %s\n' "$user" >>"$PGDATA/pg_ident.conf"
  pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses='' -c unix_socket_directories=$PGHOST" --wait --silent start
  [ "$db" = postgres ] || createdb --username="$user" "$db"
  pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop
  echo "airlock-postgres: made a cluster with user $user and database $db"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories="$PGHOST" "$@"

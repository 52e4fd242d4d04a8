#!/bin/sh
# Entry point of the db stand-in: on the first start (empty data volume) it creates the cluster with
# POSTGRES_USER / POSTGRES_PASSWORD and the database POSTGRES_DB, then does what the real image's
# create_user.sh does: the superuser POSTGRES_ADMIN_USER (password interpolated unquoted into SQL) and
# the pgcrypto extension in the database (IRIS's first boot needs both); then it runs postgres.
set -eu
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
: "${POSTGRES_ADMIN_USER:?POSTGRES_ADMIN_USER is required}"
: "${POSTGRES_ADMIN_PASSWORD:?POSTGRES_ADMIN_PASSWORD is required}"
: "${POSTGRES_DB:=iris_db}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 --locale=C.UTF-8 --encoding=UTF8 >/dev/null
    rm -f "$pwfile"
    {
        echo "listen_addresses = '*'"
        echo "unix_socket_directories = '/tmp'"
        echo "jit = off"
    } >> "$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait start >/dev/null
    psql -v ON_ERROR_STOP=1 --username="$POSTGRES_USER" --dbname=postgres >/dev/null <<SQL
CREATE DATABASE ${POSTGRES_DB};
CREATE USER ${POSTGRES_ADMIN_USER} WITH CREATEDB SUPERUSER PASSWORD '${POSTGRES_ADMIN_PASSWORD}';
\c ${POSTGRES_DB}
CREATE EXTENSION IF NOT EXISTS pgcrypto CASCADE;
SQL
    pg_ctl --pgdata="$PGDATA" --mode=fast --wait stop >/dev/null
    echo "db stand-in: cluster created for ${POSTGRES_USER} and ${POSTGRES_ADMIN_USER}"
fi
exec postgres -D "$PGDATA"

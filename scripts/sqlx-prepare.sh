#!/usr/bin/env bash
# Refreshes .sqlx/, the compile-time checked query data, after a query or a migration
# changed: migrates a scratch database on the local PostgreSQL, checks every query of the
# workspace against it, and writes what sqlx's macros need to build offline.
#
#   scripts/sqlx-prepare.sh          (installs sqlx-cli 0.8 first if it is missing)
#   SQLX_PREPARE_DB=name scripts/sqlx-prepare.sh   (another scratch database, for checkouts side by side)
#   scripts/sqlx-prepare.sh --check   (writes nothing; fails if .sqlx/ is stale, as CI does)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-services.sh
if ! cargo sqlx --version >/dev/null 2>&1; then
    cargo install sqlx-cli --version 0.8.6 --locked --no-default-features --features postgres,rustls
fi
CHECK=()
if [ "${1:-}" = "--check" ]; then
    CHECK=(--check)
fi
DB="${SQLX_PREPARE_DB:-elife_sqlx_prepare${CHECK:+_check}}"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
# The scratch database goes, whether the queries checked or not.
trap 'psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB"' EXIT
cargo sqlx migrate run --source migrations
SQLX_OFFLINE=false cargo sqlx prepare --workspace "${CHECK[@]}"

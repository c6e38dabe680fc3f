#!/usr/bin/env bash
# Runs every test of the workspace against this machine's real PostgreSQL and RabbitMQ
# (each test makes its own database and queue names) with the simulators on random ports,
# and the operator page's test in headless Chromium (installed from Debian if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-services.sh
bash scripts/install-browser.sh
# The committed .sqlx/ must match the queries and migrations: a stale one fails here,
# against a freshly migrated scratch database, before any test builds on it.
bash scripts/sqlx-prepare.sh --check
# Queries are checked against the committed .sqlx/ data: no database is needed to build.
export SQLX_OFFLINE=true
cargo test --workspace --locked

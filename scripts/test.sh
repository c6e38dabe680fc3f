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
# The money path again in direct mode (WeChat Pay APIv3, TEST_WECHAT_PAY_MODE=direct): the
# same guarantees through signed requests and notifications, sessions instead of the
# gateway's headers. Files whose tests exercise only Cloud Hosting's wire (callback,
# contract, hardening, import, bill_download, transitions, request_id, operator, alerts,
# wechat_v3_client) and the slow process-level worker files run in the cloud pass only;
# notify runs direct mode in the pass above already.
#   payment-api:     orders outbox payment_watch refunds reconciliation admin retention
#                    stats sessions
#   recharge-worker: pipeline sweeps unitel_faults broker_loss leases
TEST_WECHAT_PAY_MODE=direct cargo test --locked -p payment-api -p recharge-worker \
  --test orders --test outbox --test payment_watch --test refunds --test reconciliation \
  --test admin --test retention --test stats --test sessions \
  --test pipeline --test sweeps --test unitel_faults --test broker_loss --test leases

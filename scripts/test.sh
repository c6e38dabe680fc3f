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
# gateway's headers (about 3 minutes on 2 cores; --workspace, so that the binaries built above serve).
#   direct pass, payment-api:     orders outbox payment_watch refunds reconciliation admin
#                                 retention stats sessions
#   direct pass, recharge-worker: pipeline sweeps unitel_faults broker_loss leases
#   cloud pass only: callback contract hardening import bill_download transitions
#     request_id operator alerts (Cloud Hosting's wire, or not the money path),
#     wechat_v3_client and notify (direct mode by their own settings already),
#     worker_processes (worker processes, slow; the pipeline is the same in both modes),
#     dead_letters (pays no order).
TEST_WECHAT_PAY_MODE=direct cargo test --workspace --locked \
  --test orders --test outbox --test payment_watch --test refunds --test reconciliation \
  --test admin --test retention --test stats --test sessions \
  --test pipeline --test sweeps --test unitel_faults --test broker_loss --test leases

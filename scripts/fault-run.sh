#!/usr/bin/env bash
# The fault-injection run: the real system under load while workers are SIGKILLed,
# RabbitMQ and PostgreSQL restart once each, Unitel refuses, hangs, drops and fails, and
# forged callbacks arrive; then the books are checked (exit 1 if any check fails).
#
#   scripts/fault-run.sh [ORDERS] [WORKERS] [--direct]   (default 1000 orders, 3 workers;
#                                                        --direct: WeChat Pay APIv3)
#
# It restarts this machine's PostgreSQL and RabbitMQ: run it on a machine where nothing
# else uses them at the time.
set -euo pipefail
cd "$(dirname "$0")/.."
ORDERS=${1:-1000}
WORKERS=${2:-3}
bash scripts/ensure-services.sh
cargo build --locked --bins --quiet
target/debug/chaos --orders "$ORDERS" --workers "$WORKERS" "${@:3}"

#!/usr/bin/env bash
# Runs every test of the workspace against this machine's real PostgreSQL and RabbitMQ
# (each test makes its own database and queue names) with the simulators on random ports.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-services.sh
cargo test --workspace --locked

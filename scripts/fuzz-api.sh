#!/usr/bin/env bash
# Schemathesis (from PyPI) over payment-api's own OpenAPI document, against a running
# system: every generated request must get a documented, non-5xx answer whose body matches
# the schema. Starts the demo system on spare ports, fuzzes it, stops it.
#
#   scripts/fuzz-api.sh [EXAMPLES_PER_OPERATION]      (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES=${1:-300}
command -v schemathesis >/dev/null || pip install --quiet schemathesis
export DEMO_API_PORT=${DEMO_API_PORT:-3300} DEMO_WECHAT_PORT=${DEMO_WECHAT_PORT:-3301} DEMO_UNITEL_PORT=${DEMO_UNITEL_PORT:-3302}
bash scripts/demo.sh --keep > .demo/fuzz-system.log 2>&1 &
DEMO=$!
trap 'kill $DEMO 2>/dev/null; wait $DEMO 2>/dev/null || true' EXIT
for _ in $(seq 600); do
  grep -q "keeps running" .demo/fuzz-system.log 2>/dev/null && break
  kill -0 $DEMO 2>/dev/null || { cat .demo/fuzz-system.log; exit 1; }
  sleep 0.5
done
schemathesis --config-file schemathesis.toml run "http://127.0.0.1:$DEMO_API_PORT/api-json" \
  --checks all \
  -H "X-Mock-Openid: fuzz-user" \
  -H "Authorization: Bearer demo-admin-token-change-me" \
  --max-examples "$EXAMPLES" --request-timeout 10

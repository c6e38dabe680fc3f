#!/usr/bin/env bash
# Runs the whole system on this machine (migrations, the WeChat and Unitel sandbox,
# payment-api, two recharge-workers) against the local PostgreSQL and RabbitMQ, then walks
# one order from creation to a credited number, printing each step.
#
#   scripts/demo.sh           walk one order, then stop everything
#   scripts/demo.sh --keep    leave the system running afterwards (Ctrl-C stops it)
#
# Ports: DEMO_API_PORT (3000), DEMO_WECHAT_PORT (8081), DEMO_UNITEL_PORT (8082).
set -euo pipefail
cd "$(dirname "$0")/.."

KEEP=false
[ "${1:-}" = "--keep" ] && KEEP=true
API_PORT=${DEMO_API_PORT:-3000}
WECHAT_PORT=${DEMO_WECHAT_PORT:-8081}
UNITEL_PORT=${DEMO_UNITEL_PORT:-8082}
LOGS=.demo
mkdir -p "$LOGS"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {'d': d}))" "$1"; }

for port in "$API_PORT" "$WECHAT_PORT" "$UNITEL_PORT"; do
  if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
    echo "demo: port $port is taken; set DEMO_API_PORT / DEMO_WECHAT_PORT / DEMO_UNITEL_PORT" >&2
    exit 1
  fi
done

step "PostgreSQL and RabbitMQ"
bash scripts/ensure-services.sh

step "Building the binaries"
cargo build --locked --bins --quiet
BIN=target/debug

step "A fresh demo database"
psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS elife_demo WITH (FORCE)" \
  -c "CREATE DATABASE elife_demo"

export APP_ENV=development RUST_LOG=${RUST_LOG:-info}
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/elife_demo
export AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f AMQP_PREFIX=elife-demo
export HOST=127.0.0.1 PORT=$API_PORT
export WECHAT_API_BASE=http://127.0.0.1:$WECHAT_PORT WECHAT_MCH_ID=1712734762 WECHAT_ENV_ID=demo-env
export WECHAT_PAYMENT_CALLBACK_SERVICE=elife-backend WECHAT_PAYMENT_CALLBACK_PATH=/payment/callback
export UNITEL_API_URL=http://127.0.0.1:$UNITEL_PORT/api/v1 UNITEL_USERNAME=elife UNITEL_PASSWORD=elife-secret
# The sandbox refuses with code 105 ("nothing was done"): those top-ups fail and are refunded.
export UNITEL_REFUSAL_CODES=105
export ADMIN_TOKEN=demo-admin-token-change-me
export SANDBOX_WECHAT_PORT=$WECHAT_PORT SANDBOX_UNITEL_PORT=$UNITEL_PORT SANDBOX_CALLBACK_BASE=http://127.0.0.1:$API_PORT
# Today's trade bill at once, rather than from 10:00 China time tomorrow as WeChat serves it.
export SANDBOX_BILLS_READY=immediately

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

step "Starting the sandbox, payment-api (applies migrations) and two recharge-workers (logs in $LOGS/)"
"$BIN/sandbox" serve >"$LOGS/sandbox.log" 2>&1 & PIDS+=($!)
"$BIN/payment-api" >"$LOGS/payment-api.log" 2>&1 & PIDS+=($!)
WORKER_ID=demo-worker-1 "$BIN/recharge-worker" >"$LOGS/worker-1.log" 2>&1 & PIDS+=($!)
WORKER_ID=demo-worker-2 "$BIN/recharge-worker" >"$LOGS/worker-2.log" 2>&1 & PIDS+=($!)

API=http://127.0.0.1:$API_PORT
for _ in $(seq 60); do
  curl -fs "$API/health" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fs "$API/health" | json '"health: database %s, rabbitmq %s, outbox backlog %s" % (d["data"]["database"], d["data"]["rabbitmq"], d["data"]["outboxBacklog"])'

USER_HEADERS=(-H "Content-Type: application/json" -H "X-Mock-Openid: demo-user")
MSISDN=88616600

step "1. What can $MSISDN buy? (Unitel product list, priced in yuan at the current rate)"
curl -fs "$API/exchange-rate/current" | json '"rate: %s MNT per yuan" % d["data"]["rate"]'
curl -fs -X POST "$API/unitel/products/services" "${USER_HEADERS[@]}" \
  -d "{\"msisdn\": \"$MSISDN\", \"info\": \"1\"}" \
  | json '"tariff %s; voice card SD5000: %s MNT = %s yuan" % (d["data"]["name"], *[(p["price"], p["priceRmb"]) for p in d["data"]["service"]["cards"]["day"] if p["code"] == "SD5000"][0])'

step "2. The user orders the SD5000 card (priced on the server)"
ORDER=$(curl -fs -X POST "$API/orders" "${USER_HEADERS[@]}" \
  -d "{\"phoneNumber\": \"$MSISDN\", \"productOperator\": \"Unitel\", \"rechargeType\": \"voice\", \"productCode\": \"SD5000\"}" \
  | json 'd["data"]["orderNumber"]')
echo "order $ORDER created"

step "3. payment-api asks WeChat Pay for a prepay (unifiedOrder)"
curl -fs -X POST "$API/payment/create" "${USER_HEADERS[@]}" -d "{\"orderNumber\": \"$ORDER\"}" \
  | json '"wx.requestPayment gets package=%s" % d["data"]["package"]'

step "4. The user pays in WeChat (simulated); WeChat calls back /payment/callback/$ORDER"
"$BIN/sandbox" pay "$ORDER" --url "http://127.0.0.1:$WECHAT_PORT" | sed 's/^/transaction: /'

step "5. The callback is recorded, OrderPaid goes through RabbitMQ, a worker credits the number"
for _ in $(seq 100); do
  STATUS=$(curl -fs "$API/orders/$ORDER" "${USER_HEADERS[@]}" | json 'd["data"]["paymentState"] + "/" + str(d["data"]["rechargeState"])')
  echo "payment/recharge: $STATUS"
  case "$STATUS" in */success|*/failed|*/unknown) break ;; esac
  sleep 0.2
done

step "6. The result the user sees, with the VAT e-receipt"
curl -fs "$API/orders/$ORDER" "${USER_HEADERS[@]}" \
  | json '"recharge %s, Unitel seq %s, e-receipt lottery %s, VAT %s MNT" % (d["data"]["rechargeStatus"], d["data"]["seqId"], d["data"]["vatReceipt"]["lottery"], d["data"]["vatReceipt"]["vat"])'

step "7. Unitel's ledger (the sandbox's record of every credit)"
curl -fs "http://127.0.0.1:$WECHAT_PORT/sandbox/unitel/ledger" \
  | json '"\n".join("credited %s with %s (%s MNT) for journal %s" % (c["msisdn"], c["product"], c["amount"], c["journalId"]) for c in d)'

step "8. What the operator sees today (GET /admin/stats, admin token)"
curl -fs "$API/admin/stats?from=$(TZ=Asia/Shanghai date +%F)" -H "Authorization: Bearer $ADMIN_TOKEN" \
  | json '"orders created %s, paid %s, credited %s, paid CNY %s, new customers %s" % (d["data"]["totals"]["ordersCreated"], d["data"]["totals"]["ordersPaid"], d["data"]["totals"]["rechargeSuccess"], d["data"]["totals"]["paidYuan"], d["data"]["customers"]["new"])'

[ "$STATUS" = "paid/success" ] || { echo "demo: the order ended $STATUS" >&2; exit 1; }
echo
echo "Swagger UI: $API/api   operator page: $API/admin (token $ADMIN_TOKEN)   (logs in $LOGS/)"
if $KEEP; then
  echo "The system keeps running; Ctrl-C stops it."
  wait
fi

#!/usr/bin/env bash
# Runs the whole system on this machine (migrations, the WeChat and Unitel sandbox,
# payment-api, two recharge-workers) against the local PostgreSQL and RabbitMQ, then walks
# one order from creation to a credited number, printing each step.
#
#   scripts/demo.sh           walk one order, then stop everything
#   scripts/demo.sh --keep    leave the system running afterwards (Ctrl-C stops it)
#   scripts/demo.sh --direct  the same in direct mode (WECHAT_PAY_MODE=direct): WeChat Pay
#                             APIv3 with a throwaway merchant key (openssl), a wx.login
#                             session, signed and encrypted notifications, a refund
#
# Both flags can be given together.
# Ports: DEMO_API_PORT (3000), DEMO_WECHAT_PORT (8081), DEMO_UNITEL_PORT (8082).
set -euo pipefail
cd "$(dirname "$0")/.."

KEEP=false
DIRECT=false
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=true ;;
    --direct) DIRECT=true ;;
    *) echo "usage: scripts/demo.sh [--keep] [--direct]" >&2; exit 2 ;;
  esac
done
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
export WECHAT_MCH_ID=1712734762
if $DIRECT; then
  # The merchant's credentials as the merchant platform issues them: an API key pair
  # (apiclient_key.pem; WeChat Pay keeps the public half), the serial of its certificate
  # and the APIv3 key. The sandbox, playing WeChat Pay, registers the same merchant from
  # these settings and writes its own WeChat Pay public key into SANDBOX_V3_KEYS_DIR.
  command -v openssl >/dev/null || { echo "demo: --direct makes the merchant's key with openssl, which is missing" >&2; exit 1; }
  KEYS=$LOGS/keys
  rm -rf "$KEYS" && mkdir -p "$KEYS" && chmod 700 "$KEYS"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEYS/apiclient_key.pem" 2>/dev/null
  openssl pkey -in "$KEYS/apiclient_key.pem" -pubout -out "$KEYS/apiclient_public_key.pem"
  openssl rand -hex 16 | tr -d '\n' >"$KEYS/apiv3_key"
  printf '%s' sandbox-app-secret-7c1d9e2f4a6b8c0d >"$KEYS/app_secret"
  export WECHAT_PAY_MODE=direct
  export WECHAT_APP_ID=wx5e1f0c2b7a9d3e41 WECHAT_APP_SECRET_FILE=$KEYS/app_secret
  export WECHAT_LOGIN_API_BASE=http://127.0.0.1:$WECHAT_PORT
  export WECHAT_MERCHANT_SERIAL=$(openssl rand -hex 20 | tr a-f A-F)
  export WECHAT_MERCHANT_PRIVATE_KEY_FILE=$KEYS/apiclient_key.pem WECHAT_API_V3_KEY_FILE=$KEYS/apiv3_key
  export WECHAT_PAY_API_BASE=http://127.0.0.1:$WECHAT_PORT
  export WECHAT_PAY_PUBLIC_KEY_FILE=$KEYS/wechatpay_public_key.pem
  # An https name, as WeChat Pay requires; the sandbox delivers it to SANDBOX_CALLBACK_BASE
  # (payment-api's own address), as the ingress in front of the service would.
  export WECHAT_NOTIFY_URL=https://pay.elife.test/payment/notify
  export SANDBOX_V3_KEYS_DIR=$KEYS SANDBOX_MERCHANT_PUBLIC_KEY_FILE=$KEYS/apiclient_public_key.pem
else
  export WECHAT_API_BASE=http://127.0.0.1:$WECHAT_PORT WECHAT_ENV_ID=demo-env
  export WECHAT_PAYMENT_CALLBACK_SERVICE=elife-backend WECHAT_PAYMENT_CALLBACK_PATH=/payment/callback
fi
export UNITEL_API_URL=http://127.0.0.1:$UNITEL_PORT/api/v1 UNITEL_USERNAME=elife UNITEL_PASSWORD=elife-secret
# The sandbox refuses with code 105 ("nothing was done"): those top-ups fail and are refunded.
export UNITEL_REFUSAL_CODES=105
export ADMIN_TOKEN=demo-admin-token-change-me
export SANDBOX_WECHAT_PORT=$WECHAT_PORT SANDBOX_UNITEL_PORT=$UNITEL_PORT SANDBOX_CALLBACK_BASE=http://127.0.0.1:$API_PORT
# WeChat serves day D's bill from 10:00 on D+1; the demo's simulated WeChat serves today's
# at once, so that the demo can reconcile the day it just made.
export SANDBOX_BILLS_READY=immediately

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

step "Starting the sandbox, payment-api (applies migrations) and two recharge-workers (logs in $LOGS/)"
"$BIN/sandbox" serve >"$LOGS/sandbox.log" 2>&1 & PIDS+=($!)
if $DIRECT; then
  for _ in $(seq 60); do
    [ -s "$KEYS/wechatpay_public_key_id" ] && break
    sleep 0.5
  done
  [ -s "$KEYS/wechatpay_public_key_id" ] || { echo "demo: the sandbox wrote no WeChat Pay public key (see $LOGS/sandbox.log)" >&2; exit 1; }
  WECHAT_PAY_PUBLIC_KEY_ID=$(cat "$KEYS/wechatpay_public_key_id")
  export WECHAT_PAY_PUBLIC_KEY_ID
fi
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
SANDBOX=http://127.0.0.1:$WECHAT_PORT

if $DIRECT; then
  echo "direct mode: merchant $WECHAT_MCH_ID, serial $WECHAT_MERCHANT_SERIAL, WeChat Pay public key $WECHAT_PAY_PUBLIC_KEY_ID (keys in $KEYS/)"
  step "0. The user opens the mini-program: wx.login's code (minted by the sandbox) becomes a session (POST /auth/login)"
  CODE=$(curl -fs -X POST "$SANDBOX/sandbox/wechat/login-code" -H "Content-Type: application/json" \
    -d '{"openid": "demo-user"}' | json 'd["code"]')
  TOKEN=$(curl -fs -X POST "$API/auth/login" -H "Content-Type: application/json" -d "{\"code\": \"$CODE\"}" \
    | json 'd["data"]["token"] + " " + str(d["data"]["expiresIn"])')
  echo "session for 'demo-user', lives ${TOKEN#* } s; every call below sends Authorization: Bearer <token>"
  USER_HEADERS=(-H "Content-Type: application/json" -H "Authorization: Bearer ${TOKEN%% *}")
fi

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

# The order's payment state, then its top-up's, as the user reads them.
wait_for_outcome() {
  for _ in $(seq 100); do
    STATUS=$(curl -fs "$API/orders/$1" "${USER_HEADERS[@]}" | json 'd["data"]["paymentState"] + "/" + str(d["data"]["rechargeState"])')
    echo "payment/recharge: $STATUS"
    case "$STATUS" in */success|*/failed|*/unknown) break ;; esac
    sleep 0.2
  done
}

# The notifications the sandbox delivered for an order: where to, and the answer.
notifications() {
  curl -fs "$SANDBOX/sandbox/wechat/callbacks" | json '"\n".join("%s %s notification to %s: HTTP %s" % (c["outTradeNo"], c["kind"], c["url"], c["httpStatus"]) for c in d if c["outTradeNo"] == "'"$1"'")'
}

if $DIRECT; then
  step "3. payment-api asks WeChat Pay for a prepay (APIv3 JSAPI, the request signed with the merchant key)"
  curl -fs -X POST "$API/payment/create" "${USER_HEADERS[@]}" -d "{\"orderNumber\": \"$ORDER\"}" \
    | json '"wx.requestPayment gets package=%s, signType %s, paySign by the merchant key" % (d["data"]["package"], d["data"]["signType"])'

  step "4. The user pays in WeChat (simulated); WeChat Pay posts a signed, encrypted notification to $WECHAT_NOTIFY_URL"
  "$BIN/sandbox" pay "$ORDER" --url "$SANDBOX" | sed 's/^/transaction: /'

  step "5. The notification is verified (signature, timestamp, nonce), decrypted and recorded; a worker credits the number"
  wait_for_outcome "$ORDER"
  notifications "$ORDER"
else
  step "3. payment-api asks WeChat Pay for a prepay (unifiedOrder)"
  curl -fs -X POST "$API/payment/create" "${USER_HEADERS[@]}" -d "{\"orderNumber\": \"$ORDER\"}" \
    | json '"wx.requestPayment gets package=%s" % d["data"]["package"]'

  step "4. The user pays in WeChat (simulated); WeChat calls back /payment/callback/$ORDER"
  "$BIN/sandbox" pay "$ORDER" --url "http://127.0.0.1:$WECHAT_PORT" | sed 's/^/transaction: /'

  step "5. The callback is recorded, OrderPaid goes through RabbitMQ, a worker credits the number"
  wait_for_outcome "$ORDER"
fi
ORDER_STATUS=$STATUS

step "6. The result the user sees, with the VAT e-receipt"
curl -fs "$API/orders/$ORDER" "${USER_HEADERS[@]}" \
  | json '"recharge %s, Unitel seq %s, e-receipt lottery %s, VAT %s MNT" % (d["data"]["rechargeStatus"], d["data"]["seqId"], d["data"]["vatReceipt"]["lottery"], d["data"]["vatReceipt"]["vat"])'

step "7. Unitel's ledger (the sandbox's record of every credit)"
curl -fs "http://127.0.0.1:$WECHAT_PORT/sandbox/unitel/ledger" \
  | json '"\n".join("credited %s with %s (%s MNT) for journal %s" % (c["msisdn"], c["product"], c["amount"], c["journalId"]) for c in d)'

NEXT=8
REFUND_STATUS=none
if $DIRECT; then
  step "8. A second order, which Unitel refuses: the money goes back through APIv3 by itself"
  curl -fs -X PUT "$SANDBOX/sandbox/faults" -H "Content-Type: application/json" -d '{"unitel": {"failNext": 1}}' >/dev/null
  REFUNDED=$(curl -fs -X POST "$API/orders" "${USER_HEADERS[@]}" \
    -d "{\"phoneNumber\": \"$MSISDN\", \"productOperator\": \"Unitel\", \"rechargeType\": \"voice\", \"productCode\": \"SD5000\"}" \
    | json 'd["data"]["orderNumber"]')
  curl -fs -X POST "$API/payment/create" "${USER_HEADERS[@]}" -d "{\"orderNumber\": \"$REFUNDED\"}" >/dev/null
  "$BIN/sandbox" pay "$REFUNDED" --url "$SANDBOX" | sed "s/^/order $REFUNDED paid, transaction: /"
  wait_for_outcome "$REFUNDED"
  # The refund sweep sends it within its shipped 10 s, WeChat Pay notifies the result.
  for _ in $(seq 150); do
    REFUND_STATUS=$(curl -fs "$API/orders/$REFUNDED" "${USER_HEADERS[@]}" | json '(d["data"]["refund"] or {}).get("status", "none")')
    [ "$REFUND_STATUS" = success ] || [ "$REFUND_STATUS" = failed ] && break
    sleep 0.2
  done
  curl -fs "$API/orders/$REFUNDED" "${USER_HEADERS[@]}" \
    | json '"recharge %s, the customer reads \"%s\"; refund %s, %s fen" % (d["data"]["rechargeState"], d["data"]["rechargeNote"], d["data"]["refund"]["status"], d["data"]["refund"]["amountFen"])'
  notifications "$REFUNDED"
  NEXT=9
fi

step "$NEXT. What the operator sees today (GET /admin/stats, admin token)"
curl -fs "$API/admin/stats?from=$(TZ=Asia/Shanghai date +%F)" -H "Authorization: Bearer $ADMIN_TOKEN" \
  | json '"orders created %s, paid %s, credited %s, paid CNY %s, new customers %s" % (d["data"]["totals"]["ordersCreated"], d["data"]["totals"]["ordersPaid"], d["data"]["totals"]["rechargeSuccess"], d["data"]["totals"]["paidYuan"], d["data"]["customers"]["new"])'

NEXT=$((NEXT + 1))
step "$NEXT. Today's books against WeChat Pay's bill (POST /admin/reconciliation/run, admin token)"
TODAY=$(TZ=Asia/Shanghai date +%F)
RECONCILED=$(curl -fs -X POST "$API/admin/reconciliation/run?date=$TODAY" -H "Authorization: Bearer $ADMIN_TOKEN")
echo "$RECONCILED" | json '"%s: %s; bill lines %s, matched %s, open differences %s; bill %s fen paid, ours %s fen" % (d["data"]["date"], d["data"]["status"], d["data"]["billLines"], d["data"]["linesMatched"], d["data"]["differencesOpen"], d["data"]["totals"]["day"]["billPaymentsFen"], d["data"]["totals"]["day"]["ourPaymentsFen"])'
DAY_STATUS=$(echo "$RECONCILED" | json 'd["data"]["status"]')

[ "$ORDER_STATUS" = "paid/success" ] || { echo "demo: the order ended $ORDER_STATUS" >&2; exit 1; }
[ "$DAY_STATUS" = "balanced" ] || { echo "demo: today's reconciliation is $DAY_STATUS" >&2; exit 1; }
if $DIRECT; then
  [ "$REFUND_STATUS" = "success" ] || { echo "demo: the refused top-up's refund ended $REFUND_STATUS" >&2; exit 1; }
fi
echo
echo "Swagger UI: $API/api   operator page: $API/admin (token $ADMIN_TOKEN)   (logs in $LOGS/)"
if $KEEP; then
  echo "The system keeps running; Ctrl-C stops it."
  wait
fi

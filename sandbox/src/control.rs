//! The control API under `/sandbox/*`: play the paying user, inspect what happened, and
//! switch faults on and off.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::error::SandboxError;
use crate::faults::Faults;
use crate::state::AppState;
use crate::wechat;

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/sandbox/health", get(|| async { "ok" }))
        .route("/sandbox/wechat/pay", post(pay))
        .route("/sandbox/wechat/orders", get(orders))
        .route("/sandbox/wechat/orders/{out_trade_no}", get(order))
        .route(
            "/sandbox/wechat/orders/bulk",
            post(seed_paid_orders).layer(DefaultBodyLimit::max(BULK_BODY_LIMIT)),
        )
        .route("/sandbox/wechat/refund-outside", post(refund_outside))
        .route("/sandbox/wechat/callbacks", get(callbacks))
        .route("/sandbox/wechat/login-code", post(wechat::login::mint))
        .route("/sandbox/unitel/ledger", get(ledger))
        .route("/sandbox/calls", get(calls))
        .route("/sandbox/faults", get(faults).put(set_faults))
        .route("/sandbox/reset", post(reset))
        .route(
            "/sandbox/callback-base",
            get(callback_base).put(set_callback_base),
        )
        .with_state(state.clone())
        .merge(wechat::v3::control::router(state))
}

/// 100,000 seeded orders are about 13 MB of JSON.
const BULK_BODY_LIMIT: usize = 64 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefundOutsideRequest {
    out_trade_no: String,
    /// Fen.
    refund_fee: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PayRequest {
    out_trade_no: String,
    /// False: the order is paid at WeChat but no notification is sent, so that a caller
    /// (the benchmark) can deliver the notification itself and time it.
    #[serde(default = "notify_by_default")]
    notify: bool,
}

fn notify_by_default() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResetRequest {
    clear: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallbackBase {
    callback_base: String,
}

async fn pay(
    State(state): State<AppState>,
    Json(request): Json<PayRequest>,
) -> Result<Response, SandboxError> {
    let order = wechat::pay(&state, &request.out_trade_no, request.notify)?;
    Ok(Json(json!({
        "outTradeNo": request.out_trade_no,
        "transactionId": order.transaction_id,
        "totalFee": order.total_fee,
        "subMchId": order.sub_mch_id,
    }))
    .into_response())
}

async fn seed_paid_orders(
    State(state): State<AppState>,
    Json(orders): Json<Vec<crate::PaidOrder>>,
) -> Result<Response, SandboxError> {
    let seeded = state.orders.seed_paid(orders, &state.config.merchant_id)?;
    tracing::info!(seeded, "paid orders seeded");
    Ok(Json(json!({ "seeded": seeded })).into_response())
}

async fn refund_outside(
    State(state): State<AppState>,
    Json(request): Json<RefundOutsideRequest>,
) -> Result<Response, SandboxError> {
    let refund = wechat::refund_outside(&state, &request.out_trade_no, request.refund_fee)?;
    Ok(Json(json!({
        "outTradeNo": request.out_trade_no,
        "outRefundNo": refund.out_refund_no,
        "refundId": refund.refund_id,
        "refundFee": refund.refund_fee,
        "status": refund.status,
    }))
    .into_response())
}

async fn orders(State(state): State<AppState>) -> Response {
    Json(state.orders.all()).into_response()
}

async fn order(
    State(state): State<AppState>,
    Path(out_trade_no): Path<String>,
) -> Result<Response, SandboxError> {
    state
        .orders
        .get(&out_trade_no)
        .map(|order| Json(order).into_response())
        .ok_or(SandboxError::OrderNotFound(out_trade_no))
}

async fn callbacks(State(state): State<AppState>) -> Response {
    Json(state.callbacks.all()).into_response()
}

async fn ledger(State(state): State<AppState>) -> Response {
    Json(state.ledger.all()).into_response()
}

async fn calls(State(state): State<AppState>) -> Response {
    Json(state.calls.all()).into_response()
}

async fn faults(State(state): State<AppState>) -> Response {
    Json(state.faults()).into_response()
}

async fn set_faults(State(state): State<AppState>, Json(faults): Json<Faults>) -> Response {
    state.set_faults(faults);
    Json(state.faults()).into_response()
}

/// The body is optional: an empty POST resets faults only.
async fn reset(State(state): State<AppState>, body: Bytes) -> Response {
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        ResetRequest::default()
    } else {
        match serde_json::from_slice::<ResetRequest>(&body) {
            Ok(request) => request,
            Err(error) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({ "error": format!("invalid reset body: {error}") })),
                )
                    .into_response()
            }
        }
    };
    state.reset(request.clear);
    Json(json!({ "reset": true, "cleared": request.clear })).into_response()
}

async fn callback_base(State(state): State<AppState>) -> Response {
    Json(json!({ "callbackBase": state.callback_base() })).into_response()
}

async fn set_callback_base(
    State(state): State<AppState>,
    Json(request): Json<CallbackBase>,
) -> Response {
    state.set_callback_base(request.callback_base);
    Json(json!({ "callbackBase": state.callback_base() })).into_response()
}

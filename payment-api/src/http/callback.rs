//! `POST /payment/callback/{orderNumber}`: WeChat Pay's payment result.
//!
//! Answered with a bare `{"errcode":0,"errmsg":""}` (never the response envelope: the
//! platform reads a top-level errcode and retries anything else for two days) once the
//! outcome is durably recorded, whatever it was. A non-zero errcode means "we could not
//! record it, send it again". The notification is not signed, so the order number, the
//! merchant, the amount and the attach are checked against our records; a mismatch is
//! recorded as an anomaly and never fulfilled.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use chrono::Utc;
use serde_json::json;
use shared::config::AppEnv;
use shared::money::Fen;
use shared::order::OrderNumber;

use super::json::contains_nul;
use super::orders::OrderNumberParam;
use crate::context::ApiContext;
use crate::store::payments::{self, ConfirmedPayment, PaymentOutcome};
use crate::store::{anomalies, orders};
use crate::wechat::{PaymentNotification, WechatError};

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/payment/callback/{order_number}", post(callback_for_order))
        // The platform posts to the configured path as given; accept the bare path too and
        // take the order number from the body.
        .route("/payment/callback", post(callback_bare))
}

fn accepted() -> Response {
    Json(json!({"errcode": 0, "errmsg": ""})).into_response()
}

fn retry_later(why: &str) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"errcode": -1, "errmsg": why})),
    )
        .into_response()
}

/// WeChat Pay's result for one order.
#[utoipa::path(post, path = "/payment/callback/{orderNumber}", tag = "payment",
    params(OrderNumberParam), request_body = Object,
    responses((status = 200, description = "`{\"errcode\":0,\"errmsg\":\"\"}` once recorded"),
              (status = 400, description = "Unreadable body or invalid order number: `errcode` ≠ 0"),
              (status = 500, description = "Not recorded, send again: `errcode` ≠ 0")))]
async fn callback_for_order(
    State(ctx): State<ApiContext>,
    Path(path_order): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(ctx, Some(path_order), headers, body).await
}

async fn callback_bare(State(ctx): State<ApiContext>, headers: HeaderMap, body: Bytes) -> Response {
    handle(ctx, None, headers, body).await
}

async fn handle(
    ctx: ApiContext,
    path_order: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Our own path carries an order number we generated: anything else did not come from
    // a payment we started.
    if let Some(path_order) = path_order.as_deref() {
        if OrderNumber::parse(path_order).is_err() {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"errcode": 400, "errmsg": "invalid order number in the path"})),
            )
                .into_response();
        }
    }
    // An object, and only an object: serde would also read a struct from a JSON array.
    let parsed = serde_json::from_slice::<serde_json::Value>(&body)
        .map_err(|e| e.to_string())
        .and_then(|value| match value {
            serde_json::Value::Object(_) if contains_nul(&value) => {
                Err("the body contains NUL characters".to_owned())
            }
            serde_json::Value::Object(_) => {
                serde_json::from_value::<PaymentNotification>(value).map_err(|e| e.to_string())
            }
            _ => Err("the body is not a JSON object".to_owned()),
        });
    let notification = match parsed {
        Ok(n) => n,
        Err(error) => {
            tracing::warn!(%error, "unreadable payment callback");
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"errcode": 400, "errmsg": "unreadable body"})),
            )
                .into_response();
        }
    };
    let order_text = path_order
        .clone()
        .or_else(|| notification.out_trade_no.clone())
        .unwrap_or_default();
    tracing::Span::current().record("order_number", order_text.as_str());
    match verify_and_record(&ctx, path_order.as_deref(), &headers, &notification).await {
        Ok(()) => accepted(),
        Err(error) => {
            tracing::error!(%error, order_number = %order_text, "payment callback not recorded; asking for a retry");
            metrics::counter!("payment_callbacks_total", "outcome" => "retry").increment(1);
            retry_later("temporarily unable to record the payment")
        }
    }
}

/// Anomalies where the customer's money was taken and the order will not be fulfilled.
const MONEY_TAKEN_UNFULFILLED: &[&str] = &["second_transaction", "paid_after_close"];

/// Why a callback could not be settled now: the platform must send it again.
#[derive(Debug, thiserror::Error)]
enum CallbackError {
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("queryorder could not confirm: {0}")]
    Unconfirmed(#[from] WechatError),
}

/// Everything that can be decided is decided and stored; only a storage failure, or a
/// confirmation WeChat could not give now, is an error.
async fn verify_and_record(
    ctx: &ApiContext,
    path_order: Option<&str>,
    headers: &HeaderMap,
    n: &PaymentNotification,
) -> Result<(), CallbackError> {
    let body_order = n.out_trade_no.as_deref();
    let claimed = path_order.or(body_order);
    let detail = json!({
        "pathOrderNumber": path_order,
        "outTradeNo": body_order,
        "subMchId": n.sub_mch_id,
        "totalFee": n.total_fee,
        "transactionId": n.transaction_id,
        "returnCode": n.return_code,
        "resultCode": n.result_code,
        "errCode": n.err_code,
        "errCodeDes": n.err_code_des,
    });
    let reject = |kind: &'static str| async move {
        metrics::counter!("payment_callbacks_total", "outcome" => kind).increment(1);
        if MONEY_TAKEN_UNFULFILLED.contains(&kind) {
            // WeChat took money we will not turn into a top-up: a person must refund it.
            tracing::error!(kind, order_number = ?claimed, alert = true, "payment cannot be fulfilled");
        } else {
            tracing::warn!(kind, order_number = ?claimed, "payment callback not fulfilled");
        }
        anomalies::record(&ctx.db, claimed, kind, detail.clone())
            .await
            .map_err(CallbackError::from)
    };

    if ctx.config.app_env == AppEnv::Production && !headers.contains_key("x-wx-source") {
        return reject("missing_source").await;
    }
    let Some(order_number) = claimed.and_then(|o| OrderNumber::parse(o).ok()) else {
        return reject("invalid_order_number").await;
    };
    if path_order.is_some() && body_order != Some(order_number.as_str()) {
        return reject("order_number_mismatch").await;
    }
    if !n.reports_success() {
        return reject("not_success").await;
    }
    if n.sub_mch_id.as_deref() != Some(ctx.wechat.merchant_id()) {
        return reject("merchant_mismatch").await;
    }
    if n.attach
        .as_deref()
        .is_some_and(|a| !a.is_empty() && a != order_number.as_str())
    {
        return reject("attach_mismatch").await;
    }
    let Some(transaction_id) = n.transaction_id.as_deref().filter(|t| !t.is_empty()) else {
        return reject("missing_transaction_id").await;
    };
    let Some(amount) = n.total_fee.and_then(|f| Fen::new(f).ok()) else {
        return reject("amount_mismatch").await;
    };

    if ctx.config.payments.confirm_callbacks {
        // What we know of the order decides first: duplicates and forgeries cost no
        // query at WeChat.
        let Some(order) = orders::find(&ctx.db, &order_number).await? else {
            return reject("unknown_order").await;
        };
        if order.amount_fen != amount.get() {
            return reject("amount_mismatch").await;
        }
        match order.payment_status.as_str() {
            "paid" if order.transaction_id.as_deref() == Some(transaction_id) => {
                metrics::counter!("payment_callbacks_total", "outcome" => "duplicate").increment(1);
                tracing::info!(order_number = %order_number, "duplicate payment callback");
                return Ok(());
            }
            "paid" => return reject("second_transaction").await,
            "closed" => return reject("paid_after_close").await,
            _ => {}
        }
        let confirmed = match ctx.wechat.query_order(&order_number).await {
            Ok(queried) => {
                let same_transaction = queried.transaction_id.as_deref() == Some(transaction_id);
                queried.confirms(amount) && same_transaction
            }
            // WeChat has no such order: nobody paid it.
            Err(WechatError::Business { code, .. }) if code == "ORDERNOTEXIST" => false,
            Err(other) => return Err(other.into()),
        };
        if !confirmed {
            return reject("not_paid_at_wechat").await;
        }
    }
    // Without the confirmation there is nothing to decide before recording: the recording
    // statement itself checks the order, its amount and its state, and says why when it
    // changes nothing. One statement for a first payment.

    let outcome = payments::confirm(
        &ctx.db,
        &ConfirmedPayment {
            order_number: &order_number,
            transaction_id,
            amount,
            paid_at: Utc::now(),
            reported_by: "wechat-callback",
        },
    )
    .await?;
    match outcome {
        PaymentOutcome::Recorded => {
            metrics::counter!("payment_callbacks_total", "outcome" => "recorded").increment(1);
            tracing::info!(order_number = %order_number, "payment recorded");
            ctx.outbox.wake();
        }
        PaymentOutcome::AlreadyRecorded => {
            metrics::counter!("payment_callbacks_total", "outcome" => "duplicate").increment(1);
            tracing::info!(order_number = %order_number, "duplicate payment callback");
        }
        PaymentOutcome::NotFound => reject("unknown_order").await?,
        PaymentOutcome::AmountMismatch { .. } => reject("amount_mismatch").await?,
        PaymentOutcome::PaidWithAnotherTransaction { .. } => reject("second_transaction").await?,
        PaymentOutcome::Closed => reject("paid_after_close").await?,
    }
    Ok(())
}

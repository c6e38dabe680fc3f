//! `POST /payment/notify` and `POST /payment/notify/refund`: WeChat Pay APIv3's payment
//! and refund results (direct mode). The raw bytes go to [`crate::payments::apiv3_notice`]
//! untouched (a signature covers exactly what was sent). As APIv3 expects: 204 once
//! recorded; a 4xx or 5xx with `{"code":"FAIL","message"}` to be sent again. WeChat
//! waits 5 s for the answer: a notification not settled by then (a slow confirming query)
//! is answered 5xx and comes again; every step before is a whole transition, so stopping
//! between two leaves nothing half done.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;

use super::extractor::ClientAddress;
use crate::context::ApiContext;
use crate::payments::apiv3_notice::{take_notice, NoticeKind, NoticeOutcome};

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/payment/notify", post(payment_notify))
        .route("/payment/notify/refund", post(refund_notify))
}

/// WeChat Pay APIv3's payment result (`TRANSACTION.SUCCESS`), signed and encrypted.
#[utoipa::path(post, path = "/payment/notify", tag = "payment", request_body = Object,
    params(("Wechatpay-Signature" = String, Header, description = "RSA-SHA256 over timestamp, nonce and the raw body"),
           ("Wechatpay-Serial" = String, Header, description = "The WeChat Pay key that signed it"),
           ("Wechatpay-Timestamp" = String, Header), ("Wechatpay-Nonce" = String, Header)),
    responses((status = 204, description = "Recorded (or already recorded)"),
              (status = 400, description = "Does not verify, replayed or unreadable: `{code, message}`, nothing changed"),
              (status = 500, description = "Not recorded now, send again: `{code, message}`")))]
async fn payment_notify(
    State(ctx): State<ApiContext>,
    source: ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let taken = take_notice(
        &ctx.payments,
        NoticeKind::Payment,
        source.0,
        &headers,
        &body,
    );
    answer(tokio::time::timeout(ANSWER_WITHIN, taken).await)
}

/// WeChat Pay APIv3's refund result (`REFUND.*`), signed and encrypted; the outcome
/// recorded is the refund query's.
#[utoipa::path(post, path = "/payment/notify/refund", tag = "payment", request_body = Object,
    responses((status = 204, description = "Handled"),
              (status = 400, description = "Does not verify, replayed or unreadable: `{code, message}`, nothing changed"),
              (status = 500, description = "Not handled now, send again: `{code, message}`")))]
async fn refund_notify(
    State(ctx): State<ApiContext>,
    source: ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let taken = take_notice(&ctx.payments, NoticeKind::Refund, source.0, &headers, &body);
    answer(tokio::time::timeout(ANSWER_WITHIN, taken).await)
}

/// Inside WeChat's 5 s, with room for the answer to travel.
const ANSWER_WITHIN: Duration = Duration::from_millis(4_500);

fn answer(
    outcome: Result<Result<NoticeOutcome, sqlx::Error>, tokio::time::error::Elapsed>,
) -> Response {
    let fail = |status: StatusCode, message: &str| {
        (status, Json(json!({"code": "FAIL", "message": message}))).into_response()
    };
    match outcome {
        Ok(Ok(NoticeOutcome::Taken)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(NoticeOutcome::Refused(why))) => fail(StatusCode::BAD_REQUEST, why),
        Ok(Ok(NoticeOutcome::Later)) => fail(StatusCode::INTERNAL_SERVER_ERROR, "not recorded yet"),
        Err(_) => {
            tracing::warn!("APIv3 notification not settled within 5 s; asking for it again");
            fail(StatusCode::INTERNAL_SERVER_ERROR, "not recorded yet")
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "APIv3 notification not recorded; asking for it again");
            fail(StatusCode::INTERNAL_SERVER_ERROR, "not recorded yet")
        }
    }
}

//! Refund routes: a person asks for one (`POST /payment/refund`, admin token), and the
//! platform reports the result (`POST /payment/refund-callback/{orderNumber}`), which is
//! confirmed with `queryrefund` before anything is recorded — the callback is
//! undocumented and unsigned.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::order::OrderNumber;
use utoipa::ToSchema;

use super::admin::{person, required_text, Admin};
use super::envelope::Envelope;
use super::error::ApiError;
use super::json::{contains_nul, ApiJson};
use super::orders::{parse_order_number, OrderNumberParam};
use crate::context::ApiContext;
use crate::refunds::{self, Refund, RequestError};
use crate::store::anomalies;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/payment/refund", post(request_refund))
        .route(
            "/payment/refund-callback/{order_number}",
            post(refund_callback),
        )
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundRequest {
    #[schema(
        example = "ORD1795562423906XQ68VSFX",
        pattern = r"^[0-9A-Za-z_|*-]{6,32}$"
    )]
    order_number: String,
    /// Why; shown in the order's history and sent to WeChat as `refund_desc`.
    #[schema(
        example = "top-up failed, customer asked for the money back",
        pattern = r"\S",
        max_length = 200
    )]
    reason: String,
    /// Required to refund an order whose number was credited.
    #[serde(default)]
    include_credited: bool,
    /// Who asks (default `admin`).
    #[serde(default)]
    #[schema(max_length = 100)]
    requested_by: Option<String>,
}

/// Refunds a paid order in full: one whose top-up failed, or — only with
/// `includeCredited: true` — one that was credited. Never an `unknown` one (resolve it
/// first), never twice.
#[utoipa::path(post, path = "/payment/refund", tag = "admin", request_body = RefundRequest,
    security(("admin_token" = [])),
    responses((status = 200, body = Refund), (status = 401, description = "Missing or wrong admin token"),
              (status = 404, description = "No such order"),
              (status = 409, description = "Not refundable in its state, or already refunded")))]
async fn request_refund(
    State(ctx): State<ApiContext>,
    _admin: Admin,
    ApiJson(request): ApiJson<RefundRequest>,
) -> Result<Envelope<Refund>, ApiError> {
    let order_number = parse_order_number(&request.order_number)?;
    let reason = required_text(&request.reason, "reason", 200)?;
    let who = person(request.requested_by.as_deref(), "requestedBy")?;
    let actor = format!("admin:{who}");
    let refund = refunds::request(
        &ctx.db,
        &order_number,
        reason,
        &actor,
        request.include_credited,
    )
    .await
    .map_err(|e| match e {
        RequestError::NotFound => ApiError::NotFound("Order not found".into()),
        RequestError::Database(e) => ApiError::from(e),
        other => ApiError::Conflict(other.to_string()),
    })?;
    tracing::info!(order_number = %order_number, by = %actor, "refund requested");
    if let Err(error) = refunds::push(&ctx, order_number.as_str()).await {
        tracing::warn!(%error, "sending the refund now failed; the sweep will");
    }
    let refund = refunds::find(&ctx.db, order_number.as_str())
        .await?
        .unwrap_or(refund);
    Ok(Envelope(refund))
}

fn answer(status: StatusCode, errcode: i64, errmsg: &str) -> Response {
    (status, Json(json!({"errcode": errcode, "errmsg": errmsg}))).into_response()
}

/// WeChat's refund result. Answered `{"errcode":0,"errmsg":""}` once handled; the outcome
/// recorded is `queryrefund`'s, not the callback's.
#[utoipa::path(post, path = "/payment/refund-callback/{orderNumber}", tag = "payment",
    params(OrderNumberParam), request_body = Object,
    responses((status = 200, description = "`{\"errcode\":0,\"errmsg\":\"\"}` once handled"),
              (status = 400, description = "Unreadable body or invalid order number: `errcode` ≠ 0"),
              (status = 500, description = "Not handled, send again: `errcode` ≠ 0")))]
async fn refund_callback(
    State(ctx): State<ApiContext>,
    Path(path_order): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(order_number) = OrderNumber::parse(&path_order) else {
        return answer(
            StatusCode::BAD_REQUEST,
            400,
            "invalid order number in the path",
        );
    };
    let body: Value = match serde_json::from_slice::<Value>(&body) {
        Ok(value @ Value::Object(_)) if !contains_nul(&value) => value,
        _ => return answer(StatusCode::BAD_REQUEST, 400, "unreadable body"),
    };
    let field = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or("");
    let expected_refund_no = refunds::out_refund_no(order_number.as_str());
    let mismatch = if field("subMchId") != ctx.wechat.merchant_id() {
        Some("refund_merchant_mismatch")
    } else if field("outTradeNo") != order_number.as_str()
        || field("outRefundNo") != expected_refund_no
    {
        Some("refund_order_mismatch")
    } else {
        None
    };
    let production = ctx.config.app_env == shared::config::AppEnv::Production;
    let mismatch =
        mismatch
            .or((production && !headers.contains_key("x-wx-source"))
                .then_some("refund_missing_source"));
    let handled: Result<bool, sqlx::Error> = match mismatch {
        Some(kind) => anomalies::record(&ctx.db, Some(order_number.as_str()), kind, body.clone())
            .await
            .map(|()| true),
        None => match refunds::find(&ctx.db, order_number.as_str()).await {
            Err(e) => Err(e),
            // Money returned that this system never asked for: a person must know.
            Ok(None) => anomalies::record(
                &ctx.db,
                Some(order_number.as_str()),
                "refund_unknown",
                body.clone(),
            )
            .await
            .map(|()| true),
            // Accepted at WeChat before we recorded it: send it again later.
            Ok(Some(refund)) if refund.status == "requested" => Ok(false),
            Ok(Some(_)) => refunds::check(&ctx, &order_number).await.map(|status| {
                tracing::info!(order_number = %order_number, ?status, "refund callback checked");
                status.is_some()
            }),
        },
    };
    let handled = match handled {
        Ok(true) => Ok(()),
        Ok(false) => Err("not settled yet".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    match handled {
        Ok(()) => answer(StatusCode::OK, 0, ""),
        Err(error) => {
            tracing::error!(%error, order_number = %order_number, "refund callback not handled; asking for a retry");
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                -1,
                "temporarily unable to handle the refund result",
            )
        }
    }
}

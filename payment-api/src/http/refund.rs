//! Refund routes: a person asks for one (`POST /payment/refund`) or sends a failed one
//! again (`POST /admin/refunds/{orderNumber}/retry`), both with the admin token; and the
//! platform reports the result (`POST /payment/refund-callback/{orderNumber}`), which is
//! confirmed with `queryrefund` before anything is recorded — the callback is
//! undocumented and unsigned.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use shared::history::Actor;
use shared::order::{OrderNumber, PayChannel};
use utoipa::ToSchema;

use super::admin_input::{person, required_text, PersonsNote};
use super::envelope::Envelope;
use super::error::ApiError;
use super::extractor::{Admin, ClientAddress};
use super::gateway_call::{Notification, Reply};
use super::json::ApiJson;
use super::params::{parse_order_number, OrderNumberParam};
use crate::context::ApiContext;
use crate::payments::refund_result::{handle_refund_result, RefundNotice, RefundResult};
use crate::payments::refunds::{self, Refund};
use crate::wechat::MerchantIds;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/payment/refund", post(request_refund))
        .route("/admin/refunds/{order_number}/retry", post(retry_refund))
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
    let actor = Actor::Admin(person(request.requested_by.as_deref(), "requestedBy")?);
    let refund = ctx
        .payments
        .refunds
        .ask(&order_number, reason, &actor, request.include_credited)
        .await?;
    Ok(Envelope(refund))
}

/// Sends a failed refund to WeChat again, under the same refund number (so it can never
/// be paid twice); the refund sweep takes it from there.
#[utoipa::path(post, path = "/admin/refunds/{orderNumber}/retry", tag = "admin",
    params(OrderNumberParam), request_body = PersonsNote, security(("admin_token" = [])),
    responses((status = 200, body = Refund), (status = 400, description = "Invalid note"),
              (status = 401, description = "Missing or wrong admin token"),
              (status = 404, description = "No refund for this order"),
              (status = 409, description = "The refund has not failed")))]
async fn retry_refund(
    State(ctx): State<ApiContext>,
    _admin: Admin,
    Path(order_number): Path<String>,
    ApiJson(request): ApiJson<PersonsNote>,
) -> Result<Envelope<Refund>, ApiError> {
    let order_number = parse_order_number(&order_number)?;
    let (note, name) = request.read()?;
    let actor = Actor::Admin(name);
    Ok(Envelope(
        refunds::retry(&ctx.db, &order_number, &actor, note).await?,
    ))
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
    source: ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let Ok(order_number) = OrderNumber::parse(&path_order) else {
        return Reply::Unreadable("invalid order number in the path");
    };
    let notification = match Notification::read(&headers, &body) {
        Ok(notification) => notification,
        Err(error) => {
            tracing::warn!(%error, "unreadable refund callback");
            return Reply::Unreadable("unreadable body");
        }
    };
    let notice = RefundNotice {
        channel: PayChannel::Cloud,
        merchant: MerchantIds {
            merchant: notification.text("subMchId").map(str::to_owned),
            ..MerchantIds::default()
        },
        out_trade_no: notification.text("outTradeNo"),
        out_refund_no: notification.text("outRefundNo"),
        source_trusted: notification.source_trusted(&ctx.config),
        body: notification.body(),
    };
    match handle_refund_result(&ctx.payments, &order_number, source.0, &notice).await {
        Ok(RefundResult::Handled) => Reply::Handled,
        Ok(RefundResult::Later) => {
            Reply::RetryLater("temporarily unable to handle the refund result")
        }
        Err(error) => {
            tracing::error!(%error, order_number = %order_number, "refund callback not handled; asking for a retry");
            Reply::RetryLater("temporarily unable to handle the refund result")
        }
    }
}

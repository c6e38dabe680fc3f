//! `POST /payment/callback/{orderNumber}`: WeChat Pay's payment result.
//!
//! Answered `{"errcode":0,"errmsg":""}` once the outcome is durably recorded, whatever it
//! was; a non-zero errcode means "we could not record it, send it again". The notification
//! is read here and decided in [`crate::payments::payment_result`].

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use shared::order::OrderNumber;

use super::extractor::ClientAddress;
use super::gateway_call::{Notification, Reply};
use super::params::OrderNumberParam;
use crate::context::ApiContext;
use crate::payments::payment_result;
use crate::wechat::PaymentNotification;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/payment/callback/{order_number}", post(callback_for_order))
        // The platform posts to the configured path as given; accept the bare path too and
        // take the order number from the body.
        .route("/payment/callback", post(callback_bare))
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
    source: ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    handle(ctx, Some(path_order), source, headers, body).await
}

/// The same, at the bare path: the order number is the body's `out_trade_no` (payments
/// the replaced system started name this path).
#[utoipa::path(post, path = "/payment/callback", tag = "payment", request_body = Object,
    responses((status = 200, description = "`{\"errcode\":0,\"errmsg\":\"\"}` once recorded"),
              (status = 400, description = "Unreadable body: `errcode` ≠ 0"),
              (status = 500, description = "Not recorded, send again: `errcode` ≠ 0")))]
async fn callback_bare(
    State(ctx): State<ApiContext>,
    source: ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    handle(ctx, None, source, headers, body).await
}

async fn handle(
    ctx: ApiContext,
    path_order: Option<String>,
    source: ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    // Our own path carries an order number we generated: anything else did not come from
    // a payment we started.
    if path_order
        .as_deref()
        .is_some_and(|o| OrderNumber::parse(o).is_err())
    {
        return Reply::Unreadable("invalid order number in the path");
    }
    let read = Notification::read(&headers, &body)
        .and_then(|n| n.parse::<PaymentNotification>().map(|fields| (n, fields)));
    let (notification, fields) = match read {
        Ok(read) => read,
        Err(error) => {
            tracing::warn!(%error, "unreadable payment callback");
            return Reply::Unreadable("unreadable body");
        }
    };
    let order_text = path_order
        .clone()
        .or_else(|| fields.out_trade_no.clone())
        .unwrap_or_default();
    tracing::Span::current().record("order_number", order_text.as_str());
    let ClientAddress(source) = source;
    let trusted = notification.source_trusted(&ctx.config);
    match payment_result::verify_and_record(
        &ctx.payments,
        path_order.as_deref(),
        source,
        trusted,
        &fields.report(),
    )
    .await
    {
        Ok(()) => Reply::Handled,
        Err(error) => {
            tracing::error!(%error, order_number = %order_text, "payment callback not recorded; asking for a retry");
            metrics::counter!("payment_callbacks_total", "outcome" => "retry").increment(1);
            Reply::RetryLater("temporarily unable to record the payment")
        }
    }
}

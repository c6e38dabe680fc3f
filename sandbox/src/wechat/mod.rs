//! WeChat Pay as reached through WeChat Cloud Hosting's open interface service:
//! `POST /_/pay/*`, JSON in and out, v2 semantics inside the platform's envelope.

pub(crate) mod bill;
pub(crate) mod callbacks;
pub(crate) mod envelope;
pub(crate) mod login;
pub(crate) mod orders;
mod payer;
mod query;
pub(crate) mod refund;
mod unified_order;
pub(crate) mod v3;

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::error::SandboxError;
use crate::state::AppState;
use orders::{WechatOrder, WechatRefund};

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/_/pay/unifiedOrder", post(unified_order::unified_order))
        .route("/_/pay/queryorder", post(query::query_order))
        .route("/_/pay/closeorder", post(query::close_order))
        .route("/_/pay/refund", post(refund::refund))
        .route("/_/pay/queryrefund", post(query::query_refund))
        .route("/_/pay/downloadbill", post(bill::download_bill))
        .route("/cgi-bin/webhook/send", post(crate::wecom::send))
        .route("/sns/jscode2session", get(login::jscode2session))
        .route_layer(middleware::from_fn_with_state(state.clone(), add_latency))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::calls::record_wechat,
        ))
        .with_state(state.clone())
        .merge(v3::router(state))
}

pub(crate) async fn add_latency(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let latency = state.faults().wechat.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    next.run(request).await
}

/// The simulated user pays; with `notify`, the payment callback starts in the background.
pub(crate) fn pay(
    state: &AppState,
    out_trade_no: &str,
    notify: bool,
) -> Result<WechatOrder, SandboxError> {
    let order = state.orders.pay(out_trade_no)?;
    let transaction_id = order.transaction_id.as_deref().unwrap_or_default();
    tracing::info!(%out_trade_no, %transaction_id, total_fee = order.total_fee, notify, "paid");
    if notify && order.v3.is_some() {
        v3::notify::deliver_payment(state, &order);
    } else if notify {
        callbacks::deliver_payment(state, &order);
    }
    Ok(order)
}

/// A refund made at WeChat by hand (the merchant platform): it succeeds after
/// `refund_delay` like any other, and nobody is called back.
pub(crate) fn refund_outside(
    state: &AppState,
    out_trade_no: &str,
    refund_fee: i64,
) -> Result<WechatRefund, SandboxError> {
    let (order, refund) = state.orders.refund_outside(out_trade_no, refund_fee)?;
    tracing::info!(%out_trade_no, refund_id = %refund.refund_id, refund_fee, "refunded outside the API");
    refund::complete_later(state, &order, &refund, false);
    Ok(refund)
}

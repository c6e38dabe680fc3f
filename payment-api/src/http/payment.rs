//! Starting a payment: WeChat Pay's `unifiedOrder` for an order of the caller's that is
//! still unpaid, answering with what `wx.requestPayment` needs.

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use shared::lifecycle;
use shared::order::PaymentStatus;
use utoipa::ToSchema;

use super::envelope::Envelope;
use super::error::ApiError;
use super::extractor::{ClientAddress, CurrentUser};
use super::json::ApiJson;
use super::types::parse_order_number;
use crate::context::ApiContext;
use crate::rate_limit::Caller;
use crate::store::orders;
use crate::wechat::WechatError;

pub fn router() -> Router<ApiContext> {
    Router::new().route("/payment/create", post(create))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatePaymentRequest {
    #[schema(
        example = "ORD1728546789123ABCDEFGH",
        pattern = r"^[0-9A-Za-z_|*-]{6,32}$"
    )]
    order_number: String,
}

/// What `wx.requestPayment` takes, as WeChat returned it.
#[derive(ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct WxPayment {
    appId: String,
    timeStamp: String,
    nonceStr: String,
    /// `prepay_id=...`
    package: String,
    signType: String,
    paySign: String,
}

fn wechat_error(error: WechatError) -> ApiError {
    match error {
        WechatError::Business { code, description } => match code.as_str() {
            "ORDERPAID" => ApiError::Conflict("This order has already been paid".into()),
            "ORDERCLOSED" => {
                ApiError::Conflict("This order is closed; please place a new one".into())
            }
            "SYSTEMERROR" => ApiError::Unavailable("WeChat Pay is busy, please try again".into()),
            _ => {
                tracing::error!(%code, %description, "WeChat Pay refused unifiedOrder");
                // WeChat's words are for the operator (logged above), not the customer.
                ApiError::Upstream("WeChat Pay cannot take this payment now".into())
            }
        },
        WechatError::Platform(message) => {
            tracing::error!(%message, "WeChat Pay unreachable");
            ApiError::Upstream("WeChat Pay is unavailable, please try again".into())
        }
    }
}

/// Starts WeChat Pay for one of the caller's unpaid orders. `data` is the argument of
/// `wx.requestPayment` (`appId`, `timeStamp`, `nonceStr`, `package`, `signType`, `paySign`).
#[utoipa::path(post, path = "/payment/create", tag = "payment", request_body = CreatePaymentRequest,
    responses((status = 200, description = "wx.requestPayment argument", body = WxPayment),
              (status = 400, description = "Invalid order number"), (status = 401, description = "No WeChat identity"),
              (status = 404, description = "No such order for this user"),
              (status = 409, description = "Already paid or closed"), (status = 429, description = "Too many payments this minute"), (status = 502, description = "WeChat Pay refused or unreachable")))]
async fn create(
    State(ctx): State<ApiContext>,
    user: CurrentUser,
    ClientAddress(address): ClientAddress,
    ApiJson(request): ApiJson<CreatePaymentRequest>,
) -> Result<Envelope<serde_json::Value>, ApiError> {
    let limits = &ctx.config.limits;
    ctx.limiter
        .check(
            "POST /payment/create",
            &[
                (Caller::Openid(&user.openid), limits.payments_per_minute),
                (Caller::Address(address), limits.per_address_per_minute),
            ],
        )
        .await?;
    let order_number = parse_order_number(&request.order_number)?;
    tracing::Span::current().record("order_number", order_number.as_str());
    let order = orders::find(&ctx.db, &order_number, Some(&user.openid))
        .await?
        .ok_or_else(|| ApiError::NotFound("Order not found".into()))?;
    match order.payment_status {
        PaymentStatus::Unpaid => {}
        PaymentStatus::Paid => {
            return Err(ApiError::Conflict(
                "This order has already been paid".into(),
            ))
        }
        PaymentStatus::Closed => {
            return Err(ApiError::Conflict(
                "This order is closed; please place a new one".into(),
            ))
        }
    }
    let window =
        chrono::Duration::from_std(ctx.config.payments.window).map_err(anyhow::Error::from)?;
    if order.created_at + window <= chrono::Utc::now() {
        return Err(ApiError::Conflict(
            "The payment window of this order is over; please place a new one".into(),
        ));
    }
    let amount = order.amount_fen;
    let description = format!(
        "境外话费充值 - {}",
        order
            .product_eng_name
            .as_deref()
            .unwrap_or(&order.product_name)
    );
    let prepaid = ctx
        .wechat
        .unified_order(&order_number, &user.openid, amount, &description)
        .await
        .map_err(wechat_error)?;
    if !lifecycle::record_prepay(&ctx.db, &order_number, &prepaid.prepay_id).await? {
        // Closed (or paid) while WeChat was preparing the payment: the sheet must not reach
        // the user. Close it at WeChat too, best effort; the sweep retries otherwise.
        if let Err(error) = ctx.wechat.close_order(&order_number).await {
            tracing::warn!(%error, "closing a just-prepared payment failed");
        }
        return Err(ApiError::Conflict(
            "This order can no longer be paid; please place a new one".into(),
        ));
    }
    tracing::info!(order_number = %order_number, "payment started");
    Ok(Envelope(prepaid.payment))
}

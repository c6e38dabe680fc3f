//! Starting a payment: WeChat Pay's `unifiedOrder` for an order of the caller's that is
//! still unpaid, answering with what `wx.requestPayment` needs.

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use shared::order::OrderNumber;
use utoipa::ToSchema;

use super::envelope::Created;
use super::error::ApiError;
use super::extractor::{ClientAddress, CurrentUser};
use super::json::ApiJson;
use super::legacy_input::LegacyBody;
use crate::context::ApiContext;
use crate::payments::start::{start_payment, StartError};
use crate::rate_limit::Route;

pub fn router() -> Router<ApiContext> {
    Router::new().route("/payment/create", post(create))
}

/// `{orderNumber}`: no other field.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct CreatePaymentRequest {
    #[schema(example = "ORD1795562423906XQ68VSFXABCD")]
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

/// Starts WeChat Pay for one of the caller's unpaid orders. `data` is the argument of
/// `wx.requestPayment` (`appId`, `timeStamp`, `nonceStr`, `package`, `signType`, `paySign`).
#[utoipa::path(post, path = "/payment/create", tag = "payment", security(("wechat_identity" = []), ("session_token" = [])), request_body = CreatePaymentRequest,
    responses((status = 201, description = "wx.requestPayment argument", body = WxPayment),
              (status = 400, description = "Invalid input; the order is paid, closed or past its payment window; or WeChat Pay refused it"),
              (status = 401, description = "No WeChat identity"),
              (status = 404, description = "No such order for this user"),
              (status = 429, description = "Too many payments this minute"),
              (status = 502, description = "WeChat Pay unreachable"), (status = 503, description = "WeChat Pay busy")))]
async fn create(
    State(ctx): State<ApiContext>,
    user: CurrentUser,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<Value>,
) -> Result<Created<Value>, ApiError> {
    ctx.limiter
        .check_user(
            Route::CreatePayment,
            &ctx.config.limits,
            &user.openid,
            address,
        )
        .await?;
    let mut body = LegacyBody::new(body)?;
    let order_number =
        body.string_empty_first("orderNumber", "订单号不能为空", "订单号必须是字符串");
    body.finish()?;
    // A text that cannot be one of our order numbers names no order of anyone's.
    let order_number = order_number
        .and_then(|o| OrderNumber::parse(&o).ok())
        .ok_or(StartError::NotFound)?;
    tracing::Span::current().record("order_number", order_number.as_str());
    let payment = start_payment(&ctx.payments, &user.openid, &order_number).await?;
    Ok(Created(payment))
}

//! Starting a payment: WeChat Pay's `unifiedOrder` for an order of the caller's that is
//! still unpaid, answering with what `wx.requestPayment` needs.

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use shared::lifecycle;
use shared::order::{OrderNumber, PaymentStatus};
use utoipa::ToSchema;

use super::envelope::Created;
use super::error::ApiError;
use super::extractor::{ClientAddress, CurrentUser};
use super::json::ApiJson;
use super::legacy_input::LegacyBody;
use crate::context::ApiContext;
use crate::rate_limit::{Caller, Route};
use crate::store::orders;
use crate::wechat::WechatError;

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

fn already_paid() -> ApiError {
    ApiError::BadRequest("订单已支付".into())
}

fn closed() -> ApiError {
    ApiError::BadRequest("订单已关闭，请重新下单".into())
}

/// WeChat's refusals in the customer's words; its own text is for the operator (logged).
fn wechat_error(error: WechatError) -> ApiError {
    match error {
        WechatError::Business { code, description } => match code.as_str() {
            "ORDERPAID" => already_paid(),
            "ORDERCLOSED" => closed(),
            "SYSTEMERROR" => ApiError::Unavailable("微信支付繁忙，请稍后再试".into()),
            _ => {
                tracing::error!(%code, %description, "WeChat Pay refused unifiedOrder");
                ApiError::BadRequest("微信支付暂时无法受理此订单".into())
            }
        },
        WechatError::Platform(message) => {
            tracing::error!(%message, "WeChat Pay unreachable");
            ApiError::Upstream("微信支付暂时不可用，请稍后再试".into())
        }
    }
}

/// Starts WeChat Pay for one of the caller's unpaid orders. `data` is the argument of
/// `wx.requestPayment` (`appId`, `timeStamp`, `nonceStr`, `package`, `signType`, `paySign`).
#[utoipa::path(post, path = "/payment/create", tag = "payment", security(("wechat_identity" = [])), request_body = CreatePaymentRequest,
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
    let limits = &ctx.config.limits;
    ctx.limiter
        .check(
            Route::CreatePayment,
            &[
                (Caller::Openid(&user.openid), limits.payments_per_minute),
                (Caller::Address(address), limits.per_address_per_minute),
            ],
        )
        .await?;
    let mut body = LegacyBody::new(body)?;
    let order_number =
        body.string_empty_first("orderNumber", "订单号不能为空", "订单号必须是字符串");
    body.finish()?;
    let not_found = || ApiError::NotFound("订单不存在".into());
    // A text that cannot be one of our order numbers names no order of anyone's.
    let order_number = order_number
        .and_then(|o| OrderNumber::parse(&o).ok())
        .ok_or_else(not_found)?;
    tracing::Span::current().record("order_number", order_number.as_str());
    let order = orders::find(&ctx.db, &order_number, Some(&user.openid))
        .await?
        .ok_or_else(not_found)?;
    match order.payment_status {
        PaymentStatus::Unpaid => {}
        PaymentStatus::Paid => return Err(already_paid()),
        PaymentStatus::Closed => return Err(closed()),
    }
    let window =
        chrono::Duration::from_std(ctx.config.payments.window).map_err(anyhow::Error::from)?;
    if order.created_at + window <= chrono::Utc::now() {
        return Err(ApiError::BadRequest(
            "订单已超过支付时限，请重新下单".into(),
        ));
    }
    let amount = order.amount_fen;
    let (description, attach) = match order.imported_at {
        // WeChat refuses a second unifiedOrder for the same order with other parameters:
        // a payment the replaced system may have started goes on with its own.
        Some(_) => (
            format!("境外话费充值 - {}", order.product_name),
            serde_json::json!({"orderNumber": order_number.as_str(), "phoneNumber": order.phone_number.as_str()})
                .to_string(),
        ),
        None => (
            format!(
                "境外话费充值 - {}",
                order.product_eng_name.as_deref().unwrap_or(&order.product_name)
            ),
            order_number.as_str().to_owned(),
        ),
    };
    let prepaid = ctx
        .wechat
        .unified_order(&order_number, &user.openid, amount, &description, &attach)
        .await
        .map_err(wechat_error)?;
    if !lifecycle::record_prepay(&ctx.db, &order_number, &prepaid.prepay_id).await? {
        // Closed (or paid) while WeChat was preparing the payment: the sheet must not reach
        // the user. Close it at WeChat too, best effort; the sweep retries otherwise.
        if let Err(error) = ctx.wechat.close_order(&order_number).await {
            tracing::warn!(%error, "closing a just-prepared payment failed");
        }
        return Err(closed());
    }
    tracing::info!(order_number = %order_number, "payment started");
    Ok(Created(prepaid.payment))
}

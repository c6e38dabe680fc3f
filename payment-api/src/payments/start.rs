//! Starting a payment: WeChat Pay's `unifiedOrder` for an order of the caller's that is
//! still unpaid, answering with what `wx.requestPayment` needs.

use serde_json::Value;
use shared::lifecycle;
use shared::order::{OpenId, OrderNumber, PaymentStatus};

use super::Payments;
use crate::store::orders;
use crate::wechat::{PaymentToPrepare, WechatError};

/// Why no payment was started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no such order for this user")]
    NotFound,
    #[error("the order is paid")]
    AlreadyPaid,
    #[error("the order is closed")]
    Closed,
    #[error("the order's payment window is over")]
    WindowOver,
    /// WeChat refused or could not be reached; its words are for the operator.
    #[error("WeChat Pay: {0}")]
    Wechat(WechatError),
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Prepares WeChat Pay for `order_number`, an unpaid order of `openid`'s within its
/// payment window: the argument of `wx.requestPayment`, as WeChat returned it.
pub async fn start_payment(
    payments: &Payments,
    openid: &OpenId,
    order_number: &OrderNumber,
) -> Result<Value, StartError> {
    let order = orders::find(&payments.db, order_number, Some(openid))
        .await?
        .ok_or(StartError::NotFound)?;
    match order.payment_status {
        PaymentStatus::Unpaid => {}
        PaymentStatus::Paid => return Err(StartError::AlreadyPaid),
        PaymentStatus::Closed => return Err(StartError::Closed),
    }
    let window = chrono::Duration::from_std(payments.policy.window).map_err(anyhow::Error::from)?;
    let expires_at = order.created_at + window;
    if expires_at <= chrono::Utc::now() {
        return Err(StartError::WindowOver);
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
    let prepare = PaymentToPrepare {
        order_number,
        openid,
        amount,
        description: &description,
        attach: &attach,
        expires_at,
    };
    let prepaid = payments
        .wechat
        .prepare_payment(order.pay_channel, &prepare)
        .await
        .map_err(StartError::Wechat)?;
    if !lifecycle::record_prepay(&payments.db, order_number, &prepaid.prepay_id).await? {
        // Closed (or paid) while WeChat was preparing the payment: the sheet must not reach
        // the user. Close it at WeChat too, best effort; the sweep retries otherwise.
        if let Err(error) = payments
            .wechat
            .close_order(order.pay_channel, order_number)
            .await
        {
            tracing::warn!(%error, "closing a just-prepared payment failed");
        }
        return Err(StartError::Closed);
    }
    tracing::info!(order_number = %order_number, "payment started");
    Ok(prepaid.payment)
}

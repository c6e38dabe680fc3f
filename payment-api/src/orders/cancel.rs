//! Cancelling an unpaid order: closed at WeChat first (so it can no longer be paid
//! there), then here.

use shared::history::Actor;
use shared::lifecycle;
use shared::order::{OpenId, OrderNumber, PaymentStatus};

use crate::context::ApiContext;
use crate::payments::refunds::{self, Refund};
use crate::store::orders::{self, OrderRow};
use crate::wechat::{CloseOutcome, WechatError};

/// Why the order was not cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no such order for this user")]
    NotFound,
    #[error("A paid order cannot be cancelled")]
    Paid,
    /// WeChat says it was paid: the payment is recorded (best effort) instead.
    #[error("This order has already been paid")]
    PaidAtWechat,
    #[error("WeChat cannot close this order yet; try again in a few minutes")]
    WechatRefused,
    #[error("WeChat Pay is unavailable, please try again")]
    WechatUnavailable,
    /// A payment started meanwhile: the sweep closes it at WeChat first.
    #[error("The order changed meanwhile; please look at it again")]
    ChangedMeanwhile,
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

/// The closed order of `openid`'s; one closed already comes as it stands, with the
/// refund of a payment that came too late.
pub async fn cancel_order(
    ctx: &ApiContext,
    openid: &OpenId,
    order_number: &OrderNumber,
) -> Result<(OrderRow, Option<Refund>), CancelError> {
    let row = owned(ctx, openid, order_number).await?;
    match row.payment_status {
        PaymentStatus::Unpaid => {}
        PaymentStatus::Closed => {
            let refund = refunds::find(&ctx.db, order_number).await?;
            return Ok((row, refund));
        }
        PaymentStatus::Paid => return Err(CancelError::Paid),
    }
    if row.prepay_id.is_some() {
        close_at_wechat(ctx, &row).await?;
    }
    lifecycle::close_unpaid(
        &ctx.db,
        order_number,
        &Actor::User(openid.clone()),
        "cancelled by the user",
        row.prepay_id.is_none(),
    )
    .await?;
    let row = owned(ctx, openid, order_number).await?;
    if row.payment_status != PaymentStatus::Closed {
        return Err(CancelError::ChangedMeanwhile);
    }
    tracing::info!(order_number = %order_number, "order cancelled");
    Ok((row, None))
}

async fn owned(
    ctx: &ApiContext,
    openid: &OpenId,
    order_number: &OrderNumber,
) -> Result<OrderRow, CancelError> {
    orders::find(&ctx.db, order_number, Some(openid))
        .await?
        .ok_or(CancelError::NotFound)
}

/// Ok once WeChat will take no payment for it.
async fn close_at_wechat(ctx: &ApiContext, row: &OrderRow) -> Result<(), CancelError> {
    match ctx
        .wechat
        .close_order(row.pay_channel, &row.order_number)
        .await
    {
        Ok(CloseOutcome::Closed) => Ok(()),
        Ok(CloseOutcome::AlreadyPaid) => {
            if let Err(error) = ctx
                .watch
                .settle_by_query(row.pay_channel, &row.order_number, row.amount_fen)
                .await
            {
                tracing::warn!(%error, "recording a payment found while cancelling failed");
            }
            Err(CancelError::PaidAtWechat)
        }
        Err(WechatError::Business { code, description }) => {
            tracing::warn!(%code, %description, "closeorder refused");
            Err(CancelError::WechatRefused)
        }
        Err(error) => {
            tracing::warn!(%error, "closeorder failed");
            Err(CancelError::WechatUnavailable)
        }
    }
}

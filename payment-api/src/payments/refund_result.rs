//! WeChat's refund result. The callback is undocumented and unsigned: it only tells us
//! to ask, and the outcome recorded is `queryrefund`'s.

use std::net::IpAddr;

use serde_json::Value;
use shared::history::{Actor, AnomalyKind};
use shared::lifecycle;
use shared::order::{OrderNumber, PayChannel, RefundStatus};

use super::refunds;
use super::rejections::keep_rejection;
use super::Payments;
use crate::wechat::MerchantIds;

/// What the notification said, read but not believed.
pub struct RefundNotice<'a> {
    /// The channel it came through, and whose refund it says it is.
    pub channel: PayChannel,
    pub merchant: MerchantIds,
    pub out_trade_no: Option<&'a str>,
    pub out_refund_no: Option<&'a str>,
    /// It came the way WeChat's calls come (through the gateway, outside development).
    pub source_trusted: bool,
    /// The body as received, for the anomaly record.
    pub body: Value,
}

/// What the platform is told.
#[derive(Debug, PartialEq, Eq)]
pub enum RefundResult {
    /// Dealt with: do not send it again.
    Handled,
    /// It must come again later.
    Later,
}

pub async fn handle_refund_result(
    payments: &Payments,
    order_number: &OrderNumber,
    source: IpAddr,
    notice: &RefundNotice<'_>,
) -> Result<RefundResult, sqlx::Error> {
    let mismatch = if !payments
        .wechat
        .is_our_merchant(notice.channel, &notice.merchant)
    {
        Some(AnomalyKind::RefundMerchantMismatch)
    } else if notice.out_trade_no != Some(order_number.as_str())
        || notice.out_refund_no != Some(lifecycle::out_refund_no(order_number).as_str())
    {
        Some(AnomalyKind::RefundOrderMismatch)
    } else if !notice.source_trusted {
        Some(AnomalyKind::RefundMissingSource)
    } else {
        None
    };
    let record = |kind| async move {
        if !keep_rejection(payments, source, kind).await? {
            return Ok(());
        }
        lifecycle::record_anomaly(
            &payments.db,
            Some(order_number.as_str()),
            kind,
            &Actor::WechatRefundCallback,
            notice.body.clone(),
        )
        .await
    };
    if let Some(kind) = mismatch {
        record(kind).await?;
        return Ok(RefundResult::Handled);
    }
    match refunds::find(&payments.db, order_number).await? {
        // Money returned that this system never asked for: a person must know.
        None => {
            record(AnomalyKind::RefundUnknown).await?;
            Ok(RefundResult::Handled)
        }
        // Accepted at WeChat before we recorded it: send it again later.
        Some(refund) if refund.status == RefundStatus::Requested => Ok(RefundResult::Later),
        Some(_) => {
            let status = payments.refunds.check(order_number).await?;
            tracing::info!(order_number = %order_number, ?status, "refund callback checked");
            Ok(match status {
                Some(_) => RefundResult::Handled,
                None => RefundResult::Later,
            })
        }
    }
}

//! A payment result WeChat reported, verified and recorded. The notification is not
//! signed, so the order number, the merchant, the amount and the attach are checked
//! against our records (and, by default, the payment against `queryorder`); a mismatch is
//! recorded as an anomaly and never fulfilled.

use std::net::IpAddr;

use chrono::Utc;
use serde_json::json;
use shared::history::{Actor, AnomalyKind};
use shared::lifecycle::{self, PaymentOutcome, ReportedPayment};
use shared::money::Fen;
use shared::order::{OrderNumber, PayChannel, PaymentStatus};

use super::rejections::keep_rejection;
use super::Payments;
use crate::store::orders;
use crate::wechat::{Attach, PaymentReport, WechatError};

/// Why a callback could not be settled now: the platform must send it again.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("queryorder could not confirm: {0}")]
    Unconfirmed(#[from] WechatError),
}

/// Everything that can be decided is decided and stored; only a storage failure, or a
/// confirmation WeChat could not give now, is an error.
///
/// `path_order` is the order number of the path it was posted to, if any; `source_trusted`
/// says it came the way WeChat's calls come (through the gateway, outside development).
pub async fn verify_and_record(
    payments: &Payments,
    path_order: Option<&str>,
    source: IpAddr,
    source_trusted: bool,
    n: &PaymentReport,
) -> Result<(), CallbackError> {
    let body_order = n.out_trade_no.as_deref();
    let claimed = path_order.or(body_order);
    // Only a rejection keeps the fields; a payment recorded needs no copy of them.
    let detail = || {
        let mut detail = n.detail.clone();
        if let (Some(fields), Some(path_order)) = (detail.as_object_mut(), path_order) {
            fields.insert("pathOrderNumber".into(), json!(path_order));
        }
        detail
    };
    let reject = |kind: AnomalyKind| async move {
        metrics::counter!("payment_callbacks_total", "outcome" => kind.as_str()).increment(1);
        if kind.money_taken_unfulfilled() {
            // WeChat took money we will not turn into a top-up: a person must refund it.
            tracing::error!(%kind, order_number = ?claimed, alert = true, "payment cannot be fulfilled");
        } else if keep_rejection(payments, source, kind).await? {
            tracing::warn!(%kind, order_number = ?claimed, "payment callback not fulfilled");
        } else {
            return Ok(());
        }
        lifecycle::record_anomaly(
            &payments.db,
            claimed,
            kind,
            &Actor::WechatCallback,
            detail(),
        )
        .await
        .map_err(CallbackError::from)
    };

    if !source_trusted {
        return reject(AnomalyKind::MissingSource).await;
    }
    let Some(order_number) = claimed.and_then(|o| OrderNumber::parse(o).ok()) else {
        return reject(AnomalyKind::InvalidOrderNumber).await;
    };
    if path_order.is_some() && body_order != Some(order_number.as_str()) {
        return reject(AnomalyKind::OrderNumberMismatch).await;
    }
    if !n.succeeded {
        return reject(AnomalyKind::NotSuccess).await;
    }
    if !payments.wechat.is_ours(n.channel, &n.merchant) {
        return reject(AnomalyKind::MerchantMismatch).await;
    }
    let attached = &n.attach;
    if !attached.names(order_number.as_str()) {
        return reject(AnomalyKind::AttachMismatch).await;
    }
    if let Attach::Legacy {
        phone_number: Some(_),
        ..
    } = attached
    {
        // A payment the replaced system started names the number to top up as well.
        let order = orders::find(&payments.db, &order_number, None).await?;
        if order.is_some_and(|o| !attached.names_number(&o.phone_number)) {
            return reject(AnomalyKind::AttachMismatch).await;
        }
    }
    let Some(transaction_id) = n.transaction_id.as_deref().filter(|t| !t.is_empty()) else {
        return reject(AnomalyKind::MissingTransactionId).await;
    };
    let Some(amount) = n.total_fee.and_then(|f| Fen::new(f).ok()) else {
        return reject(AnomalyKind::AmountMismatch).await;
    };
    let payment = ReportedPayment {
        order_number: &order_number,
        transaction_id,
        amount,
        paid_at: n.paid_at.unwrap_or_else(Utc::now),
        reported_by: Actor::WechatCallback,
    };

    if payments.policy.confirm_callbacks {
        // What we know of the order decides first: duplicates and forgeries cost no
        // query at WeChat.
        let Some(order) = orders::find(&payments.db, &order_number, None).await? else {
            return reject(AnomalyKind::UnknownOrder).await;
        };
        if order.amount_fen != amount {
            return reject(AnomalyKind::AmountMismatch).await;
        }
        match order.payment_status {
            // A repeat of what is recorded: paid, or paid after closing (alerted once).
            PaymentStatus::Paid | PaymentStatus::Closed
                if order.transaction_id.as_deref() == Some(transaction_id) =>
            {
                metrics::counter!("payment_callbacks_total", "outcome" => "duplicate").increment(1);
                tracing::info!(order_number = %order_number, "duplicate payment callback");
                return Ok(());
            }
            PaymentStatus::Paid | PaymentStatus::Closed => {
                return match money_taken(
                    payments,
                    order.pay_channel,
                    &payment,
                    order.payment_status,
                )
                .await?
                {
                    Some(kind) => reject(kind).await,
                    None => Ok(()),
                };
            }
            PaymentStatus::Unpaid => {}
        }
        if !wechat_confirms(payments, order.pay_channel, &payment).await? {
            return reject(AnomalyKind::NotPaidAtWechat).await;
        }
    }
    // Without the confirmation there is nothing to decide before recording: the recording
    // statement itself checks the order, its amount and its state, and says why when it
    // changes nothing. One statement for a first payment.

    let outcome = lifecycle::record_payment(&payments.db, &payment).await?;
    match outcome {
        PaymentOutcome::Recorded => {
            metrics::counter!("payment_callbacks_total", "outcome" => "recorded").increment(1);
            tracing::info!(order_number = %order_number, "payment recorded");
            payments.outbox.wake();
        }
        PaymentOutcome::AlreadyRecorded => {
            metrics::counter!("payment_callbacks_total", "outcome" => "duplicate").increment(1);
            tracing::info!(order_number = %order_number, "duplicate payment callback");
        }
        PaymentOutcome::NotFound => reject(AnomalyKind::UnknownOrder).await?,
        PaymentOutcome::AmountMismatch { .. } => reject(AnomalyKind::AmountMismatch).await?,
        PaymentOutcome::TransactionReused { .. } => reject(AnomalyKind::TransactionReused).await?,
        PaymentOutcome::PaidWithAnotherTransaction { .. } => {
            if let Some(kind) = money_taken(
                payments,
                recorded_channel(payments, &order_number, n.channel).await?,
                &payment,
                PaymentStatus::Paid,
            )
            .await?
            {
                reject(kind).await?
            }
        }
        PaymentOutcome::Closed => {
            if let Some(kind) = money_taken(
                payments,
                recorded_channel(payments, &order_number, n.channel).await?,
                &payment,
                PaymentStatus::Closed,
            )
            .await?
            {
                reject(kind).await?
            }
        }
    }
    Ok(())
}

/// `queryorder` says this order was paid with this transaction, for this amount.
async fn wechat_confirms(
    payments: &Payments,
    channel: PayChannel,
    payment: &ReportedPayment<'_>,
) -> Result<bool, CallbackError> {
    match payments
        .wechat
        .query_order(channel, payment.order_number)
        .await
    {
        Ok(queried) => Ok(queried.confirms(payment.amount)
            && queried.transaction_id.as_deref() == Some(payment.transaction_id)),
        // WeChat has no such order: nobody paid it.
        Err(WechatError::Business { code, .. }) if code == "ORDERNOTEXIST" => Ok(false),
        Err(other) => Err(other.into()),
    }
}

/// A payment reported for an order that is paid already (with another transaction) or
/// closed: money taken that will not become a top-up — if WeChat confirms it. Only then is
/// it the anomaly that tells a person to refund (and a closed order keeps the payment, so
/// that the refund can go through the system); otherwise it is a report WeChat does not
/// stand behind. `None`: a copy of a late payment already recorded, nothing to report.
async fn money_taken(
    payments: &Payments,
    channel: PayChannel,
    payment: &ReportedPayment<'_>,
    status: PaymentStatus,
) -> Result<Option<AnomalyKind>, CallbackError> {
    if !wechat_confirms(payments, channel, payment).await? {
        return Ok(Some(AnomalyKind::NotPaidAtWechat));
    }
    if status == PaymentStatus::Closed
        && !lifecycle::record_payment_after_close(&payments.db, payment).await?
    {
        // Not recorded now: a copy of this callback arriving at the same time recorded it
        // (and alerted), or the closed order holds another payment (alert this one too).
        let recorded = orders::find(&payments.db, payment.order_number, None).await?;
        if recorded.and_then(|o| o.transaction_id).as_deref() == Some(payment.transaction_id) {
            metrics::counter!("payment_callbacks_total", "outcome" => "duplicate").increment(1);
            return Ok(None);
        }
    }
    Ok(Some(match status {
        PaymentStatus::Closed => AnomalyKind::PaidAfterClose,
        _ => AnomalyKind::SecondTransaction,
    }))
}

/// The channel the order was created with: every question about it goes there. An order
/// we do not have is asked about where the report came from.
async fn recorded_channel(
    payments: &Payments,
    order_number: &OrderNumber,
    reported_through: PayChannel,
) -> Result<PayChannel, CallbackError> {
    Ok(orders::channel(&payments.db, order_number)
        .await?
        .unwrap_or(reported_through))
}

//! WeChat Pay APIv3's notifications (direct mode): verified before anything in them is
//! read (timestamp, the key named by `Wechatpay-Serial`, the signature over the raw bytes,
//! then the AES-256-GCM resource), taken once per nonce, and then decided exactly as a
//! Cloud Hosting callback is: the same checks against the books, the same transitions.
//! Anything that does not verify changes nothing and is recorded.

use std::net::IpAddr;

use axum::http::HeaderMap;
use chrono::Utc;
use serde_json::json;
use shared::history::{Actor, AnomalyKind};
use shared::lifecycle;
use shared::order::{OrderNumber, PayChannel};

use super::payment_result::{verify_and_record, CallbackError};
use super::refund_result::{handle_refund_result, RefundNotice, RefundResult};
use super::rejections::keep_rejection;
use super::Payments;
use crate::wechat::v3::{NoticeError, TransactionResource, VerifiedNotice};
use crate::wechat::{Attach, MerchantIds, PaymentReport};

/// What WeChat is told.
#[derive(Debug, PartialEq, Eq)]
pub enum NoticeOutcome {
    /// Recorded (or a copy of what is): 204, do not send it again.
    Taken,
    /// Not believed, or not for this route: a 4xx. Nothing was changed. WeChat sends it
    /// again on its schedule, so a notification refused for a key not yet configured is
    /// taken once the operator adds it.
    Refused(&'static str),
    /// Believed but not recorded now: a 5xx, send it again.
    Later,
}

/// Which notifications a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Payment,
    Refund,
}

pub async fn take_notice(
    payments: &Payments,
    kind: NoticeKind,
    source: IpAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<NoticeOutcome, sqlx::Error> {
    let Some((channel, verifier)) = payments.wechat.notification_verifier() else {
        return Ok(NoticeOutcome::Refused("APIv3 is not configured here"));
    };
    let notice = match verifier.verify(headers, body, Utc::now()) {
        Ok(notice) => notice,
        Err(error) => {
            let detail = json!({
                "reason": error.to_string(),
                "serial": header(headers, "wechatpay-serial"),
                "timestamp": header(headers, "wechatpay-timestamp"),
                "bodyBytes": body.len(),
            });
            tracing::warn!(%error, "APIv3 notification refused");
            record(
                payments,
                source,
                None,
                AnomalyKind::NotificationUnverified,
                detail,
            )
            .await?;
            return Ok(NoticeOutcome::Refused("the notification does not verify"));
        }
    };
    if !first_time(payments, &notice).await? {
        let detail =
            json!({"id": notice.id, "eventType": notice.event_type, "serial": notice.serial});
        tracing::warn!(id = %notice.id, "APIv3 notification replayed");
        record(
            payments,
            source,
            None,
            AnomalyKind::NotificationReplayed,
            detail,
        )
        .await?;
        return Ok(NoticeOutcome::Refused(
            "this notification was already taken",
        ));
    }
    let outcome = match kind {
        NoticeKind::Payment => take_payment(payments, channel, source, &notice).await,
        NoticeKind::Refund => take_refund(payments, channel, source, &notice).await,
    };
    if !matches!(outcome, Ok(NoticeOutcome::Taken)) {
        // Not settled: the same message may come again and must then be taken.
        forget(payments, &notice).await?;
    }
    outcome
}

async fn take_payment(
    payments: &Payments,
    channel: PayChannel,
    source: IpAddr,
    notice: &VerifiedNotice,
) -> Result<NoticeOutcome, sqlx::Error> {
    if notice.event_type != "TRANSACTION.SUCCESS" {
        return Ok(NoticeOutcome::Refused("not a payment result"));
    }
    let transaction = match notice.transaction() {
        Ok(transaction) => transaction,
        Err(error) => return unreadable(payments, source, notice, error, "payment").await,
    };
    let report = payment_report(channel, &transaction, notice);
    // Verified by WeChat Pay's signature: its source is trusted as the gateway's is.
    match verify_and_record(payments, None, source, true, &report).await {
        Ok(()) => Ok(NoticeOutcome::Taken),
        Err(CallbackError::Storage(error)) => Err(error),
        Err(CallbackError::Unconfirmed(error)) => {
            tracing::warn!(%error, "payment notification not confirmed yet; asking for it again");
            Ok(NoticeOutcome::Later)
        }
    }
}

/// The transaction in the shape every channel's results share.
fn payment_report(
    channel: PayChannel,
    t: &TransactionResource,
    notice: &VerifiedNotice,
) -> PaymentReport {
    let merchant = match channel {
        PayChannel::Partner => MerchantIds {
            merchant: t.sub_mchid.clone(),
            service_provider: t.sp_mchid.clone(),
            app: t.sub_appid.clone(),
        },
        _ => MerchantIds {
            merchant: t.mchid.clone(),
            service_provider: None,
            app: t.appid.clone(),
        },
    };
    // An amount in another currency is no amount of ours.
    let in_yuan = t.amount.currency.as_deref().is_none_or(|c| c == "CNY");
    PaymentReport {
        channel,
        out_trade_no: Some(t.out_trade_no.clone()),
        succeeded: t.trade_state == "SUCCESS",
        merchant,
        attach: Attach::read(t.attach.as_deref()),
        transaction_id: t.transaction_id.clone(),
        total_fee: in_yuan.then_some(t.amount.total),
        paid_at: t.success_time,
        detail: json!({
            "notificationId": notice.id,
            "serial": notice.serial,
            "outTradeNo": t.out_trade_no,
            "transactionId": t.transaction_id,
            "tradeState": t.trade_state,
            "total": t.amount.total,
            "currency": t.amount.currency,
            "mchid": t.mchid,
            "appid": t.appid,
            "spMchid": t.sp_mchid,
            "subMchid": t.sub_mchid,
        }),
    }
}

async fn take_refund(
    payments: &Payments,
    channel: PayChannel,
    source: IpAddr,
    notice: &VerifiedNotice,
) -> Result<NoticeOutcome, sqlx::Error> {
    if !notice.event_type.starts_with("REFUND.") {
        return Ok(NoticeOutcome::Refused("not a refund result"));
    }
    let refund = match notice.refund() {
        Ok(refund) => refund,
        Err(error) => return unreadable(payments, source, notice, error, "refund").await,
    };
    let Ok(order_number) = OrderNumber::parse(&refund.out_trade_no) else {
        let detail = json!({"id": notice.id, "outTradeNo": refund.out_trade_no});
        record(
            payments,
            source,
            None,
            AnomalyKind::RefundOrderMismatch,
            detail,
        )
        .await?;
        return Ok(NoticeOutcome::Taken);
    };
    // A refund result names no app: only its merchant ids can be compared.
    let app = payments.wechat.our_ids(channel).and_then(|ours| ours.app);
    let merchant = match channel {
        PayChannel::Partner => MerchantIds {
            merchant: refund.sub_mchid.clone(),
            service_provider: refund.sp_mchid.clone(),
            app,
        },
        _ => MerchantIds {
            merchant: refund.mchid.clone(),
            service_provider: None,
            app,
        },
    };
    let reported = RefundNotice {
        channel,
        merchant,
        out_trade_no: Some(&refund.out_trade_no),
        out_refund_no: Some(&refund.out_refund_no),
        source_trusted: true,
        body: notice.plaintext.clone(),
    };
    Ok(
        match handle_refund_result(payments, &order_number, source, &reported).await? {
            RefundResult::Handled => NoticeOutcome::Taken,
            RefundResult::Later => NoticeOutcome::Later,
        },
    )
}

/// A verified notification whose resource is not what its event says: nothing to decide,
/// recorded for a person.
async fn unreadable(
    payments: &Payments,
    source: IpAddr,
    notice: &VerifiedNotice,
    error: NoticeError,
    what: &str,
) -> Result<NoticeOutcome, sqlx::Error> {
    let detail = json!({"reason": error.to_string(), "id": notice.id, "resource": what});
    record(
        payments,
        source,
        None,
        AnomalyKind::NotificationUnverified,
        detail,
    )
    .await?;
    Ok(NoticeOutcome::Refused("the result is unreadable"))
}

/// Takes the nonce of a verified notification: false if it was taken before (a replay of
/// the same signed bytes). Nonces older than WeChat's five-minute validity are forgotten
/// here too: a message that old is refused by its timestamp anyway.
async fn first_time(payments: &Payments, notice: &VerifiedNotice) -> Result<bool, sqlx::Error> {
    let taken = sqlx::query_scalar!(
        r#"WITH forgotten AS (
               DELETE FROM wechat_notification_nonces
                WHERE received_at < now() - interval '10 minutes'
           )
           INSERT INTO wechat_notification_nonces (nonce) VALUES ($1)
           ON CONFLICT (nonce) DO NOTHING
           RETURNING true AS "taken!""#,
        notice.nonce,
    )
    .fetch_optional(&payments.db)
    .await?;
    Ok(taken.is_some())
}

async fn forget(payments: &Payments, notice: &VerifiedNotice) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM wechat_notification_nonces WHERE nonce = $1",
        notice.nonce
    )
    .execute(&payments.db)
    .await?;
    Ok(())
}

/// Recorded within the source's allowance of rejections ([`keep_rejection`]).
async fn record(
    payments: &Payments,
    source: IpAddr,
    order_number: Option<&str>,
    kind: AnomalyKind,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    metrics::counter!("payment_notifications_total", "outcome" => kind.as_str()).increment(1);
    if !keep_rejection(payments, source, kind).await? {
        return Ok(());
    }
    lifecycle::record_anomaly(
        &payments.db,
        order_number,
        kind,
        &Actor::WechatCallback,
        detail,
    )
    .await
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

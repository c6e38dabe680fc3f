//! Payments WeChat did not tell us about. The platform calls back only on success, and a
//! callback can be lost; so payment-api asks (`queryorder`) when the user looks at an
//! unpaid order and in a periodic sweep, and closes orders whose payment window is over
//! (`closeorder`) so that they can no longer be paid. A payment found this way is recorded
//! through the same single statement as a callback: one transition, one message.

use chrono::Utc;
use serde_json::json;
use shared::money::Fen;
use shared::order::OrderNumber;
use tokio_util::sync::CancellationToken;

use crate::context::ApiContext;
use crate::store::payments::{self, ConfirmedPayment, PaymentOutcome};
use crate::store::{anomalies, orders};
use crate::wechat::{CloseOutcome, WechatError};

/// Keeps a single payment-api instance sweeping at a time.
const SWEEP_LOCK: i64 = 0x656c_6966_6501;
const BATCH: i64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Wechat(#[from] WechatError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, PartialEq, Eq)]
pub enum QueryResult {
    /// WeChat says paid; what recording it did.
    Paid(PaymentOutcome),
    /// WeChat's `trade_state` (NOTPAY, USERPAYING, CLOSED...).
    NotPaid(String),
}

/// Asks WeChat whether the order was paid, and records the payment if it was.
pub async fn settle_by_query(
    ctx: &ApiContext,
    order_number: &OrderNumber,
    amount: Fen,
) -> Result<QueryResult, ReconcileError> {
    let queried = ctx.wechat.query_order(order_number).await;
    orders::mark_payment_checked(&ctx.db, order_number.as_str()).await?;
    let queried = queried?;
    if !queried.confirms(amount) {
        if queried.trade_state == "SUCCESS" {
            anomalies::record(
                &ctx.db,
                Some(order_number.as_str()),
                "query_amount_mismatch",
                json!({"totalFee": queried.total_fee, "expected": amount.get()}),
            )
            .await?;
        }
        return Ok(QueryResult::NotPaid(queried.trade_state));
    }
    let Some(transaction_id) = queried.transaction_id.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(QueryResult::NotPaid(
            "SUCCESS without a transaction id".into(),
        ));
    };
    let outcome = payments::confirm(
        &ctx.db,
        &ConfirmedPayment {
            order_number,
            transaction_id,
            amount,
            paid_at: Utc::now(),
            reported_by: "wechat-query",
        },
    )
    .await?;
    if outcome == PaymentOutcome::Recorded {
        ctx.outbox.wake();
        tracing::warn!(order_number = %order_number, alert = true, "payment found by query: its callback never came");
    }
    Ok(QueryResult::Paid(outcome))
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub queried: usize,
    pub found_paid: usize,
    pub closed: usize,
    pub skipped_locked: bool,
}

/// One round: ask about payments started a while ago, then close expired orders.
pub async fn sweep_once(ctx: &ApiContext) -> Result<SweepReport, ReconcileError> {
    let mut report = SweepReport::default();
    let mut lock = ctx.db.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(SWEEP_LOCK)
        .fetch_one(&mut *lock)
        .await?;
    if !locked {
        report.skipped_locked = true;
        return Ok(report);
    }
    let policy = &ctx.config.payments;

    for (number, amount) in orders::unpaid_to_query(&ctx.db, policy.query_after, BATCH).await? {
        let (Ok(order_number), Ok(amount)) = (OrderNumber::parse(&number), Fen::new(amount)) else {
            continue;
        };
        report.queried += 1;
        match settle_by_query(ctx, &order_number, amount).await {
            Ok(QueryResult::Paid(PaymentOutcome::Recorded)) => report.found_paid += 1,
            Ok(_) => {}
            Err(error) => tracing::warn!(order_number = %number, %error, "payment query failed"),
        }
    }

    for (number, amount, has_prepay) in
        orders::unpaid_older_than(&ctx.db, policy.window + policy.close_grace, BATCH).await?
    {
        let (Ok(order_number), Ok(amount)) = (OrderNumber::parse(&number), Fen::new(amount)) else {
            continue;
        };
        match close_expired(ctx, &order_number, amount, has_prepay).await {
            Ok(true) => report.closed += 1,
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(order_number = %number, %error, "closing an expired order failed")
            }
        }
    }
    lock.commit().await?;
    Ok(report)
}

/// Closes at WeChat first (an order never sent to WeChat has nothing to close there),
/// then here. `ORDERPAID` means the user paid after all: the order becomes paid instead.
async fn close_expired(
    ctx: &ApiContext,
    order_number: &OrderNumber,
    amount: Fen,
    has_prepay: bool,
) -> Result<bool, ReconcileError> {
    if has_prepay {
        match ctx.wechat.close_order(order_number).await? {
            CloseOutcome::Closed => {}
            CloseOutcome::AlreadyPaid => {
                settle_by_query(ctx, order_number, amount).await?;
                return Ok(false);
            }
        }
    }
    let closed = orders::close_unpaid(
        &ctx.db,
        order_number.as_str(),
        "payment-sweep",
        "payment window over",
        !has_prepay,
    )
    .await?;
    if closed {
        tracing::info!(order_number = %order_number, "expired order closed");
    }
    Ok(closed)
}

pub async fn run_sweeps(ctx: ApiContext, stop: CancellationToken) {
    let mut every = tokio::time::interval(ctx.config.payments.sweep_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        match sweep_once(&ctx).await {
            Ok(report) if report.queried + report.closed > 0 => {
                tracing::info!(?report, "payment sweep");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "payment sweep failed"),
        }
    }
}

//! Payments WeChat did not tell us about. The platform calls back only on success, and a
//! callback can be lost; so payment-api asks (`queryorder`) when the user looks at an
//! unpaid order and in a periodic round, and closes orders whose payment window is over
//! (`closeorder`) so that they can no longer be paid. A payment found this way is
//! recorded through the same transition as a callback: one transition, one message.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use shared::history::{Actor, AnomalyKind};
use shared::jobs::{Hold, RoundReport, Rounds};
use shared::lifecycle::{self, PaymentOutcome, ReportedPayment};
use shared::money::Fen;
use shared::order::{OrderNumber, PayChannel, PaymentStatus};
use shared::outbox::OutboxSignal;
use sqlx::PgPool;

use crate::config::PaymentPolicy;
use crate::store::orders::{self, UnpaidOrder};
use crate::wechat::{CloseOutcome, WechatError, WechatPay};

const BATCH: i64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Wechat(#[from] WechatError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, PartialEq, Eq)]
pub enum QueryResult {
    /// WeChat says paid; what recording it did.
    Paid(PaymentOutcome),
    /// Not paid (yet, or ever), as WeChat's state maps to ours.
    NotPaid(PaymentStatus),
}

/// What the watch needs, and nothing else.
pub struct PaymentWatch {
    pub db: PgPool,
    pub wechat: Arc<WechatPay>,
    pub outbox: OutboxSignal,
    pub policy: PaymentPolicy,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct WatchReport {
    pub queried: usize,
    pub found_paid: usize,
    pub closed: usize,
}

impl RoundReport for WatchReport {
    fn is_quiet(&self) -> bool {
        self.queried + self.closed == 0
    }
}

impl PaymentWatch {
    /// Asks WeChat whether the order was paid, and records the payment if it was.
    pub async fn settle_by_query(
        &self,
        channel: PayChannel,
        order_number: &OrderNumber,
        amount: Fen,
    ) -> Result<QueryResult, WatchError> {
        let queried = self.wechat.query_order(channel, order_number).await?;
        if !queried.confirms(amount) {
            if queried.status == PaymentStatus::Paid {
                lifecycle::record_anomaly(
                    &self.db,
                    Some(order_number.as_str()),
                    AnomalyKind::QueryAmountMismatch,
                    &Actor::WechatQuery,
                    json!({"totalFee": queried.total_fee, "expected": amount.get(),
                           "tradeState": queried.trade_state}),
                )
                .await?;
                return Ok(QueryResult::NotPaid(PaymentStatus::Unpaid));
            }
            return Ok(QueryResult::NotPaid(queried.status));
        }
        let Some(transaction_id) = queried.transaction_id.as_deref() else {
            return Ok(QueryResult::NotPaid(PaymentStatus::Unpaid));
        };
        let outcome = lifecycle::record_payment(
            &self.db,
            &ReportedPayment {
                order_number,
                transaction_id,
                amount,
                paid_at: queried.paid_at.unwrap_or_else(Utc::now),
                reported_by: Actor::WechatQuery,
            },
        )
        .await?;
        let payment = ReportedPayment {
            order_number,
            transaction_id,
            amount,
            paid_at: queried.paid_at.unwrap_or_else(Utc::now),
            reported_by: Actor::WechatQuery,
        };
        // WeChat itself says the money was taken: whatever stops it becoming a top-up is
        // money a person must give back.
        let anomaly = match &outcome {
            PaymentOutcome::Recorded => {
                self.outbox.wake();
                tracing::warn!(order_number = %order_number, alert = true, "payment found by query: its callback never came");
                None
            }
            PaymentOutcome::Closed => {
                lifecycle::record_payment_after_close(&self.db, &payment).await?;
                Some(AnomalyKind::PaidAfterClose)
            }
            PaymentOutcome::PaidWithAnotherTransaction { .. } => {
                Some(AnomalyKind::SecondTransaction)
            }
            PaymentOutcome::TransactionReused { .. } => Some(AnomalyKind::TransactionReused),
            PaymentOutcome::AlreadyRecorded
            | PaymentOutcome::AmountMismatch { .. }
            | PaymentOutcome::NotFound => None,
        };
        if let Some(kind) = anomaly {
            let detail =
                json!({"transactionId": transaction_id, "tradeState": queried.trade_state});
            lifecycle::record_anomaly(
                &self.db,
                Some(order_number.as_str()),
                kind,
                &Actor::WechatQuery,
                detail,
            )
            .await?;
        }
        Ok(QueryResult::Paid(outcome))
    }

    /// One round: ask about payments started a while ago, then close expired orders;
    /// stopped early once `hold` says the job's lock is lost.
    pub async fn round(&self, hold: &Hold) -> Result<WatchReport, WatchError> {
        let mut report = WatchReport::default();
        for order in orders::unpaid_to_query(&self.db, self.policy.query_after, BATCH).await? {
            if hold.is_lost() {
                return Ok(report);
            }
            // A read may have asked meanwhile.
            let asked_lately = !lifecycle::take_payment_check(
                &self.db,
                &order.order_number,
                self.policy.query_after,
            )
            .await?;
            if asked_lately {
                continue;
            }
            report.queried += 1;
            match self
                .settle_by_query(order.channel, &order.order_number, order.amount)
                .await
            {
                Ok(QueryResult::Paid(PaymentOutcome::Recorded)) => report.found_paid += 1,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(order_number = %order.order_number, %error, "payment query failed")
                }
            }
        }
        let expired_after = self.policy.window + self.policy.close_grace;
        for order in orders::unpaid_older_than(&self.db, expired_after, BATCH).await? {
            if hold.is_lost() {
                break;
            }
            match self.close_expired(&order).await {
                Ok(true) => report.closed += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(order_number = %order.order_number, %error, "closing an expired order failed")
                }
            }
        }
        Ok(report)
    }

    /// Closes at WeChat first (an order never sent to WeChat has nothing to close there),
    /// then here. `ORDERPAID` means the user paid after all: the order becomes paid instead.
    async fn close_expired(&self, order: &UnpaidOrder) -> Result<bool, WatchError> {
        let (order_number, amount, has_prepay) =
            (&order.order_number, order.amount, order.has_prepay);
        if has_prepay {
            match self.wechat.close_order(order.channel, order_number).await? {
                CloseOutcome::Closed => {}
                CloseOutcome::AlreadyPaid => {
                    self.settle_by_query(order.channel, order_number, amount)
                        .await?;
                    return Ok(false);
                }
            }
        }
        let closed = lifecycle::close_unpaid(
            &self.db,
            order_number,
            &Actor::PaymentWatch,
            "payment window over",
            !has_prepay,
        )
        .await?;
        if closed {
            tracing::info!(order_number = %order_number, "expired order closed");
        }
        Ok(closed)
    }
}

impl Rounds for PaymentWatch {
    type Report = WatchReport;
    type Error = WatchError;

    async fn round(&self, hold: &Hold) -> Result<WatchReport, WatchError> {
        PaymentWatch::round(self, hold).await
    }
}

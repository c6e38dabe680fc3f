//! Fulfilling one paid order: claim it, send the top-up, record what happened.
//!
//! The rule: a request is sent again only when it provably never reached Unitel. A timeout
//! or a dropped connection after sending leaves the order `unknown`: Unitel may have
//! credited the number, and sending again could credit it twice.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use shared::lifecycle::{self, ClaimedOrder, Outcome};
use shared::message::OrderPaid;
use shared::order::{OrderNumber, RechargeType};
use shared::unitel::{TopUp, TopUpReceipt, UnitelClient, UnitelError};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store;

/// How long a known outcome is retried into the database before the worker gives up (the
/// order is then left `processing` with its request marked sent: never re-sent).
const RECORD_RETRY_FOR: Duration = Duration::from_secs(60);

/// What to tell RabbitMQ about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The outcome is stored (or there was nothing to do).
    Ack,
    /// Not processed; deliver again later (it goes to the dead-letter queue after the
    /// queue's delivery limit).
    Requeue,
    /// Can never be processed: straight to the dead-letter queue for a person.
    DeadLetter,
}

pub struct Fulfiller {
    /// Cancelled on SIGTERM: waiting to retry stops, and the order is released.
    pub shutdown: CancellationToken,
    pub db: PgPool,
    pub unitel: Arc<UnitelClient>,
    pub worker_id: String,
    pub claim_stale_after: Duration,
    pub retry_for: Duration,
}

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Unitel(#[from] UnitelError),
    #[error("the claim was taken over before sending")]
    ClaimLost,
    #[error("the worker is stopping: nothing was sent")]
    Stopping,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl Fulfiller {
    pub async fn process(&self, message: &OrderPaid) -> Result<Disposition, sqlx::Error> {
        let order_number = &message.order_number;
        if self.shutdown.is_cancelled() {
            return Ok(Disposition::Requeue);
        }
        let Some(order) = lifecycle::claim(
            &self.db,
            order_number,
            &self.worker_id,
            self.claim_stale_after,
        )
        .await?
        else {
            return self.explain_refused_claim(order_number).await;
        };
        tracing::info!(order_number = %order_number, "claimed");

        let result = self.send_with_retries(&order).await;
        let unrecognised;
        let outcome = match &result {
            Ok(receipt) => Outcome::Success(receipt),
            Err(AttemptError::Unitel(UnitelError::Rejected { code, message })) => {
                Outcome::Failed { code, message }
            }
            Err(AttemptError::Unitel(UnitelError::Unknown(reason))) => {
                Outcome::Unknown { reason, seq: None }
            }
            Err(AttemptError::Unitel(UnitelError::Pending { seq })) => Outcome::Unknown {
                reason: "Unitel accepted the top-up without finishing it",
                seq: seq.as_deref(),
            },
            Err(AttemptError::Unitel(error @ UnitelError::Unrecognised { seq, .. })) => {
                unrecognised = error.to_string();
                Outcome::Unknown {
                    reason: &unrecognised,
                    seq: seq.as_deref(),
                }
            }
            Err(AttemptError::Unitel(UnitelError::NotSent(reason))) => {
                tracing::warn!(order_number = %order_number, %reason, "Unitel unreachable; order released");
                lifecycle::release(&self.db, &order.order_number, &self.worker_id, reason).await?;
                return Ok(Disposition::Requeue);
            }
            Err(AttemptError::Stopping) => {
                tracing::info!(order_number = %order_number, "stopping before sending; order released");
                lifecycle::release(
                    &self.db,
                    &order.order_number,
                    &self.worker_id,
                    "the worker stopped before sending",
                )
                .await?;
                return Ok(Disposition::Requeue);
            }
            Err(AttemptError::ClaimLost) => {
                tracing::warn!(order_number = %order_number, "claim taken over before sending; leaving it");
                return Ok(Disposition::Ack);
            }
            Err(AttemptError::Database(error)) => {
                // The sent marker may or may not be set: whoever looks next sees the truth in
                // the row, and a set marker is never sent again.
                tracing::error!(order_number = %order_number, %error, "database failed around the Unitel call");
                return Ok(Disposition::Requeue);
            }
        };
        metrics::counter!("recharges_total", "outcome" => outcome.status().as_str()).increment(1);
        match &outcome {
            Outcome::Success(receipt) => {
                tracing::info!(order_number = %order_number, seq = ?receipt.seq, "credited")
            }
            Outcome::Failed { code, message } => {
                tracing::warn!(order_number = %order_number, %code, %message, "Unitel refused the top-up")
            }
            Outcome::Unknown { reason, .. } => {
                // A person must reconcile this one with Unitel.
                tracing::error!(order_number = %order_number, %reason, alert = true, "top-up outcome unknown")
            }
        }
        // The outcome exists only in memory now: a database hiccup must not lose it.
        let recorded = (|| lifecycle::record_outcome(&self.db, &order.order_number, &self.worker_id, &outcome))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(2))
                    .with_max_times(usize::MAX)
                    .with_total_delay(Some(RECORD_RETRY_FOR)),
            )
            .sleep(tokio::time::sleep)
            .notify(|e, after| {
                tracing::warn!(order_number = %order.order_number, error = %e, retry_in = ?after, "cannot record the outcome yet");
            })
            .await?;
        if !recorded {
            tracing::error!(order_number = %order_number, "outcome not recorded: the order changed hands");
        }
        Ok(Disposition::Ack)
    }

    async fn explain_refused_claim(
        &self,
        order_number: &OrderNumber,
    ) -> Result<Disposition, sqlx::Error> {
        match store::state(&self.db, order_number).await? {
            None => {
                tracing::error!(order_number = %order_number, "OrderPaid for an order that does not exist");
                Ok(Disposition::DeadLetter)
            }
            Some(state) => {
                tracing::info!(
                    order_number = %order_number,
                    payment_status = %state.payment_status,
                    recharge_status = %state.recharge_status,
                    holder = ?state.recharge_worker,
                    "already claimed or finished; skipping"
                );
                Ok(Disposition::Ack)
            }
        }
    }

    /// The Unitel call a paid order's product takes.
    fn top_up_for(order: &ClaimedOrder) -> TopUp {
        match order.recharge_type {
            RechargeType::Voice => TopUp::Card {
                code: order.product_code.clone(),
            },
            RechargeType::Data => TopUp::DataPackage {
                code: order.product_code.clone(),
            },
            RechargeType::Postpaid => TopUp::BillPayment,
        }
    }

    /// Retries only `NotSent`, with exponential backoff and jitter, for at most `retry_for`.
    async fn send_with_retries(&self, order: &ClaimedOrder) -> Result<TopUpReceipt, AttemptError> {
        let top_up = Self::top_up_for(order);
        let attempt = || async {
            // Authentication first: a slow /auth must not count as time after sending.
            self.unitel.ensure_token().await?;
            // A stop asked for meanwhile: send nothing new, so that what is in flight when
            // the grace period starts is all there is to wait for.
            if self.shutdown.is_cancelled() {
                return Err(AttemptError::Stopping);
            }
            if !lifecycle::mark_sent(&self.db, &order.order_number, &self.worker_id).await? {
                return Err(AttemptError::ClaimLost);
            }
            let started = std::time::Instant::now();
            // Our order number is the `journal_id`, so Unitel's records and ours share a key.
            let result = self
                .unitel
                .top_up(&top_up, &order.msisdn, &order.order_number, order.price)
                .await;
            let outcome = match &result {
                Ok(_) => "success",
                Err(UnitelError::Rejected { .. }) => "rejected",
                Err(UnitelError::NotSent(_)) => "not_sent",
                Err(UnitelError::Unknown(_)) => "unknown",
                Err(UnitelError::Pending { .. }) => "pending",
                Err(UnitelError::Unrecognised { .. }) => "unrecognised",
            };
            metrics::counter!("unitel_calls_total", "outcome" => outcome).increment(1);
            metrics::histogram!("unitel_call_duration_seconds", "outcome" => outcome)
                .record(started.elapsed().as_secs_f64());
            match result {
                Err(UnitelError::NotSent(reason)) => {
                    lifecycle::unmark_sent(&self.db, &order.order_number, &self.worker_id).await?;
                    Err(UnitelError::NotSent(reason).into())
                }
                other => other.map_err(AttemptError::from),
            }
        };
        let shutdown = self.shutdown.clone();
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(usize::MAX)
                    .with_total_delay(Some(self.retry_for))
                    .with_jitter(),
            )
            .sleep(move |delay| {
                let shutdown = shutdown.clone();
                async move {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            })
            .when(|e| {
                matches!(e, AttemptError::Unitel(UnitelError::NotSent(_)))
                    && !self.shutdown.is_cancelled()
            })
            .notify(|e, after| {
                tracing::warn!(order_number = %order.order_number, error = %e, retry_in = ?after, "Unitel not reached; retrying");
            })
            .await
    }
}

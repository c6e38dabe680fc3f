//! Fulfilling one paid order: claim it under this process's lease, send the top-up,
//! record what happened.
//!
//! The rule: a request is sent again only when it provably never reached Unitel. A timeout
//! or a dropped connection after sending leaves the order `unknown`: Unitel may have
//! credited the number, and sending again could credit it twice. And a request is sent
//! only while the claim is this lease's and the lease is live, checked in the statement
//! that marks it sent, once the token is in hand, and again on the monotonic clock right
//! before the request is written: a worker that stalled, or whose order someone else took
//! over, sends nothing.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde_json::json;
use shared::history::{Actor, AnomalyKind};
use shared::lifecycle::{self, ClaimedOrder, LeaseId, RechargeOutcome, WorkerId};
use shared::message::OrderPaid;
use shared::order::{OrderNumber, RechargeStatus, RechargeType};
use shared::unitel::{TopUp, TopUpReceipt, UnitelClient, UnitelError};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::in_hand::InHand;
use crate::lease::Lease;

/// How long a known outcome is retried into the database before the worker gives up (the
/// order is then left `processing` with its request marked sent: never re-sent).
const RECORD_RETRY_FOR: Duration = Duration::from_secs(60);

/// Retrying a write the worker must not lose, for up to [`RECORD_RETRY_FOR`].
fn database_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(usize::MAX)
        .with_total_delay(Some(RECORD_RETRY_FOR))
}

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

/// Less than this left on the lease once the order is marked sent, and the request is not
/// sent (the order is given back): renewals are failing, or the database answered slowly,
/// and the lease could expire before the request is out.
const MIN_LEASE_LEFT_TO_SEND: Duration = Duration::from_millis(1000);

/// How long a message is held while this worker has no live lease, before it goes back to
/// the queue for another worker.
const HOLD_WITHOUT_LEASE: Duration = Duration::from_secs(30);

pub struct Fulfiller {
    /// Cancelled on SIGTERM: waiting to retry stops, and the order is released.
    pub shutdown: CancellationToken,
    pub db: PgPool,
    pub unitel: Arc<UnitelClient>,
    pub worker_id: WorkerId,
    pub lease: Arc<Lease>,
    /// How long a lease lasts unrenewed (`WORKER_LEASE_MS`): the longest a redelivered
    /// order waits for its holder to be known dead.
    pub lease_lasts: Duration,
    /// `UNITEL_TIMEOUT_MS`: how long a request written to Unitel can be on its way.
    pub unitel_timeout: Duration,
    pub retry_for: Duration,
    /// The orders this process's tasks are working on.
    pub in_hand: InHand,
}

/// A claim this worker holds: the order and the lease it was made under.
struct Claim {
    order: ClaimedOrder,
    lease: LeaseId,
}

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Unitel(#[from] UnitelError),
    #[error("the claim was taken over before sending")]
    ClaimLost,
    #[error("too little lease left to send: nothing sent")]
    LeaseTooShort,
    #[error("the worker is stopping: nothing was sent")]
    Stopping,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl Fulfiller {
    pub async fn process(&self, message: &OrderPaid) -> Result<Disposition, sqlx::Error> {
        self.fulfil(&message.order_number).await
    }

    /// Claims `order_number` and sends its top-up: for a message, or for a claim the sweep
    /// has just released (whose message may be gone).
    pub async fn fulfil(&self, order_number: &OrderNumber) -> Result<Disposition, sqlx::Error> {
        if self.shutdown.is_cancelled() {
            return Ok(Disposition::Requeue);
        }
        let _held = self.in_hand.hold(order_number);
        let Some(lease) = self.wait_for_lease().await else {
            tracing::warn!(order_number = %order_number, "no live lease; the message goes back");
            return Ok(Disposition::Requeue);
        };
        let claim = match lifecycle::claim(&self.db, order_number, &self.worker_id, lease).await? {
            Some(order) => Claim { order, lease },
            None => match self.take_over(order_number, lease).await? {
                Ok(claim) => claim,
                Err(disposition) => return Ok(disposition),
            },
        };
        let order = &claim.order;
        tracing::info!(order_number = %order_number, lease = lease.get(), "claimed");

        let result = self.send_with_retries(&claim).await;
        let unrecognised;
        let outcome = match &result {
            Ok(receipt) => RechargeOutcome::Success(receipt),
            Err(AttemptError::Unitel(UnitelError::Rejected { code, message })) => {
                RechargeOutcome::Failed { code, message }
            }
            Err(AttemptError::Unitel(UnitelError::Unknown(reason))) => {
                RechargeOutcome::Unknown { reason, seq: None }
            }
            Err(AttemptError::Unitel(UnitelError::Pending { seq })) => RechargeOutcome::Unknown {
                reason: "Unitel accepted the top-up without finishing it",
                seq: seq.as_deref(),
            },
            Err(AttemptError::Unitel(error @ UnitelError::Unrecognised { seq, .. })) => {
                unrecognised = error.to_string();
                RechargeOutcome::Unknown {
                    reason: &unrecognised,
                    seq: seq.as_deref(),
                }
            }
            Err(AttemptError::Unitel(UnitelError::NotSent(reason))) => {
                tracing::warn!(order_number = %order_number, %reason, "Unitel unreachable; order released");
                self.give_back(&claim, reason).await?;
                return Ok(Disposition::Requeue);
            }
            Err(AttemptError::LeaseTooShort) => {
                // Marked sent, then unsent: nobody else may touch a claim under our live
                // lease, so it goes back now rather than wait for this process to end.
                tracing::warn!(order_number = %order_number, "too little lease left to send; order released");
                self.give_back(&claim, "too little lease left to send")
                    .await?;
                // By then the lease is renewed or gone: delivered again at once, the message
                // would meet the same short lease and spend another of its deliveries.
                tokio::select! {
                    _ = tokio::time::sleep(MIN_LEASE_LEFT_TO_SEND) => {}
                    _ = self.shutdown.cancelled() => {}
                }
                return Ok(Disposition::Requeue);
            }
            Err(AttemptError::Stopping) => {
                tracing::info!(order_number = %order_number, "stopping before sending; order released");
                self.give_back(&claim, "the worker stopped before sending")
                    .await?;
                return Ok(Disposition::Requeue);
            }
            Err(AttemptError::ClaimLost) => {
                // Nothing was sent. Delivered again, the message finds the order taken over
                // by a live worker (and is acked), or abandoned by our expired lease (and is
                // claimed anew). Still under our lease (a renewal that was slow to commit can
                // bring an expired lease back), it is given back: that changes nothing once
                // someone else holds it.
                tracing::warn!(order_number = %order_number, "claim no longer ours before sending; nothing sent");
                self.give_back(&claim, "the lease ran out before sending")
                    .await?;
                return Ok(Disposition::Requeue);
            }
            Err(AttemptError::Database(error)) => {
                // Only marking (or unmarking) the order failed, so nothing reached Unitel,
                // though the mark may have been written. Nobody else may touch a claim under
                // our live lease: give it back, or it waits for this process to end.
                tracing::error!(order_number = %order_number, %error, "database failed before sending; nothing sent");
                self.give_back(&claim, "the database failed before sending")
                    .await?;
                return Ok(Disposition::Requeue);
            }
        };
        metrics::counter!("recharges_total", "outcome" => outcome.status().as_str()).increment(1);
        match &outcome {
            RechargeOutcome::Success(receipt) => {
                tracing::info!(order_number = %order_number, seq = ?receipt.seq, "credited")
            }
            RechargeOutcome::Failed { code, message } => {
                tracing::warn!(order_number = %order_number, %code, %message, "Unitel refused the top-up")
            }
            RechargeOutcome::Unknown { reason, .. } => {
                // A person must reconcile this one with Unitel.
                tracing::error!(order_number = %order_number, %reason, alert = true, "top-up outcome unknown")
            }
        }
        // The outcome exists only in memory now: a database hiccup must not lose it.
        let recorded = (|| {
            lifecycle::record_outcome(&self.db, &order.order_number, &self.worker_id, claim.lease, &outcome)
        })
            .retry(database_backoff())
            .sleep(tokio::time::sleep)
            .notify(|e, after| {
                tracing::warn!(order_number = %order.order_number, error = %e, retry_in = ?after, "cannot record the outcome yet");
            })
            .await?;
        if !recorded {
            // This worker was cut off long enough for its order to be settled otherwise: what
            // Unitel said now must reach a person.
            tracing::error!(order_number = %order_number, outcome = %outcome.status(), alert = true, "outcome not recorded: the order was settled meanwhile");
            self.record_late_outcome(order_number, &outcome).await?;
        }
        Ok(Disposition::Ack)
    }

    /// What Unitel said about an order no longer ours to record, kept as an anomaly of the
    /// order (which makes it an alert naming it), through a database hiccup like an outcome.
    async fn record_late_outcome(
        &self,
        order_number: &OrderNumber,
        outcome: &RechargeOutcome<'_>,
    ) -> Result<(), sqlx::Error> {
        let said = match outcome {
            RechargeOutcome::Success(receipt) => json!({
                "outcome": "success", "seq": receipt.seq, "svId": receipt.sv_id, "vat": receipt.vat,
            }),
            RechargeOutcome::Failed { code, message } => {
                json!({"outcome": "failed", "code": code, "message": message})
            }
            RechargeOutcome::Unknown { reason, seq } => {
                json!({"outcome": "unknown", "message": reason, "seq": seq})
            }
        };
        let worker = Actor::Worker(self.worker_id.to_string());
        (|| {
            lifecycle::record_anomaly(
                &self.db,
                Some(order_number.as_str()),
                AnomalyKind::LateTopUpOutcome,
                &worker,
                said.clone(),
            )
        })
        .retry(database_backoff())
        .sleep(tokio::time::sleep)
        .notify(|e, after| {
            tracing::warn!(%order_number, error = %e, retry_in = ?after, "cannot record the late outcome yet");
        })
        .await
    }

    /// Gives an order nothing was sent for back (`pending`), retrying through a database
    /// hiccup like an outcome: a claim under this live lease that nobody works on would
    /// otherwise wait for the process to end.
    async fn give_back(&self, claim: &Claim, why: &str) -> Result<(), sqlx::Error> {
        let order_number = &claim.order.order_number;
        (|| async {
            lifecycle::unmark_sent(&self.db, order_number, claim.lease).await?;
            lifecycle::release(&self.db, order_number, &self.worker_id, claim.lease, why).await
        })
        .retry(database_backoff())
        .sleep(tokio::time::sleep)
        .notify(|e, after| {
            tracing::warn!(%order_number, error = %e, retry_in = ?after, "cannot give the order back yet");
        })
        .await
    }

    /// The lease's id once it is live. Renewals failing (the database restarting) claim
    /// nothing, but the message is held meanwhile rather than sent back: every return
    /// counts towards the queue's delivery limit, past which it is dead-lettered. `None`
    /// after [`HOLD_WITHOUT_LEASE`], or when stopping.
    async fn wait_for_lease(&self) -> Option<LeaseId> {
        let started = tokio::time::Instant::now();
        loop {
            if let Some(lease) = self.lease.live() {
                return Some(lease);
            }
            if started.elapsed() >= HOLD_WITHOUT_LEASE || self.shutdown.is_cancelled() {
                return None;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = self.shutdown.cancelled() => return None,
            }
        }
    }

    /// The claim was refused. If the order is held under a lease that may belong to a dead
    /// worker (RabbitMQ hands a dead consumer's messages to the living at once), wait for
    /// that lease to expire — at most `WORKER_LEASE_MS` — and take the order over: claim it
    /// if nothing was sent, declare it `unknown` if something was. Otherwise there is
    /// nothing to do (finished, or its holder is alive and will finish it).
    async fn take_over(
        &self,
        order_number: &OrderNumber,
        lease: LeaseId,
    ) -> Result<Result<Claim, Disposition>, sqlx::Error> {
        let Some(state) = lifecycle::claim_state(&self.db, order_number).await? else {
            tracing::error!(order_number = %order_number, "OrderPaid for an order that does not exist");
            return Ok(Err(Disposition::DeadLetter));
        };
        if state.recharge_status != RechargeStatus::Processing {
            tracing::info!(order_number = %order_number, payment_status = %state.payment_status,
                recharge_status = %state.recharge_status, "finished, or not paid; skipping");
            return Ok(Err(Disposition::Ack));
        }
        if let Some(left) = state.holder_lease_left {
            let wait =
                (left + Duration::from_millis(250)).min(self.lease_lasts + Duration::from_secs(1));
            tracing::info!(order_number = %order_number, holder = ?state.recharge_worker, ?wait, "held: waiting to see whether its worker is alive");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.shutdown.cancelled() => return Ok(Err(Disposition::Requeue)),
            }
        }
        if let Some(order) =
            lifecycle::claim(&self.db, order_number, &self.worker_id, lease).await?
        {
            tracing::warn!(order_number = %order_number, from = ?state.recharge_worker, "took over a claim its worker abandoned before sending");
            return Ok(Ok(Claim { order, lease }));
        }
        let me = Actor::Worker(self.worker_id.to_string());
        if !lifecycle::abandon_sent_claims(&self.db, Some(order_number), &me, None)
            .await?
            .is_empty()
        {
            tracing::error!(order_number = %order_number, from = ?state.recharge_worker, alert = true,
                "top-up outcome unknown: its worker stopped after sending");
        }
        Ok(Err(Disposition::Ack))
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
    async fn send_with_retries(&self, claim: &Claim) -> Result<TopUpReceipt, AttemptError> {
        let order = &claim.order;
        let top_up = Self::top_up_for(order);
        let attempt = || async {
            // The token first: nothing after marking the order sent may wait on /auth.
            let token = self.unitel.token().await?;
            // A stop asked for meanwhile: send nothing new, so that what is in flight when
            // the grace period starts is all there is to wait for.
            if self.shutdown.is_cancelled() {
                return Err(AttemptError::Stopping);
            }
            // The fence: marked sent only if the claim is still ours and our lease live. The
            // lease's end is counted from before asking: an answer that was slow to come
            // (a slow database, a paused process) leaves less than the database said.
            let asked_at = std::time::Instant::now();
            let lease_ends = match lifecycle::mark_sent(
                &self.db,
                &order.order_number,
                claim.lease,
                self.unitel_timeout,
            )
            .await?
            {
                None => return Err(AttemptError::ClaimLost),
                Some(left) => asked_at + left,
            };
            if lease_ends.saturating_duration_since(std::time::Instant::now())
                < MIN_LEASE_LEFT_TO_SEND
            {
                return Err(AttemptError::LeaseTooShort);
            }
            let started = std::time::Instant::now();
            // Our order number is the `journal_id`, so Unitel's records and ours share a key.
            let result = self
                .unitel
                .top_up(
                    &token,
                    &top_up,
                    &order.msisdn,
                    &order.order_number,
                    order.price,
                    lease_ends,
                )
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
                    lifecycle::unmark_sent(&self.db, &order.order_number, claim.lease).await?;
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

//! The worker's periodic sweep, run by one worker at a time (an advisory lock), so that no
//! paid order is left without an outcome whatever crashed:
//!
//! 1. a claim that went stale before anything was sent is released (safe to send later);
//! 2. a claim that went stale after the request may have gone out becomes `unknown`;
//! 3. a paid order still `pending` long after payment (its message lost, dead-lettered or
//!    never published) is put back on the queue through the outbox;
//! 4. an `unknown` order whose `seq` Unitel gave us is settled with
//!    `check_transaction_result`.

use std::sync::Arc;
use std::time::Duration;

use shared::unitel::{TransactionStatus, UnitelClient};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const SWEEP_LOCK: i64 = 0x656c_6966_6502;
const BATCH: i64 = 200;

pub struct Sweeper {
    pub db: PgPool,
    pub unitel: Arc<UnitelClient>,
    pub worker_id: String,
    pub every: Duration,
    pub claim_stale_after: Duration,
    pub requeue_after: Duration,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub released: u64,
    pub made_unknown: u64,
    pub requeued: i64,
    pub reconciled: u64,
    pub skipped_locked: bool,
}

impl Sweeper {
    pub async fn run(self, stop: CancellationToken) {
        let mut every = tokio::time::interval(self.every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            match self.sweep_once().await {
                Ok(report) if report != SweepReport::default() && !report.skipped_locked => {
                    tracing::info!(?report, "recharge sweep");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "recharge sweep failed"),
            }
        }
    }

    pub async fn sweep_once(&self) -> Result<SweepReport, sqlx::Error> {
        let mut report = SweepReport::default();
        let mut lock = self.db.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(SWEEP_LOCK)
            .fetch_one(&mut *lock)
            .await?;
        if !locked {
            report.skipped_locked = true;
            return Ok(report);
        }
        let actor = format!("sweep:{}", self.worker_id);
        let stale = self.claim_stale_after.as_secs_f64();

        report.released = sqlx::query(
            "WITH released AS (
                UPDATE orders
                   SET recharge_status = 'pending', recharge_at = NULL, recharge_worker = NULL,
                       updated_at = now()
                 WHERE payment_status = 'paid' AND recharge_status = 'processing'
                   AND recharge_sent_at IS NULL
                   AND recharge_at < now() - make_interval(secs => $1)
                RETURNING order_number
             )
             INSERT INTO order_events (order_number, event, actor, detail)
             SELECT order_number, 'released', $2,
                    jsonb_build_object('reason', 'claim went stale before anything was sent')
             FROM released",
        )
        .bind(stale)
        .bind(&actor)
        .execute(&self.db)
        .await?
        .rows_affected();

        let lost: Vec<String> = sqlx::query_scalar(
            "WITH lost AS (
                UPDATE orders
                   SET recharge_status = 'unknown', recharged_at = now(), updated_at = now(),
                       recharge_error_message = 'the worker stopped after sending; outcome unknown'
                 WHERE payment_status = 'paid' AND recharge_status = 'processing'
                   AND recharge_sent_at < now() - make_interval(secs => $1)
                RETURNING order_number
             ), event AS (
                INSERT INTO order_events (order_number, event, actor, detail)
                SELECT order_number, 'unknown', $2,
                       jsonb_build_object('reason', 'the worker stopped after sending')
                FROM lost
             )
             SELECT order_number FROM lost",
        )
        .bind(stale)
        .bind(&actor)
        .fetch_all(&self.db)
        .await?;
        for order_number in &lost {
            tracing::error!(%order_number, alert = true, "top-up outcome unknown: the worker stopped after sending");
        }
        report.made_unknown = lost.len() as u64;

        report.requeued = sqlx::query_scalar(
            "WITH due AS (
                SELECT order_number FROM orders
                 WHERE payment_status = 'paid' AND recharge_status = 'pending'
                   AND paid_at < now() - make_interval(secs => $1)
                   AND (requeued_at IS NULL OR requeued_at < now() - make_interval(secs => $1))
                 ORDER BY paid_at LIMIT $2
                 FOR UPDATE SKIP LOCKED
             ), marked AS (
                UPDATE orders o SET requeued_at = now(), requeue_count = o.requeue_count + 1
                  FROM due WHERE o.order_number = due.order_number
                RETURNING o.order_number, o.requeue_count, o.amount_fen, o.transaction_id, o.paid_at
             ), queued AS (
                INSERT INTO outbox (idempotency_key, order_number, routing_key, payload)
                SELECT 'order-paid:' || order_number || ':requeue:' || requeue_count, order_number,
                       'order.paid',
                       jsonb_build_object('version', 1, 'orderNumber', order_number,
                                          'amountFen', amount_fen, 'transactionId', transaction_id,
                                          'paidAt', paid_at)
                FROM marked
                ON CONFLICT (idempotency_key) DO NOTHING
             ), event AS (
                INSERT INTO order_events (order_number, event, actor)
                SELECT order_number, 'requeued', $3 FROM marked
             )
             SELECT count(*) FROM marked",
        )
        .bind(self.requeue_after.as_secs_f64())
        .bind(BATCH)
        .bind(&actor)
        .fetch_one(&self.db)
        .await?;

        report.reconciled = self.reconcile_unknown(&actor).await?;
        lock.commit().await?;
        Ok(report)
    }

    /// Asks Unitel about `unknown` orders that have a `seq`, at most once per requeue period.
    async fn reconcile_unknown(&self, actor: &str) -> Result<u64, sqlx::Error> {
        let candidates: Vec<(String, String)> = sqlx::query_as(
            "UPDATE orders SET reconciled_at = now()
              WHERE order_number IN (
                SELECT order_number FROM orders
                 WHERE recharge_status = 'unknown' AND seq_id IS NOT NULL
                   AND (reconciled_at IS NULL OR reconciled_at < now() - make_interval(secs => $1))
                 LIMIT $2)
             RETURNING order_number, seq_id",
        )
        .bind(self.requeue_after.as_secs_f64())
        .bind(BATCH)
        .fetch_all(&self.db)
        .await?;
        let mut settled = 0;
        for (order_number, seq) in candidates {
            let (status, message) = match self.unitel.transaction_status(&seq).await {
                Ok(TransactionStatus::Success) => ("success", None),
                Ok(TransactionStatus::Failed { message }) => ("failed", Some(message)),
                Ok(TransactionStatus::Pending) => continue,
                Ok(TransactionStatus::Unrecognised(status)) => {
                    tracing::warn!(%order_number, %status, "check_transaction_result gave no verdict");
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%order_number, %error, "check_transaction_result failed");
                    continue;
                }
            };
            settled += sqlx::query(
                "WITH settled AS (
                    UPDATE orders
                       SET recharge_status = $2, recharge_error_message = $3, updated_at = now()
                     WHERE order_number = $1 AND recharge_status = 'unknown'
                    RETURNING order_number
                 )
                 INSERT INTO order_events (order_number, event, actor, detail)
                 SELECT order_number, $2, $4, jsonb_build_object('reconciled', true, 'seq', $5::text)
                 FROM settled",
            )
            .bind(&order_number)
            .bind(status)
            .bind(message)
            .bind(actor)
            .bind(&seq)
            .execute(&self.db)
            .await?
            .rows_affected();
            tracing::info!(%order_number, status, "unknown top-up reconciled with Unitel");
        }
        Ok(settled)
    }
}

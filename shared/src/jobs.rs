//! Background jobs that must run in one process at a time, however many instances are
//! deployed: each holds a PostgreSQL advisory lock of its own while it works. A process
//! that finds the lock taken skips the round; the holder's crash releases the lock with
//! its connection. The holder touches the lock while its round runs, however long; a
//! holder that stops touching it (frozen, cut off) loses it after [`LOCK_IDLE_LIMIT`], and
//! its round, if it still runs, stops before sending anything more ([`Hold`]).

use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Every exclusive job, each with its own lock. The keys only have to differ from each
/// other and from anything else taking advisory locks in the same database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExclusiveJob {
    /// payment-api: lost callbacks and expired orders.
    PaymentWatch,
    /// recharge-worker: stale claims, lost messages, unknown top-ups with a seq.
    RechargeSweep,
    /// payment-api: sending refunds and settling them by `queryrefund`.
    RefundSweep,
    /// payment-api: raising and delivering alerts.
    Alerts,
    /// payment-api: folding status changes into the statistics roll-ups.
    StatsRefresh,
    /// payment-api: forgetting rate-limit counts of minutes that are over.
    RateLimitExpiry,
    /// payment-api: matching each day's WeChat Pay bill against our books.
    Reconciliation,
    /// payment-api: summarising and removing settled anomalies past their retention.
    AnomalyRetention,
}

impl ExclusiveJob {
    fn lock_key(self) -> i64 {
        // "elife" in ASCII, then the job.
        const BASE: i64 = 0x656c_6966_6500;
        BASE + match self {
            ExclusiveJob::PaymentWatch => 1,
            ExclusiveJob::RechargeSweep => 2,
            ExclusiveJob::RefundSweep => 3,
            ExclusiveJob::Alerts => 4,
            ExclusiveJob::StatsRefresh => 5,
            ExclusiveJob::RateLimitExpiry => 6,
            ExclusiveJob::Reconciliation => 7,
            ExclusiveJob::AnomalyRetention => 8,
        }
    }

    /// The job's name in metrics (`job_rounds_total{job="..."}`).
    pub fn name(self) -> &'static str {
        match self {
            ExclusiveJob::PaymentWatch => "payment_watch",
            ExclusiveJob::RechargeSweep => "recharge_sweep",
            ExclusiveJob::RefundSweep => "refund_sweep",
            ExclusiveJob::Alerts => "alerts",
            ExclusiveJob::StatsRefresh => "stats_refresh",
            ExclusiveJob::RateLimitExpiry => "rate_limit_expiry",
            ExclusiveJob::Reconciliation => "reconciliation",
            ExclusiveJob::AnomalyRetention => "anomaly_retention",
        }
    }

    /// Takes the job's lock if nobody holds it.
    pub async fn try_lock(self, db: &PgPool) -> Result<Option<JobLock>, sqlx::Error> {
        let mut tx = begin_bounded(db).await?;
        let locked = sqlx::query_scalar!(
            "SELECT pg_try_advisory_xact_lock($1) AS \"locked!\"",
            self.lock_key()
        )
        .fetch_one(&mut *tx)
        .await?;
        Ok(locked.then_some(JobLock { tx }))
    }

    /// Waits for the job's lock.
    pub async fn lock(self, db: &PgPool) -> Result<JobLock, sqlx::Error> {
        let mut tx = begin_bounded(db).await?;
        sqlx::query!("SELECT pg_advisory_xact_lock($1)", self.lock_key())
            .execute(&mut *tx)
            .await?;
        Ok(JobLock { tx })
    }
}

/// How long the lock's transaction may sit idle (the round works on other connections)
/// before PostgreSQL ends it and so frees the lock. A holder that froze, or whose machine
/// vanished without closing its connection, would otherwise keep every other process from
/// the job until TCP gave up on it (hours).
const LOCK_IDLE_LIMIT: &str = "15s";

/// How often a running round's process touches its lock: well within [`LOCK_IDLE_LIMIT`],
/// so that a round may last longer than it. A touch that takes this long counts as failed.
const LOCK_TOUCH_EVERY: Duration = Duration::from_secs(5);

/// How long after its last touch the lock is trusted to be held. Past it, the process may
/// have been frozen or starved for longer than [`LOCK_IDLE_LIMIT`] allows and have lost the
/// lock without having noticed yet: the round takes it as lost.
const LOCK_TRUSTED_FOR: Duration = Duration::from_secs(10);

async fn begin_bounded(db: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query_scalar!(
        "SELECT set_config('idle_in_transaction_session_timeout', $1, true)",
        LOCK_IDLE_LIMIT
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(tx)
}

/// Holds a job's lock (a transaction on its own connection) until released or dropped.
pub struct JobLock {
    tx: Transaction<'static, Postgres>,
}

impl JobLock {
    pub async fn release(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    /// Runs `work` while keeping the lock: its transaction is touched every
    /// [`LOCK_TOUCH_EVERY`], so that it never sits idle long enough to be ended. When a
    /// touch fails the lock is gone (another process may take the job now): `hold` says
    /// so, and the work, awaited to its end rather than cut mid-step, stops sending.
    pub async fn keep_during<T>(&mut self, hold: &Hold, work: impl Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        let mut touch =
            tokio::time::interval_at(Instant::now() + LOCK_TOUCH_EVERY, LOCK_TOUCH_EVERY);
        touch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = touch.tick(), if !hold.is_lost() => {
                    let touched = timeout(
                        LOCK_TOUCH_EVERY,
                        sqlx::query!("SELECT 1 AS \"touched!\"").fetch_one(&mut *self.tx),
                    )
                    .await;
                    match touched {
                        Ok(Ok(_)) => hold.touched(),
                        _ => hold.lost.cancel(),
                    }
                }
            }
        }
    }
}

/// Whether the round's process still holds the job's lock. A round asks before each thing
/// it sends out of the process (a refund, a query) and stops once it is lost.
#[derive(Debug, Clone)]
pub struct Hold {
    lost: CancellationToken,
    last_touch: Arc<Mutex<Instant>>,
}

impl Hold {
    /// For a lock taken just now.
    pub fn new() -> Self {
        Hold {
            lost: CancellationToken::new(),
            last_touch: Arc::new(Mutex::new(Instant::now())),
        }
    }

    fn touched(&self) {
        if let Ok(mut last) = self.last_touch.lock() {
            *last = Instant::now();
        }
    }

    pub fn is_lost(&self) -> bool {
        let stale = self
            .last_touch
            .lock()
            .map_or(true, |last| last.elapsed() >= LOCK_TRUSTED_FOR);
        if stale {
            self.lost.cancel();
        }
        self.lost.is_cancelled()
    }
}

impl Default for Hold {
    fn default() -> Self {
        Hold::new()
    }
}

/// What a round did; rounds that did nothing are not logged.
pub trait RoundReport: Debug {
    fn is_quiet(&self) -> bool;
}

/// A job done in rounds, holding what it uses.
pub trait Rounds: Send + Sync + 'static {
    type Report: RoundReport + Send;
    type Error: std::fmt::Display + From<sqlx::Error> + Send;

    /// One round; it stops early, before its next send, once `hold` says the lock is lost.
    fn round(&self, hold: &Hold) -> impl Future<Output = Result<Self::Report, Self::Error>> + Send;
}

/// Runs a round of `rounds` every `every` (the first at once) under the job's lock until
/// `stop`. A round another process is running is skipped; a failed round is logged and the
/// next one comes on time. Each tick is counted once it is over, in `job_rounds_total` by
/// job and outcome (`done`, `skipped`, `failed`): a job that stopped running shows.
pub async fn run_every<J: Rounds>(
    db: PgPool,
    job: ExclusiveJob,
    every: Duration,
    stop: CancellationToken,
    rounds: Arc<J>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Every line a round logs, down to its SQL errors, names its job.
        let span = tracing::info_span!("round", job = job.name());
        let outcome: Result<Option<J::Report>, J::Error> = async {
            let Some(mut lock) = job.try_lock(&db).await? else {
                return Ok(None);
            };
            let hold = Hold::new();
            let report = lock.keep_during(&hold, rounds.round(&hold)).await?;
            if hold.is_lost() {
                tracing::warn!(
                    ?job,
                    ?report,
                    "the job's lock was lost during the round; it stopped early"
                );
                return Ok(None);
            }
            lock.release().await?;
            Ok(Some(report))
        }
        .instrument(span.clone())
        .await;
        let counted = span.in_scope(|| match outcome {
            Ok(Some(report)) => {
                if !report.is_quiet() {
                    tracing::info!(?job, ?report, "round done");
                }
                "done"
            }
            Ok(None) => "skipped",
            Err(error) => {
                tracing::warn!(?job, %error, "round failed");
                "failed"
            }
        });
        metrics::counter!("job_rounds_total", "job" => job.name(), "outcome" => counted)
            .increment(1);
    }
}

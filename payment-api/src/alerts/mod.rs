//! Telling a person. Alerts are derived from what the money path already records — order
//! events (`unknown`, `failed`, `refund_failed`, a payment found by query), payment
//! anomalies (forged or mismatched callbacks, money taken for an order that will not be
//! fulfilled), stuck refunds — and from health figures (outbox backlog, queue depths).
//! Nothing on the money path waits for them: a producer turns records into rows of the
//! `alerts` table (deduplicated by subject), and a dispatcher delivers those to WeCom and
//! e-mail, rate-limited and retried. A channel that is down delays alerts, nothing else.

mod channels;
mod produce;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use channels::Channels;
pub use produce::produce_once;

use crate::context::ApiContext;

const LOCK: i64 = 0x656c_6966_6504;

/// One round: raise what is new, deliver what is due. One payment-api instance at a time.
pub async fn run_once(ctx: &ApiContext) -> Result<(usize, usize), sqlx::Error> {
    let mut lock = ctx.db.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(LOCK)
        .fetch_one(&mut *lock)
        .await?;
    if !locked {
        return Ok((0, 0));
    }
    let raised = produce_once(ctx).await?;
    let delivered = ctx.alerts.deliver_due(&ctx.db).await?;
    lock.commit().await?;
    Ok((raised, delivered))
}

pub async fn run(ctx: ApiContext, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match run_once(&ctx).await {
            Ok((0, 0)) => {}
            Ok((raised, delivered)) => tracing::info!(raised, delivered, "alerts"),
            Err(error) => tracing::warn!(%error, "alert round failed"),
        }
    }
}

//! Two ways to apply load. A closed loop keeps a fixed number of requests in flight and
//! finds the throughput; an open loop sends at a fixed rate whatever the answers do, and
//! times each request from when it was due, so a stall counts against every request it
//! delays (no coordinated omission).

use std::future::Future;
use std::time::{Duration, Instant};

use futures::{stream, StreamExt, TryStreamExt};

/// Runs `op` over `items`, `concurrency` at a time; the results in completion order.
/// The first error ends the run: a benchmark with failing requests measures nothing.
pub async fn closed_loop<I, T, F, Fut>(
    items: I,
    concurrency: usize,
    op: F,
) -> anyhow::Result<Vec<T>>
where
    I: IntoIterator,
    F: Fn(I::Item) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    stream::iter(items)
        .map(op)
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await
}

/// Starts `op` for each item at `per_second`, each given the instant it was due.
pub async fn open_loop<I, T, F, Fut>(items: I, per_second: f64, op: F) -> anyhow::Result<Vec<T>>
where
    I: IntoIterator,
    F: Fn(I::Item, Instant) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let period = Duration::from_secs_f64(1.0 / per_second);
    let start = Instant::now();
    stream::iter(items.into_iter().enumerate())
        .map(|(index, item)| {
            let due = start + period * index as u32;
            let op = &op;
            async move {
                tokio::time::sleep_until(due.into()).await;
                op(item, due).await
            }
        })
        // Every request may be in flight at once: the rate, not the answers, sets the pace.
        .buffer_unordered(usize::MAX)
        .try_collect()
        .await
}

/// Time since `since`, for a request that was due then.
pub fn since(since: Instant) -> Duration {
    Instant::now().saturating_duration_since(since)
}

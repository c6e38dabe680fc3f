//! Brings the roll-ups up to date with what the markers name (see the stats migration).
//! Recomputing a day or a customer from the orders, rather than adding deltas, means a
//! refresh can be repeated, interrupted or run late and still give the exact figures.

use std::time::Duration;

use chrono::NaiveDate;
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;

const LOCK: i64 = 0x656c_6966_6505;
/// Customers recomputed per statement, so a first build over years of orders stays a
/// series of bounded statements.
const CUSTOMERS_PER_STATEMENT: usize = 20_000;
/// How often payment-api folds the markers in on its own; `/admin/stats` also refreshes
/// before it answers, so this only keeps that refresh small.
pub const EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    pub days: usize,
    pub customers: usize,
}

/// Folds in every change committed so far. Changes by transactions still running keep
/// their markers for the next refresh. One refresher at a time.
pub async fn refresh(db: &PgPool) -> Result<Refreshed, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK)
        .execute(&mut *tx)
        .await?;
    // The markers this statement sees were committed, so the changes they mark are visible
    // to every statement that follows (read committed). Markers it cannot see yet stay.
    let (days, customers): (Vec<NaiveDate>, Vec<i64>) = sqlx::query_as(
        "WITH done AS (
            DELETE FROM stats_changes RETURNING day, user_id
         )
         SELECT COALESCE(array_agg(DISTINCT day), '{}'),
                COALESCE(array_agg(DISTINCT user_id) FILTER (WHERE user_id IS NOT NULL), '{}')
           FROM done",
    )
    .fetch_one(&mut *tx)
    .await?;
    if !days.is_empty() {
        recompute_days(&mut tx, &days).await?;
    }
    for chunk in customers.chunks(CUSTOMERS_PER_STATEMENT) {
        recompute_customers(&mut tx, chunk).await?;
    }
    if !customers.is_empty() {
        sqlx::query("DELETE FROM customer_day_counts WHERE customers = 0")
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Refreshed {
        days: days.len(),
        customers: customers.len(),
    })
}

async fn recompute_days(
    tx: &mut Transaction<'_, Postgres>,
    days: &[NaiveDate],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM stats_hourly s USING unnest($1::date[]) AS d(day)
          WHERE s.hour >= d.day AND s.hour < d.day + 1",
    )
    .bind(days)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO stats_hourly (hour, product_code, product_name, recharge_type,
                                   payment_status, recharge_status, refund_status,
                                   orders, amount_fen, price_mnt)
         SELECT date_trunc('hour', o.created_at AT TIME ZONE 'Asia/Shanghai'),
                o.product_code, o.product_name, o.recharge_type, o.payment_status,
                CASE WHEN o.recharge_status = 'processing' THEN 'pending' ELSE o.recharge_status END,
                COALESCE(r.status, 'none'),
                count(*), sum(o.amount_fen), sum(o.price_mnt)
           FROM unnest($1::date[]) AS d(day)
           JOIN orders o
             ON o.created_at >= (d.day::timestamp AT TIME ZONE 'Asia/Shanghai')
            AND o.created_at < ((d.day + 1)::timestamp AT TIME ZONE 'Asia/Shanghai')
           LEFT JOIN refunds r ON r.order_number = o.order_number
          GROUP BY 1, 2, 3, 4, 5, 6, 7",
    )
    .bind(days)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Replaces these customers' paid days, and moves the counts from their old rows to
/// their new ones.
async fn recompute_customers(
    tx: &mut Transaction<'_, Postgres>,
    customers: &[i64],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH old AS (
            DELETE FROM customer_days WHERE user_id = ANY($1) RETURNING day, prev_day
         )
         INSERT INTO customer_day_counts (day, prev_day, customers)
         SELECT day, prev_day, -count(*) FROM old GROUP BY day, prev_day
         ON CONFLICT (day, prev_day)
         DO UPDATE SET customers = customer_day_counts.customers + EXCLUDED.customers",
    )
    .bind(customers)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "WITH paid_days AS (
            SELECT DISTINCT user_id, (created_at AT TIME ZONE 'Asia/Shanghai')::date AS day
              FROM orders
             WHERE user_id = ANY($1) AND payment_status = 'paid'
         ), fresh AS (
            INSERT INTO customer_days (user_id, day, prev_day)
            SELECT user_id, day,
                   COALESCE(lag(day) OVER (PARTITION BY user_id ORDER BY day), '-infinity')
              FROM paid_days
            RETURNING day, prev_day
         )
         INSERT INTO customer_day_counts (day, prev_day, customers)
         SELECT day, prev_day, count(*) FROM fresh GROUP BY day, prev_day
         ON CONFLICT (day, prev_day)
         DO UPDATE SET customers = customer_day_counts.customers + EXCLUDED.customers",
    )
    .bind(customers)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Refreshes every [`EVERY`] until stopped.
pub async fn run(db: PgPool, stop: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match refresh(&db).await {
            Ok(Refreshed { days: 0, .. }) => {}
            Ok(done) => tracing::debug!(
                days = done.days,
                customers = done.customers,
                "statistics refreshed"
            ),
            Err(error) => tracing::warn!(%error, "statistics refresh failed"),
        }
    }
}

//! Brings the roll-ups up to date with what the markers name (see the stats migration).
//! Recounting an hour or a customer from the orders, rather than adding deltas, means a
//! refresh can be repeated, interrupted or run late and still give the exact figures.

use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};
use shared::jobs::{ExclusiveJob, RoundReport, Rounds};
use sqlx::{PgPool, Postgres, Transaction};

/// Customers recomputed per statement, so a first build over years of orders stays a
/// series of bounded statements.
const CUSTOMERS_PER_STATEMENT: usize = 20_000;
/// How often payment-api folds the markers in on its own; `/admin/stats` also refreshes
/// before it answers, so this only keeps that refresh small.
pub const EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// Hours of orders recounted.
    pub hours: usize,
    pub customers: usize,
}

impl RoundReport for Refreshed {
    fn is_quiet(&self) -> bool {
        self.hours == 0
    }
}

/// Folds in every change committed so far. Changes by transactions still running keep
/// their markers for the next refresh. Waits for a refresh already running.
pub async fn refresh(db: &PgPool) -> Result<Refreshed, sqlx::Error> {
    let lock = ExclusiveJob::StatsRefresh.lock(db).await?;
    let refreshed = refresh_holding_the_lock(db).await?;
    lock.release().await?;
    Ok(refreshed)
}

async fn refresh_holding_the_lock(db: &PgPool) -> Result<Refreshed, sqlx::Error> {
    let mut tx = db.begin().await?;
    // The planner cannot tell how many orders an hour holds and guesses thousands; at
    // that cost it would compile the recount with JIT, which takes longer (~200 ms) than
    // the recount itself.
    sqlx::query!("SET LOCAL jit = off")
        .execute(&mut *tx)
        .await?;
    // The markers this statement sees were committed, so the changes they mark are visible
    // to every statement that follows (read committed). Markers it cannot see yet stay.
    let marked = sqlx::query!(
        r#"WITH done AS (
            DELETE FROM stats_changes RETURNING hour, user_id
         )
         SELECT COALESCE(array_agg(DISTINCT hour ORDER BY hour), '{}') AS "hours!: Vec<NaiveDateTime>",
                COALESCE(array_agg(DISTINCT user_id) FILTER (WHERE user_id IS NOT NULL), '{}')
                    AS "customers!: Vec<i64>"
           FROM done"#
    )
    .fetch_one(&mut *tx)
    .await?;
    let (hours, customers) = (marked.hours, marked.customers);
    if !hours.is_empty() {
        let mut days: Vec<NaiveDate> = hours.iter().map(NaiveDateTime::date).collect();
        days.dedup();
        recompute_hours(&mut tx, &hours).await?;
        recompute_days(&mut tx, &days).await?;
    }
    for chunk in customers.chunks(CUSTOMERS_PER_STATEMENT) {
        recompute_customers(&mut tx, chunk).await?;
    }
    if !customers.is_empty() {
        sqlx::query!("DELETE FROM customer_day_counts WHERE customers = 0")
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Refreshed {
        hours: hours.len(),
        customers: customers.len(),
    })
}

/// Recounts these hours (Asia/Shanghai local time) from the orders created in them.
async fn recompute_hours(
    tx: &mut Transaction<'_, Postgres>,
    hours: &[NaiveDateTime],
) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM stats_hourly WHERE hour = ANY($1)", hours)
        .execute(&mut **tx)
        .await?;
    sqlx::query!(
        "INSERT INTO stats_hourly
         SELECT hour, product_code, recharge_type, max(product_name),
                count(*),
                count(*) FILTER (WHERE payment_status = 'paid'),
                COALESCE(sum(amount_fen) FILTER (WHERE payment_status = 'paid'), 0),
                COALESCE(sum(price_mnt) FILTER (WHERE payment_status = 'paid'), 0),
                count(*) FILTER (WHERE recharge_status = 'success'),
                count(*) FILTER (WHERE recharge_status = 'failed'),
                count(*) FILTER (WHERE recharge_status = 'unknown'),
                count(*) FILTER (WHERE payment_status = 'paid'
                                   AND recharge_status IN ('pending', 'processing')),
                COALESCE(sum(price_mnt) FILTER (WHERE recharge_status = 'success'), 0),
                count(*) FILTER (WHERE refund_status IN ('requested', 'accepted')),
                count(*) FILTER (WHERE refund_status = 'success'),
                count(*) FILTER (WHERE refund_status = 'failed'),
                COALESCE(sum(amount_fen) FILTER (WHERE refund_status = 'success'), 0)
           FROM (SELECT h.hour, o.product_code, o.recharge_type, o.product_name,
                        o.payment_status, o.recharge_status, o.amount_fen, o.price_mnt,
                        -- A lookup per order: a join would read every refund ever made.
                        (SELECT r.status FROM refunds r
                          WHERE r.order_number = o.order_number) AS refund_status
                   FROM unnest($1::timestamp[]) AS h(hour)
                   JOIN orders o
                     ON o.created_at >= (h.hour AT TIME ZONE 'Asia/Shanghai')
                    AND o.created_at < ((h.hour + interval '1 hour') AT TIME ZONE 'Asia/Shanghai')) o
          GROUP BY hour, product_code, recharge_type",
        hours,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Sums these days again from their hours.
async fn recompute_days(
    tx: &mut Transaction<'_, Postgres>,
    days: &[NaiveDate],
) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM stats_daily WHERE day = ANY($1)", days)
        .execute(&mut **tx)
        .await?;
    sqlx::query!(
        "INSERT INTO stats_daily
         SELECT d.day, s.product_code, s.recharge_type, max(s.product_name),
                sum(created), sum(paid), sum(paid_fen), sum(paid_mnt), sum(success),
                sum(failed), sum(unknown), sum(pending), sum(credited_mnt),
                sum(refunds_pending), sum(refunds_succeeded), sum(refunds_failed),
                sum(refunded_fen)
           FROM unnest($1::date[]) AS d(day)
           JOIN stats_hourly s ON s.hour >= d.day AND s.hour < d.day + 1
          GROUP BY d.day, s.product_code, s.recharge_type",
        days,
    )
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
    sqlx::query!(
        "WITH old AS (
            DELETE FROM customer_days WHERE user_id = ANY($1) RETURNING day, prev_day
         )
         INSERT INTO customer_day_counts (day, prev_day, customers)
         SELECT day, prev_day, -count(*) FROM old GROUP BY day, prev_day
         ON CONFLICT (day, prev_day)
         DO UPDATE SET customers = customer_day_counts.customers + EXCLUDED.customers",
        customers,
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query!(
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
        customers,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The periodic refresh, every [`EVERY`], skipped while another refresh runs.
pub struct Refresher(pub PgPool);

impl Rounds for Refresher {
    type Report = Refreshed;
    type Error = sqlx::Error;

    async fn round(&self, _hold: &shared::jobs::Hold) -> Result<Refreshed, sqlx::Error> {
        refresh_holding_the_lock(&self.0).await
    }
}

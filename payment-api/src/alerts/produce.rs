//! Turning records into alerts, idempotently: each source is read past a cursor moved in
//! the same statement, and each alert has a dedupe key (a repeat only counts an occurrence).

use crate::context::ApiContext;

// Rows are read by transaction id, up to the oldest transaction still running: anything
// below that boundary is committed (or never will be), so nothing is skipped.

pub async fn produce_once(ctx: &ApiContext) -> Result<usize, sqlx::Error> {
    let mut raised = 0;
    raised += from_order_events(ctx).await?;
    raised += from_anomalies(ctx).await?;
    raised += stuck_refunds(ctx).await?;
    raised += health(ctx).await?;
    Ok(raised)
}

async fn from_order_events(ctx: &ApiContext) -> Result<usize, sqlx::Error> {
    let read: i64 = sqlx::query_scalar(
        "WITH cursor AS (
            SELECT next_txid, pg_snapshot_xmin(pg_current_snapshot()) AS boundary
              FROM alert_cursors WHERE source = 'order_events' FOR UPDATE
         ), batch AS (
            SELECT e.id, e.order_number, e.event, e.actor, e.detail
              FROM order_events e, cursor
             WHERE e.txid >= cursor.next_txid AND e.txid < cursor.boundary
         ), classified AS (
            SELECT b.*, CASE
                     WHEN b.event = 'unknown' THEN 'recharge_unknown'
                     WHEN b.event = 'failed' AND b.actor NOT LIKE 'admin:%' THEN 'recharge_failed'
                     WHEN b.event = 'refund_failed' THEN 'refund_failed'
                     WHEN b.event = 'paid' AND b.actor = 'wechat-query' THEN 'payment_without_callback'
                   END AS kind
              FROM batch b
         ), raised AS (
            -- Grouped: one row per alert, however many times the batch repeats it.
            INSERT INTO alerts (kind, dedupe_key, order_number, message, occurrences)
            SELECT kind, kind || ':' || order_number, order_number,
                   CASE kind
                     WHEN 'recharge_unknown' THEN 'Top-up outcome unknown: check with Unitel, then resolve the order'
                     WHEN 'recharge_failed' THEN 'Top-up failed'
                     WHEN 'refund_failed' THEN 'Refund failed: return the money by hand'
                     ELSE 'Payment found by query: its callback never came'
                   END || coalesce(' (' || min(coalesce(detail->>'message', detail->>'reason', detail->>'error')) || ')', ''),
                   count(*)
              FROM classified WHERE kind IS NOT NULL
             GROUP BY kind, order_number
            ON CONFLICT (dedupe_key) DO UPDATE
               SET occurrences = alerts.occurrences + EXCLUDED.occurrences, last_seen_at = now()
         ), moved AS (
            UPDATE alert_cursors SET next_txid = (SELECT boundary FROM cursor)
             WHERE source = 'order_events'
         )
         SELECT count(*) FROM classified WHERE kind IS NOT NULL",
    )
    .fetch_one(&ctx.db)
    .await?;
    Ok(read as usize)
}

async fn from_anomalies(ctx: &ApiContext) -> Result<usize, sqlx::Error> {
    let read: i64 = sqlx::query_scalar(
        "WITH cursor AS (
            SELECT next_txid, pg_snapshot_xmin(pg_current_snapshot()) AS boundary
              FROM alert_cursors WHERE source = 'payment_anomalies' FOR UPDATE
         ), batch AS (
            SELECT a.id, a.order_number, a.kind,
                   EXISTS (SELECT 1 FROM orders o WHERE o.order_number = a.order_number) AS known
              FROM payment_anomalies a, cursor
             WHERE a.txid >= cursor.next_txid AND a.txid < cursor.boundary
         ), keyed AS (
            SELECT CASE WHEN kind IN ('paid_after_close', 'second_transaction')
                        THEN 'money_taken_unfulfilled' ELSE 'callback_anomaly' END AS alert_kind,
                   -- forgeries naming made-up orders: one alert per kind and hour, so that
                   -- inventing order numbers cannot flood the channel
                   'anomaly:' || kind || ':' || CASE WHEN known THEN order_number
                                                     ELSE to_char(now(), 'YYYY-MM-DD-HH24') END AS dedupe_key,
                   CASE WHEN known THEN order_number END AS order_number,
                   CASE WHEN kind IN ('paid_after_close', 'second_transaction')
                        THEN 'Money taken for an order that will not be fulfilled (' || kind || '): refund it'
                        ELSE 'Callback not fulfilled (' || kind || '): forged or mismatched' END AS message
              FROM batch
         ), raised AS (
            INSERT INTO alerts (kind, dedupe_key, order_number, message, occurrences)
            SELECT alert_kind, dedupe_key, min(order_number), min(message), count(*)
              FROM keyed GROUP BY alert_kind, dedupe_key
            ON CONFLICT (dedupe_key) DO UPDATE
               SET occurrences = alerts.occurrences + EXCLUDED.occurrences, last_seen_at = now()
         ), moved AS (
            UPDATE alert_cursors SET next_txid = (SELECT boundary FROM cursor)
             WHERE source = 'payment_anomalies'
         )
         SELECT count(*) FROM batch",
    )
    .fetch_one(&ctx.db)
    .await?;
    Ok(read as usize)
}

async fn stuck_refunds(ctx: &ApiContext) -> Result<usize, sqlx::Error> {
    let raised = sqlx::query(
        "INSERT INTO alerts (kind, dedupe_key, order_number, message)
         SELECT 'refund_stuck', 'refund_stuck:' || order_number, order_number,
                'Refund not settled after an hour (' || status || coalesce(', ' || last_error, '') || ')'
           FROM refunds
          WHERE status IN ('requested', 'accepted') AND created_at < now() - interval '1 hour'
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .execute(&ctx.db)
    .await?
    .rows_affected();
    Ok(raised as usize)
}

/// Backlogs: at most one alert per kind and hour.
async fn health(ctx: &ApiContext) -> Result<usize, sqlx::Error> {
    let thresholds = &ctx.config.alerts;
    let (backlog, oldest_secs): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), extract(epoch FROM now() - min(created_at))::float8
           FROM outbox WHERE published_at IS NULL",
    )
    .fetch_one(&ctx.db)
    .await?;
    metrics::gauge!("outbox_backlog").set(backlog as f64);
    let (queued, dead) = ctx.outbox.queue_depths();
    let mut raised = Vec::new();
    if backlog > thresholds.outbox_backlog || oldest_secs.unwrap_or(0.0) > 300.0 {
        raised.push((
            "outbox_backlog",
            format!(
                "{backlog} paid orders not yet handed to RabbitMQ (oldest {:.0} s)",
                oldest_secs.unwrap_or(0.0)
            ),
        ));
    }
    if queued.is_some_and(|q| q > thresholds.queue_depth) {
        raised.push((
            "queue_depth",
            format!(
                "{} OrderPaid messages waiting for workers",
                queued.unwrap_or(0)
            ),
        ));
    }
    if dead.is_some_and(|d| d > 0) {
        raised.push((
            "dead_letters",
            format!("{} messages in the dead-letter queue", dead.unwrap_or(0)),
        ));
    }
    let mut count = 0;
    for (kind, message) in raised {
        count += sqlx::query(
            "INSERT INTO alerts (kind, dedupe_key, message)
             VALUES ($1, $1 || ':' || to_char(now(), 'YYYY-MM-DD-HH24'), $2)
             ON CONFLICT (dedupe_key) DO UPDATE
                SET occurrences = alerts.occurrences + 1, last_seen_at = now(), message = $2",
        )
        .bind(kind)
        .bind(message)
        .execute(&ctx.db)
        .await?
        .rows_affected() as usize;
    }
    Ok(count)
}

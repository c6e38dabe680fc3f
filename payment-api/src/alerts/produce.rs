//! Turning records into alerts, idempotently. Each append-only source (order events,
//! anomalies) is read in bounded batches past a cursor that moves in the same
//! transaction as the alerts it raised; each alert has a dedupe key, so a repeat only
//! counts an occurrence.
//!
//! Rows are read in (transaction id, id) order, up to the oldest transaction still
//! running: every row below that boundary is committed (or never will be), so a row that
//! committed late is never skipped.

use std::collections::BTreeMap;

use serde_json::Value;
use shared::history::{Actor, AnomalyKind, OrderEvent};
use shared::order::OrderNumber;

use super::{AlertKind, Alerting};

/// Rows read from a source per statement: a backlog of forged callbacks is worked off in
/// bounded steps, never read whole.
const BATCH: i64 = 500;
/// Batches per source per round, so that one round ends even under a flood.
const BATCHES_PER_ROUND: usize = 20;

/// One alert to raise (or to count again), keyed by what it is about.
struct Raised {
    kind: AlertKind,
    dedupe_key: String,
    order_number: Option<String>,
    message: String,
    occurrences: i32,
}

/// Alerts grouped by dedupe key, as one batch raises them.
#[derive(Default)]
struct Batch(BTreeMap<String, Raised>);

impl Batch {
    fn add(
        &mut self,
        kind: AlertKind,
        dedupe_key: String,
        order_number: Option<String>,
        message: String,
    ) {
        self.0
            .entry(dedupe_key.clone())
            .and_modify(|raised| raised.occurrences += 1)
            .or_insert(Raised {
                kind,
                dedupe_key,
                order_number,
                message,
                occurrences: 1,
            });
    }
}

/// What an order event means for a person, if anything.
fn event_alert(
    event: OrderEvent,
    actor: &Actor,
    detail: Option<&Value>,
) -> Option<(AlertKind, &'static str)> {
    let stuck = detail.and_then(|d| d.get("stuck")) == Some(&Value::Bool(true));
    Some(match event {
        // Its worker lost track of it: it is sent now, but why it stuck needs a look.
        OrderEvent::Released if stuck => (
            AlertKind::RechargeStuck,
            "Top-up stuck in processing with nothing sent: taken over",
        ),
        OrderEvent::Unknown => (
            AlertKind::RechargeUnknown,
            "Top-up outcome unknown: check with Unitel, then resolve the order",
        ),
        // A person's own verdict is not news to a person.
        OrderEvent::Failed if !actor.is_person() => (AlertKind::RechargeFailed, "Top-up failed"),
        OrderEvent::RefundFailed => (
            AlertKind::RefundFailed,
            "Refund failed: return the money by hand",
        ),
        OrderEvent::Paid if *actor == Actor::WechatQuery => (
            AlertKind::PaymentWithoutCallback,
            "Payment found by query: its callback never came",
        ),
        _ => return None,
    })
}

/// What Unitel said in a late answer, in a line: its verdict, code, message and seq.
fn unitel_said(detail: &Value) -> String {
    ["outcome", "code", "message", "seq"]
        .iter()
        .filter_map(|key| match detail.get(*key) {
            Some(Value::String(s)) => Some(format!("{key} {s}")),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the history says of why, appended to the alert.
fn why(detail: Option<&Value>) -> Option<String> {
    let detail = detail?;
    ["message", "reason", "error"]
        .iter()
        .find_map(|key| detail.get(*key).and_then(Value::as_str))
        .map(str::to_owned)
}

impl Alerting {
    pub(super) async fn produce(&self) -> Result<usize, sqlx::Error> {
        let mut raised = self.drain::<OrderEvents>().await?;
        raised += self.drain::<Anomalies>().await?;
        raised += self.stuck_refunds().await?;
        raised += self.late_reconciliations().await?;
        raised += self.health().await?;
        Ok(raised)
    }

    /// A source's new rows, batch after batch, up to the round's limit.
    async fn drain<S: Source>(&self) -> Result<usize, sqlx::Error> {
        let mut raised = 0;
        for _ in 0..BATCHES_PER_ROUND {
            let (read, count) = self.one_batch::<S>().await?;
            raised += count;
            if read < BATCH {
                break;
            }
        }
        Ok(raised)
    }

    /// One batch of a source; (rows read, alerts raised).
    async fn one_batch<S: Source>(&self) -> Result<(i64, usize), sqlx::Error> {
        let (mut tx, cursor) = Cursor::take(&self.db, S::NAME).await?;
        let rows = S::read(&mut tx, &cursor).await?;
        let Some(last) = rows.last() else {
            return Ok((0, 0));
        };
        let read_up_to = S::position(last);
        let mut batch = Batch::default();
        for row in &rows {
            S::alert(row, &mut batch);
        }
        let raised = finish(tx, S::NAME, read_up_to, batch).await?;
        Ok((rows.len() as i64, raised))
    }

    async fn stuck_refunds(&self) -> Result<usize, sqlx::Error> {
        let raised = sqlx::query!(
            "INSERT INTO alerts (kind, dedupe_key, order_number, message)
             SELECT $1, $1 || ':' || order_number, order_number,
                    'Refund not settled after an hour (' || status || coalesce(', ' || last_error, '') || ')'
               FROM refunds
              WHERE status IN ('requested', 'accepted') AND created_at < now() - interval '1 hour'
             ON CONFLICT (dedupe_key) DO NOTHING",
            AlertKind::RefundStuck.as_str(),
        )
        .execute(&self.db)
        .await?
        .rows_affected();
        Ok(raised as usize)
    }

    /// Days whose bill could not be fetched or did not add up, once they are late: WeChat's
    /// bill of day D is ready from 10:00 China time on D+1, so a day still not reconciled
    /// at 14:00 (or failed three times) needs a person. One alert per day and status.
    async fn late_reconciliations(&self) -> Result<usize, sqlx::Error> {
        let raised = sqlx::query!(
            "INSERT INTO alerts (kind, dedupe_key, message)
             SELECT $1, $1 || ':' || bill_date || ':' || status,
                    'WeChat bill of ' || bill_date || ' not reconciled (' || status
                    || coalesce(': ' || last_error, '') || ', ' || attempts || ' attempts)'
               FROM reconciliation_days
              WHERE status IN ('waiting', 'failed', 'unbalanced')
                AND (attempts >= 3
                     OR now() > (bill_date + 1 + time '14:00') AT TIME ZONE 'Asia/Shanghai')
             ON CONFLICT (dedupe_key) DO NOTHING",
            AlertKind::ReconciliationLate.as_str(),
        )
        .execute(&self.db)
        .await?
        .rows_affected();
        Ok(raised as usize)
    }

    /// Backlogs: at most one alert per kind and hour.
    async fn health(&self) -> Result<usize, sqlx::Error> {
        let thresholds = &self.config;
        let (backlog, oldest_secs) = shared::outbox::backlog(&self.db).await?;
        let oldest_secs = oldest_secs.unwrap_or(0.0);
        let (queued, dead) = self.signal.queue_depths();
        let mut raised = Vec::new();
        if backlog > thresholds.outbox_backlog || oldest_secs > 300.0 {
            raised.push((
                AlertKind::OutboxBacklog,
                format!(
                    "{backlog} paid orders not yet handed to RabbitMQ (oldest {oldest_secs:.0} s)"
                ),
            ));
        }
        if let Some(queued) = queued.filter(|q| *q > thresholds.queue_depth) {
            raised.push((
                AlertKind::QueueDepth,
                format!("{queued} OrderPaid messages waiting for workers"),
            ));
        }
        if let Some(dead) = dead.filter(|d| *d > 0) {
            raised.push((
                AlertKind::DeadLetters,
                format!("{dead} messages in the dead-letter queue"),
            ));
        }
        let mut count = 0;
        for (kind, message) in raised {
            count += sqlx::query!(
                "INSERT INTO alerts (kind, dedupe_key, message)
                 VALUES ($1, $1 || ':' || to_char(now(), 'YYYY-MM-DD-HH24'), $2)
                 ON CONFLICT (dedupe_key) DO UPDATE
                    SET occurrences = alerts.occurrences + 1, last_seen_at = now(), message = $2",
                kind.as_str(),
                message,
            )
            .execute(&self.db)
            .await?
            .rows_affected() as usize;
        }
        Ok(count)
    }
}

/// An append-only table read past a cursor: its rows in (transaction id, id) order, and
/// what each means for a person.
trait Source {
    /// Its row in `alert_cursors`.
    const NAME: &'static str;
    type Row;
    /// Up to `BATCH` rows past the cursor and below its boundary.
    async fn read(
        tx: &mut sqlx::PgConnection,
        cursor: &Cursor,
    ) -> Result<Vec<Self::Row>, sqlx::Error>;
    /// Where the cursor moves once the row is read: (transaction id, id).
    fn position(row: &Self::Row) -> (String, i64);
    fn alert(row: &Self::Row, batch: &mut Batch);
}

struct OrderEvents;

struct EventRow {
    id: i64,
    txid: String,
    order_number: OrderNumber,
    event: OrderEvent,
    actor: Actor,
    detail: Option<Value>,
}

impl Source for OrderEvents {
    const NAME: &'static str = "order_events";
    type Row = EventRow;

    async fn read(
        tx: &mut sqlx::PgConnection,
        cursor: &Cursor,
    ) -> Result<Vec<EventRow>, sqlx::Error> {
        sqlx::query_as!(
            EventRow,
            r#"SELECT e.id, e.txid::text AS "txid!", e.order_number AS "order_number: OrderNumber",
                      e.event AS "event: OrderEvent", e.actor AS "actor: Actor", e.detail
                 FROM order_events e
                WHERE (e.txid, e.id) > ($1::text::xid8, $2) AND e.txid < $3::text::xid8
                ORDER BY e.txid, e.id LIMIT $4"#,
            cursor.txid,
            cursor.id,
            cursor.boundary,
            BATCH,
        )
        .fetch_all(tx)
        .await
    }

    fn position(row: &EventRow) -> (String, i64) {
        (row.txid.clone(), row.id)
    }

    fn alert(row: &EventRow, batch: &mut Batch) {
        if let Some((kind, message)) = event_alert(row.event, &row.actor, row.detail.as_ref()) {
            let message = match why(row.detail.as_ref()) {
                Some(why) => format!("{message} ({why})"),
                None => message.to_owned(),
            };
            batch.add(
                kind,
                format!("{kind}:{}", row.order_number),
                Some(row.order_number.to_string()),
                message,
            );
        }
    }
}

struct Anomalies;

struct AnomalyRow {
    id: i64,
    txid: String,
    order_number: Option<String>,
    kind: AnomalyKind,
    detail: Value,
    known: bool,
    hour: String,
}

impl Source for Anomalies {
    const NAME: &'static str = "payment_anomalies";
    type Row = AnomalyRow;

    async fn read(
        tx: &mut sqlx::PgConnection,
        cursor: &Cursor,
    ) -> Result<Vec<AnomalyRow>, sqlx::Error> {
        sqlx::query_as!(
            AnomalyRow,
            r#"SELECT a.id, a.txid::text AS "txid!", a.order_number, a.kind AS "kind: AnomalyKind",
                      a.detail,
                      EXISTS (SELECT 1 FROM orders o WHERE o.order_number = a.order_number) AS "known!",
                      to_char(now(), 'YYYY-MM-DD-HH24') AS "hour!"
                 FROM payment_anomalies a
                WHERE (a.txid, a.id) > ($1::text::xid8, $2) AND a.txid < $3::text::xid8
                ORDER BY a.txid, a.id LIMIT $4"#,
            cursor.txid,
            cursor.id,
            cursor.boundary,
            BATCH,
        )
        .fetch_all(tx)
        .await
    }

    fn position(row: &AnomalyRow) -> (String, i64) {
        (row.txid.clone(), row.id)
    }

    fn alert(row: &AnomalyRow, batch: &mut Batch) {
        let (kind, message) = if row.kind == AnomalyKind::LateTopUpOutcome {
            (
                AlertKind::LateTopUpOutcome,
                format!(
                    "Unitel answered after the top-up was settled otherwise: check the order against what it said ({})",
                    unitel_said(&row.detail)
                ),
            )
        } else if row.kind.from_bill() {
            (
                AlertKind::ReconciliationDifference,
                format!(
                    "WeChat's daily bill and our books differ ({}): see GET /admin/reconciliation, settle it, then resolve the difference",
                    row.kind
                ),
            )
        } else if row.kind.money_taken_unfulfilled() {
            (
                AlertKind::MoneyTakenUnfulfilled,
                format!(
                    "Money taken for an order that will not be fulfilled ({}): refund it",
                    row.kind
                ),
            )
        } else {
            (
                AlertKind::CallbackAnomaly,
                format!(
                    "Callback not fulfilled ({}): forged or mismatched",
                    row.kind
                ),
            )
        };
        // Forgeries naming made-up orders: one alert per kind and hour, so that
        // inventing order numbers cannot flood the channel.
        let (subject, order_number) = match (&row.order_number, row.known) {
            (Some(order), true) => (order.clone(), Some(order.clone())),
            _ => (row.hour.clone(), None),
        };
        batch.add(
            kind,
            format!("anomaly:{}:{subject}", row.kind),
            order_number,
            message,
        );
    }
}

/// Where a source was read up to, locked for this round's transaction, and the boundary
/// below which every row is final.
struct Cursor {
    txid: String,
    id: i64,
    boundary: String,
}

impl Cursor {
    async fn take(
        db: &sqlx::PgPool,
        source: &str,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, Cursor), sqlx::Error> {
        let mut tx = db.begin().await?;
        let cursor = sqlx::query_as!(
            Cursor,
            r#"SELECT next_txid::text AS "txid!", last_id AS id,
                      pg_snapshot_xmin(pg_current_snapshot())::text AS "boundary!"
                 FROM alert_cursors WHERE source = $1 FOR UPDATE"#,
            source,
        )
        .fetch_one(&mut *tx)
        .await?;
        Ok((tx, cursor))
    }
}

/// Raises a batch's alerts and moves the source's cursor past the batch, together.
async fn finish(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    source: &str,
    (txid, id): (String, i64),
    batch: Batch,
) -> Result<usize, sqlx::Error> {
    let raised = raise(&mut tx, batch).await?;
    sqlx::query!(
        "UPDATE alert_cursors SET next_txid = $2::text::xid8, last_id = $3 WHERE source = $1",
        source,
        txid,
        id,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(raised)
}

/// Inserts a batch's alerts, or counts them again where they exist.
async fn raise(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    batch: Batch,
) -> Result<usize, sqlx::Error> {
    if batch.0.is_empty() {
        return Ok(0);
    }
    let mut kinds = Vec::new();
    let mut keys = Vec::new();
    let mut orders = Vec::new();
    let mut messages = Vec::new();
    let mut occurrences = Vec::new();
    for raised in batch.0.into_values() {
        kinds.push(raised.kind.as_str());
        keys.push(raised.dedupe_key);
        orders.push(raised.order_number);
        messages.push(raised.message);
        occurrences.push(raised.occurrences);
    }
    let count = kinds.len();
    sqlx::query!(
        "INSERT INTO alerts (kind, dedupe_key, order_number, message, occurrences)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[])
         ON CONFLICT (dedupe_key) DO UPDATE
            SET occurrences = alerts.occurrences + EXCLUDED.occurrences, last_seen_at = now()",
        &kinds as &[&str],
        &keys,
        &orders as &[Option<String>],
        &messages,
        &occurrences,
    )
    .execute(&mut **tx)
    .await?;
    Ok(count)
}

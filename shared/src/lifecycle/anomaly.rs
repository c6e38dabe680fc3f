//! Reports that disagreed with our records, and how much of what a forger sent is kept.

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::history::{Actor, AnomalyKind, OrderEvent};
use crate::storable;

/// A report that disagreed with our records, kept for a person and never fulfilled. Only
/// an anomaly WeChat itself confirmed ([`AnomalyKind::verified`]) also flags the order and
/// writes its history: an unverified request (anyone can post to the callback) never
/// changes an order.
pub async fn record_anomaly(
    db: &PgPool,
    order_number: Option<&str>,
    kind: AnomalyKind,
    reported_by: &Actor,
    detail: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "WITH anomaly AS (
            INSERT INTO payment_anomalies (order_number, kind, detail) VALUES ($1, $2, $3)
         ), flagged AS (
            UPDATE orders SET anomaly = $2, updated_at = now() WHERE order_number = $1 AND $6
            RETURNING order_number
         )
         INSERT INTO order_events (order_number, event, actor, detail)
         SELECT order_number, $4, $5, jsonb_build_object('kind', $2::text) || $3 FROM flagged",
        order_number.map(|o| storable_text(o, 64)),
        kind.as_str(),
        storable(detail),
        OrderEvent::Anomaly.as_str(),
        reported_by.as_column(),
        kind.verified(),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Most of an anomaly's detail kept, in bytes of JSON: a forger cannot fill the database.
const MAX_ANOMALY_DETAIL: usize = 4096;

/// What a forger sent is kept, minus what PostgreSQL cannot store (NUL characters) and
/// within [`MAX_ANOMALY_DETAIL`]: recording an anomaly must never fail, or grow the
/// database, because of its content. A larger detail keeps its beginning, as text.
/// Fractional numbers are kept as text: `jsonb` rewrites one such as 1.7976931348623157e308
/// as 309 digits that no longer read back as a JSON number, and the order's history could
/// not be shown.
fn storable(value: Value) -> Value {
    let value = readable(value);
    let text = value.to_string();
    if text.len() <= MAX_ANOMALY_DETAIL {
        return value;
    }
    let head: String = text.chars().take(MAX_ANOMALY_DETAIL / 2).collect();
    json!({"truncated": true, "bytes": text.len(), "head": head})
}

fn readable(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(storable_text(&s, 1000)),
        Value::Number(n) if n.is_f64() => Value::String(n.to_string()),
        Value::Array(items) => Value::Array(items.into_iter().map(readable).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (storable_text(&k, 100), readable(v)))
                .collect(),
        ),
        other => other,
    }
}

fn storable_text(text: &str, max_chars: usize) -> String {
    storable::text(text).chars().take(max_chars).collect()
}

//! Callbacks (and, later, queries) that disagree with our records. Kept for a person;
//! never fulfilled.

use serde_json::Value;
use sqlx::PgPool;

/// What a forger sent is kept, minus what PostgreSQL cannot store (NUL characters) and
/// within reason in size: recording an anomaly must never fail because of its content.
fn storable(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(storable_text(&s, 1000)),
        Value::Array(items) => Value::Array(items.into_iter().map(storable).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (storable_text(&k, 100), storable(v)))
                .collect(),
        ),
        other => other,
    }
}

fn storable_text(text: &str, max_chars: usize) -> String {
    text.chars()
        .filter(|c| *c != '\0')
        .take(max_chars)
        .collect()
}

pub async fn record(
    db: &PgPool,
    order_number: Option<&str>,
    kind: &str,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH anomaly AS (
            INSERT INTO payment_anomalies (order_number, kind, detail) VALUES ($1, $2, $3)
         ), flagged AS (
            UPDATE orders SET anomaly = $2, updated_at = now() WHERE order_number = $1
            RETURNING order_number
         )
         INSERT INTO order_events (order_number, event, actor, detail)
         SELECT order_number, 'anomaly', 'wechat-callback', jsonb_build_object('kind', $2::text) || $3
         FROM flagged",
    )
    .bind(order_number.map(|o| storable_text(o, 64)))
    .bind(kind)
    .bind(storable(detail))
    .execute(db)
    .await?;
    Ok(())
}

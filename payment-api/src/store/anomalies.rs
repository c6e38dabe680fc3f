//! Callbacks (and, later, queries) that disagree with our records. Kept for a person;
//! never fulfilled.

use sqlx::PgPool;

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
    .bind(order_number)
    .bind(kind)
    .bind(detail)
    .execute(db)
    .await?;
    Ok(())
}

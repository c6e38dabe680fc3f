//! The paid orders a person must look at: top-ups whose outcome is unknown, failed top-ups
//! without a refund under way, and refunds that failed.

use chrono::{DateTime, Utc};
use shared::money::Fen;
use shared::order::{Msisdn, OrderNumber, RechargeStatus, RefundStatus};
use sqlx::PgPool;

/// One order to look at, with its refund if it has one.
pub struct AttentionRow {
    pub order_number: OrderNumber,
    pub phone_number: Msisdn,
    pub product_name: String,
    pub amount_fen: Fen,
    pub recharge_status: RechargeStatus,
    pub refund_status: Option<RefundStatus>,
    pub refund_error: Option<String>,
    pub recharge_error_message: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
}

/// The oldest `limit` of them, and how many there are in all.
pub async fn oldest(db: &PgPool, limit: i64) -> Result<(Vec<AttentionRow>, i64), sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT o.order_number AS "order_number: OrderNumber",
                  o.phone_number AS "phone_number: Msisdn", o.product_name,
                  o.amount_fen AS "amount_fen: Fen",
                  o.recharge_status AS "recharge_status: RechargeStatus",
                  r.status AS "refund_status?: RefundStatus", r.last_error AS "refund_error?",
                  o.recharge_error_message, o.paid_at, count(*) OVER () AS "total!"
             FROM orders o LEFT JOIN refunds r ON r.order_number = o.order_number
            WHERE o.payment_status = 'paid'
              AND (o.recharge_status = 'unknown'
                   OR (o.recharge_status = 'failed' AND (r.status IS NULL OR r.status = 'failed'))
                   OR r.status = 'failed')
            ORDER BY o.paid_at, o.id LIMIT $1"#,
        limit,
    )
    .fetch_all(db)
    .await?;
    let total = rows.first().map_or(0, |row| row.total);
    let rows = rows
        .into_iter()
        .map(|row| AttentionRow {
            order_number: row.order_number,
            phone_number: row.phone_number,
            product_name: row.product_name,
            amount_fen: row.amount_fen,
            recharge_status: row.recharge_status,
            refund_status: row.refund_status,
            refund_error: row.refund_error,
            recharge_error_message: row.recharge_error_message,
            paid_at: row.paid_at,
        })
        .collect();
    Ok((rows, total))
}

//! The worker's SQL. The claim and every outcome are single statements guarded by what
//! they expect (`recharge_status = 'processing' AND recharge_worker = $me`), each writing
//! its line of the order's history in the same statement.

use std::time::Duration;

use shared::order::OrderNumber;
use shared::unitel::TopUpReceipt;
use sqlx::PgPool;

/// What the worker needs to fulfil a claimed order.
#[derive(Debug, sqlx::FromRow)]
pub struct ClaimedOrder {
    pub order_number: String,
    pub phone_number: String,
    pub recharge_type: String,
    pub product_code: String,
    pub price_mnt: i64,
}

/// Takes the order for this worker if it is paid, not sent, and either unclaimed or
/// claimed so long ago (with nothing sent) that its holder must be dead.
pub async fn claim(
    db: &PgPool,
    order_number: &OrderNumber,
    worker: &str,
    stale_after: Duration,
) -> Result<Option<ClaimedOrder>, sqlx::Error> {
    sqlx::query_as(
        "WITH claimed AS (
            UPDATE orders
               SET recharge_status = 'processing', recharge_at = now(), recharge_worker = $2,
                   updated_at = now()
             WHERE order_number = $1
               AND payment_status = 'paid'
               AND recharge_sent_at IS NULL
               AND (recharge_status = 'pending'
                    OR (recharge_status = 'processing'
                        AND recharge_at < now() - make_interval(secs => $3)))
            RETURNING order_number, phone_number, recharge_type, product_code, price_mnt
         ), event AS (
            INSERT INTO order_events (order_number, event, actor)
            SELECT order_number, 'claimed', 'worker:' || $2 FROM claimed
         )
         SELECT * FROM claimed",
    )
    .bind(order_number.as_str())
    .bind(worker)
    .bind(stale_after.as_secs_f64())
    .fetch_optional(db)
    .await
}

/// Why a claim was refused: the order's state as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct OrderState {
    pub payment_status: String,
    pub recharge_status: String,
    pub recharge_worker: Option<String>,
}

pub async fn state(
    db: &PgPool,
    order_number: &OrderNumber,
) -> Result<Option<OrderState>, sqlx::Error> {
    sqlx::query_as(
        "SELECT payment_status, recharge_status, recharge_worker FROM orders WHERE order_number = $1",
    )
    .bind(order_number.as_str())
    .fetch_optional(db)
    .await
}

/// Written just before the request goes out: from here on the order may be credited and
/// will never be sent again automatically. False if the claim is no longer ours.
pub async fn mark_sent(db: &PgPool, order_number: &str, worker: &str) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE orders SET recharge_sent_at = now(), recharge_at = now(),
                recharge_attempts = recharge_attempts + 1, updated_at = now()
          WHERE order_number = $1 AND recharge_worker = $2
            AND recharge_status = 'processing' AND recharge_sent_at IS NULL",
    )
    .bind(order_number)
    .bind(worker)
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Undoes [`mark_sent`] for a request that provably never reached Unitel.
pub async fn unmark_sent(db: &PgPool, order_number: &str, worker: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE orders SET recharge_sent_at = NULL, updated_at = now()
          WHERE order_number = $1 AND recharge_worker = $2 AND recharge_status = 'processing'",
    )
    .bind(order_number)
    .bind(worker)
    .execute(db)
    .await?;
    Ok(())
}

/// Gives the order back (nothing was sent) so that a later delivery can take it.
pub async fn release(
    db: &PgPool,
    order_number: &str,
    worker: &str,
    why: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH released AS (
            UPDATE orders
               SET recharge_status = 'pending', recharge_at = NULL, recharge_worker = NULL,
                   recharge_sent_at = NULL, recharge_error_message = $3, updated_at = now()
             WHERE order_number = $1 AND recharge_worker = $2 AND recharge_status = 'processing'
               AND recharge_sent_at IS NULL
            RETURNING order_number
         )
         INSERT INTO order_events (order_number, event, actor, detail)
         SELECT order_number, 'released', 'worker:' || $2, jsonb_build_object('reason', $3::text)
         FROM released",
    )
    .bind(order_number)
    .bind(worker)
    .bind(why)
    .execute(db)
    .await?;
    Ok(())
}

pub enum Outcome<'a> {
    Success(&'a TopUpReceipt),
    Failed {
        code: &'a str,
        message: &'a str,
    },
    /// `seq` when Unitel accepted without finishing: reconciliation can ask about it.
    Unknown {
        reason: &'a str,
        seq: Option<&'a str>,
    },
}

/// Records how the top-up ended. False if the order was not ours to finish any more.
pub async fn record(
    db: &PgPool,
    order_number: &str,
    worker: &str,
    outcome: &Outcome<'_>,
) -> Result<bool, sqlx::Error> {
    let (status, seq, sv_id, vat, code, message) = match *outcome {
        Outcome::Success(receipt) => (
            "success",
            receipt.seq.as_deref(),
            receipt.sv_id.as_deref(),
            receipt.vat.clone(),
            None,
            None,
        ),
        Outcome::Failed { code, message } => {
            ("failed", None, None, None, Some(code), Some(message))
        }
        Outcome::Unknown { reason, seq } => ("unknown", seq, None, None, None, Some(reason)),
    };
    let recorded: Option<String> = sqlx::query_scalar(
        "WITH finished AS (
            UPDATE orders
               SET recharge_status = $3, recharged_at = now(), seq_id = $4, sv_id = $5,
                   vat_receipt = $6, recharge_error_code = $7, recharge_error_message = $8,
                   updated_at = now()
             WHERE order_number = $1 AND recharge_worker = $2
               -- 'unknown': the sweep gave up on this worker, which has the real answer now.
               AND recharge_status IN ('processing', 'unknown')
            RETURNING order_number
         ), event AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT order_number, $3, 'worker:' || $2,
                   jsonb_strip_nulls(jsonb_build_object('seq', $4::text, 'code', $7::text, 'message', $8::text))
            FROM finished
         )
         SELECT order_number FROM finished",
    )
    .bind(order_number)
    .bind(worker)
    .bind(status)
    .bind(seq)
    .bind(sv_id)
    .bind(vat)
    .bind(code)
    .bind(message)
    .fetch_optional(db)
    .await?;
    Ok(recorded.is_some())
}

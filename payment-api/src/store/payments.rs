//! The one way an order becomes paid. The callback (and, later, the payment query) comes
//! through here, so a payment is announced exactly once however many times it is reported.

use chrono::{DateTime, Utc};
use shared::amqp::ORDER_PAID_ROUTING_KEY;
use shared::message::OrderPaid;
use shared::money::Fen;
use shared::order::OrderNumber;
use sqlx::PgPool;

pub struct ConfirmedPayment<'a> {
    pub order_number: &'a OrderNumber,
    pub transaction_id: &'a str,
    pub amount: Fen,
    pub paid_at: DateTime<Utc>,
    /// Who told us: recorded in the order's history.
    pub reported_by: &'a str,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// unpaid → paid, with an `OrderPaid` row in the outbox, in one statement.
    Recorded,
    /// Reported before with this transaction: a duplicate, nothing to do.
    AlreadyRecorded,
    /// Paid before with another transaction: the customer may have paid twice.
    PaidWithAnotherTransaction {
        recorded: String,
    },
    /// The order was closed and cannot become paid.
    Closed,
    /// The amount differs from the order's.
    AmountMismatch {
        expected: i64,
    },
    NotFound,
}

/// The transition, its history and its message as one statement: all or nothing, and a
/// concurrent duplicate finds `payment_status` already 'paid' and changes nothing.
/// Public so that the benchmark can give pgbench exactly this statement.
pub const RECORD_PAYMENT: &str = "WITH paid AS (
    UPDATE orders
       SET payment_status = 'paid', transaction_id = $2, paid_at = $3, updated_at = now()
     WHERE order_number = $1 AND payment_status = 'unpaid' AND amount_fen = $4
    RETURNING order_number
 ), event AS (
    INSERT INTO order_events (order_number, event, actor, detail)
    SELECT order_number, 'paid', $5, jsonb_build_object('transactionId', $2::text)
    FROM paid
 ), message AS (
    INSERT INTO outbox (idempotency_key, order_number, routing_key, payload)
    SELECT 'order-paid:' || order_number, order_number, $6, $7 FROM paid
    ON CONFLICT (idempotency_key) DO NOTHING
 )
 SELECT order_number FROM paid";

/// Why `RECORD_PAYMENT` changed nothing (a duplicate, most often).
pub const STATE_AFTER_NO_CHANGE: &str =
    "SELECT payment_status, transaction_id, amount_fen FROM orders WHERE order_number = $1";

pub async fn confirm(
    db: &PgPool,
    payment: &ConfirmedPayment<'_>,
) -> Result<PaymentOutcome, sqlx::Error> {
    let message = OrderPaid::new(
        payment.order_number.clone(),
        payment.amount,
        payment.transaction_id.to_owned(),
        payment.paid_at,
    );
    let payload = serde_json::to_value(&message).expect("OrderPaid serialises");
    let recorded: Option<String> = sqlx::query_scalar(RECORD_PAYMENT)
        .bind(payment.order_number.as_str())
        .bind(payment.transaction_id)
        .bind(payment.paid_at)
        .bind(payment.amount.get())
        .bind(payment.reported_by)
        .bind(ORDER_PAID_ROUTING_KEY)
        .bind(payload)
        .fetch_optional(db)
        .await?;
    if recorded.is_some() {
        return Ok(PaymentOutcome::Recorded);
    }

    // Nothing changed: say why, from what is stored now.
    let current: Option<(String, Option<String>, i64)> = sqlx::query_as(STATE_AFTER_NO_CHANGE)
        .bind(payment.order_number.as_str())
        .fetch_optional(db)
        .await?;
    Ok(match current {
        None => PaymentOutcome::NotFound,
        Some((_, _, expected)) if expected != payment.amount.get() => {
            PaymentOutcome::AmountMismatch { expected }
        }
        Some((status, Some(recorded), _)) if status == "paid" => {
            if recorded == payment.transaction_id {
                PaymentOutcome::AlreadyRecorded
            } else {
                PaymentOutcome::PaidWithAnotherTransaction { recorded }
            }
        }
        Some(_) => PaymentOutcome::Closed,
    })
}

//! Orders and their payments: an order is created `unpaid`, and becomes `paid` when
//! WeChat reports or confirms its payment, or `closed` when its payment window is over.

use std::time::Duration;

use chrono::{DateTime, Utc};
#[cfg(feature = "bench")]
use serde_json::Value;
use sqlx::PgPool;

use crate::history::{Actor, OrderEvent};
use crate::message::OrderPaid;
use crate::money::{Fen, Mnt, MntPerYuan};
use crate::order::{
    Msisdn, OpenId, Operator, OrderNumber, PayChannel, PaymentStatus, RechargeType,
};
use crate::storable;

pub struct NewOrder<'a> {
    pub order_number: &'a OrderNumber,
    pub user_id: i64,
    pub openid: &'a OpenId,
    pub msisdn: &'a Msisdn,
    pub operator: Operator,
    pub recharge_type: RechargeType,
    pub product_code: &'a str,
    pub product_name: &'a str,
    pub product_eng_name: Option<&'a str>,
    /// Unitel's `unit`, `data` and `days` for the product, as the mini-program shows them.
    pub product_unit: Option<i32>,
    pub product_data: Option<&'a str>,
    pub product_days: Option<i32>,
    pub price: Mnt,
    pub rate: MntPerYuan,
    pub amount: Fen,
    /// The WeChat Pay channel every call about this order will go through.
    pub channel: PayChannel,
}

/// A new order, `unpaid`, priced as given.
pub async fn create_order(db: &PgPool, order: &NewOrder<'_>) -> Result<(), sqlx::Error> {
    // Unitel's own texts, as its product list gave them.
    let product_name = storable::text(order.product_name);
    let product_eng_name = order.product_eng_name.map(storable::text);
    let product_data = order.product_data.map(storable::text);
    sqlx::query!(
        "WITH created AS (
            INSERT INTO orders (order_number, user_id, openid, phone_number, product_operator,
                recharge_type, product_code, product_name, product_eng_name, price_mnt,
                exchange_rate, amount_fen, product_unit, product_data, product_days, pay_channel)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $15, $16, $17, $18)
            RETURNING order_number, amount_fen, price_mnt, exchange_rate
         )
         INSERT INTO order_events (order_number, event, actor, detail)
         SELECT order_number, $13, $14,
                jsonb_build_object('amountFen', amount_fen, 'priceMnt', price_mnt,
                                   'exchangeRate', exchange_rate)
           FROM created",
        order.order_number.as_str(),
        order.user_id,
        order.openid.as_str(),
        order.msisdn.as_str(),
        order.operator.as_str(),
        order.recharge_type.as_str(),
        order.product_code,
        &*product_name,
        product_eng_name.as_deref(),
        order.price.get(),
        order.rate.get(),
        order.amount.get(),
        OrderEvent::Created.as_str(),
        Actor::User(order.openid.clone()).as_column(),
        order.product_unit,
        product_data.as_deref(),
        order.product_days,
        order.channel.as_str(),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Remembers the WeChat payment started for an unpaid order. False if the order stopped
/// being unpaid meanwhile (closed by the watch, or paid): its payment sheet must not be
/// shown.
pub async fn record_prepay(
    db: &PgPool,
    order_number: &OrderNumber,
    prepay_id: &str,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        "UPDATE orders SET prepay_id = $2, prepay_at = now(), updated_at = now()
          WHERE order_number = $1 AND payment_status = 'unpaid'",
        order_number.as_str(),
        prepay_id,
    )
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// A payment WeChat reported (callback) or confirmed (query).
pub struct ReportedPayment<'a> {
    pub order_number: &'a OrderNumber,
    pub transaction_id: &'a str,
    pub amount: Fen,
    /// When WeChat says the customer paid (`time_end`); when we recorded it is kept apart.
    pub paid_at: DateTime<Utc>,
    pub reported_by: Actor,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// unpaid → paid, with its `OrderPaid` message in the outbox.
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
        expected: Fen,
    },
    /// The transaction already paid another order: WeChat never pays two orders with one.
    TransactionReused {
        by: String,
    },
    NotFound,
}

// The statements of `record_payment`, as macros so that the benchmark's pgbench can be
// given exactly their text (`record_payment_statements`).
macro_rules! record_payment_query {
    ($($arg:expr),+ $(,)?) => {
        sqlx::query_scalar!(
            "WITH paid AS (
                UPDATE orders
                   SET payment_status = 'paid', transaction_id = $2, paid_at = $3,
                       payment_recorded_at = now(), updated_at = now()
                 WHERE order_number = $1 AND payment_status = 'unpaid' AND amount_fen = $4
                   AND NOT EXISTS (SELECT 1 FROM orders paid WHERE paid.transaction_id = $2)
                RETURNING order_number
             ), event AS (
                INSERT INTO order_events (order_number, event, actor, detail)
                SELECT order_number, $5, $6, jsonb_build_object('transactionId', $2::text)
                  FROM paid
             ), message AS (
                INSERT INTO outbox (idempotency_key, order_number, routing_key, payload)
                SELECT $7, order_number, $8, $9 FROM paid
                ON CONFLICT (idempotency_key) DO NOTHING
             )
             SELECT order_number FROM paid",
            $($arg),+
        )
    };
}

macro_rules! state_after_no_change_query {
    ($order_number:expr, $transaction_id:expr) => {
        sqlx::query!(
            r#"SELECT payment_status AS "payment_status: PaymentStatus", transaction_id,
                      amount_fen AS "amount_fen: Fen",
                      (SELECT other.order_number FROM orders other
                        WHERE other.transaction_id = $2 AND other.order_number <> $1) AS reused_by
                 FROM orders WHERE order_number = $1"#,
            $order_number,
            $transaction_id
        )
    };
}

/// The text of the two statements [`record_payment`] sends: the transition, and what it
/// reads when the transition changed nothing. The benchmark gives them to pgbench; only it
/// enables the `bench` feature.
#[cfg(feature = "bench")]
pub fn record_payment_statements() -> (&'static str, &'static str) {
    use sqlx::Execute;
    let now = Utc::now();
    let transition = record_payment_query!("", "", now, 0i64, "", "", "", "", Value::Null);
    let explanation = state_after_no_change_query!("", "");
    (transition.sql(), explanation.sql())
}

/// `unpaid → paid`. The transition, its history and its message are one statement: all or
/// nothing, and a concurrent duplicate finds the order paid already and changes nothing.
/// When nothing changed, a second statement says why.
pub async fn record_payment(
    db: &PgPool,
    payment: &ReportedPayment<'_>,
) -> Result<PaymentOutcome, sqlx::Error> {
    let message = OrderPaid::new(
        payment.order_number.clone(),
        payment.amount,
        payment.transaction_id.to_owned(),
        payment.paid_at,
    )
    .outbox_entry();
    let recorded = match record_payment_query!(
        payment.order_number.as_str(),
        payment.transaction_id,
        payment.paid_at,
        payment.amount.get(),
        OrderEvent::Paid.as_str(),
        payment.reported_by.as_column(),
        message.idempotency_key,
        message.routing_key,
        message.payload,
    )
    .fetch_optional(db)
    .await
    {
        Ok(recorded) => recorded,
        // The same transaction recorded for another order at the same moment: the unique
        // index decided; the explanation below names the other order.
        Err(error) if is_unique_violation(&error, "orders_transaction_id") => None,
        Err(error) => return Err(error),
    };
    if recorded.is_some() {
        return Ok(PaymentOutcome::Recorded);
    }
    let current =
        state_after_no_change_query!(payment.order_number.as_str(), payment.transaction_id)
            .fetch_optional(db)
            .await?;
    Ok(match current {
        None => PaymentOutcome::NotFound,
        Some(order) if order.amount_fen != payment.amount => PaymentOutcome::AmountMismatch {
            expected: order.amount_fen,
        },
        Some(order) => match (order.payment_status, order.transaction_id) {
            (PaymentStatus::Paid, Some(recorded)) if recorded == payment.transaction_id => {
                PaymentOutcome::AlreadyRecorded
            }
            (PaymentStatus::Paid, Some(recorded)) => {
                PaymentOutcome::PaidWithAnotherTransaction { recorded }
            }
            _ => match order.reused_by {
                Some(by) => PaymentOutcome::TransactionReused { by },
                None => PaymentOutcome::Closed,
            },
        },
    })
}

fn is_unique_violation(error: &sqlx::Error, constraint: &str) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation() && e.constraint() == Some(constraint))
}

/// A payment WeChat confirmed for an order that was closed before it arrived: the money
/// was taken and nothing will be fulfilled. The transaction is kept on the closed order,
/// so that the money can be refunded through the system (see
/// [`request_refund`](super::request_refund)). False if the order is not closed, or its
/// late payment is recorded already.
pub async fn record_payment_after_close(
    db: &PgPool,
    payment: &ReportedPayment<'_>,
) -> Result<bool, sqlx::Error> {
    let recorded = sqlx::query_scalar!(
        "WITH late AS (
            UPDATE orders
               SET transaction_id = $2, paid_at = $3, payment_recorded_at = now(),
                   updated_at = now()
             WHERE order_number = $1 AND payment_status = 'closed' AND amount_fen = $4
               AND transaction_id IS NULL
               AND NOT EXISTS (SELECT 1 FROM orders paid WHERE paid.transaction_id = $2)
            RETURNING order_number
         ), event AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT order_number, $5, $6, jsonb_build_object('transactionId', $2::text)
              FROM late
         )
         SELECT order_number FROM late",
        payment.order_number.as_str(),
        payment.transaction_id,
        payment.paid_at,
        payment.amount.get(),
        OrderEvent::PaidAfterClose.as_str(),
        payment.reported_by.as_column(),
    )
    .fetch_optional(db)
    .await?;
    Ok(recorded.is_some())
}

/// `unpaid → closed`: the order can no longer be paid. With `only_without_prepay`, an
/// order whose payment started meanwhile is left alone (it must be closed at WeChat
/// first).
pub async fn close_unpaid(
    db: &PgPool,
    order_number: &OrderNumber,
    closed_by: &Actor,
    reason: &str,
    only_without_prepay: bool,
) -> Result<bool, sqlx::Error> {
    let closed = sqlx::query_scalar!(
        "WITH closed AS (
            UPDATE orders SET payment_status = 'closed', closed_at = now(), updated_at = now()
             WHERE order_number = $1 AND payment_status = 'unpaid'
               AND (NOT $2 OR prepay_id IS NULL)
            RETURNING order_number
         ), event AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT order_number, $3, $4, jsonb_build_object('reason', $5::text) FROM closed
         )
         SELECT order_number FROM closed",
        order_number.as_str(),
        only_without_prepay,
        OrderEvent::Closed.as_str(),
        closed_by.as_column(),
        reason,
    )
    .fetch_optional(db)
    .await?;
    Ok(closed.is_some())
}

/// Takes the right to ask WeChat about this unpaid order now, if nobody (any instance,
/// any route) asked within `at_most_every`: reads and the watch ask at most that often.
pub async fn take_payment_check(
    db: &PgPool,
    order_number: &OrderNumber,
    at_most_every: Duration,
) -> Result<bool, sqlx::Error> {
    let taken = sqlx::query!(
        "UPDATE orders SET payment_checked_at = now()
          WHERE order_number = $1 AND payment_status = 'unpaid'
            AND (payment_checked_at IS NULL
                 OR payment_checked_at < now() - make_interval(secs => $2))",
        order_number.as_str(),
        at_most_every.as_secs_f64(),
    )
    .execute(db)
    .await?;
    Ok(taken.rows_affected() == 1)
}

//! Every change of an order's or a refund's state, for both binaries, in this one file.
//!
//! ```text
//! payment   unpaid ──record_payment──▶ paid            unpaid ──close_unpaid──▶ closed
//! recharge  pending ──claim──▶ processing ──record_outcome──▶ success | failed | unknown
//!                   ◀──release / release_abandoned_claims──┘   (nothing sent yet)
//!           processing ──abandon_sent_claims──▶ unknown ──settle_unknown──▶ success | failed
//!           (a claim is its worker's while the worker's lease is live: register_lease)
//! refund    requested ──change_refund(Accepted)──▶ accepted ──(Succeeded)──▶ success
//!           requested | accepted ──(Failed)──▶ failed ──retry_refund──▶ requested
//! ```
//!
//! Each transition is one SQL statement that says what it expects to find (`WHERE
//! payment_status = 'unpaid'`), so concurrent callers cannot race: one changes the row,
//! the others change nothing and are told so. Each writes its own line of the order's
//! history ([`OrderEvent`] by an [`Actor`]) in the same statement, and a payment writes its
//! [`OrderPaid`] message to the outbox there too. Nothing else in the code base changes an
//! order's or a refund's state or writes its history.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::history::{Actor, AnomalyKind, OrderEvent};
use crate::message::OrderPaid;
use crate::money::{Fen, Mnt, MntPerYuan};
use crate::order::{
    Msisdn, OpenId, Operator, OrderNumber, PaymentStatus, RechargeStatus, RechargeType,
    RefundStatus,
};
use crate::storable;
use crate::unitel::TopUpReceipt;

// ───────────────────────────── orders and payments ─────────────────────────────

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
                exchange_rate, amount_fen, product_unit, product_data, product_days)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $15, $16, $17)
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
/// reads when the transition changed nothing. The benchmark gives them to pgbench.
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
/// so that the money can be refunded through the system (see [`request_refund`]). False
/// if the order is not closed, or its late payment is recorded already.
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

// ───────────────────────────── orders brought over ─────────────────────────────

/// An order of the replaced system's, as `payment-api import-legacy` brings it over: its
/// product and price as they were, and the state the import decided for it.
pub struct ImportedOrder<'a> {
    /// The order as it was created there.
    pub order: NewOrder<'a>,
    pub created_at: DateTime<Utc>,
    pub payment: ImportedPayment,
    /// The row as the replaced system had it, and what WeChat said: kept in the history.
    pub source: Value,
}

/// Where an imported order stands with WeChat Pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportedPayment {
    /// WeChat has never heard of it.
    NotStarted,
    /// Started at WeChat and not paid: the payment watch asks about it and closes it at
    /// WeChat when its window is over, like any other.
    Started { at: DateTime<Utc> },
    /// WeChat closed it.
    Closed,
    /// WeChat took the money, with this transaction.
    Paid {
        transaction_id: String,
        paid_at: DateTime<Utc>,
        recharge: ImportedRecharge,
    },
}

/// Where a paid imported order's top-up stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportedRecharge {
    /// Provably never sent: the workers take it, through an `OrderPaid` message.
    NotSent,
    /// Credited.
    Credited {
        seq_id: Option<String>,
        at: DateTime<Utc>,
    },
    /// It may have reached Unitel: never sent again automatically; a person settles it.
    MaybeSent {
        claimed_at: Option<DateTime<Utc>>,
        /// Unitel's transaction, when it was recorded: reconciliation asks Unitel about it.
        seq_id: Option<String>,
        reason: String,
    },
}

/// What payments the replaced system started at WeChat are known by here: their prepay id
/// stayed there. Only its presence matters (the watch asks about and closes such orders).
const PREPAY_STARTED_ELSEWHERE: &str = "started by the replaced system";

/// Creates the order in the state the import decided, with its history (`imported`, and
/// `unknown` for a top-up that may have been sent) and, for a paid order never sent, its
/// `OrderPaid` message — one statement. False if the order exists already (imported
/// before, or created here): a second import changes nothing.
pub async fn import_order(db: &PgPool, imported: &ImportedOrder<'_>) -> Result<bool, sqlx::Error> {
    let order = &imported.order;
    let (payment_status, prepay_at, closed, paid) = match &imported.payment {
        ImportedPayment::NotStarted => (PaymentStatus::Unpaid, None, false, None),
        ImportedPayment::Started { at } => (PaymentStatus::Unpaid, Some(*at), false, None),
        ImportedPayment::Closed => (PaymentStatus::Closed, None, true, None),
        ImportedPayment::Paid {
            transaction_id,
            paid_at,
            recharge,
        } => (
            PaymentStatus::Paid,
            None,
            false,
            Some((transaction_id, *paid_at, recharge)),
        ),
    };
    let recharge = paid.map(|(_, _, recharge)| recharge);
    let recharge_status = match recharge {
        None | Some(ImportedRecharge::NotSent) => RechargeStatus::Pending,
        Some(ImportedRecharge::Credited { .. }) => RechargeStatus::Success,
        Some(ImportedRecharge::MaybeSent { .. }) => RechargeStatus::Unknown,
    };
    let (claimed_at, recharged_at, seq_id, unknown_reason) = match recharge {
        Some(ImportedRecharge::Credited { seq_id, at }) => (None, Some(*at), seq_id.clone(), None),
        Some(ImportedRecharge::MaybeSent {
            claimed_at,
            seq_id,
            reason,
        }) => (*claimed_at, None, seq_id.clone(), Some(reason.clone())),
        _ => (None, None, None, None),
    };
    let message = paid
        .filter(|(_, _, recharge)| **recharge == ImportedRecharge::NotSent)
        .map(|(transaction_id, paid_at, _)| {
            OrderPaid::new(
                order.order_number.clone(),
                order.amount,
                transaction_id.clone(),
                paid_at,
            )
            .outbox_entry()
        });
    let imported = sqlx::query_scalar!(
        r#"WITH imported AS (
            INSERT INTO orders (order_number, user_id, openid, phone_number, product_operator,
                recharge_type, product_code, product_name, product_eng_name, product_unit,
                product_data, product_days, price_mnt, exchange_rate, amount_fen, created_at,
                imported_at, payment_status, prepay_id, prepay_at, closed_at, transaction_id,
                paid_at, payment_recorded_at, recharge_status, recharge_at, recharge_sent_at,
                recharged_at, seq_id, unknown_at, recharge_error_code, recharge_error_message)
            VALUES ($1, $2, $3, $4, $34, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                now(), $16, CASE WHEN $17::timestamptz IS NULL THEN NULL ELSE $18 END, $17,
                CASE WHEN $19 THEN now() END, $20, $21, CASE WHEN $20::text IS NULL THEN NULL ELSE now() END,
                $22, $23, $23, $24, $25, CASE WHEN $26::text IS NULL THEN NULL ELSE now() END,
                CASE WHEN $26::text IS NULL THEN NULL ELSE 'IMPORTED_UNCERTAIN' END, $26)
            ON CONFLICT (order_number) DO NOTHING
            RETURNING order_number
         ), history AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT i.order_number, e.event, $28, e.detail
              FROM imported i,
                   (VALUES (1, $27::text, $29::jsonb),
                           (2, $30::text, jsonb_build_object('reason', $26::text))) AS e(n, event, detail)
             WHERE e.n = 1 OR $26::text IS NOT NULL
             ORDER BY e.n
         ), queued AS (
            INSERT INTO outbox (idempotency_key, order_number, routing_key, payload)
            SELECT $31::text, order_number, $32::text, $33::jsonb FROM imported WHERE $31::text IS NOT NULL
            ON CONFLICT (idempotency_key) DO NOTHING
         )
         SELECT order_number AS "order_number!" FROM imported"#,
        order.order_number.as_str(),
        order.user_id,
        order.openid.as_str(),
        order.msisdn.as_str(),
        order.recharge_type.as_str(),
        order.product_code,
        order.product_name,
        order.product_eng_name,
        order.product_unit,
        order.product_data,
        order.product_days,
        order.price.get(),
        order.rate.get(),
        order.amount.get(),
        imported.created_at,
        payment_status.as_str(),
        prepay_at,
        PREPAY_STARTED_ELSEWHERE,
        closed,
        paid.map(|(transaction_id, _, _)| transaction_id.as_str()),
        paid.map(|(_, paid_at, _)| paid_at),
        recharge_status.as_str(),
        claimed_at,
        recharged_at,
        seq_id,
        unknown_reason,
        OrderEvent::Imported.as_str(),
        Actor::Import.as_column(),
        imported.source,
        OrderEvent::Unknown.as_str(),
        message.as_ref().map(|m| m.idempotency_key.clone()),
        message.as_ref().map(|m| m.routing_key.to_owned()),
        message.as_ref().map(|m| m.payload.clone()),
        order.operator.as_str(),
    )
    .fetch_optional(db)
    .await?;
    Ok(imported.is_some())
}

// ───────────────────────────── top-ups (recharge-worker) ─────────────────────────────

/// The longest lease a worker may hold (`WORKER_LEASE_MS`' upper bound).
pub const LONGEST_LEASE: Duration = Duration::from_secs(60);

/// Added to the moment a request marked sent can last reach Unitel before anyone may call
/// it not credited: for the scheduling of the worker between its last check and its write,
/// and for Unitel's own queueing.
pub const IN_FLIGHT_MARGIN: Duration = Duration::from_secs(10);

/// A recharge-worker process's lease: every claim names one, and a claim is its worker's
/// only while the lease is live. The worker renews it every second or two; a lease that
/// expired belongs to a worker that died, stalled or lost the database.
pub async fn register_lease(
    db: &PgPool,
    worker_id: &str,
    lasts: Duration,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO worker_leases (worker_id, expires_at)
         VALUES ($1, now() + make_interval(secs => $2)) RETURNING id",
        worker_id,
        lasts.as_secs_f64(),
    )
    .fetch_one(db)
    .await
}

/// Extends a live lease; false if it had expired already (it stays expired: the worker
/// registers a new one).
pub async fn renew_lease(db: &PgPool, lease: i64, lasts: Duration) -> Result<bool, sqlx::Error> {
    let renewed = sqlx::query!(
        "UPDATE worker_leases SET expires_at = now() + make_interval(secs => $2)
          WHERE id = $1 AND expires_at > now()",
        lease,
        lasts.as_secs_f64(),
    )
    .execute(db)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Ends a lease at once (a worker stopping cleanly, its orders finished or released).
pub async fn end_lease(db: &PgPool, lease: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE worker_leases SET expires_at = LEAST(expires_at, now()) WHERE id = $1",
        lease,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Forgets leases that ended a day ago and hold no claim.
pub async fn prune_leases(db: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "DELETE FROM worker_leases l
          WHERE l.expires_at < now() - interval '1 day'
            AND NOT EXISTS (SELECT 1 FROM orders o
                             WHERE o.recharge_status = 'processing' AND o.recharge_lease = l.id)"
    )
    .execute(db)
    .await?
    .rows_affected())
}

/// What a worker needs to send the top-up of an order it claimed.
#[derive(Debug)]
pub struct ClaimedOrder {
    pub order_number: OrderNumber,
    pub msisdn: Msisdn,
    pub recharge_type: RechargeType,
    pub product_code: String,
    pub price: Mnt,
}

/// `pending → processing` for this worker under its (live) lease, if the order is paid
/// and nothing was sent; also taking over a claim whose lease expired with nothing sent.
pub async fn claim(
    db: &PgPool,
    order_number: &OrderNumber,
    worker: &str,
    lease: i64,
) -> Result<Option<ClaimedOrder>, sqlx::Error> {
    sqlx::query_as!(
        ClaimedOrder,
        r#"WITH claimed AS (
            UPDATE orders o
               SET recharge_status = 'processing', recharge_at = now(), recharge_worker = $2,
                   recharge_lease = $3, updated_at = now()
             WHERE o.order_number = $1
               AND o.payment_status = 'paid'
               AND o.recharge_sent_at IS NULL
               AND EXISTS (SELECT 1 FROM worker_leases mine
                            WHERE mine.id = $3 AND mine.expires_at > now())
               AND (o.recharge_status = 'pending'
                    OR (o.recharge_status = 'processing'
                        AND NOT EXISTS (SELECT 1 FROM worker_leases holder
                                         WHERE holder.id = o.recharge_lease
                                           AND holder.expires_at > now())))
            RETURNING order_number, phone_number, recharge_type, product_code, price_mnt
         ), event AS (
            INSERT INTO order_events (order_number, event, actor)
            SELECT order_number, $4, $5 FROM claimed
         )
         SELECT order_number AS "order_number!: OrderNumber", phone_number AS "msisdn!: Msisdn",
                recharge_type AS "recharge_type!: RechargeType", product_code AS "product_code!",
                price_mnt AS "price!: Mnt"
           FROM claimed"#,
        order_number.as_str(),
        worker,
        lease,
        OrderEvent::Claimed.as_str(),
        Actor::Worker(worker.to_owned()).as_column(),
    )
    .fetch_optional(db)
    .await
}

/// Where an order is, for a worker whose claim was refused.
#[derive(Debug)]
pub struct ClaimState {
    pub payment_status: PaymentStatus,
    pub recharge_status: RechargeStatus,
    pub recharge_worker: Option<String>,
    pub sent: bool,
    /// How long the holder's lease has left; `None` once it expired (or there is none).
    pub holder_lease_left: Option<Duration>,
}

pub async fn claim_state(
    db: &PgPool,
    order_number: &OrderNumber,
) -> Result<Option<ClaimState>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT o.payment_status AS "payment_status: PaymentStatus",
                  o.recharge_status AS "recharge_status: RechargeStatus", o.recharge_worker,
                  o.recharge_sent_at IS NOT NULL AS "sent!",
                  extract(epoch FROM l.expires_at - now())::float8 AS lease_left
             FROM orders o LEFT JOIN worker_leases l ON l.id = o.recharge_lease
            WHERE o.order_number = $1"#,
        order_number.as_str(),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| ClaimState {
        payment_status: r.payment_status,
        recharge_status: r.recharge_status,
        recharge_worker: r.recharge_worker,
        sent: r.sent,
        holder_lease_left: r
            .lease_left
            .filter(|left| *left > 0.0)
            .map(Duration::from_secs_f64),
    }))
}

/// Written just before the request goes out, and only while the claim is this lease's and
/// the lease is live (the fence): from here on the order may be credited and is never sent
/// again automatically. Returns how long the lease had left when the statement began, or
/// `None` if the claim or the lease is no longer live: then nothing may be sent.
///
/// The worker writes no request once that lease time is over, and a request it wrote is
/// over within `in_flight_for` (its Unitel timeout): the sum is kept on the order
/// (`recharge_in_flight_until`), the latest moment this request can reach Unitel.
pub async fn mark_sent(
    db: &PgPool,
    order_number: &OrderNumber,
    lease: i64,
    in_flight_for: Duration,
) -> Result<Option<Duration>, sqlx::Error> {
    let left = sqlx::query_scalar!(
        r#"UPDATE orders o
              SET recharge_sent_at = now(), recharge_at = now(),
                  recharge_in_flight_until = l.expires_at + make_interval(secs => $3),
                  recharge_attempts = o.recharge_attempts + 1, updated_at = now()
             FROM worker_leases l
            WHERE o.order_number = $1 AND o.recharge_lease = $2
              AND o.recharge_status = 'processing' AND o.recharge_sent_at IS NULL
              AND l.id = $2 AND l.expires_at > now()
        RETURNING extract(epoch FROM l.expires_at - now())::float8 AS "left!""#,
        order_number.as_str(),
        lease,
        in_flight_for.as_secs_f64(),
    )
    .fetch_optional(db)
    .await?;
    Ok(left.map(|secs| Duration::from_secs_f64(secs.max(0.0))))
}

/// Undoes [`mark_sent`] for a request that provably never reached Unitel.
pub async fn unmark_sent(
    db: &PgPool,
    order_number: &OrderNumber,
    lease: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE orders SET recharge_sent_at = NULL, recharge_in_flight_until = NULL, updated_at = now()
          WHERE order_number = $1 AND recharge_lease = $2 AND recharge_status = 'processing'",
        order_number.as_str(),
        lease,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// `processing → pending`: gives an unsent order back so that a later delivery can take it.
pub async fn release(
    db: &PgPool,
    order_number: &OrderNumber,
    worker: &str,
    lease: i64,
    why: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "WITH released AS (
            UPDATE orders
               SET recharge_status = 'pending', recharge_at = NULL, recharge_worker = NULL,
                   recharge_lease = NULL, recharge_sent_at = NULL, recharge_in_flight_until = NULL,
                   recharge_error_message = $3, updated_at = now()
             WHERE order_number = $1 AND recharge_lease = $2 AND recharge_status = 'processing'
               AND recharge_sent_at IS NULL
            RETURNING order_number
         )
         INSERT INTO order_events (order_number, event, actor, detail)
         SELECT order_number, $4, $5, jsonb_build_object('reason', $3::text) FROM released",
        order_number.as_str(),
        lease,
        why,
        OrderEvent::Released.as_str(),
        Actor::Worker(worker.to_owned()).as_column(),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// How a top-up ended, as the worker that sent it knows it.
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

impl Outcome<'_> {
    pub fn status(&self) -> RechargeStatus {
        match self {
            Outcome::Success(_) => RechargeStatus::Success,
            Outcome::Failed { .. } => RechargeStatus::Failed,
            Outcome::Unknown { .. } => RechargeStatus::Unknown,
        }
    }

    fn event(&self) -> OrderEvent {
        match self {
            Outcome::Success(_) => OrderEvent::Success,
            Outcome::Failed { .. } => OrderEvent::Failed,
            Outcome::Unknown { .. } => OrderEvent::Unknown,
        }
    }
}

/// `processing → success | failed | unknown` by the claim's own lease; also from
/// `unknown` when its lease expired meanwhile (the worker was cut off, then heard back
/// from Unitel: it has the real answer now). False if the order was not this claim's to
/// finish any more.
pub async fn record_outcome(
    db: &PgPool,
    order_number: &OrderNumber,
    worker: &str,
    lease: i64,
    outcome: &Outcome<'_>,
) -> Result<bool, sqlx::Error> {
    let (seq, sv_id, vat, code, message) = match *outcome {
        Outcome::Success(receipt) => (
            receipt.seq.as_deref(),
            receipt.sv_id.as_deref(),
            receipt.vat.clone(),
            None,
            None,
        ),
        Outcome::Failed { code, message } => (None, None, None, Some(code), Some(message)),
        Outcome::Unknown { reason, seq } => (seq, None, None, None, Some(reason)),
    };
    // Every text here is Unitel's (or quotes it): stored as said, whatever it contains.
    let (seq, sv_id, code, message) = (
        seq.map(storable::text),
        sv_id.map(storable::text),
        code.map(storable::text),
        message.map(storable::text),
    );
    let vat = vat.map(storable::json);
    let recorded = sqlx::query_scalar!(
        "WITH finished AS (
            UPDATE orders
               SET recharge_status = $3, recharged_at = now(), seq_id = $4, sv_id = $5,
                   vat_receipt = $6, recharge_error_code = $7, recharge_error_message = $8,
                   unknown_at = CASE WHEN $3 = 'unknown' THEN COALESCE(unknown_at, now())
                                     ELSE unknown_at END,
                   unknown_settled_by = CASE WHEN recharge_status = 'unknown' AND $3 <> 'unknown'
                                             THEN 'worker' ELSE unknown_settled_by END,
                   updated_at = now()
             WHERE order_number = $1 AND recharge_lease = $2
               AND recharge_status IN ('processing', 'unknown')
            RETURNING order_number
         ), event AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT order_number, $9, $10,
                   jsonb_strip_nulls(jsonb_build_object('seq', $4::text, 'code', $7::text,
                                                        'message', $8::text))
              FROM finished
         )
         SELECT order_number FROM finished",
        order_number.as_str(),
        lease,
        outcome.status().as_str(),
        seq.as_deref(),
        sv_id.as_deref(),
        vat,
        code.as_deref(),
        message.as_deref(),
        outcome.event().as_str(),
        Actor::Worker(worker.to_owned()).as_column(),
    )
    .fetch_optional(db)
    .await?;
    Ok(recorded.is_some())
}

/// Claims a sweep takes over although their lease is live: `processing` for longer than
/// `after` (since the claim, or since the request was marked sent), longer than a worker
/// working on an order takes. Its worker lost track of it (a bug, a path that forgot to
/// give it back): nobody else would ever finish it. Taking one over is safe even if its
/// worker is only slow: the claim moves off its lease, which fences it out. `except` are
/// the orders the sweeping worker itself is working on: under its own lease, that fence
/// would not hold.
pub struct Stuck<'a> {
    pub after: Duration,
    pub except: &'a [OrderNumber],
}

/// `processing → pending` for claims nothing was sent for, whose lease expired (their
/// worker is gone) or, with `stuck`, that are [`Stuck`]: sending later is safe. A stuck one
/// says so in its history (`stuck: true`), which makes it an alert.
pub async fn release_abandoned_claims(
    db: &PgPool,
    sweeper: &Actor,
    stuck: Option<&Stuck<'_>>,
) -> Result<Vec<OrderNumber>, sqlx::Error> {
    let except: Vec<&str> = stuck.map_or(Vec::new(), |s| {
        s.except.iter().map(OrderNumber::as_str).collect()
    });
    sqlx::query_scalar!(
        r#"WITH candidates AS (
            SELECT o.order_number,
                   EXISTS (SELECT 1 FROM worker_leases l
                            WHERE l.id = o.recharge_lease AND l.expires_at > now()) AS held
              FROM orders o
             WHERE o.payment_status = 'paid' AND o.recharge_status = 'processing'
               AND o.recharge_sent_at IS NULL
         ), released AS (
            UPDATE orders o
               SET recharge_status = 'pending', recharge_at = NULL, recharge_worker = NULL,
                   recharge_lease = NULL, recharge_in_flight_until = NULL, updated_at = now()
              FROM candidates c
             WHERE o.order_number = c.order_number
               AND o.payment_status = 'paid' AND o.recharge_status = 'processing'
               AND o.recharge_sent_at IS NULL
               AND (NOT EXISTS (SELECT 1 FROM worker_leases l
                                 WHERE l.id = o.recharge_lease AND l.expires_at > now())
                    OR (o.recharge_at < now() - make_interval(secs => $3::float8)
                        AND o.order_number <> ALL($4)))
            RETURNING o.order_number, c.held
         ), event AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT order_number, $1, $2,
                   CASE WHEN held
                        THEN jsonb_build_object('reason', 'processing for longer than '
                                 || round($3::float8) || ' s with nothing sent: taken over', 'stuck', true)
                        ELSE jsonb_build_object('reason', 'its worker stopped before anything was sent')
                   END
              FROM released
         )
         SELECT order_number AS "order_number!: OrderNumber" FROM released"#,
        OrderEvent::Released.as_str(),
        sweeper.as_column(),
        stuck.map(|s| s.after.as_secs_f64()),
        &except as &[&str],
    )
    .fetch_all(db)
    .await
}

/// `processing → unknown` for claims whose request may have gone out, whose lease expired
/// or, with `stuck`, that are [`Stuck`]: nobody can tell whether the number was credited.
/// One order (`Some`), as a worker taking over a redelivered message does, or every one
/// (`None`), as the sweep does. A worker still waiting for Unitel under that lease records
/// the real answer over it ([`record_outcome`]).
pub async fn abandon_sent_claims(
    db: &PgPool,
    order_number: Option<&OrderNumber>,
    by: &Actor,
    stuck: Option<&Stuck<'_>>,
) -> Result<Vec<OrderNumber>, sqlx::Error> {
    let except: Vec<&str> = stuck.map_or(Vec::new(), |s| {
        s.except.iter().map(OrderNumber::as_str).collect()
    });
    sqlx::query_scalar!(
        r#"WITH candidates AS (
            SELECT o.order_number,
                   EXISTS (SELECT 1 FROM worker_leases l
                            WHERE l.id = o.recharge_lease AND l.expires_at > now()) AS held
              FROM orders o
             WHERE ($1::text IS NULL OR o.order_number = $1)
               AND o.payment_status = 'paid' AND o.recharge_status = 'processing'
               AND o.recharge_sent_at IS NOT NULL
         ), lost AS (
            UPDATE orders o
               SET recharge_status = 'unknown', recharged_at = now(), updated_at = now(),
                   unknown_at = COALESCE(o.unknown_at, now()),
                   recharge_error_message = CASE WHEN c.held
                       THEN 'processing for too long after sending; outcome unknown'
                       ELSE 'the worker stopped after sending; outcome unknown' END
              FROM candidates c
             WHERE o.order_number = c.order_number
               AND o.payment_status = 'paid' AND o.recharge_status = 'processing'
               AND o.recharge_sent_at IS NOT NULL
               AND (NOT EXISTS (SELECT 1 FROM worker_leases l
                                 WHERE l.id = o.recharge_lease AND l.expires_at > now())
                    OR (o.recharge_at < now() - make_interval(secs => $4::float8)
                        AND o.order_number <> ALL($5)))
            RETURNING o.order_number, c.held
         ), event AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT order_number, $2, $3,
                   CASE WHEN held
                        THEN jsonb_build_object('reason', 'processing for longer than '
                                 || round($4::float8) || ' s after sending', 'stuck', true)
                        ELSE jsonb_build_object('reason', 'the worker stopped after sending')
                   END
              FROM lost
         )
         SELECT order_number AS "order_number!: OrderNumber" FROM lost"#,
        order_number.map(OrderNumber::as_str),
        OrderEvent::Unknown.as_str(),
        by.as_column(),
        stuck.map(|s| s.after.as_secs_f64()),
        &except as &[&str],
    )
    .fetch_all(db)
    .await
}

/// Puts paid orders still `pending` this long after payment back on the queue (their
/// message was lost, dead-lettered or never published): a fresh outbox row each time,
/// at most once per `after`. The orders in `now` (claims just released) go back at once,
/// whatever their age: their message may be gone with the deliveries that dead workers
/// used up. Returns how many were requeued.
pub async fn requeue_pending(
    db: &PgPool,
    after: Duration,
    limit: i64,
    now: &[OrderNumber],
    sweeper: &Actor,
) -> Result<u64, sqlx::Error> {
    let now: Vec<&str> = now.iter().map(OrderNumber::as_str).collect();
    let due = sqlx::query!(
        r#"SELECT order_number AS "order_number: OrderNumber", requeue_count,
                  amount_fen AS "amount_fen: Fen", transaction_id AS "transaction_id!",
                  paid_at AS "paid_at!"
             FROM orders
            WHERE payment_status = 'paid' AND recharge_status = 'pending'
              AND (order_number = ANY($3)
                   OR (payment_recorded_at < now() - make_interval(secs => $1)
                       AND (requeued_at IS NULL
                            OR requeued_at < now() - make_interval(secs => $1))))
            ORDER BY payment_recorded_at LIMIT $2"#,
        after.as_secs_f64(),
        limit,
        &now as &[&str],
    )
    .fetch_all(db)
    .await?;
    let mut requeued = 0;
    for order in due {
        let requeue = order.requeue_count + 1;
        let message = OrderPaid::new(
            order.order_number.clone(),
            order.amount_fen,
            order.transaction_id,
            order.paid_at,
        )
        .requeue_entry(requeue);
        requeued += sqlx::query!(
            "WITH marked AS (
                UPDATE orders SET requeued_at = now(), requeue_count = $2
                 WHERE order_number = $1 AND payment_status = 'paid'
                   AND recharge_status = 'pending' AND requeue_count = $2 - 1
                RETURNING order_number
             ), queued AS (
                INSERT INTO outbox (idempotency_key, order_number, routing_key, payload)
                SELECT $3, order_number, $4, $5 FROM marked
                ON CONFLICT (idempotency_key) DO NOTHING
             )
             INSERT INTO order_events (order_number, event, actor)
             SELECT order_number, $6, $7 FROM marked",
            order.order_number.as_str(),
            requeue,
            message.idempotency_key,
            message.routing_key,
            message.payload,
            OrderEvent::Requeued.as_str(),
            sweeper.as_column(),
        )
        .execute(db)
        .await?
        .rows_affected();
    }
    Ok(requeued)
}

/// `unknown` orders with a Unitel `seq` not asked about for `every`, marked as asked now.
pub async fn due_for_reconciliation(
    db: &PgPool,
    every: Duration,
    limit: i64,
) -> Result<Vec<(OrderNumber, String)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"UPDATE orders SET reconciled_at = now()
            WHERE order_number IN (
              SELECT order_number FROM orders
               WHERE recharge_status = 'unknown' AND seq_id IS NOT NULL
                 AND (reconciled_at IS NULL OR reconciled_at < now() - make_interval(secs => $1))
               LIMIT $2)
           RETURNING order_number AS "order_number: OrderNumber", seq_id AS "seq_id!""#,
        every.as_secs_f64(),
        limit,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.order_number, r.seq_id))
        .collect())
}

/// What became of an `unknown` top-up, once someone knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The number was credited.
    Credited,
    /// Nothing was credited; why.
    NotCredited { reason: String },
}

/// Who settled an `unknown` top-up, and on what grounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settler {
    /// The recharge sweep, from Unitel's `check_transaction_result` for this seq.
    Reconciliation { sweeper: Actor, seq: String },
    /// A person, after checking with Unitel; their note is kept in the history.
    Person { name: String, note: String },
}

/// What [`settle_unknown`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Settled,
    /// The order is not `unknown` (settled already, or never was).
    NotUnknown,
    /// Not credited cannot be decided yet: the request marked sent may still reach Unitel
    /// (a worker paused after marking it), and could credit the number after a refund.
    /// Possible from `from`.
    TooEarly {
        from: DateTime<Utc>,
    },
}

/// `unknown → success | failed`, the one way an unknown top-up is settled. The result is
/// the same whoever settles it: the status is the verdict; `recharged_at` keeps the time
/// the first outcome was recorded; a credited order carries no error, a failed one the
/// reason (Unitel's message, or the person's note) under `CHECK_FAILED` or
/// `RESOLVED_FAILED`; `unknown_settled_by` says whether a person decided, which is what
/// allows an automatic refund of a once-unknown order.
///
/// A person's "not credited" waits until the request can no longer reach Unitel: past the
/// bound its worker recorded (`recharge_in_flight_until`) plus [`IN_FLIGHT_MARGIN`]; for a
/// request marked by a worker that recorded none, `unrecorded_in_flight` after it was
/// marked. (Reconciliation needs no wait: its `seq` is Unitel's answer to that request.)
pub async fn settle_unknown(
    db: &PgPool,
    order_number: &OrderNumber,
    verdict: &Verdict,
    settler: &Settler,
    unrecorded_in_flight: Duration,
) -> Result<Settlement, sqlx::Error> {
    let (status, event) = match verdict {
        Verdict::Credited => (RechargeStatus::Success, OrderEvent::Success),
        Verdict::NotCredited { .. } => (RechargeStatus::Failed, OrderEvent::Failed),
    };
    let (actor, settled_by, code, detail) = match settler {
        Settler::Reconciliation { sweeper, seq } => (
            sweeper.clone(),
            "reconciliation",
            "CHECK_FAILED",
            json!({"reconciled": true, "seq": seq}),
        ),
        Settler::Person { name, note } => (
            Actor::Admin(name.clone()),
            "person",
            "RESOLVED_FAILED",
            json!({"resolved": true, "note": note}),
        ),
    };
    let (code, reason) = match verdict {
        Verdict::Credited => (None, None),
        Verdict::NotCredited { reason } => (Some(code), Some(storable::text(reason))),
    };
    let waits_for_in_flight =
        status == RechargeStatus::Failed && matches!(settler, Settler::Person { .. });
    let settled = sqlx::query_scalar!(
        "WITH settled AS (
            UPDATE orders
               SET recharge_status = $2, recharged_at = COALESCE(recharged_at, now()),
                   recharge_error_code = $3, recharge_error_message = $4,
                   unknown_settled_by = $5, updated_at = now()
             WHERE order_number = $1 AND recharge_status = 'unknown'
               AND (NOT $11
                    OR (COALESCE(recharge_in_flight_until,
                                 recharge_sent_at + make_interval(secs => $9))
                        + make_interval(secs => $10) <= now()) IS NOT FALSE)
            RETURNING order_number
         ), event AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT order_number, $6, $7, $8 FROM settled
         )
         SELECT order_number FROM settled",
        order_number.as_str(),
        status.as_str(),
        code,
        reason.as_deref(),
        settled_by,
        event.as_str(),
        actor.as_column(),
        storable::json(detail),
        unrecorded_in_flight.as_secs_f64(),
        IN_FLIGHT_MARGIN.as_secs_f64(),
        waits_for_in_flight,
    )
    .fetch_optional(db)
    .await?;
    if settled.is_some() {
        return Ok(Settlement::Settled);
    }
    let current = sqlx::query!(
        r#"SELECT recharge_status AS "recharge_status: RechargeStatus",
                  COALESCE(recharge_in_flight_until, recharge_sent_at + make_interval(secs => $2))
                  + make_interval(secs => $3) AS from_
             FROM orders WHERE order_number = $1"#,
        order_number.as_str(),
        unrecorded_in_flight.as_secs_f64(),
        IN_FLIGHT_MARGIN.as_secs_f64(),
    )
    .fetch_optional(db)
    .await?;
    Ok(match current {
        Some(order) if order.recharge_status == RechargeStatus::Unknown => match order.from_ {
            Some(from) if waits_for_in_flight => Settlement::TooEarly { from },
            // Unknown and nothing in the way: it changed under us; the caller may ask again.
            _ => Settlement::NotUnknown,
        },
        _ => Settlement::NotUnknown,
    })
}

// ───────────────────────────── refunds ─────────────────────────────

/// Our refund number for an order: one refund per order, always the same number, so that
/// sending it again can never refund twice.
pub fn out_refund_no(order_number: &OrderNumber) -> String {
    format!("RF{order_number}")
}

/// Asks for the whole amount of a paid order back: one whose top-up failed, one closed
/// before its payment arrived ([`record_payment_after_close`]), or — only with
/// `include_credited` — one that was credited. False if nothing was requested (not
/// refundable in its state, or a refund exists already): the caller reads why.
pub async fn request_refund(
    db: &PgPool,
    order_number: &OrderNumber,
    reason: &str,
    requested_by: &Actor,
    include_credited: bool,
) -> Result<bool, sqlx::Error> {
    let created = sqlx::query_scalar!(
        "WITH created AS (
            INSERT INTO refunds (order_number, out_refund_no, amount_fen, reason, requested_by)
            SELECT order_number, $2, amount_fen, $3, $4 FROM orders
             WHERE order_number = $1
               AND ((payment_status = 'paid'
                     AND (recharge_status = 'failed' OR (recharge_status = 'success' AND $5)))
                    OR (payment_status = 'closed' AND transaction_id IS NOT NULL))
            ON CONFLICT (order_number) DO NOTHING
            RETURNING order_number
         ), event AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT order_number, $6, $4, jsonb_build_object('reason', $3::text) FROM created
         )
         SELECT order_number FROM created",
        order_number.as_str(),
        out_refund_no(order_number),
        reason,
        requested_by.as_column(),
        include_credited,
        OrderEvent::RefundRequested.as_str(),
    )
    .fetch_optional(db)
    .await?;
    Ok(created.is_some())
}

/// A paid order whose top-up failed definitively, and which may be refunded without a
/// person: no refund yet, failed since automatic refunds exist (earlier failures may have
/// been refunded by hand), and never `unknown` on the way unless a person settled it.
pub struct FailedTopUp {
    pub order_number: OrderNumber,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

pub async fn failed_top_ups_to_refund(
    db: &PgPool,
    limit: i64,
) -> Result<Vec<FailedTopUp>, sqlx::Error> {
    sqlx::query_as!(
        FailedTopUp,
        r#"SELECT o.order_number AS "order_number: OrderNumber", o.recharge_error_code AS error_code,
                  o.recharge_error_message AS error_message
             FROM orders o
            WHERE o.payment_status = 'paid' AND o.recharge_status = 'failed'
              AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.order_number = o.order_number)
              AND o.recharged_at >= (SELECT at FROM app_settings WHERE name = 'auto_refunds_since')
              AND (o.unknown_at IS NULL OR o.unknown_settled_by = 'person')
            ORDER BY o.recharged_at LIMIT $1"#,
        limit,
    )
    .fetch_all(db)
    .await
}

/// What WeChat's answers do to a refund, each a change from one state to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundChange<'a> {
    /// `requested → accepted`: WeChat took it; the outcome comes from `queryrefund`.
    Accepted { refund_id: Option<&'a str> },
    /// `accepted → success`: `queryrefund` says the money is back.
    Succeeded { refund_id: Option<&'a str> },
    /// `requested | accepted → failed`: WeChat refused it for good, or closed it. A person
    /// must return the money.
    Failed { from: RefundStatus, error: &'a str },
}

impl RefundChange<'_> {
    fn from(&self) -> RefundStatus {
        match self {
            RefundChange::Accepted { .. } => RefundStatus::Requested,
            RefundChange::Succeeded { .. } => RefundStatus::Accepted,
            RefundChange::Failed { from, .. } => *from,
        }
    }

    fn to(&self) -> RefundStatus {
        match self {
            RefundChange::Accepted { .. } => RefundStatus::Accepted,
            RefundChange::Succeeded { .. } => RefundStatus::Success,
            RefundChange::Failed { .. } => RefundStatus::Failed,
        }
    }

    fn event(&self) -> OrderEvent {
        match self {
            RefundChange::Accepted { .. } => OrderEvent::RefundAccepted,
            RefundChange::Succeeded { .. } => OrderEvent::RefundSucceeded,
            RefundChange::Failed { .. } => OrderEvent::RefundFailed,
        }
    }
}

/// Applies a [`RefundChange`] made by the refund sweep, if the refund is in the state the
/// change starts from. Counted by the state reached (`refunds_total`).
pub async fn change_refund(
    db: &PgPool,
    order_number: &OrderNumber,
    change: RefundChange<'_>,
) -> Result<bool, sqlx::Error> {
    let (refund_id, error) = match change {
        RefundChange::Accepted { refund_id } | RefundChange::Succeeded { refund_id } => {
            (refund_id, None)
        }
        RefundChange::Failed { error, .. } => (None, Some(error)),
    };
    let changed = sqlx::query_scalar!(
        "WITH changed AS (
            UPDATE refunds
               SET status = $3, refund_id = COALESCE($4, refund_id), last_error = $5,
                   attempts = attempts + CASE WHEN $3 = 'accepted' THEN 1 ELSE 0 END,
                   completed_at = CASE WHEN $3 IN ('success', 'failed') THEN now() END,
                   next_check_at = now() + interval '5 seconds', updated_at = now()
             WHERE order_number = $1 AND status = $2
            RETURNING order_number
         ), event AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT order_number, $6, $7,
                   jsonb_strip_nulls(jsonb_build_object('refundId', $4::text, 'error', $5::text))
              FROM changed
         )
         SELECT order_number FROM changed",
        order_number.as_str(),
        change.from().as_str(),
        change.to().as_str(),
        refund_id,
        error,
        change.event().as_str(),
        Actor::RefundSweep.as_column(),
    )
    .fetch_optional(db)
    .await?;
    if changed.is_some() {
        metrics::counter!("refunds_total", "status" => change.to().as_str()).increment(1);
    }
    Ok(changed.is_some())
}

/// A requested refund WeChat did not take for a passing reason: sent again later, under
/// the same number, with a growing delay.
pub async fn refund_deferred(
    db: &PgPool,
    order_number: &OrderNumber,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE refunds SET attempts = attempts + 1, last_error = $2, updated_at = now(),
                next_check_at = now() + make_interval(secs => LEAST(600, 5 * power(2, LEAST(attempts, 7))))
          WHERE order_number = $1 AND status = 'requested'",
        order_number.as_str(),
        error,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// An accepted refund WeChat is still processing: asked about again in a while.
pub async fn refund_check_later(
    db: &PgPool,
    order_number: &OrderNumber,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE refunds SET next_check_at = now() + interval '30 seconds'
          WHERE order_number = $1 AND status = 'accepted'",
        order_number.as_str(),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// `failed → requested`: a person sends a failed refund again, under the same number.
pub async fn retry_refund(
    db: &PgPool,
    order_number: &OrderNumber,
    retried_by: &Actor,
    note: &str,
) -> Result<bool, sqlx::Error> {
    let retried = sqlx::query_scalar!(
        "WITH retried AS (
            UPDATE refunds
               SET status = 'requested', attempts = 0, last_error = NULL, completed_at = NULL,
                   next_check_at = now(), updated_at = now()
             WHERE order_number = $1 AND status = 'failed'
            RETURNING order_number
         ), event AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT order_number, $2, $3, jsonb_build_object('note', $4::text) FROM retried
         )
         SELECT order_number FROM retried",
        order_number.as_str(),
        OrderEvent::RefundRetried.as_str(),
        retried_by.as_column(),
        note,
    )
    .fetch_optional(db)
    .await?;
    Ok(retried.is_some())
}

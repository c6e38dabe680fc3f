//! Refunds: the whole amount of a paid order going back, one refund per order, moved along
//! by WeChat's answers.

use sqlx::PgPool;

use crate::history::{Actor, OrderEvent};
use crate::order::{OrderNumber, RefundStatus};

/// Our refund number for an order: one refund per order, always the same number, so that
/// sending it again can never refund twice.
pub fn out_refund_no(order_number: &OrderNumber) -> String {
    format!("RF{order_number}")
}

/// Asks for the whole amount of a paid order back: one whose top-up failed, one closed
/// before its payment arrived
/// ([`record_payment_after_close`](super::record_payment_after_close)), or — only with
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

//! Orders brought over from the replaced system, each created in the state the import
//! decided for it.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use super::payment::NewOrder;
use crate::history::{Actor, OrderEvent};
use crate::message::OrderPaid;
use crate::order::{PaymentStatus, RechargeStatus};

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

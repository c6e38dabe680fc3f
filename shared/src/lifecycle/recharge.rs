//! Top-ups (recharge-worker): claims under a live lease, the fence before sending, outcomes,
//! the sweeps that take over what a dead or lost worker left, and settling `unknown`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;

use super::lease::{LeaseId, WorkerId};
use crate::history::{Actor, OrderEvent};
use crate::message::OrderPaid;
use crate::money::{Fen, Mnt};
use crate::order::{Msisdn, OrderNumber, PaymentStatus, RechargeStatus, RechargeType};
use crate::storable;
use crate::unitel::TopUpReceipt;

/// Added to the moment a request marked sent can last reach Unitel before anyone may call
/// it not credited: for the scheduling of the worker between its last check and its write,
/// and for Unitel's own queueing.
pub const IN_FLIGHT_MARGIN: Duration = Duration::from_secs(10);

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
    worker: &WorkerId,
    lease: LeaseId,
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
        worker.as_str(),
        lease.get(),
        OrderEvent::Claimed.as_str(),
        Actor::Worker(worker.to_string()).as_column(),
    )
    .fetch_optional(db)
    .await
}

/// Where an order is, for a worker whose claim was refused.
#[derive(Debug)]
pub struct ClaimState {
    pub payment_status: PaymentStatus,
    pub recharge_status: RechargeStatus,
    pub recharge_worker: Option<WorkerId>,
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
        recharge_worker: r.recharge_worker.map(WorkerId::new),
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
    lease: LeaseId,
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
        lease.get(),
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
    lease: LeaseId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE orders SET recharge_sent_at = NULL, recharge_in_flight_until = NULL, updated_at = now()
          WHERE order_number = $1 AND recharge_lease = $2 AND recharge_status = 'processing'",
        order_number.as_str(),
        lease.get(),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// `processing → pending`: gives an unsent order back so that a later delivery can take it.
pub async fn release(
    db: &PgPool,
    order_number: &OrderNumber,
    worker: &WorkerId,
    lease: LeaseId,
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
        lease.get(),
        why,
        OrderEvent::Released.as_str(),
        Actor::Worker(worker.to_string()).as_column(),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// How a top-up ended, as the worker that sent it knows it.
pub enum RechargeOutcome<'a> {
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

impl RechargeOutcome<'_> {
    pub fn status(&self) -> RechargeStatus {
        match self {
            RechargeOutcome::Success(_) => RechargeStatus::Success,
            RechargeOutcome::Failed { .. } => RechargeStatus::Failed,
            RechargeOutcome::Unknown { .. } => RechargeStatus::Unknown,
        }
    }

    fn event(&self) -> OrderEvent {
        match self {
            RechargeOutcome::Success(_) => OrderEvent::Success,
            RechargeOutcome::Failed { .. } => OrderEvent::Failed,
            RechargeOutcome::Unknown { .. } => OrderEvent::Unknown,
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
    worker: &WorkerId,
    lease: LeaseId,
    outcome: &RechargeOutcome<'_>,
) -> Result<bool, sqlx::Error> {
    let (seq, sv_id, vat, code, message) = match *outcome {
        RechargeOutcome::Success(receipt) => (
            receipt.seq.as_deref(),
            receipt.sv_id.as_deref(),
            receipt.vat.clone(),
            None,
            None,
        ),
        RechargeOutcome::Failed { code, message } => (None, None, None, Some(code), Some(message)),
        RechargeOutcome::Unknown { reason, seq } => (seq, None, None, None, Some(reason)),
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
        lease.get(),
        outcome.status().as_str(),
        seq.as_deref(),
        sv_id.as_deref(),
        vat,
        code.as_deref(),
        message.as_deref(),
        outcome.event().as_str(),
        Actor::Worker(worker.to_string()).as_column(),
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

/// Takes `unknown` orders with a Unitel `seq` for a check with Unitel: those not asked
/// about for `every`, marked as asked now so that no other sweep asks about them meanwhile.
pub async fn take_unknown_for_check(
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

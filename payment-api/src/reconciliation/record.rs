//! The reconciliation's own tables: a row per day, a row per difference. Orders and
//! refunds are only read here; a payment found in the bill is recorded by the payment
//! transition, anomalies by [`shared::lifecycle::record_anomaly`].

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;
use shared::history::{Actor, AnomalyKind};
use shared::lifecycle;
use shared::money::Fen;
use shared::order::{PaymentStatus, RefundStatus};
use sqlx::PgPool;

use super::matching::{DifferenceKind, Matched, OurPayment, OurRefund};
use crate::wechat::TradeBill;

/// Where a day stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayStatus {
    /// The bill is not generated yet.
    Waiting,
    /// The bill could not be fetched.
    Failed,
    /// The bill does not add up in itself: fetched again later.
    Unbalanced,
    /// The bill balances; some lines differ from our books.
    Differences,
    /// Every line matched and both sides' totals agree.
    Balanced,
}

impl DayStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DayStatus::Waiting => "waiting",
            DayStatus::Failed => "failed",
            DayStatus::Unbalanced => "unbalanced",
            DayStatus::Differences => "differences",
            DayStatus::Balanced => "balanced",
        }
    }
}

/// The China day of the oldest order: where reconciliation starts by default.
pub async fn first_order_day(db: &PgPool) -> Result<Option<NaiveDate>, sqlx::Error> {
    sqlx::query_scalar!("SELECT (min(created_at) AT TIME ZONE 'Asia/Shanghai')::date FROM orders")
        .fetch_one(db)
        .await
}

/// Days from `since` on that need nothing more (balanced, or differences left to a
/// person), or whose next attempt is not due yet.
pub async fn settled_days(
    db: &PgPool,
    since: NaiveDate,
) -> Result<HashSet<NaiveDate>, sqlx::Error> {
    let days = sqlx::query_scalar!(
        "SELECT bill_date FROM reconciliation_days
          WHERE bill_date >= $1 AND (next_attempt_at IS NULL OR next_attempt_at > now())",
        since
    )
    .fetch_all(db)
    .await?;
    Ok(days.into_iter().collect())
}

/// A day whose bill did not come (not generated yet, or the call failed): tried again
/// after `retry_after`.
pub async fn not_fetched(
    db: &PgPool,
    day: NaiveDate,
    status: super::DayStatus,
    error: Option<&str>,
    retry_after: Duration,
) -> Result<(), sqlx::Error> {
    let retry_ms = retry_after.as_millis() as i64;
    // A day reconciled already keeps its result: a later failed re-run only notes the error.
    sqlx::query!(
        "INSERT INTO reconciliation_days (bill_date, status, attempts, last_error, next_attempt_at)
         VALUES ($1, $2, 1, $3, now() + $4 * interval '1 millisecond')
         ON CONFLICT (bill_date) DO UPDATE
            SET status = CASE WHEN reconciliation_days.fetched_at IS NULL THEN $2
                              ELSE reconciliation_days.status END,
                attempts = reconciliation_days.attempts + 1, last_error = $3,
                next_attempt_at = CASE WHEN reconciliation_days.fetched_at IS NULL
                                       THEN now() + $4 * interval '1 millisecond'
                                       ELSE reconciliation_days.next_attempt_at END,
                updated_at = now()",
        day,
        status.as_str(),
        error,
        retry_ms as f64,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Our orders the bill names, and every order whose money we took on the day (by
/// WeChat's `time_end`); and the order numbers of the latter.
pub async fn our_payments(
    db: &PgPool,
    named: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(Vec<OurPayment>, Vec<String>), sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT order_number, amount_fen AS "amount_fen: Fen",
                  payment_status AS "payment_status: PaymentStatus", transaction_id,
                  (transaction_id IS NOT NULL AND paid_at >= $2 AND paid_at < $3) AS "on_day!"
             FROM orders
            WHERE order_number = ANY($1)
               OR (paid_at >= $2 AND paid_at < $3 AND transaction_id IS NOT NULL)"#,
        named,
        from,
        to,
    )
    .fetch_all(db)
    .await?;
    let mut orders = Vec::with_capacity(rows.len());
    let mut on_day = Vec::new();
    for row in rows {
        if row.on_day {
            on_day.push(row.order_number.clone());
        }
        orders.push(OurPayment {
            order_number: row.order_number,
            amount: row.amount_fen,
            payment_status: row.payment_status,
            transaction_id: row.transaction_id,
        });
    }
    Ok((orders, on_day))
}

/// Our refunds the bill names, and every refund WeChat took on the day by our record (the
/// first time it accepted it); and the `out_refund_no`s of the latter.
pub async fn our_refunds(
    db: &PgPool,
    named: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(Vec<OurRefund>, Vec<String>), sqlx::Error> {
    let rows = sqlx::query!(
        r#"WITH accepted AS (
              SELECT order_number, min(created_at) AS at
                FROM order_events
               WHERE event = 'refund_accepted' AND created_at >= $2::timestamptz - interval '1 day'
                 AND created_at < $3
               GROUP BY order_number
           )
           SELECT r.order_number, r.out_refund_no, r.amount_fen AS "amount_fen: Fen",
                  r.status AS "status: RefundStatus",
                  (r.status IN ('accepted', 'success') AND a.at >= $2) AS "on_day!"
             FROM refunds r
             LEFT JOIN accepted a ON a.order_number = r.order_number
            WHERE r.out_refund_no = ANY($1)
               OR (r.status IN ('accepted', 'success') AND a.at >= $2)"#,
        named,
        from,
        to,
    )
    .fetch_all(db)
    .await?;
    let mut refunds = Vec::with_capacity(rows.len());
    let mut on_day = Vec::new();
    for row in rows {
        if row.on_day {
            on_day.push(row.out_refund_no.clone());
        }
        refunds.push(OurRefund {
            order_number: row.order_number,
            out_refund_no: row.out_refund_no,
            amount: row.amount_fen,
            status: row.status,
        });
    }
    Ok((refunds, on_day))
}

/// What a person is told a difference means, and the anomaly it records.
fn anomaly_of(kind: DifferenceKind) -> Option<AnomalyKind> {
    Some(match kind {
        DifferenceKind::UnknownOrder => AnomalyKind::BillUnknownOrder,
        DifferenceKind::MissingAtWechat => AnomalyKind::BillMissing,
        DifferenceKind::AmountDiffers
        | DifferenceKind::MerchantDiffers
        | DifferenceKind::TransactionDiffers
        | DifferenceKind::RefundDiffers => AnomalyKind::BillMismatch,
        DifferenceKind::RefundAtWechatOnly => AnomalyKind::BillRefundUnknown,
        DifferenceKind::RefundMissingAtWechat => AnomalyKind::BillRefundMissing,
        // A payment the bill shows that queryorder did not confirm (yet): the order's
        // own history says more once it is confirmed.
        DifferenceKind::PaidAtWechatOnly
        | DifferenceKind::MalformedLine
        | DifferenceKind::BillTotalsDiffer
        | DifferenceKind::DayTotalsDiffer => return None,
    })
}

/// Stores the day's bill, totals and differences in one transaction, then records an
/// anomaly for each difference seen for the first time. `recorded`: orders whose payment
/// the reconciliation recorded (their difference is kept, settled by the
/// reconciliation, so that the report shows them).
pub async fn store_day(
    db: &PgPool,
    day: NaiveDate,
    bill: &TradeBill,
    matched: &Matched,
    recorded: &[String],
    retry_after: Duration,
) -> Result<DayStatus, sqlx::Error> {
    let unbalanced = matched.differences.iter().any(|d| {
        matches!(
            d.kind,
            DifferenceKind::MalformedLine | DifferenceKind::BillTotalsDiffer
        )
    });
    // Differences a later run may settle by itself: a payment queryorder did not confirm
    // yet. The rest wait for a person, and the day needs no new attempt.
    let retry = unbalanced
        || matched
            .differences
            .iter()
            .any(|d| d.kind == DifferenceKind::PaidAtWechatOnly);
    let status = if unbalanced {
        DayStatus::Unbalanced
    } else if matched.differences.is_empty() {
        DayStatus::Balanced
    } else {
        DayStatus::Differences
    };
    let summary = bill.summary.as_ref().map(|s| {
        json!({"trades": s.trades, "settlementTotalFen": s.settlement_total.get(),
               "refundTotalFen": s.refund_total.get(), "orderTotalFen": s.order_total.get(),
               "refundRequestTotalFen": s.refund_request_total.get()})
    });
    let totals = json!({"summary": summary, "day": matched.totals});
    let retry_ms = retry.then_some(retry_after.as_millis() as f64);

    let mut tx = db.begin().await?;
    sqlx::query!(
        "INSERT INTO reconciliation_days
             (bill_date, status, attempts, bill_text, bill_lines, lines_matched, totals,
              fetched_at, reconciled_at, next_attempt_at)
         VALUES ($1, $2, 1, $3, $4, $5, $6, now(), now(),
                 now() + $7 * interval '1 millisecond')
         ON CONFLICT (bill_date) DO UPDATE
            SET status = $2, attempts = reconciliation_days.attempts + 1, last_error = NULL,
                bill_text = $3, bill_lines = $4, lines_matched = $5, totals = $6,
                fetched_at = now(), reconciled_at = now(),
                next_attempt_at = now() + $7 * interval '1 millisecond', updated_at = now()",
        day,
        status.as_str(),
        bill.text,
        (bill.lines.len() + bill.malformed.len()) as i32,
        matched.lines_matched as i32,
        totals,
        retry_ms,
    )
    .execute(&mut *tx)
    .await?;

    let mut kinds = Vec::new();
    let mut subjects = Vec::new();
    let mut orders = Vec::new();
    let mut deltas = Vec::new();
    let mut details = Vec::new();
    for difference in &matched.differences {
        kinds.push(difference.kind.as_str().to_owned());
        subjects.push(difference.subject.clone());
        orders.push(difference.order_number.clone());
        deltas.push(difference.delta_fen);
        details.push(difference.detail.clone());
    }
    // The payments recorded from the bill: a difference settled by the reconciliation.
    for order_number in recorded {
        kinds.push(DifferenceKind::PaidAtWechatOnly.as_str().to_owned());
        subjects.push(order_number.clone());
        orders.push(Some(order_number.clone()));
        deltas.push(0);
        details.push(json!({"recorded": true}));
    }
    let inserted = sqlx::query!(
        r#"INSERT INTO reconciliation_differences
               (bill_date, kind, subject, order_number, delta_fen, detail,
                status, resolved_by, resolution, resolved_at)
           SELECT $1, d.kind, d.subject, d.order_number, d.delta_fen, d.detail,
                  CASE WHEN r.recorded THEN 'resolved' ELSE 'open' END,
                  CASE WHEN r.recorded THEN 'reconciliation' END,
                  CASE WHEN r.recorded THEN 'paid at WeChat, callback and queries lost: '
                       'queryorder confirmed it; payment recorded and top-up queued' END,
                  CASE WHEN r.recorded THEN now() END
             FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::jsonb[])
                  AS d(kind, subject, order_number, delta_fen, detail)
                  CROSS JOIN LATERAL (SELECT d.detail ? 'recorded' AS recorded) r(recorded)
           ON CONFLICT (bill_date, kind, subject) DO NOTHING
           RETURNING kind, subject, order_number, detail"#,
        day,
        &kinds,
        &subjects,
        &orders as &[Option<String>],
        &deltas,
        &details,
    )
    .fetch_all(&mut *tx)
    .await?;
    // Recorded by this run after an earlier one could not confirm it: settled now.
    sqlx::query!(
        "UPDATE reconciliation_differences
            SET status = 'resolved', resolved_by = 'reconciliation',
                resolution = 'paid at WeChat, callback and queries lost: queryorder confirmed it; '
                             'payment recorded and top-up queued',
                resolved_at = now()
          WHERE bill_date = $1 AND kind = 'paid_at_wechat_only' AND subject = ANY($2)
            AND status = 'open'",
        day,
        recorded,
    )
    .execute(&mut *tx)
    .await?;
    // Open differences this run no longer finds (a payment recorded since, a bill
    // corrected): settled by the reconciliation itself.
    sqlx::query!(
        "UPDATE reconciliation_differences d
            SET status = 'resolved', resolved_by = 'reconciliation',
                resolution = 'no longer differs when the day was reconciled again',
                resolved_at = now()
          WHERE d.bill_date = $1 AND d.status = 'open'
            AND NOT EXISTS (SELECT 1 FROM unnest($2::text[], $3::text[]) AS f(kind, subject)
                             WHERE f.kind = d.kind AND f.subject = d.subject)",
        day,
        &kinds,
        &subjects,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;

    for row in inserted {
        let Some(kind) = DifferenceKind::parse(&row.kind).and_then(anomaly_of) else {
            continue;
        };
        lifecycle::record_anomaly(
            db,
            row.order_number.as_deref(),
            kind,
            &Actor::Reconciliation,
            json!({"billDate": day.to_string(), "difference": row.kind,
                   "subject": row.subject, "bill": row.detail.get("bill"),
                   "ours": row.detail.get("ours")}),
        )
        .await?;
    }
    Ok(status)
}

/// A person settles an open difference with a note; the day it belongs to, or None if there is no such open difference.
pub async fn resolve_difference(
    db: &PgPool,
    id: i64,
    actor: &str,
    note: &str,
) -> Result<Option<NaiveDate>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE reconciliation_differences
            SET status = 'resolved', resolved_by = $2, resolution = $3, resolved_at = now()
          WHERE id = $1 AND status = 'open'
         RETURNING bill_date",
        id,
        actor,
        note,
    )
    .fetch_optional(db)
    .await
}

/// Days reconciled and differences open, for `/metrics`.
pub async fn publish_metrics(db: &PgPool) -> Result<(), sqlx::Error> {
    let days = sqlx::query!(
        r#"SELECT status, count(*) AS "count!" FROM reconciliation_days GROUP BY status"#
    )
    .fetch_all(db)
    .await?;
    for status in ["waiting", "failed", "unbalanced", "differences", "balanced"] {
        let count = days
            .iter()
            .find(|d| d.status == status)
            .map_or(0, |d| d.count);
        metrics::gauge!("reconciliation_days", "status" => status).set(count as f64);
    }
    let open = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM reconciliation_differences WHERE status = 'open'"#
    )
    .fetch_one(db)
    .await?;
    metrics::gauge!("reconciliation_differences_open").set(open as f64);
    Ok(())
}

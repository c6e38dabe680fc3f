//! Reading the reconciliation's days and differences (written only by
//! [`crate::reconciliation`]).

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

/// A day at a glance.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DaySummary {
    pub date: NaiveDate,
    /// `waiting`, `failed`, `unbalanced`, `differences` or `balanced`.
    pub status: String,
    pub bill_lines: i32,
    pub lines_matched: i32,
    pub differences_open: i64,
    pub differences_resolved: i64,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub reconciled_at: Option<DateTime<Utc>>,
}

/// One difference and who settled it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DifferenceRow {
    pub id: i64,
    /// e.g. `paid_at_wechat_only`, `missing_at_wechat`, `amount_differs`.
    pub kind: String,
    pub subject: String,
    pub order_number: Option<String>,
    /// The bill minus our books, in fen.
    pub delta_fen: i64,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// `open` or `resolved`.
    pub status: String,
    /// `reconciliation` or `admin:<name>`.
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A day in full: its summary, both sides' totals and every difference.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayReport {
    #[serde(flatten)]
    pub summary: DaySummary,
    /// The bill's summary line and both sides' sums for the day, in fen.
    #[schema(value_type = Option<Object>)]
    pub totals: Option<serde_json::Value>,
    pub fetched_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub differences: Vec<DifferenceRow>,
}

/// The latest `limit` days reconciled or tried, newest first.
pub async fn recent_days(db: &PgPool, limit: i64) -> Result<Vec<DaySummary>, sqlx::Error> {
    sqlx::query_as!(
        DaySummary,
        r#"SELECT d.bill_date AS date, d.status, d.bill_lines, d.lines_matched,
                  count(x.id) FILTER (WHERE x.status = 'open') AS "differences_open!",
                  count(x.id) FILTER (WHERE x.status = 'resolved') AS "differences_resolved!",
                  d.attempts, d.last_error, d.reconciled_at
             FROM reconciliation_days d
             LEFT JOIN reconciliation_differences x ON x.bill_date = d.bill_date
            GROUP BY d.bill_date ORDER BY d.bill_date DESC LIMIT $1"#,
        limit,
    )
    .fetch_all(db)
    .await
}

pub async fn day(db: &PgPool, date: NaiveDate) -> Result<Option<DayReport>, sqlx::Error> {
    let Some(row) = sqlx::query!(
        r#"SELECT d.bill_date, d.status, d.bill_lines, d.lines_matched, d.attempts, d.last_error,
                  d.reconciled_at, d.totals, d.fetched_at, d.next_attempt_at,
                  (SELECT count(*) FROM reconciliation_differences x
                    WHERE x.bill_date = d.bill_date AND x.status = 'open') AS "open!",
                  (SELECT count(*) FROM reconciliation_differences x
                    WHERE x.bill_date = d.bill_date AND x.status = 'resolved') AS "resolved!"
             FROM reconciliation_days d WHERE d.bill_date = $1"#,
        date,
    )
    .fetch_optional(db)
    .await?
    else {
        return Ok(None);
    };
    let differences = sqlx::query_as!(
        DifferenceRow,
        "SELECT id, kind, subject, order_number, delta_fen, detail, status, resolved_by,
                resolution, resolved_at
           FROM reconciliation_differences WHERE bill_date = $1 ORDER BY status, id",
        date,
    )
    .fetch_all(db)
    .await?;
    Ok(Some(DayReport {
        summary: DaySummary {
            date: row.bill_date,
            status: row.status,
            bill_lines: row.bill_lines,
            lines_matched: row.lines_matched,
            differences_open: row.open,
            differences_resolved: row.resolved,
            attempts: row.attempts,
            last_error: row.last_error,
            reconciled_at: row.reconciled_at,
        },
        totals: row.totals,
        fetched_at: row.fetched_at,
        next_attempt_at: row.next_attempt_at,
        differences,
    }))
}

//! `payment_anomalies` keeps what a person may still need, not everything forever: an
//! anomaly that is settled and older than `ANOMALY_RETENTION_DAYS` is counted into
//! `payment_anomaly_months` (per kind and month, UTC) and removed, so that totals stay
//! answerable (the `payment_anomalies_per_month` view adds both up).
//!
//! Settled means all of:
//! - the alert producer has read it (it is behind the `payment_anomalies` cursor);
//! - it is not of a kind where money was taken for nothing ([`AnomalyKind::money_taken_unfulfilled`]):
//!   a person gives that money back by hand, and nothing here records that they did;
//! - its order, if the order exists here, is over: closed, credited, or refunded.

use std::time::Duration;

use shared::history::AnomalyKind;
use shared::jobs::{Hold, RoundReport, Rounds};
use sqlx::PgPool;

/// How often the retention round runs: anomalies age by days.
pub const EVERY: Duration = Duration::from_secs(60 * 60);
/// Anomalies removed per statement, so that no statement holds many rows at once.
const BATCH: i64 = 1_000;

pub struct AnomalyRetention {
    pub db: PgPool,
    /// `ANOMALY_RETENTION_DAYS`.
    pub keep_days: u32,
}

#[derive(Debug, Default)]
pub struct Retained {
    pub summarised: u64,
}

impl RoundReport for Retained {
    fn is_quiet(&self) -> bool {
        self.summarised == 0
    }
}

impl AnomalyRetention {
    /// Folds one batch into the monthly counts and removes it, in one statement; returns
    /// how many anomalies it removed.
    async fn fold_batch(&self, kept_kinds: &[String]) -> Result<u64, sqlx::Error> {
        let days = i32::try_from(self.keep_days).unwrap_or(i32::MAX);
        let folded = sqlx::query_scalar!(
            r#"WITH gone AS (
                   DELETE FROM payment_anomalies
                    WHERE id IN (
                          SELECT a.id FROM payment_anomalies a
                            JOIN alert_cursors c ON c.source = 'payment_anomalies'
                           WHERE a.created_at < now() - make_interval(days => $1)
                             AND (a.txid, a.id) <= (c.next_txid, c.last_id)
                             AND a.kind <> ALL($2)
                             AND NOT EXISTS (
                                 SELECT 1 FROM orders o
                                  WHERE o.order_number = a.order_number
                                    AND o.payment_status <> 'closed'
                                    AND o.recharge_status <> 'success'
                                    AND NOT EXISTS (SELECT 1 FROM refunds r
                                                     WHERE r.order_number = o.order_number
                                                       AND r.status = 'success'))
                           ORDER BY a.id LIMIT $3
                           FOR UPDATE OF a SKIP LOCKED)
                   RETURNING kind, created_at),
               counted AS (
                   INSERT INTO payment_anomaly_months AS m (month, kind, anomalies)
                   SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date, kind, count(*)
                     FROM gone GROUP BY 1, 2
                   ON CONFLICT (month, kind) DO UPDATE SET anomalies = m.anomalies + EXCLUDED.anomalies)
               SELECT count(*) AS "removed!" FROM gone"#,
            days,
            kept_kinds,
            BATCH,
        )
        .fetch_one(&self.db)
        .await?;
        Ok(u64::try_from(folded).unwrap_or(0))
    }

    pub async fn round(&self, hold: &Hold) -> Result<Retained, sqlx::Error> {
        let kept_kinds: Vec<String> = AnomalyKind::ALL
            .iter()
            .filter(|kind| kind.money_taken_unfulfilled())
            .map(|kind| kind.as_str().to_owned())
            .collect();
        let mut report = Retained::default();
        while !hold.is_lost() {
            let removed = self.fold_batch(&kept_kinds).await?;
            report.summarised += removed;
            if removed < BATCH as u64 {
                break;
            }
        }
        Ok(report)
    }
}

impl Rounds for AnomalyRetention {
    type Report = Retained;
    type Error = sqlx::Error;

    async fn round(&self, hold: &Hold) -> Result<Retained, sqlx::Error> {
        AnomalyRetention::round(self, hold).await
    }
}

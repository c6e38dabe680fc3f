//! `payment_anomalies` does not grow forever: settled anomalies older than
//! `ANOMALY_RETENTION_DAYS` (400 by default) are counted per kind and month into
//! `payment_anomaly_months` and removed; open ones, and recent ones, stay.

use std::time::Duration;

use testkit::{System, SystemOptions};

#[tokio::test]
async fn settled_anomalies_past_the_retention_are_summarised_and_removed() {
    let mut system = System::start(SystemOptions::default()).await;
    let db = &system.db.pool;
    let (credited, outcome) = system.top_up("o-retention").await;
    assert_eq!(outcome, "success");
    let unpaid = system
        .order_awaiting_payment("o-retention", "88616600", "voice", "SD5000")
        .await;

    // (order, kind, when: aged by hand, or "" for ten days ago, settled and past 400 days).
    let rows: Vec<(Option<&str>, &str, &str, bool)> = vec![
        (None, "unknown_order", "2024-03-10 10:00:00+00", true),
        (None, "missing_source", "2024-03-20 10:00:00+00", true),
        (
            Some("ORD1709999999999NotHere0001"),
            "unknown_order",
            "2024-03-31 23:30:00+00",
            true,
        ),
        (
            Some(&credited),
            "amount_mismatch",
            "2024-04-02 10:00:00+00",
            true,
        ),
        // Its order is still open: a person may still need it.
        (
            Some(&unpaid),
            "amount_mismatch",
            "2024-04-03 10:00:00+00",
            false,
        ),
        // Money taken for nothing: kept, nothing here records that a person returned it.
        (
            Some(&credited),
            "paid_after_close",
            "2024-04-04 10:00:00+00",
            false,
        ),
        (Some(&credited), "amount_mismatch", "", false),
    ];
    for (order, kind, at, _) in &rows {
        sqlx::query(
            "INSERT INTO payment_anomalies (order_number, kind, detail, created_at)
             VALUES ($1, $2, '{}', COALESCE(NULLIF($3, '')::timestamptz, now() - interval '10 days'))",
        )
        .bind(order)
        .bind(kind)
        .bind(at)
        .execute(db)
        .await
        .unwrap();
    }
    // The alert producer reads them first.
    system
        .wait_for_count(
            "SELECT count(*) FROM payment_anomalies a JOIN alert_cursors c ON c.source = 'payment_anomalies'
              WHERE (a.txid, a.id) > (c.next_txid, c.last_id)",
            0,
            Duration::from_secs(20),
        )
        .await;

    // A restart runs the retention round at once, on the shipped default.
    system.restart_api(&[]).await;
    let kept = rows.iter().filter(|row| !row.3).count() as i64;
    system
        .wait_for_count(
            "SELECT count(*) FROM payment_anomalies",
            kept,
            Duration::from_secs(20),
        )
        .await;
    let db = &system.db.pool;
    let left: Vec<(Option<String>, String)> =
        sqlx::query_as("SELECT order_number, kind FROM payment_anomalies ORDER BY id")
            .fetch_all(db)
            .await
            .unwrap();
    assert_eq!(
        left,
        [
            (Some(unpaid.clone()), "amount_mismatch".to_owned()),
            (Some(credited.clone()), "paid_after_close".to_owned()),
            (Some(credited.clone()), "amount_mismatch".to_owned()),
        ]
    );
    let months: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT to_char(month, 'YYYY-MM'), kind, anomalies FROM payment_anomaly_months
          ORDER BY month, kind",
    )
    .fetch_all(db)
    .await
    .unwrap();
    assert_eq!(
        months,
        [
            ("2024-03".to_owned(), "missing_source".to_owned(), 1),
            ("2024-03".to_owned(), "unknown_order".to_owned(), 2),
            ("2024-04".to_owned(), "amount_mismatch".to_owned(), 1),
        ]
    );
    system.shutdown().await;
}

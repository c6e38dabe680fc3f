//! `GET /admin/stats`: the roll-ups give exactly what counting every order gives, before
//! and after orders change (payments, top-ups, a person's decision, refunds), including
//! changes committed while a refresh was running.

use chrono::{Days, NaiveDate};
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::{expected_stats, first_difference, seed_orders, Seed, System, SystemOptions};

fn today() -> NaiveDate {
    payment_api::stats::today()
}

async fn assert_stats_match(system: &System, from: NaiveDate, to: NaiveDate) -> Value {
    let (status, body) = system
        .admin_get(&format!("/admin/stats?from={from}&to={to}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected = expected_stats(&system.db.pool, from, to).await;
    if let Some(difference) = first_difference("data", &expected, &body["data"]) {
        panic!("statistics for {from}..={to} differ from the orders: {difference}");
    }
    body["data"].clone()
}

async fn seeded_system(orders: i64) -> System {
    // No worker, and a payment window longer than the history: the sweeps leave the seeded
    // orders as they are, so the only changes are the ones this test makes.
    let system = System::start(SystemOptions {
        workers: 0,
        overrides: vec![("PAYMENT_WINDOW_MS", (100u64 * 24 * 3600 * 1000).to_string())],
        ..Default::default()
    })
    .await;
    seed_orders(
        &system.db.url,
        &Seed {
            tag: "st",
            orders,
            users: orders / 3,
            days: 40,
            seed: 0.42,
        },
    )
    .await
    .expect("orders seeded");
    system
}

#[tokio::test]
async fn statistics_equal_a_count_of_every_order_and_follow_changes() {
    let system = seeded_system(4_000).await;
    let today = today();
    let month_ago = today - Days::new(29);

    let before = assert_stats_match(&system, month_ago, today).await;
    assert!(before["totals"]["ordersCreated"].as_i64().unwrap() > 2_500);
    assert!(before["customers"]["returning"].as_i64().unwrap() > 0);
    assert!(before["totals"]["refundsSucceeded"].as_i64().unwrap() > 0);
    // A range starting mid-history, a single day, and the default range.
    assert_stats_match(&system, today - Days::new(35), today - Days::new(10)).await;
    assert_stats_match(&system, today - Days::new(7), today - Days::new(7)).await;
    let (_, default_range) = system.admin_get("/admin/stats").await;
    assert_eq!(default_range["data"]["from"], month_ago.to_string());
    assert_eq!(
        default_range["data"]["perDay"].as_array().unwrap().len(),
        30
    );

    // New business through the real system: a new customer's paid order.
    let order = system
        .order_and_pay("o-stats-new", "88616600", "voice", "SD5000")
        .await;
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{order}' AND payment_status = 'paid'"),
            1,
            std::time::Duration::from_secs(10),
        )
        .await;
    // A person settles an old unknown top-up.
    let unknown: String = sqlx::query_scalar(
        "SELECT order_number FROM orders WHERE recharge_status = 'unknown'
          AND created_at < now() - interval '5 days' ORDER BY id LIMIT 1",
    )
    .fetch_one(&system.db.pool)
    .await
    .unwrap();
    let (status, body) = system
        .admin_request(
            reqwest::Method::POST,
            &format!("/admin/orders/{unknown}/resolve"),
            Some(testkit::ADMIN_TOKEN),
            Some(json!({"outcome": "success", "note": "Unitel confirmed the credit"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let after = assert_stats_match(&system, month_ago, today).await;
    let total = |stats: &Value, field: &str| stats["totals"][field].as_i64().unwrap();
    assert_eq!(
        total(&after, "ordersPaid"),
        total(&before, "ordersPaid") + 1
    );
    assert_eq!(
        total(&after, "rechargePending"),
        total(&before, "rechargePending") + 1
    );
    assert_eq!(
        after["customers"]["new"].as_i64().unwrap(),
        before["customers"]["new"].as_i64().unwrap() + 1
    );
    assert_eq!(
        total(&after, "rechargeUnknown"),
        total(&before, "rechargeUnknown") - 1,
        "the resolved order is no longer unknown"
    );
    assert_eq!(
        total(&after, "rechargeSuccess"),
        total(&before, "rechargeSuccess") + 1
    );
}
#[tokio::test]
async fn a_change_committed_during_a_refresh_is_counted_by_the_next_one() {
    let system = seeded_system(300).await;
    let db = &system.db.pool;
    payment_api::stats::refresh(db).await.unwrap();
    let order: String = sqlx::query_scalar(
        "SELECT order_number FROM orders WHERE payment_status = 'unpaid' ORDER BY id LIMIT 1",
    )
    .fetch_one(db)
    .await
    .unwrap();

    // The payment is written but not committed while a refresh runs: the refresh must
    // neither count it nor lose its marker.
    let mut paying = db.begin().await.unwrap();
    sqlx::query(
        "UPDATE orders SET payment_status = 'paid', transaction_id = 'T-late', paid_at = now(),
                           payment_recorded_at = now()
          WHERE order_number = $1",
    )
    .bind(&order)
    .execute(&mut *paying)
    .await
    .unwrap();
    payment_api::stats::refresh(db).await.unwrap();
    paying.commit().await.unwrap();

    let today = today();
    assert_stats_match(&system, today - Days::new(45), today).await;
}

#[tokio::test]
async fn statistics_refuse_a_missing_token_and_bad_ranges() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    system
        .create_order("o-stats-secret", "88616600", "voice", "SD5000")
        .await;
    for token in [None, Some("wrong")] {
        let (status, body) = system
            .admin_request(reqwest::Method::GET, "/admin/stats", token, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["data"], Value::Null);
        assert!(!body.to_string().contains("SD5000"), "{body}");
    }
    for (query, message) in [
        ("from=2026-02-30", "from must be a date as YYYY-MM-DD"),
        ("to=yesterday", "to must be a date as YYYY-MM-DD"),
        ("from=2026-11-10&to=2026-11-01", "from must not be after to"),
        (
            "from=2025-01-01&to=2026-11-01",
            "a range covers at most 366 days",
        ),
    ] {
        let (status, body) = system.admin_get(&format!("/admin/stats?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["message"], message, "{query}");
    }
}

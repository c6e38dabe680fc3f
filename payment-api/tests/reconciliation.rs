//! Daily reconciliation with WeChat Pay's bill, against the simulated WeChat's own bill of
//! the payments and refunds it took: a day that matches balances, every difference is
//! found both ways and owned, and running a day again changes nothing settled.

use std::time::Duration;

use chrono::{FixedOffset, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::{System, SystemOptions, ADMIN_TOKEN};

fn china_today() -> String {
    let china = FixedOffset::east_opt(8 * 3600).unwrap();
    Utc::now().with_timezone(&china).date_naive().to_string()
}

async fn reconcile(system: &System, day: &str) -> Value {
    let (status, body) = system
        .admin_request(
            Method::POST,
            &format!("/admin/reconciliation/run?date={day}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].clone()
}

fn differences(day: &Value) -> Vec<(String, String, String)> {
    day["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_owned(),
                d["subject"].as_str().unwrap().to_owned(),
                d["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn credited(system: &System, openid: &str) -> String {
    let (order, outcome) = system.top_up(openid).await;
    assert_eq!(outcome, "success");
    order
}

#[tokio::test]
async fn a_day_whose_payments_all_match_balances_and_a_rerun_changes_nothing() {
    let system = System::start(SystemOptions::default()).await;
    let first = credited(&system, "o-recon-1").await;
    let second = credited(&system, "o-recon-2").await;
    let today = china_today();

    let day = reconcile(&system, &today).await;
    assert_eq!(day["status"], "balanced", "{day}");
    assert_eq!(day["billLines"], 2);
    assert_eq!(day["linesMatched"], 2);
    assert_eq!(differences(&day), vec![]);
    let amounts: i64 = sqlx::query_scalar(
        "SELECT sum(amount_fen)::bigint FROM orders WHERE order_number IN ($1, $2)",
    )
    .bind(&first)
    .bind(&second)
    .fetch_one(&system.db.pool)
    .await
    .unwrap();
    assert_eq!(day["totals"]["day"]["billPaymentsFen"], amounts);
    assert_eq!(day["totals"]["day"]["ourPaymentsFen"], amounts);
    assert_eq!(day["totals"]["summary"]["orderTotalFen"], amounts);

    let again = reconcile(&system, &today).await;
    assert_eq!(again["status"], "balanced");
    assert_eq!(again["attempts"], 2);
    assert_eq!(differences(&again), vec![]);
    let anomalies: i64 = sqlx::query_scalar("SELECT count(*) FROM payment_anomalies")
        .fetch_one(&system.db.pool)
        .await
        .unwrap();
    assert_eq!(anomalies, 0);

    let (status, listed) = system.admin_get("/admin/reconciliation").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["data"]["days"][0]["date"], today.as_str());
    assert_eq!(listed["data"]["days"][0]["status"], "balanced");
    assert!(listed["data"]["day"].is_null());
    system.shutdown().await;
}

#[tokio::test]
async fn a_payment_whose_callback_and_queries_were_lost_is_found_in_the_bill_and_fulfilled_once() {
    let system = System::start(SystemOptions::default()).await;
    let lost = system
        .order_awaiting_payment("o-recon-lost", "88616600", "voice", "SD5000")
        .await;
    // Paid at WeChat; the platform never calls back. The payment watch would ask only a
    // minute after the payment started: the bill finds it first.
    system
        .sandbox
        .pay_without_callback(&lost)
        .await
        .expect("sandbox pays");
    assert_eq!(system.statuses(&lost).await.0, "unpaid");
    let today = china_today();

    let day = reconcile(&system, &today).await;
    assert_eq!(
        differences(&day),
        vec![(
            "paid_at_wechat_only".to_owned(),
            lost.clone(),
            "resolved".to_owned()
        )]
    );
    assert_eq!(day["status"], "balanced", "recorded, the day agrees: {day}");
    assert_eq!(day["differences"][0]["resolvedBy"], "reconciliation");
    assert_eq!(day["linesMatched"], 1);
    assert_eq!(
        system
            .wait_for_outcome(&lost, Duration::from_secs(20))
            .await,
        "success"
    );
    let events = system.events(&lost).await;
    assert_eq!(
        events.iter().filter(|e| *e == "paid").count(),
        1,
        "{events:?}"
    );

    // Again: nothing new is recorded, and the number is credited once.
    let again = reconcile(&system, &today).await;
    assert_eq!(differences(&again), differences(&day));
    assert_eq!(system.credits_for(&lost), 1);
    let events = system.events(&lost).await;
    assert_eq!(
        events.iter().filter(|e| *e == "paid").count(),
        1,
        "{events:?}"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn the_day_asks_for_an_admin_token_and_a_date_within_three_months() {
    let system = System::start(SystemOptions::default()).await;
    let (status, _) = system
        .admin_request(Method::GET, "/admin/reconciliation", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for date in [
        "2026-13-01",
        "yesterday",
        "1999-01-01",
        "-262143-01-01",
        "2999-01-01",
    ] {
        let (status, body) = system
            .admin_request(
                Method::POST,
                &format!("/admin/reconciliation/run?date={date}"),
                Some(ADMIN_TOKEN),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{date}: {body}");
    }
    let (status, body) = system
        .admin_request(
            Method::POST,
            "/admin/reconciliation/differences/1/resolve",
            Some(ADMIN_TOKEN),
            Some(json!({"note": "nothing to settle"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    system.shutdown().await;
}

/// A paid and credited order of two days ago (China time), written straight into the
/// books: WeChat's simulator has never seen it. Two days, not one: yesterday's bill is
/// ready only from 10:00 China time today.
async fn paid_two_days_ago_here_only(system: &System, order_number: &str) -> String {
    let china = FixedOffset::east_opt(8 * 3600).unwrap();
    let bill_day = Utc::now().with_timezone(&china).date_naive() - chrono::Days::new(2);
    let noon = bill_day
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_local_timezone(china)
        .unwrap()
        .with_timezone(&Utc);
    let user: i64 =
        sqlx::query_scalar("INSERT INTO users (openid) VALUES ('o-recon-ghost') RETURNING id")
            .fetch_one(&system.db.pool)
            .await
            .unwrap();
    sqlx::query(
        "INSERT INTO orders (order_number, user_id, openid, phone_number, product_operator,
                             recharge_type, product_code, product_name, price_mnt, exchange_rate,
                             amount_fen, payment_status, transaction_id, paid_at,
                             payment_recorded_at, recharge_status, recharged_at, created_at)
         VALUES ($1, $2, 'o-recon-ghost', '88616600', 'unitel', 'voice', 'SD5000', 'Smart data 5000',
                 5000, 440, 1136, 'paid', '4200000000000000000001', $3, $3, 'success', $3, $3)",
    )
    .bind(order_number)
    .bind(user)
    .bind(noon)
    .execute(&system.db.pool)
    .await
    .unwrap();
    bill_day.to_string()
}

#[tokio::test]
async fn the_job_reconciles_a_past_day_by_itself_and_a_payment_absent_at_wechat_is_an_alerted_anomaly_never_refunded(
) {
    // The job's first round runs at start: with nothing to reconcile yet.
    let mut system = System::start(SystemOptions {
        overrides: vec![("RECONCILIATION_SINCE", "2100-01-01".into())],
        ..Default::default()
    })
    .await;
    let order = "ORD1795000000000GHOST1";
    let bill_day = paid_two_days_ago_here_only(&system, order).await;
    // Restarted on the shipped settings, it reconciles every day since the oldest order.
    system
        .restart_api(&[("RECONCILIATION_SINCE", bill_day.as_str())])
        .await;
    system
        .wait_for_count(
            "SELECT count(*) FROM reconciliation_days WHERE status = 'differences'",
            1,
            Duration::from_secs(20),
        )
        .await;
    let (_, view) = system
        .admin_get(&format!("/admin/reconciliation?date={bill_day}"))
        .await;
    let day = &view["data"]["day"];
    assert_eq!(
        differences(day),
        vec![(
            "missing_at_wechat".to_owned(),
            order.to_owned(),
            "open".to_owned()
        )],
        "{day}"
    );
    assert_eq!(day["differences"][0]["deltaFen"], -1136);
    assert_eq!(day["totals"]["day"]["ourPaymentsFen"], 1136);
    assert_eq!(day["totals"]["day"]["billPaymentsFen"], 0);
    // An anomaly on the order and an alert naming it; nothing refunded or sent again.
    system
        .wait_for_count(
            &format!(
                "SELECT count(*) FROM alerts WHERE kind = 'reconciliation_difference' AND order_number = '{order}'"
            ),
            1,
            Duration::from_secs(30),
        )
        .await;
    let anomalies: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM payment_anomalies WHERE order_number = $1")
            .bind(order)
            .fetch_all(&system.db.pool)
            .await
            .unwrap();
    assert_eq!(anomalies, vec!["bill_missing".to_owned()]);
    let refunds: i64 = sqlx::query_scalar("SELECT count(*) FROM refunds")
        .fetch_one(&system.db.pool)
        .await
        .unwrap();
    assert_eq!(refunds, 0);
    assert_eq!(
        system.statuses(order).await,
        ("paid".to_owned(), "success".to_owned())
    );

    // A person looks into it and settles it; a re-run keeps the settlement and records no
    // second anomaly.
    let id = day["differences"][0]["id"].as_i64().unwrap();
    let (status, resolved) = system
        .admin_request(
            Method::POST,
            &format!("/admin/reconciliation/differences/{id}/resolve"),
            Some(ADMIN_TOKEN),
            Some(json!({"note": "test order written by hand; no money moved", "resolvedBy": "ops li"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(
        resolved["data"]["differences"][0]["resolvedBy"],
        "admin:ops li"
    );
    let again = reconcile(&system, &bill_day).await;
    assert_eq!(
        differences(&again),
        vec![(
            "missing_at_wechat".to_owned(),
            order.to_owned(),
            "resolved".to_owned()
        )]
    );
    assert_eq!(again["differences"][0]["resolvedBy"], "admin:ops li");
    let anomalies: i64 = sqlx::query_scalar("SELECT count(*) FROM payment_anomalies")
        .fetch_one(&system.db.pool)
        .await
        .unwrap();
    assert_eq!(anomalies, 1);
    let (status, _) = system
        .admin_request(
            Method::POST,
            &format!("/admin/reconciliation/differences/{id}/resolve"),
            Some(ADMIN_TOKEN),
            Some(json!({"note": "twice"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a settled difference stays settled"
    );
    system.shutdown().await;
}

fn bill_faults(wechat: sandbox::WechatFaults) -> sandbox::Faults {
    sandbox::Faults {
        wechat,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_failed_top_ups_refund_matches_the_bills_refund_line() {
    let system = System::start(SystemOptions::default()).await;
    let (order, outcome) = system
        .top_up_under(
            "o-recon-refund",
            sandbox::UnitelFaults {
                fail_next: 1,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(outcome, "failed");
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM refunds WHERE order_number = '{order}' AND status = 'success'"),
            1,
            Duration::from_secs(60),
        )
        .await;
    let day = reconcile(&system, &china_today()).await;
    assert_eq!(day["status"], "balanced", "{day}");
    assert_eq!(day["billLines"], 2, "the payment and its refund");
    assert_eq!(day["linesMatched"], 2);
    let amount = day["totals"]["day"]["billPaymentsFen"].clone();
    assert_eq!(day["totals"]["day"]["billRefundsFen"], amount);
    assert_eq!(day["totals"]["day"]["ourRefundsFen"], amount);
    system.shutdown().await;
}

#[tokio::test]
async fn every_difference_in_a_bill_is_found_owned_and_alerted() {
    let system = System::start(SystemOptions::default()).await;
    let matching = credited(&system, "o-recon-a").await;
    let dearer = credited(&system, "o-recon-b").await;
    let elsewhere = credited(&system, "o-recon-c").await;
    let dropped = credited(&system, "o-recon-d").await;
    let refunded_by_hand = credited(&system, "o-recon-e").await;
    let outside = system
        .sandbox
        .refund_outside(&refunded_by_hand, 100)
        .expect("a refund made in the merchant platform");
    system
        .sandbox
        .set_faults(bill_faults(sandbox::WechatFaults {
            bill_drop_orders: vec![dropped.clone()],
            bill_alter_orders: vec![
                sandbox::BillAlteration {
                    out_trade_no: dearer.clone(),
                    total_fee: Some(99_999),
                    sub_mch_id: None,
                    transaction_id: None,
                },
                sandbox::BillAlteration {
                    out_trade_no: elsewhere.clone(),
                    total_fee: None,
                    sub_mch_id: None,
                    transaction_id: Some("4200009999999999999999999999".into()),
                },
            ],
            ..Default::default()
        }));

    let day = reconcile(&system, &china_today()).await;
    assert_eq!(day["status"], "differences", "{day}");
    let mut found = differences(&day);
    found.sort();
    let mut expected = vec![
        (
            "amount_differs".to_owned(),
            dearer.clone(),
            "open".to_owned(),
        ),
        (
            "transaction_differs".to_owned(),
            elsewhere.clone(),
            "open".to_owned(),
        ),
        (
            "missing_at_wechat".to_owned(),
            dropped.clone(),
            "open".to_owned(),
        ),
        (
            "refund_at_wechat_only".to_owned(),
            outside.out_refund_no.clone(),
            "open".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(found, expected, "{day}");
    assert_eq!(
        day["linesMatched"], 2,
        "{matching} and {refunded_by_hand}'s payment"
    );
    assert_eq!(day["totals"]["day"]["unexplainedPaymentsFen"], 0);
    assert_eq!(day["totals"]["day"]["unexplainedRefundsFen"], 0);

    // Each is an anomaly on its order and an alert naming it; nothing is refunded, sent
    // again or changed on the bill's word.
    for order in [&dearer, &elsewhere, &dropped, &refunded_by_hand] {
        system
            .wait_for_count(
                &format!(
                    "SELECT count(*) FROM alerts WHERE kind = 'reconciliation_difference' AND order_number = '{order}'"
                ),
                1,
                Duration::from_secs(30),
            )
            .await;
        assert_eq!(
            system.statuses(order).await,
            ("paid".to_owned(), "success".to_owned())
        );
        assert_eq!(system.credits_for(order), 1);
    }
    let refunds: i64 = sqlx::query_scalar("SELECT count(*) FROM refunds")
        .fetch_one(&system.db.pool)
        .await
        .unwrap();
    assert_eq!(refunds, 0);

    // The bill put right: a re-run closes what no longer differs, keeps the rest.
    system.sandbox.set_faults(sandbox::Faults::default());
    let again = reconcile(&system, &china_today()).await;
    let resolved: Vec<(String, String)> = again["differences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["status"] == "resolved")
        .map(|d| {
            (
                d["subject"].as_str().unwrap().to_owned(),
                d["resolvedBy"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(resolved.len(), 3, "{again}");
    assert!(resolved.iter().all(|(_, by)| by == "reconciliation"));
    assert_eq!(
        again["differencesOpen"], 1,
        "the refund made by hand stays a person's"
    );
    let anomalies: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payment_anomalies WHERE kind LIKE 'bill_%'")
            .fetch_one(&system.db.pool)
            .await
            .unwrap();
    assert_eq!(
        anomalies, 4,
        "one anomaly per difference, however often the day runs"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_bill_that_is_late_fails_or_does_not_add_up_is_retried_and_alerted() {
    let system = System::start(SystemOptions::default()).await;
    credited(&system, "o-recon-late").await;
    let today = china_today();

    system
        .sandbox
        .set_faults(bill_faults(sandbox::WechatFaults {
            bill_not_ready: 1,
            ..Default::default()
        }));
    let day = reconcile(&system, &today).await;
    assert_eq!(day["status"], "waiting", "{day}");
    assert!(day["nextAttemptAt"].is_string());

    system
        .sandbox
        .set_faults(bill_faults(sandbox::WechatFaults {
            bill_errors: 2,
            ..Default::default()
        }));
    for _ in 0..2 {
        let day = reconcile(&system, &today).await;
        assert_eq!(day["status"], "failed", "{day}");
    }
    // Three attempts without a bill: a person is told.
    system
        .wait_for_count(
            "SELECT count(*) FROM alerts WHERE kind = 'reconciliation_late'",
            1,
            Duration::from_secs(30),
        )
        .await;

    system
        .sandbox
        .set_faults(bill_faults(sandbox::WechatFaults {
            bill_malformed_line: 1,
            ..Default::default()
        }));
    let day = reconcile(&system, &today).await;
    assert_eq!(day["status"], "unbalanced", "{day}");
    assert!(
        differences(&day).iter().any(|d| d.0 == "malformed_line"),
        "{day}"
    );
    assert!(
        day["nextAttemptAt"].is_string(),
        "an unbalanced day is tried again"
    );

    system
        .sandbox
        .set_faults(bill_faults(sandbox::WechatFaults {
            bill_totals_off: 1,
            ..Default::default()
        }));
    let day = reconcile(&system, &today).await;
    assert_eq!(day["status"], "unbalanced", "{day}");
    assert!(differences(&day)
        .iter()
        .any(|d| d.0 == "bill_totals_differ" && d.2 == "open"));

    // WeChat's bill is whole again: the day balances, what the bad bills said is closed.
    system.sandbox.set_faults(sandbox::Faults::default());
    let day = reconcile(&system, &today).await;
    assert_eq!(day["status"], "balanced", "{day}");
    assert_eq!(day["differencesOpen"], 0);
    assert!(
        day["nextAttemptAt"].is_null(),
        "a balanced day needs nothing more"
    );
    system.shutdown().await;
}

//! The payment callback: bare `errcode` answers, checks against our records, and exactly
//! one OrderPaid message however many times and however concurrently a payment is reported.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::{System, SystemOptions};

fn api_only() -> SystemOptions {
    SystemOptions {
        workers: 0,
        ..Default::default()
    }
}

/// A callback body as the platform sends it, for an order the sandbox knows.
fn genuine(order: &str, total_fee: i64) -> Value {
    json!({
        "returnCode": "SUCCESS", "resultCode": "SUCCESS", "appid": "wx-app", "mchId": "1800780001",
        "subAppid": "wx-sub", "subMchId": "1712734762", "nonceStr": "f6444fd22de27b16",
        "openid": "oPoo", "isSubscribe": "N", "subOpenid": "oZWa", "subIsSubscribe": "N",
        "tradeType": "JSAPI", "bankType": "OTHERS", "totalFee": total_fee, "feeType": "CNY",
        "cashFee": total_fee, "transactionId": "4200004561202203217657282768",
        "outTradeNo": order, "timeEnd": "20261124132007", "attach": order,
    })
}

async fn post_callback(system: &System, path: &str, body: &Value) -> (StatusCode, Value) {
    system
        .anonymous()
        .post_raw(
            path,
            &[
                ("content-type", "application/json"),
                ("x-wx-source", "wxpay"),
            ],
            body.to_string(),
        )
        .await
}

async fn count(system: &System, sql: &str, order: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(order)
        .fetch_one(&system.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn twenty_concurrent_identical_callbacks_give_one_message_and_one_credit() {
    let mut system = System::start(api_only()).await;
    system.sandbox.set_faults(sandbox::Faults {
        wechat: sandbox::WechatFaults {
            callback_duplicates: 19,
            ..Default::default()
        },
        ..Default::default()
    });
    let order = system
        .order_and_pay("o-dup", "88616600", "voice", "SD5000")
        .await;
    // All twenty deliveries must be answered errcode 0 (and so not retried).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let accepted = system
            .sandbox
            .callback_log()
            .iter()
            .filter(|d| d.out_trade_no == order && d.accepted)
            .count();
        if accepted == 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {accepted} of 20 callbacks accepted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And twenty more, straight at the API, all at once, after the fact.
    let mut late = genuine(&order, 1136);
    late["transactionId"] = system
        .sandbox
        .wechat_order(&order)
        .unwrap()
        .transaction_id
        .unwrap()
        .into();
    let path = format!("/payment/callback/{order}");
    let answers = join_all((0..20).map(|_| post_callback(&system, &path, &late))).await;
    for (status, answer) in answers {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            answer,
            json!({"errcode": 0, "errmsg": ""}),
            "bare errcode, not wrapped"
        );
    }

    assert_eq!(
        count(
            &system,
            "SELECT count(*) FROM outbox WHERE order_number = $1",
            &order
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &system,
            "SELECT count(*) FROM order_events WHERE order_number = $1 AND event = 'paid'",
            &order
        )
        .await,
        1
    );
    system
        .wait_for_count(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL",
            0,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        system.queued_messages().await,
        1,
        "one OrderPaid message on the queue"
    );

    system.start_worker().await;
    assert_eq!(
        system
            .wait_for_outcome(&order, Duration::from_secs(20))
            .await,
        "success"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let credits = system
        .sandbox
        .ledger()
        .into_iter()
        .filter(|c| c.journal_id == order)
        .count();
    assert_eq!(credits, 1);
    system.shutdown().await;
}

#[tokio::test]
async fn callbacks_that_disagree_with_the_order_are_recorded_and_never_fulfilled() {
    let system = System::start(api_only()).await;
    let order = system
        .create_order("o-forged", "88616600", "voice", "SD5000")
        .await;
    let other = system
        .create_order("o-forged", "88616600", "voice", "SD10000")
        .await;
    let path = format!("/payment/callback/{order}");

    let mut wrong_amount = genuine(&order, 1);
    wrong_amount["cashFee"] = 1.into();
    let mut wrong_merchant = genuine(&order, 1136);
    wrong_merchant["subMchId"] = "9999999999".into();
    let mismatched = genuine(&other, 1136); // body names another order than the path
    let mut failed = genuine(&order, 1136);
    failed["resultCode"] = "FAIL".into();
    let mut fraction = genuine(&order, 1136);
    fraction["totalFee"] = json!(11.36);
    let cases = [
        (wrong_amount, "amount_mismatch"),
        (wrong_merchant, "merchant_mismatch"),
        (mismatched, "order_number_mismatch"),
        (failed, "not_success"),
        (fraction, "amount_mismatch"),
    ];
    for (body, kind) in &cases {
        let (status, answer) = post_callback(&system, &path, body).await;
        assert_eq!(status, StatusCode::OK, "{kind}");
        assert_eq!(
            answer,
            json!({"errcode": 0, "errmsg": ""}),
            "{kind}: answered so that it is not retried"
        );
        let recorded = count(
            &system,
            &format!("SELECT count(*) FROM payment_anomalies WHERE order_number = $1 AND kind = '{kind}'"),
            &order,
        )
        .await;
        assert!(recorded >= 1, "{kind} recorded");
    }
    let (status, answer) = post_callback(
        &system,
        "/payment/callback/ORD1700000000000NOSUCH01",
        &genuine("ORD1700000000000NOSUCH01", 1136),
    )
    .await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({"errcode": 0, "errmsg": ""}))
    );
    assert_eq!(
        count(&system, "SELECT count(*) FROM payment_anomalies WHERE order_number = $1 AND kind = 'unknown_order'", "ORD1700000000000NOSUCH01").await,
        1
    );

    assert_eq!(system.statuses(&order).await.0, "unpaid");
    assert_eq!(system.statuses(&other).await.0, "unpaid");
    let (anomaly,): (Option<String>,) =
        sqlx::query_as("SELECT anomaly FROM orders WHERE order_number = $1")
            .bind(&order)
            .fetch_one(&system.db.pool)
            .await
            .unwrap();
    assert!(anomaly.is_some(), "the order carries its anomaly");
    let (messages,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox")
        .fetch_one(&system.db.pool)
        .await
        .unwrap();
    assert_eq!(messages, 0, "nothing announced");

    // A forgery does not block the genuine payment that follows.
    let (_, answer) = post_callback(&system, &path, &genuine(&order, 1136)).await;
    assert_eq!(answer["errcode"], 0);
    assert_eq!(system.statuses(&order).await.0, "paid");
    assert_eq!(
        count(
            &system,
            "SELECT count(*) FROM outbox WHERE order_number = $1",
            &order
        )
        .await,
        1
    );

    // Unreadable bodies are not acknowledged, so a genuine one we failed to read is retried.
    let (status, answer) = system
        .anonymous()
        .post_raw(&path, &[("content-type", "application/json")], "{oops")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_ne!(answer["errcode"], 0);
    system.shutdown().await;
}

#[tokio::test]
async fn the_bare_callback_path_takes_the_order_from_the_body() {
    let system = System::start(api_only()).await;
    let order = system
        .create_order("o-bare", "88616600", "voice", "SD5000")
        .await;
    let (status, answer) =
        post_callback(&system, "/payment/callback", &genuine(&order, 1136)).await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({"errcode": 0, "errmsg": ""}))
    );
    assert_eq!(system.statuses(&order).await.0, "paid");
    system.shutdown().await;
}

#[tokio::test]
async fn production_refuses_callbacks_without_the_gateway_mark() {
    let system = System::start(SystemOptions {
        app_env: "production",
        ..api_only()
    })
    .await;
    // Production has no X-Mock-Openid: create the order through the gateway headers.
    let order = system
        .create_order("o-prod", "88616600", "voice", "SD5000")
        .await;
    let (status, answer) = system
        .anonymous()
        .post_raw(
            &format!("/payment/callback/{order}"),
            &[("content-type", "application/json")],
            genuine(&order, 1136).to_string(),
        )
        .await;
    assert_eq!(
        (status, answer["errcode"].clone()),
        (StatusCode::OK, json!(0))
    );
    assert_eq!(
        system.statuses(&order).await.0,
        "unpaid",
        "not fulfilled without X-WX-SOURCE"
    );
    assert_eq!(
        count(&system, "SELECT count(*) FROM payment_anomalies WHERE order_number = $1 AND kind = 'missing_source'", &order).await,
        1
    );
    let (_, answer) = post_callback(
        &system,
        &format!("/payment/callback/{order}"),
        &genuine(&order, 1136),
    )
    .await;
    assert_eq!(answer["errcode"], 0);
    assert_eq!(system.statuses(&order).await.0, "paid");
    system.shutdown().await;
}

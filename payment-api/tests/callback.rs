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

/// An order the sandbox considers paid, its own callback held back so that the test
/// decides what reaches payment-api. Returns the order number and WeChat's transaction id.
async fn paid_at_wechat_quietly(system: &System, openid: &str) -> (String, String) {
    let order = system
        .order_awaiting_payment(openid, "88616600", "voice", "SD5000")
        .await;
    system.sandbox.set_faults(sandbox::Faults {
        wechat: sandbox::WechatFaults {
            callback_delay_ms: 600_000,
            ..Default::default()
        },
        ..Default::default()
    });
    let transaction = system.sandbox.pay(&order).await.unwrap();
    (order, transaction)
}

fn with_transaction(mut body: Value, transaction_id: &str) -> Value {
    body["transactionId"] = transaction_id.into();
    body
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
    // A graceful stop finishes what the worker holds and hands back what it did not
    // settle: an empty queue then means the one message was acked and none came after.
    system.stop_workers().await;
    assert_eq!(system.queued_messages().await, 0, "nothing left to credit");
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
    let (order, transaction) = paid_at_wechat_quietly(&system, "o-forged").await;
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
    // Everything right but the transaction: WeChat's queryorder names another one.
    let other_transaction = genuine(&order, 1136);
    let cases = [
        (other_transaction, "not_paid_at_wechat"),
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
    // A rejection keeps the fields as received and the path they were posted to.
    let (detail,): (serde_json::Value,) = sqlx::query_as(
        "SELECT detail FROM payment_anomalies
          WHERE order_number = $1 AND kind = 'order_number_mismatch' LIMIT 1",
    )
    .bind(&order)
    .fetch_one(&system.db.pool)
    .await
    .unwrap();
    assert_eq!(detail["pathOrderNumber"], json!(order));
    assert_eq!(detail["outTradeNo"], json!(other));
    assert_eq!(detail["totalFee"], json!(1136));
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
    assert_eq!(
        anomaly, None,
        "requests nobody verified are kept apart; they do not mark the order"
    );
    let (messages,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox")
        .fetch_one(&system.db.pool)
        .await
        .unwrap();
    assert_eq!(messages, 0, "nothing announced");

    // A forgery does not block the genuine payment that follows.
    let real = with_transaction(genuine(&order, 1136), &transaction);
    let (_, answer) = post_callback(&system, &path, &real).await;
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

    // Bodies that are not a callback at all are refused with a non-zero errcode.
    for (path, body) in [
        (path.clone(), "[null, null]".to_owned()),
        (
            path.clone(),
            genuine(&order, 1136)
                .to_string()
                .replace("SUCCESS", "SUC\\u0000CESS"),
        ),
        (
            "/payment/callback/not%20an%20order".to_owned(),
            genuine(&order, 1136).to_string(),
        ),
    ] {
        let (status, answer) = system
            .anonymous()
            .post_raw(&path, &[("content-type", "application/json")], body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_ne!(answer["errcode"], 0, "{body}");
    }

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
    let (order, transaction) = paid_at_wechat_quietly(&system, "o-bare").await;
    let real = with_transaction(genuine(&order, 1136), &transaction);
    let (status, answer) = post_callback(&system, "/payment/callback", &real).await;
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
    let (order, transaction) = paid_at_wechat_quietly(&system, "o-prod").await;
    let real = with_transaction(genuine(&order, 1136), &transaction);
    let (status, answer) = system
        .anonymous()
        .post_raw(
            &format!("/payment/callback/{order}"),
            &[("content-type", "application/json")],
            real.to_string(),
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
    let (_, answer) = post_callback(&system, &format!("/payment/callback/{order}"), &real).await;
    assert_eq!(answer["errcode"], 0);
    assert_eq!(system.statuses(&order).await.0, "paid");
    system.shutdown().await;
}

#[tokio::test]
async fn a_well_formed_callback_for_an_order_wechat_calls_unpaid_is_not_fulfilled() {
    let system = System::start(api_only()).await;
    // Payment started, never paid: WeChat's queryorder says NOTPAY.
    let started = system
        .order_awaiting_payment("o-unpaid", "88616600", "voice", "SD5000")
        .await;
    // Never sent to WeChat at all: queryorder says ORDERNOTEXIST.
    let unknown_at_wechat = system
        .create_order("o-unpaid", "88616600", "voice", "SD5000")
        .await;
    for order in [&started, &unknown_at_wechat] {
        let (status, answer) = post_callback(
            &system,
            &format!("/payment/callback/{order}"),
            &genuine(order, 1136),
        )
        .await;
        assert_eq!(
            (status, answer),
            (StatusCode::OK, json!({"errcode": 0, "errmsg": ""}))
        );
        assert_eq!(system.statuses(order).await.0, "unpaid");
        assert_eq!(
            count(&system, "SELECT count(*) FROM payment_anomalies WHERE order_number = $1 AND kind = 'not_paid_at_wechat'", order).await,
            1
        );
    }
    system.shutdown().await;
}

/// payment-api with `WECHAT_CONFIRM_CALLBACKS=false`, and an order awaiting payment.
async fn unconfirmed_with_an_order(openid: &str) -> (System, String) {
    let mut system = System::start(api_only()).await;
    system
        .restart_api(&[("WECHAT_CONFIRM_CALLBACKS", "false")])
        .await;
    let order = system
        .order_awaiting_payment(openid, "88616600", "voice", "SD5000")
        .await;
    (system, order)
}

#[tokio::test]
async fn without_confirmation_a_well_formed_callback_is_trusted() {
    let (system, order) = unconfirmed_with_an_order("o-trusting").await;
    let (_, answer) = post_callback(
        &system,
        &format!("/payment/callback/{order}"),
        &genuine(&order, 1136),
    )
    .await;
    assert_eq!(answer["errcode"], 0);
    // This is the risk WECHAT_CONFIRM_CALLBACKS=false takes: WeChat never saw a payment.
    assert_eq!(system.statuses(&order).await.0, "paid");
    system.shutdown().await;
}

#[tokio::test]
async fn without_confirmation_the_recording_statement_still_refuses_what_disagrees() {
    let (system, order) = unconfirmed_with_an_order("o-unconfirmed").await;
    let path = format!("/payment/callback/{order}");
    let anomalies = |kind: &'static str, order: String| {
        let system = &system;
        async move {
            count(
                system,
                &format!("SELECT count(*) FROM payment_anomalies WHERE order_number = $1 AND kind = '{kind}'"),
                &order,
            )
            .await
        }
    };

    let mut wrong_amount = genuine(&order, 1137);
    wrong_amount["cashFee"] = 1137.into();
    let (_, answer) = post_callback(&system, &path, &wrong_amount).await;
    assert_eq!(answer["errcode"], 0);
    assert_eq!(anomalies("amount_mismatch", order.clone()).await, 1);
    assert_eq!(system.statuses(&order).await.0, "unpaid");

    let first = with_transaction(genuine(&order, 1136), "4200000000000000000000000001");
    for _ in 0..3 {
        let (_, answer) = post_callback(&system, &path, &first).await;
        assert_eq!(answer["errcode"], 0);
    }
    let second = with_transaction(genuine(&order, 1136), "4200000000000000000000000002");
    let (_, answer) = post_callback(&system, &path, &second).await;
    assert_eq!(answer["errcode"], 0);
    // Money taken twice would need a person; WeChat says it was not, so no one is told so.
    assert_eq!(anomalies("second_transaction", order.clone()).await, 0);
    assert_eq!(anomalies("not_paid_at_wechat", order.clone()).await, 1);
    assert_eq!(
        count(
            &system,
            "SELECT count(*) FROM outbox WHERE order_number = $1",
            &order
        )
        .await,
        1,
        "three deliveries and a second transaction: one message"
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
    let (transaction,): (String,) =
        sqlx::query_as("SELECT transaction_id FROM orders WHERE order_number = $1")
            .bind(&order)
            .fetch_one(&system.db.pool)
            .await
            .unwrap();
    assert_eq!(transaction, "4200000000000000000000000001");

    let ghost = "ORD1700000000000NOSUCH02";
    let (_, answer) = post_callback(
        &system,
        &format!("/payment/callback/{ghost}"),
        &genuine(ghost, 1136),
    )
    .await;
    assert_eq!(answer["errcode"], 0);
    assert_eq!(anomalies("unknown_order", ghost.to_owned()).await, 1);
    system.shutdown().await;
}

#[tokio::test]
async fn a_callback_that_cannot_be_confirmed_yet_is_retried_by_the_platform() {
    let mut system = System::start(api_only()).await;
    system.restart_api(&[("WECHAT_TIMEOUT_MS", "300")]).await;
    let order = system
        .order_awaiting_payment("o-slow-query", "88616600", "voice", "SD5000")
        .await;
    // queryorder takes longer than our timeout: the callback cannot be confirmed.
    system.sandbox.set_faults(sandbox::Faults {
        wechat: sandbox::WechatFaults {
            latency_ms: 1_000,
            ..Default::default()
        },
        ..Default::default()
    });
    system.sandbox.pay(&order).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !system
        .sandbox
        .callback_log()
        .iter()
        .any(|d| d.out_trade_no == order && !d.accepted)
    {
        assert!(std::time::Instant::now() < deadline, "no refused delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        system.statuses(&order).await.0,
        "unpaid",
        "not recorded unconfirmed"
    );
    // WeChat recovers; the platform's next attempt is confirmed and recorded.
    system.sandbox.set_faults(sandbox::Faults::default());
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{order}' AND payment_status = 'paid'"),
            1,
            Duration::from_secs(15),
        )
        .await;
    let refused = system
        .sandbox
        .callback_log()
        .iter()
        .filter(|d| d.out_trade_no == order && !d.accepted)
        .count();
    assert!(refused >= 1);
    system.shutdown().await;
}

#[tokio::test]
async fn paid_at_is_wechats_time_and_the_recording_time_is_kept_apart() {
    let system = System::start(api_only()).await;
    let (order, transaction) = paid_at_wechat_quietly(&system, "o-time-end").await;
    // WeChat's clock says the customer paid a while ago (China time); we hear of it now.
    let mut body = with_transaction(genuine(&order, 1136), &transaction);
    body["timeEnd"] = "20261124132007".into();
    let (status, answer) =
        post_callback(&system, &format!("/payment/callback/{order}"), &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (paid_at, recorded_at, message): (String, chrono::DateTime<chrono::Utc>, Value) =
        sqlx::query_as(
            "SELECT to_char(o.paid_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                    o.payment_recorded_at, m.payload
               FROM orders o JOIN outbox m ON m.order_number = o.order_number
              WHERE o.order_number = $1",
        )
        .bind(&order)
        .fetch_one(&system.db.pool)
        .await
        .unwrap();
    assert_eq!(paid_at, "2026-11-24 05:20:07", "13:20:07 in Shanghai");
    let since_recorded = chrono::Utc::now() - recorded_at;
    assert!(
        since_recorded < chrono::Duration::seconds(30),
        "recorded just now, not at WeChat's time: {recorded_at}"
    );
    assert_eq!(message["paidAt"], "2026-11-24T05:20:07Z");
    system.shutdown().await;
}

//! Payments WeChat did not tell us about, expired orders, outages and abuse.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use testkit::{System, SystemOptions};

fn sweeping(query_after_ms: u64, window_ms: u64) -> SystemOptions {
    SystemOptions {
        workers: 0,
        overrides: vec![
            ("PAYMENT_SWEEP_INTERVAL_MS", "100".into()),
            ("PAYMENT_QUERY_AFTER_MS", query_after_ms.to_string()),
            ("PAYMENT_WINDOW_MS", window_ms.to_string()),
            ("PAYMENT_CLOSE_GRACE_MS", "1".into()),
        ],
        ..Default::default()
    }
}

/// The user pays but WeChat's callback never arrives.
async fn pay_with_lost_callback(system: &System, openid: &str) -> String {
    let order = system
        .order_awaiting_payment(openid, "88616600", "voice", "SD5000")
        .await;
    system.sandbox.set_faults(sandbox::Faults {
        wechat: sandbox::WechatFaults {
            callback_delay_ms: 3_600_000,
            ..Default::default()
        },
        ..Default::default()
    });
    system.sandbox.pay(&order).await.unwrap();
    order
}

async fn events(system: &System, order: &str) -> Vec<(String, String)> {
    sqlx::query_as("SELECT event, actor FROM order_events WHERE order_number = $1 ORDER BY id")
        .bind(order)
        .fetch_all(&system.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_sweep_finds_a_payment_whose_callback_was_lost() {
    let system = System::start(SystemOptions {
        workers: 1,
        ..sweeping(200, 3_600_000)
    })
    .await;
    let order = pay_with_lost_callback(&system, "o-lost").await;
    assert_eq!(
        system
            .wait_for_outcome(&order, Duration::from_secs(20))
            .await,
        "success"
    );
    assert!(events(&system, &order)
        .await
        .contains(&("paid".into(), "wechat-query".into())));
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE order_number = $1")
        .bind(&order)
        .fetch_one(&system.db.pool)
        .await
        .unwrap();
    assert_eq!(outbox, 1);
    assert_eq!(system.sandbox.ledger().len(), 1);
    system.shutdown().await;
}

#[tokio::test]
async fn reading_an_unpaid_order_asks_wechat() {
    // Sweeps far apart: only the read can find the payment.
    let system = System::start(sweeping(3_600_000, 3_600_000)).await;
    let order = pay_with_lost_callback(&system, "o-read").await;
    let (status, body) = system
        .client("o-read")
        .get(&format!("/orders/{order}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["paymentStatus"], "paid", "{body}");
    assert_eq!(
        body["data"]["transactionId"],
        system
            .sandbox
            .wechat_order(&order)
            .unwrap()
            .transaction_id
            .unwrap()
            .as_str()
    );
    system.shutdown().await;
}

#[tokio::test]
async fn expired_orders_are_closed_here_and_at_wechat_and_cannot_be_paid() {
    // A window long enough for all three orders to be set up before any expires.
    let system = System::start(sweeping(3_600_000, 1_500)).await;
    let never_started = system
        .create_order("o-expire", "88616600", "voice", "SD5000")
        .await;
    let started = system
        .order_awaiting_payment("o-expire", "88616600", "voice", "SD5000")
        .await;
    // Paid at WeChat with its callback lost: closing finds ORDERPAID and records the payment.
    let paid_late = pay_with_lost_callback(&system, "o-expire").await;

    system
        .wait_for_count(
            "SELECT count(*) FROM orders WHERE payment_status = 'closed'",
            2,
            Duration::from_secs(10),
        )
        .await;
    // ORDERPAID means paid, not closed (the sweep reaches it after the other two).
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{paid_late}' AND payment_status = 'paid'"),
            1,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(system.statuses(&never_started).await.0, "closed");
    assert_eq!(system.statuses(&started).await.0, "closed");
    assert_eq!(
        system
            .sandbox
            .wechat_order(&started)
            .unwrap()
            .trade_state
            .as_str(),
        "CLOSED",
        "closed at WeChat too"
    );
    assert!(
        system.sandbox.pay(&started).await.is_err(),
        "WeChat refuses to take the money"
    );
    let (status, body) = system
        .client("o-expire")
        .post("/payment/create", json!({"orderNumber": started}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["message"], "订单已关闭，请重新下单");
    system.shutdown().await;
}

#[tokio::test]
async fn orders_past_their_window_cannot_start_a_payment() {
    let system = System::start(sweeping(3_600_000, 200)).await;
    let order = system
        .create_order("o-late", "88616600", "voice", "SD5000")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = system
        .client("o-late")
        .post("/payment/create", json!({"orderNumber": order}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Past its window, or closed by the sweep already: either way, a new order.
    let message = body["message"].as_str().unwrap();
    assert!(
        message == "订单已超过支付时限，请重新下单" || message == "订单已关闭，请重新下单",
        "{message}"
    );
    assert!(system.sandbox.wechat_order(&order).is_none());
    system.shutdown().await;
}

#[tokio::test]
async fn a_callback_arriving_while_the_database_is_down_is_retried_until_recorded() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let order = system
        .order_awaiting_payment("o-db-down", "88616600", "voice", "SD5000")
        .await;
    system.db.go_away().await;

    system.sandbox.pay(&order).await.unwrap();
    // Cloud Hosting sends again within a second; WeChat Pay APIv3 (direct mode) only after
    // 15 s, so there one refused attempt is all there is to see before the database is back.
    let refusals = if system.is_direct() { 1 } else { 2 };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let refused = system
            .sandbox
            .callback_log()
            .iter()
            .filter(|d| d.out_trade_no == order && !d.accepted)
            .count();
        if refused >= refusals {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "callbacks were not refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        system
            .sandbox
            .callback_log()
            .iter()
            .all(|d| d.out_trade_no != order || !d.accepted),
        "never answered errcode 0 for a payment it could not store"
    );

    system.db.come_back().await;
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{order}' AND payment_status = 'paid'"),
            1,
            Duration::from_secs(45),
        )
        .await;
    system.shutdown().await;
}

#[tokio::test]
async fn order_and_payment_creation_are_rate_limited_per_user() {
    let system = System::start(SystemOptions {
        workers: 0,
        overrides: vec![("RATE_LIMIT_PAYMENTS_PER_MINUTE", "3".into())],
        ..Default::default()
    })
    .await;
    let create = json!({"phoneNumber": "88616600", "productOperator": "Unitel", "rechargeType": "voice", "productCode": "SD5000"});
    let greedy = system.client("o-greedy");
    let mut order = String::new();
    for _ in 0..10 {
        let (status, body) = greedy.post("/orders", create.clone()).await;
        assert_eq!(status, StatusCode::CREATED);
        order = body["data"]["orderNumber"].as_str().unwrap().to_owned();
    }
    let (status, body) = greedy.post("/orders", create.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["code"], 429);
    let (status, _) = system
        .client("o-patient")
        .post("/orders", create.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "another user is not affected");

    for _ in 0..3 {
        let (status, _) = greedy
            .post("/payment/create", json!({"orderNumber": order}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, _) = greedy
        .post("/payment/create", json!({"orderNumber": order}))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    system.shutdown().await;
}

#[tokio::test]
async fn an_order_closed_while_its_payment_was_being_prepared_gets_no_payment_sheet() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let order = system
        .create_order("o-race", "88616600", "voice", "SD5000")
        .await;
    system.sandbox.set_faults(sandbox::Faults {
        wechat: sandbox::WechatFaults {
            latency_ms: 600,
            ..Default::default()
        },
        ..Default::default()
    });
    let client = system.client("o-race");
    let body = json!({"orderNumber": order});
    let create = tokio::spawn(async move { client.post("/payment/create", body).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The close sweep gets there first (the order had no payment yet).
    sqlx::query(
        "UPDATE orders SET payment_status = 'closed', closed_at = now() WHERE order_number = $1",
    )
    .bind(&order)
    .execute(&system.db.pool)
    .await
    .unwrap();
    let (status, answer) = create.await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["message"], "订单已关闭，请重新下单");
    assert_eq!(answer["data"], serde_json::Value::Null, "no payment sheet");
    system.sandbox.set_faults(sandbox::Faults::default());
    let at_wechat = system
        .sandbox
        .wechat_order(&order)
        .expect("prepared at WeChat");
    assert_eq!(
        at_wechat.trade_state.as_str(),
        "CLOSED",
        "and closed there too"
    );
    system.shutdown().await;
}

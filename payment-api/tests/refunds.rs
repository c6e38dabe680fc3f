//! Money back: automatic for failed top-ups, by a person otherwise, never twice, settled
//! only once WeChat confirms it; and cancelling an unpaid order.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::{System, SystemOptions};

const TOKEN: &str = testkit::ADMIN_TOKEN;

/// payment-api runs as a process: its refund rounds are counted for this test alone.
fn refunding(auto: bool) -> SystemOptions {
    SystemOptions {
        overrides: vec![
            ("REFUND_SWEEP_INTERVAL_MS", "100".into()),
            ("AUTO_REFUND_FAILED", auto.to_string()),
        ],
        api_process: true,
        ..Default::default()
    }
}

async fn refund_status(system: &System, order: &str) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM refunds WHERE order_number = $1")
        .bind(order)
        .fetch_optional(&system.db.pool)
        .await
        .unwrap()
}

async fn wait_for_refund(system: &System, order: &str, status: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let current = refund_status(system, order).await;
        if current.as_deref() == Some(status) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refund of {order} is {current:?}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn admin_refund(system: &System, body: Value) -> (StatusCode, Value) {
    system
        .admin_request(
            reqwest::Method::POST,
            "/payment/refund",
            Some(TOKEN),
            Some(body),
        )
        .await
}

#[tokio::test]
async fn a_failed_top_up_is_refunded_automatically_once_confirmed_by_wechat() {
    let system = System::start(refunding(true)).await;
    let (order, outcome) = system
        .top_up_under(
            "o-refund",
            sandbox::UnitelFaults {
                fail_next: 1,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(outcome, "failed");
    wait_for_refund(&system, &order, "success").await;

    let at_wechat = system.sandbox.wechat_order(&order).unwrap();
    assert_eq!(at_wechat.refunds.len(), 1, "refunded once");
    assert_eq!(at_wechat.refunds[0].out_refund_no, format!("RF{order}"));
    assert_eq!(at_wechat.refunds[0].refund_fee, 1136, "in full");

    let (status, body) = system
        .client("o-refund")
        .get(&format!("/orders/{order}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["refund"]["status"], "success", "{body}");
    let (_, history) = system.admin_get(&format!("/admin/orders/{order}")).await;
    assert_eq!(history["data"]["refund"]["requestedBy"], "auto");
    let events: Vec<String> =
        sqlx::query_scalar("SELECT event FROM order_events WHERE order_number = $1 ORDER BY id")
            .bind(&order)
            .fetch_all(&system.db.pool)
            .await
            .unwrap();
    for expected in [
        "failed",
        "refund_requested",
        "refund_accepted",
        "refund_success",
    ] {
        assert!(
            events.contains(&expected.to_owned()),
            "{expected} in {events:?}"
        );
    }
    // A second request and more sweeps change nothing.
    let (status, _) = admin_refund(&system, json!({"orderNumber": order, "reason": "again"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    system
        .api_metrics()
        .wait_for_rounds("refund_sweep", 2)
        .await;
    assert_eq!(
        system.sandbox.wechat_order(&order).unwrap().refunds.len(),
        1
    );
    system.shutdown().await;
}

#[tokio::test]
async fn refunds_by_a_person_follow_the_rules() {
    let system = System::start(SystemOptions {
        unitel_timeout_ms: 500,
        ..refunding(false)
    })
    .await;
    // Failed, with automatic refunds off: nothing happens by itself.
    let (failed, outcome) = system
        .top_up_under(
            "o-admin-refund",
            sandbox::UnitelFaults {
                fail_next: 1,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(outcome, "failed");
    // Credited.
    let (credited, outcome) = system.top_up("o-admin-refund").await;
    assert_eq!(outcome, "success");
    // Unknown: Unitel credited and hung.
    let (unknown, outcome) = system
        .top_up_under(
            "o-admin-refund",
            sandbox::UnitelFaults {
                timeout_after_credit: 1,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(outcome, "unknown");
    let unpaid = system
        .create_order("o-admin-refund", "88616600", "voice", "SD5000")
        .await;
    system
        .api_metrics()
        .wait_for_rounds("refund_sweep", 2)
        .await;
    assert_eq!(
        refund_status(&system, &failed).await,
        None,
        "automatic refunds are off"
    );

    let (status, _) = system
        .anonymous()
        .post(
            "/payment/refund",
            json!({"orderNumber": failed, "reason": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for (order, extra, expected) in [
        (&unknown, json!({}), StatusCode::CONFLICT),
        (&credited, json!({}), StatusCode::CONFLICT),
        (&unpaid, json!({}), StatusCode::CONFLICT),
        (
            &"ORD1700000000000NOSUCH01".to_owned(),
            json!({}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let mut body = json!({"orderNumber": order, "reason": "customer asked"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, answer) = admin_refund(&system, body).await;
        assert_eq!(status, expected, "{order}: {answer}");
    }
    let (status, answer) =
        admin_refund(&system, json!({"orderNumber": failed, "reason": "  "})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    let (status, answer) = admin_refund(
        &system,
        json!({"orderNumber": failed, "reason": "top-up failed", "requestedBy": "ops-li"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["data"]["requestedBy"], "admin:ops-li");
    let (status, answer) = admin_refund(
        &system,
        json!({"orderNumber": credited, "reason": "goodwill: customer topped up the wrong number", "includeCredited": true}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a credited order only with includeCredited: {answer}"
    );
    wait_for_refund(&system, &failed, "success").await;
    wait_for_refund(&system, &credited, "success").await;
    assert_eq!(
        refund_status(&system, &unknown).await,
        None,
        "never for an unknown order"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn the_owner_cancels_an_unpaid_order_here_and_at_wechat() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let order = system
        .order_awaiting_payment("o-cancel", "88616600", "voice", "SD5000")
        .await;
    let (status, _) = system
        .client("o-stranger")
        .post(&format!("/orders/{order}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = system
        .client("o-cancel")
        .post(&format!("/orders/{order}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["paymentState"], "closed");
    assert_eq!(
        body["data"]["paymentStatus"], "unpaid",
        "the replaced system's two states"
    );
    assert_eq!(
        system
            .sandbox
            .wechat_order(&order)
            .unwrap()
            .trade_state
            .as_str(),
        "CLOSED"
    );
    assert!(
        system.sandbox.pay(&order).await.is_err(),
        "cannot be paid any more"
    );

    let paid = system
        .order_and_pay("o-cancel", "88616600", "voice", "SD5000")
        .await;
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{paid}' AND payment_status = 'paid'"),
            1,
            Duration::from_secs(10),
        )
        .await;
    let (status, _) = system
        .client("o-cancel")
        .post(&format!("/orders/{paid}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    system.shutdown().await;
}

#[tokio::test]
async fn an_order_once_unknown_is_not_refunded_without_a_person() {
    let mut options = refunding(true);
    options.overrides.extend([
        ("RECHARGE_SWEEP_INTERVAL_MS", "100".to_owned()),
        ("RECHARGE_REQUEUE_AFTER_MS", "300".to_owned()),
    ]);
    let system = System::start(options).await;
    let (order, outcome) = system.top_up("o-was-unknown").await;
    assert_eq!(outcome, "success");
    // As if Unitel had left it unknown with a seq it then reports as failed: the worker
    // sweep settles it `failed` from Unitel's answer alone.
    sqlx::query(
        "WITH u AS (UPDATE orders SET recharge_status = 'unknown', seq_id = '9999999999999',
                                      unknown_at = now()
                     WHERE order_number = $1 RETURNING order_number)
         INSERT INTO order_events (order_number, event, actor) SELECT order_number, 'unknown', 'worker:test' FROM u",
    )
    .bind(&order)
    .execute(&system.db.pool)
    .await
    .unwrap();
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{order}' AND recharge_status = 'failed'"),
            1,
            Duration::from_secs(10),
        )
        .await;
    system
        .api_metrics()
        .wait_for_rounds("refund_sweep", 2)
        .await;
    assert_eq!(
        refund_status(&system, &order).await,
        None,
        "a person decides first"
    );
    system.shutdown().await;
}

/// A refund round longer than the job lock's idle limit (15 s): WeChat answers each refund
/// in 6 s and three are due at once. Two payment-api instances run the sweep; the one
/// holding the lock keeps it for the whole round, so the other never sends the refunds
/// that the first has not reached yet.
#[tokio::test]
async fn a_refund_round_longer_than_the_lock_idle_limit_sends_each_refund_once() {
    let mut system = System::start(refunding(false)).await;
    let mut orders = Vec::new();
    for n in 0..3 {
        let (order, outcome) = system
            .top_up_under(
                &format!("o-slow-refund-{n}"),
                sandbox::UnitelFaults {
                    fail_next: 1,
                    ..Default::default()
                },
            )
            .await;
        assert_eq!(outcome, "failed");
        orders.push(order);
    }
    system.sandbox.set_faults(sandbox::Faults {
        wechat: sandbox::WechatFaults {
            latency_ms: 6_000,
            ..Default::default()
        },
        ..Default::default()
    });
    // Both instances sweep refunds; the restarted one also requests the three at once.
    system.restart_api(&[("AUTO_REFUND_FAILED", "true")]).await;
    system.start_another_api().await;

    for order in &orders {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while refund_status(&system, order).await.as_deref() != Some("success") {
            assert!(
                std::time::Instant::now() < deadline,
                "refund of {order} is {:?}",
                refund_status(&system, order).await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Where a refund is asked for is the wire's: the open interface, or APIv3.
    let refund_path = if system.is_direct() {
        "/v3/refund/domestic/refunds"
    } else {
        "/_/pay/refund"
    };
    for order in &orders {
        let sent = system
            .sandbox
            .api_calls()
            .iter()
            .filter(|c| c.path == refund_path && c.body["out_trade_no"] == order.as_str())
            .count();
        assert_eq!(sent, 1, "refund of {order} sent {sent} times");
    }
    system.shutdown().await;
}

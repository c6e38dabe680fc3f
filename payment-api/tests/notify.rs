//! Direct mode (WeChat Pay APIv3): a notification that does not verify, or was taken
//! before, changes nothing and is recorded; WeChat's genuine retry (its own schedule, 15 s
//! after a refused attempt) is then taken once and credited once. Duplicates, an outage of
//! our database, a forgery and Cloud Hosting's routes with forged gateway headers change
//! nothing either; a refund ends through `REFUND.SUCCESS` and the refund query.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sandbox::{CallbackDelivery, CallbackKind, Faults, WechatFaults, WechatV3Faults};
use serde_json::json;
use testkit::wechat_pay::{Notification, WechatPay};
use testkit::{System, SystemOptions};

/// WeChat's first retry comes 15 s after a refused attempt; this leaves room for a busy
/// machine.
const RETRY_WITHIN: Duration = Duration::from_secs(45);

/// Direct mode, whatever `TEST_WECHAT_PAY_MODE` says; no sweep asks WeChat about the order
/// while a test runs, so only a notification can record its payment.
fn direct(workers: usize) -> SystemOptions {
    SystemOptions {
        workers,
        overrides: vec![
            ("WECHAT_PAY_MODE", "direct".into()),
            ("PAYMENT_QUERY_AFTER_MS", "3600000".into()),
        ],
        ..Default::default()
    }
}

fn v3(faults: WechatV3Faults) -> Faults {
    Faults {
        wechat: WechatFaults {
            v3: faults,
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn count(system: &System, sql: &str, order: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(order)
        .fetch_one(&system.db.pool)
        .await
        .unwrap()
}

async fn anomalies(system: &System, kind: &str) -> i64 {
    count(
        system,
        "SELECT count(*) FROM payment_anomalies WHERE kind = $1",
        kind,
    )
    .await
}

async fn outbox_rows(system: &System, order: &str) -> i64 {
    count(
        system,
        "SELECT count(*) FROM outbox WHERE order_number = $1",
        order,
    )
    .await
}

fn notifications(system: &System, order: &str) -> Vec<CallbackDelivery> {
    system
        .sandbox
        .callback_log()
        .into_iter()
        .filter(|d| d.out_trade_no == order && d.kind == CallbackKind::Payment)
        .collect()
}

/// Waits until the sandbox's log holds an attempt on `order` that `matches`.
async fn wait_for_attempt(
    system: &System,
    order: &str,
    what: &str,
    matches: impl Fn(&CallbackDelivery) -> bool,
) -> CallbackDelivery {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = notifications(system, order).into_iter().find(&matches) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no attempt {what} on {order}: {:#?}",
            notifications(system, order)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_for_anomaly(system: &System, kind: &str) {
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM payment_anomalies WHERE kind = '{kind}'"),
            1,
            Duration::from_secs(10),
        )
        .await;
}

/// Nothing about the order changed: unpaid, no OrderPaid to send, nothing credited.
async fn assert_untouched(system: &System, order: &str) {
    assert_eq!(system.statuses(order).await.0, "unpaid");
    assert_eq!(outbox_rows(system, order).await, 0, "no OrderPaid");
    assert_eq!(system.credits_for(order), 0, "nothing credited");
}

/// Paid once, by a notification, with one OrderPaid and one credit.
async fn assert_paid_once(system: &System, order: &str) {
    assert_eq!(
        system.wait_for_outcome(order, RETRY_WITHIN).await,
        "success"
    );
    assert_eq!(outbox_rows(system, order).await, 1, "one OrderPaid");
    assert_eq!(system.credits_for(order), 1, "credited once");
    let paid = count(
        system,
        "SELECT count(*) FROM order_events WHERE order_number = $1 AND event = 'paid' AND actor = 'wechat-callback'",
        order,
    )
    .await;
    assert_eq!(paid, 1, "{:?}", system.events(order).await);
}

/// The first attempt carries `faults`: it is refused (400) and recorded as `kind`, and the
/// order is untouched; WeChat's retry 15 s later is taken and credited once.
async fn refused_then_taken_on_retry(openid: &str, faults: WechatV3Faults, fault: &str) {
    let system = System::start(direct(1)).await;
    let order = system
        .order_awaiting_payment(openid, "88616600", "voice", "SD5000")
        .await;
    system.sandbox.set_faults(v3(faults));
    system.sandbox.pay(&order).await.unwrap();

    let refused = wait_for_attempt(&system, &order, "refused", |d| {
        d.attempt == 1 && d.fault.as_deref() == Some(fault)
    })
    .await;
    assert_eq!(refused.http_status, Some(400), "{refused:#?}");
    wait_for_anomaly(&system, "notification_unverified").await;
    assert_untouched(&system, &order).await;

    assert_paid_once(&system, &order).await;
    let log = notifications(&system, &order);
    let taken: Vec<_> = log.iter().filter(|d| d.accepted).collect();
    assert_eq!(taken.len(), 1, "{log:#?}");
    assert_eq!(
        (taken[0].attempt, taken[0].fault.as_deref()),
        (2, None),
        "WeChat's own retry"
    );
    assert!(
        taken[0].at - refused.at >= chrono::Duration::seconds(14),
        "on WeChat's schedule: {log:#?}"
    );
    assert_eq!(anomalies(&system, "notification_unverified").await, 1);
    system.shutdown().await;
}

#[tokio::test]
async fn a_probe_signature_changes_nothing_and_the_retry_is_taken() {
    refused_then_taken_on_retry(
        "o-v3-probe",
        WechatV3Faults {
            notification_bad_signature: 1,
            ..Default::default()
        },
        "badSignature",
    )
    .await;
}

#[tokio::test]
async fn an_old_timestamp_changes_nothing_and_the_retry_is_taken() {
    refused_then_taken_on_retry(
        "o-v3-old",
        WechatV3Faults {
            notification_old_timestamp: 1,
            ..Default::default()
        },
        "oldTimestamp",
    )
    .await;
}

#[tokio::test]
async fn a_key_we_were_never_given_changes_nothing_and_the_retry_is_taken() {
    refused_then_taken_on_retry(
        "o-v3-rotated",
        WechatV3Faults {
            notification_rotated_key: 1,
            ..Default::default()
        },
        "rotatedKey",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_serial_changes_nothing_and_the_retry_is_taken() {
    refused_then_taken_on_retry(
        "o-v3-serial",
        WechatV3Faults {
            notification_wrong_serial: 1,
            ..Default::default()
        },
        "wrongSerial",
    )
    .await;
}

#[tokio::test]
async fn a_truncated_body_changes_nothing_and_the_retry_is_taken() {
    refused_then_taken_on_retry(
        "o-v3-truncated",
        WechatV3Faults {
            notification_truncated_body: 1,
            ..Default::default()
        },
        "truncatedBody",
    )
    .await;
}

/// Between WeChat and the service, a path that corrupts the first request it carries: one
/// byte of the body changed, the JSON still well-formed. Later requests pass intact.
async fn corrupting_relay(target: String) -> (String, tokio::task::JoinHandle<()>) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, Uri};
    use axum::response::IntoResponse;

    let corrupted = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::new();
    let relay = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (corrupted, http, target) = (corrupted.clone(), http.clone(), target.clone());
        async move {
            let mut body = body.to_vec();
            if !corrupted.swap(true, Ordering::SeqCst) {
                // A character of the notification id: a hex digit becomes its neighbour.
                let at = body
                    .windows(6)
                    .position(|w| w == b"\"id\":\"")
                    .expect("a notification id")
                    + 6;
                body[at] ^= 1;
            }
            let mut request = http.request(method, format!("{target}{uri}")).body(body);
            for (name, value) in &headers {
                if name != "host" && name != "content-length" {
                    request = request.header(name, value);
                }
            }
            let answer = request.send().await.expect("the service answers");
            let status = answer.status().as_u16();
            let text = answer.text().await.unwrap_or_default();
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/json")],
                text,
            )
                .into_response()
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(relay);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

#[tokio::test]
async fn a_body_with_one_byte_changed_changes_nothing_and_the_retry_is_taken() {
    let system = System::start(direct(1)).await;
    let order = system
        .order_awaiting_payment("o-v3-byte", "88616600", "voice", "SD5000")
        .await;
    let (relay, relay_task) = corrupting_relay(system.api_url.clone()).await;
    system.sandbox.set_callback_base(relay);
    system.sandbox.pay(&order).await.unwrap();

    let refused = wait_for_attempt(&system, &order, "refused", |d| d.attempt == 1).await;
    assert_eq!(refused.http_status, Some(400), "{refused:#?}");
    wait_for_anomaly(&system, "notification_unverified").await;
    assert_untouched(&system, &order).await;

    assert_paid_once(&system, &order).await;
    let taken = wait_for_attempt(&system, &order, "taken", |d| d.accepted).await;
    assert_eq!(taken.attempt, 2, "WeChat's own retry");
    assert_eq!(anomalies(&system, "notification_unverified").await, 1);
    relay_task.abort();
    system.shutdown().await;
}

#[tokio::test]
async fn a_replayed_notification_is_refused_and_credited_once() {
    let system = System::start(direct(1)).await;
    let order = system
        .order_awaiting_payment("o-v3-replay", "88616600", "voice", "SD5000")
        .await;
    system.sandbox.set_faults(v3(WechatV3Faults {
        notification_replay: 1,
        ..Default::default()
    }));
    system.sandbox.pay(&order).await.unwrap();

    let replay = wait_for_attempt(&system, &order, "replayed", |d| {
        d.fault.as_deref() == Some("replay")
    })
    .await;
    assert_eq!(replay.http_status, Some(400), "{replay:#?}");
    wait_for_anomaly(&system, "notification_replayed").await;
    assert_paid_once(&system, &order).await;
    let log = notifications(&system, &order);
    assert_eq!(
        log.iter().filter(|d| d.accepted).count(),
        1,
        "the original only: {log:#?}"
    );
    assert_eq!(anomalies(&system, "notification_replayed").await, 1);
    assert_eq!(anomalies(&system, "notification_unverified").await, 0);
    system.shutdown().await;
}

#[tokio::test]
async fn duplicate_notifications_give_one_order_paid_and_one_credit() {
    let system = System::start(direct(1)).await;
    let order = system
        .order_awaiting_payment("o-v3-dup", "88616600", "voice", "SD5000")
        .await;
    system.sandbox.set_faults(v3(WechatV3Faults {
        notification_duplicates: 5,
        ..Default::default()
    }));
    system.sandbox.pay(&order).await.unwrap();
    system.wait_for_callbacks_delivered().await;

    let log = notifications(&system, &order);
    let copies: std::collections::BTreeSet<u32> =
        log.iter().filter(|d| d.accepted).map(|d| d.copy).collect();
    assert_eq!(copies.len(), 6, "every copy received: {log:#?}");
    assert_paid_once(&system, &order).await;
    let recharge_attempts = system.recharge_attempts(&order).await;
    assert_eq!(recharge_attempts, 1);
    system.shutdown().await;
}

#[tokio::test]
async fn a_notification_arriving_while_the_database_is_down_is_answered_5xx_and_taken_later() {
    let system = System::start(direct(1)).await;
    let order = system
        .order_awaiting_payment("o-v3-db-down", "88616600", "voice", "SD5000")
        .await;
    system.db.go_away().await;

    system.sandbox.pay(&order).await.unwrap();
    let refused = wait_for_attempt(&system, &order, "answered", |d| d.attempt == 1).await;
    assert!(
        refused.http_status.is_some_and(|s| s >= 500) && !refused.accepted,
        "{refused:#?}"
    );

    system.db.come_back().await;
    assert_paid_once(&system, &order).await;
    let taken = wait_for_attempt(&system, &order, "taken", |d| d.accepted).await;
    assert_eq!(taken.attempt, 2, "WeChat's own retry");
    system.shutdown().await;
}

/// WeChat waits 5 s for the answer. A confirming query slower than that (6 s here, under
/// the 10 s `WECHAT_TIMEOUT_MS`) is given up at 4.5 s and answered 5xx, so that the
/// notification comes again rather than being counted as lost by WeChat while we record it.
#[tokio::test]
async fn a_notification_not_settled_within_wechats_five_seconds_is_answered_5xx_and_taken_on_retry()
{
    let system = System::start(direct(1)).await;
    let order = system
        .order_awaiting_payment("o-v3-slow-query", "88616600", "voice", "SD5000")
        .await;
    system.sandbox.set_faults(Faults {
        wechat: WechatFaults {
            latency_ms: 6_000,
            ..Default::default()
        },
        ..Default::default()
    });

    system.sandbox.pay(&order).await.unwrap();
    let first = wait_for_attempt(&system, &order, "answered", |d| d.attempt == 1).await;
    assert_eq!(first.http_status, Some(500), "{first:#?}");
    assert!(!first.accepted);
    assert_untouched(&system, &order).await;

    system.sandbox.set_faults(Faults::default());
    assert_paid_once(&system, &order).await;
    let taken = wait_for_attempt(&system, &order, "taken", |d| d.accepted).await;
    assert_eq!(taken.attempt, 2, "WeChat's own retry");
    system.shutdown().await;
}

/// A notification made by someone with our APIv3 key but not WeChat Pay's private key:
/// right serial, right encryption, signed with a key of its own.
fn forged_notification(system: &System, plaintext: &serde_json::Value) -> Notification {
    let forger = WechatPay::generate(system.setting("WECHAT_API_V3_KEY")).unwrap();
    let mut notification = forger.notification(plaintext);
    for (name, value) in &mut notification.headers {
        if *name == "wechatpay-serial" {
            *value = system.setting("WECHAT_PAY_PUBLIC_KEY_ID").to_owned();
        }
    }
    notification
}

#[tokio::test]
async fn a_notification_signed_with_another_key_changes_nothing() {
    let system = System::start(direct(1)).await;
    let order = system
        .order_awaiting_payment("o-v3-forged", "88616600", "voice", "SD5000")
        .await;
    let at_wechat = system.sandbox.wechat_order(&order).unwrap();
    let plaintext = json!({
        "mchid": testkit::MCH_ID,
        "appid": sandbox::LOGIN_APP_ID,
        "out_trade_no": order,
        "transaction_id": "4200002024120412345678901234",
        "trade_type": "JSAPI",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "attach": at_wechat.attach.clone().unwrap_or_default(),
        "success_time": "2026-12-04T10:00:00+08:00",
        "payer": {"openid": "o-v3-forged"},
        "amount": {"total": at_wechat.total_fee, "payer_total": at_wechat.total_fee,
                   "currency": "CNY", "payer_currency": "CNY"},
    });
    let forged = forged_notification(&system, &plaintext);
    let mut headers: Vec<(&str, &str)> = forged
        .headers
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    headers.push(("content-type", "application/json"));
    let (status, answer) = system
        .anonymous()
        .post_raw("/payment/notify", &headers, forged.body)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], "FAIL");
    assert_eq!(anomalies(&system, "notification_unverified").await, 1);
    // Refused at the signature, before anything in it was believed: WeChat was not even
    // asked about the order.
    assert_eq!(anomalies(&system, "not_paid_at_wechat").await, 0);
    assert!(
        !system
            .sandbox
            .api_calls()
            .iter()
            .any(|c| c.path.contains("/out-trade-no/")),
        "no query for a notification that does not verify"
    );
    assert_untouched(&system, &order).await;
    system.shutdown().await;
}

/// Cloud Hosting's settings kept beside direct mode's (orders it created stay reachable):
/// its routes exist, and anyone can send the gateway's header to them.
async fn direct_with_cloud_kept() -> System {
    let mut system = System::start(direct(1)).await;
    let wechat = system.sandbox.wechat_url();
    system
        .restart_api(&[
            ("WECHAT_ENV_ID", "test-env"),
            ("WECHAT_API_BASE", &wechat),
            ("WECHAT_PAYMENT_CALLBACK_SERVICE", "elife-backend"),
            ("WECHAT_PAYMENT_CALLBACK_PATH", "/payment/callback"),
        ])
        .await;
    system.wait_until_healthy().await;
    system
}

#[tokio::test]
async fn cloud_routes_with_forged_gateway_headers_are_not_fulfilled_in_direct_mode() {
    let system = direct_with_cloud_kept().await;
    let order = system
        .order_awaiting_payment("o-v3-gateway", "88616600", "voice", "SD5000")
        .await;
    // Paid at WeChat, its notification lost: a forger who learnt the transaction could
    // have it confirmed by the order query were the header believed.
    let transaction = system.sandbox.pay_without_callback(&order).await.unwrap();
    let at_wechat = system.sandbox.wechat_order(&order).unwrap();
    let gateway = [
        ("X-WX-SOURCE", "wxpay"),
        ("Content-Type", "application/json"),
    ];
    let forged = json!({
        "returnCode": "SUCCESS", "resultCode": "SUCCESS", "subMchId": testkit::MCH_ID,
        "outTradeNo": order, "transactionId": transaction, "totalFee": at_wechat.total_fee,
        "attach": at_wechat.attach, "timeEnd": "20261204100000",
    });
    let (status, answer) = system
        .anonymous()
        .post_raw(
            &format!("/payment/callback/{order}"),
            &gateway,
            forged.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        count(
            &system,
            "SELECT count(*) FROM payment_anomalies WHERE order_number = $1 AND kind = 'missing_source'",
            &order
        )
        .await,
        1
    );
    assert_untouched(&system, &order).await;

    let refund = json!({
        "returnCode": "SUCCESS", "subMchId": testkit::MCH_ID, "outTradeNo": order,
        "outRefundNo": format!("RF{order}"), "refundStatus": "SUCCESS",
    });
    let (status, answer) = system
        .anonymous()
        .post_raw(
            &format!("/payment/refund-callback/{order}"),
            &gateway,
            refund.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        count(
            &system,
            "SELECT count(*) FROM payment_anomalies WHERE order_number = $1 AND kind = 'refund_missing_source'",
            &order
        )
        .await,
        1
    );
    assert_eq!(anomalies(&system, "refund_unknown").await, 0);
    system.shutdown().await;
}

#[tokio::test]
async fn a_refund_reaches_success_through_its_notification_and_the_query() {
    let mut options = direct(1);
    // No sweep checks the refund while the test runs: only its notification can.
    options
        .overrides
        .push(("REFUND_SWEEP_INTERVAL_MS", "3600000".into()));
    let system = System::start(options).await;
    let (order, outcome) = system.top_up("o-v3-refund").await;
    assert_eq!(outcome, "success");
    let (status, body) = system
        .admin_request(
            reqwest::Method::POST,
            "/payment/refund",
            Some(testkit::ADMIN_TOKEN),
            Some(
                json!({"orderNumber": order, "reason": "customer asked", "includeCredited": true}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refund_notifications = || {
        system
            .sandbox
            .callback_log()
            .into_iter()
            .filter(|d| d.out_trade_no == order && d.kind == CallbackKind::Refund)
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = count(
            &system,
            "SELECT count(*) FROM refunds WHERE order_number = $1 AND status = 'success'",
            &order,
        )
        .await;
        if status == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "refund not settled: {:#?}",
            refund_notifications()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let notified = refund_notifications();
    assert_eq!(notified.len(), 1, "{notified:#?}");
    assert_eq!(notified[0].http_status, Some(204));
    assert!(
        system
            .sandbox
            .api_calls()
            .iter()
            .any(|c| c.path == format!("/v3/refund/domestic/refunds/RF{order}")),
        "the outcome recorded is the refund query's"
    );
    assert!(system
        .events(&order)
        .await
        .contains(&"refund_success".to_owned()));
    assert_eq!(
        system.sandbox.wechat_order(&order).unwrap().refunds.len(),
        1
    );
    system.shutdown().await;
}

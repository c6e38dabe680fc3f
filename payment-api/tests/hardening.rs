//! What a hostile reader of the code looked for: ways to lose money, fulfil a forgery, leak
//! internal text or exhaust the service. Each test here failed before the fix it covers.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::{System, SystemOptions};

fn with(overrides: &[(&'static str, &str)]) -> SystemOptions {
    SystemOptions {
        overrides: overrides
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned()))
            .collect(),
        ..Default::default()
    }
}

/// Rate limits count per minute: keep a test's hits inside one.
async fn start_of_a_fresh_minute_if_close_to_the_end() {
    let second = chrono::Utc::now().timestamp() % 60;
    if second > 45 {
        tokio::time::sleep(Duration::from_secs((61 - second) as u64)).await;
    }
}

/// The callback body the platform sends for a paid order.
fn callback_body(order: &str, total_fee: i64, transaction_id: &str) -> Value {
    json!({
        "returnCode": "SUCCESS", "resultCode": "SUCCESS", "appid": "wx-app", "mchId": "1800780001",
        "subAppid": "wx-sub", "subMchId": "1712734762", "nonceStr": "f6444fd22de27b16",
        "openid": "oPoo", "tradeType": "JSAPI", "bankType": "OTHERS", "totalFee": total_fee,
        "feeType": "CNY", "cashFee": total_fee, "transactionId": transaction_id,
        "outTradeNo": order, "timeEnd": "20261124132007", "attach": order,
    })
}

async fn post_callback(
    system: &System,
    order: &str,
    body: &Value,
    source: &str,
) -> (StatusCode, Value) {
    system
        .anonymous()
        .post_raw(
            &format!("/payment/callback/{order}"),
            &[
                ("content-type", "application/json"),
                ("x-wx-source", "wxpay"),
                ("x-original-forwarded-for", source),
            ],
            body.to_string(),
        )
        .await
}

async fn count(system: &System, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&system.db.pool)
        .await
        .unwrap()
}

fn queries_for(system: &System, order: &str) -> usize {
    system
        .sandbox
        .api_calls()
        .iter()
        .filter(|c| c.path.ends_with("/queryorder") && c.body["out_trade_no"] == order)
        .count()
}

#[tokio::test]
async fn production_serves_metrics_and_the_api_document_apart_and_shows_accepted_warnings() {
    let token = "an-admin-token-of-forty-characters-000000";
    let system = System::start(SystemOptions {
        workers: 0,
        ..with(&[
            ("APP_ENV", "production"),
            ("ADMIN_TOKEN", token),
            // The sandbox stands in for WeChat: unsafe in production, so said explicitly.
            ("ALLOW_UNSAFE_WECHAT_SETTINGS", "payments-can-be-forged"),
            ("METRICS_ADDR", "127.0.0.1:0"),
        ])
    })
    .await;
    let public = system.anonymous();
    for path in ["/metrics", "/api-json"] {
        let (status, _) = public.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} is not public");
    }
    let operations = system.operations_url.clone().expect("an operations port");
    for path in ["/metrics", "/api-json"] {
        let response = reqwest::get(format!("{operations}{path}")).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{path} on the operations port"
        );
    }
    let (_, health) = public.get("/health").await;
    let warnings = health["data"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{health}");
    assert!(warnings[0].as_str().unwrap().contains("WECHAT_API_BASE"));
    system.shutdown().await;
}

#[tokio::test]
async fn the_from_headers_name_the_caller_when_both_are_present() {
    let system = System::start(SystemOptions::default()).await;
    let (status, body) = system
        .anonymous()
        .post_raw(
            "/orders",
            &[
                ("content-type", "application/json"),
                ("x-wx-source", "wx_client"),
                ("x-wx-openid", "o-provider-app"),
                ("x-wx-from-openid", "o-calling-app"),
            ],
            json!({"phoneNumber": "88616600", "productOperator": "Unitel",
                   "rechargeType": "voice", "productCode": "SD5000"})
            .to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let order = body["data"]["orderNumber"].as_str().unwrap();
    let path = format!("/orders/{order}");
    assert_eq!(
        system.client("o-calling-app").get(&path).await.0,
        StatusCode::OK
    );
    assert_eq!(
        system.client("o-provider-app").get(&path).await.0,
        StatusCode::NOT_FOUND
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_wechat_transaction_pays_one_order_at_most() {
    // Without the confirmation, only the record itself stands between a replayed
    // transaction id and a second top-up.
    let system = System::start(SystemOptions {
        workers: 0,
        ..with(&[("WECHAT_CONFIRM_CALLBACKS", "false")])
    })
    .await;
    let first = system
        .order_and_pay("o-reuse", "88616600", "voice", "SD5000")
        .await;
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{first}' AND payment_status = 'paid'"),
            1,
            Duration::from_secs(10),
        )
        .await;
    let transaction: String =
        sqlx::query_scalar("SELECT transaction_id FROM orders WHERE order_number = $1")
            .bind(&first)
            .fetch_one(&system.db.pool)
            .await
            .unwrap();
    let second = system
        .order_awaiting_payment("o-reuse", "88616600", "voice", "SD5000")
        .await;
    let (status, answer) = post_callback(
        &system,
        &second,
        &callback_body(&second, 1136, &transaction),
        "10.0.0.1",
    )
    .await;
    assert_eq!(
        (status, answer["errcode"].clone()),
        (StatusCode::OK, json!(0))
    );
    assert_eq!(system.statuses(&second).await.0, "unpaid");
    assert_eq!(
        count(&system, &format!("SELECT count(*) FROM payment_anomalies WHERE order_number = '{second}' AND kind = 'transaction_reused'")).await,
        1
    );
    // The database itself refuses a second order with the transaction.
    let duplicate = sqlx::query("UPDATE orders SET transaction_id = $2 WHERE order_number = $1")
        .bind(&second)
        .bind(&transaction)
        .execute(&system.db.pool)
        .await;
    assert!(duplicate.is_err(), "transaction ids are unique");
    system.shutdown().await;
}

#[tokio::test]
async fn money_taken_is_alerted_and_refundable_only_once_wechat_confirms_it() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..with(&[
            ("ALERT_INTERVAL_MS", "100"),
            ("REFUND_SWEEP_INTERVAL_MS", "100"),
        ])
    })
    .await;
    // A forgery: a closed order "paid", which WeChat knows nothing of.
    let forged = system
        .order_awaiting_payment("o-late", "88616600", "voice", "SD5000")
        .await;
    sqlx::query(
        "UPDATE orders SET payment_status = 'closed', closed_at = now() WHERE order_number = $1",
    )
    .bind(&forged)
    .execute(&system.db.pool)
    .await
    .unwrap();
    let (status, _) = post_callback(
        &system,
        &forged,
        &callback_body(&forged, 1136, "4200000000000000000000000001"),
        "10.0.0.2",
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Genuine: the order closed here while the customer was paying at WeChat.
    let late = system
        .order_awaiting_payment("o-late", "88616600", "voice", "SD5000")
        .await;
    sqlx::query(
        "UPDATE orders SET payment_status = 'closed', closed_at = now() WHERE order_number = $1",
    )
    .bind(&late)
    .execute(&system.db.pool)
    .await
    .unwrap();
    // The platform delivers it three times, at once: one alert, not three.
    let mut faults = system.sandbox.faults();
    faults.wechat.callback_duplicates = 2;
    system.sandbox.set_faults(faults.clone());
    let transaction = system.sandbox.pay(&late).await.unwrap();
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM payment_anomalies WHERE order_number = '{late}' AND kind = 'paid_after_close'"),
            1,
            Duration::from_secs(10),
        )
        .await;
    faults.wechat.callback_duplicates = 0;
    system.sandbox.set_faults(faults);
    // All three copies answered (each is retried until accepted).
    system.wait_for_callbacks_delivered().await;
    assert_eq!(
        system
            .sandbox
            .callback_log()
            .iter()
            .filter(|d| d.out_trade_no == late && d.accepted)
            .count(),
        3
    );
    assert_eq!(
        count(&system, &format!("SELECT count(*) FROM payment_anomalies WHERE order_number = '{late}' AND kind = 'paid_after_close'")).await,
        1,
        "duplicates of a late payment are not new anomalies"
    );
    system
        .wait_for_count(
            "SELECT count(*) FROM alerts WHERE kind = 'money_taken_unfulfilled'",
            1,
            Duration::from_secs(10),
        )
        .await;
    let money_taken: Vec<String> = sqlx::query_scalar(
        "SELECT order_number FROM alerts WHERE kind = 'money_taken_unfulfilled'",
    )
    .fetch_all(&system.db.pool)
    .await
    .unwrap();
    assert_eq!(
        money_taken,
        vec![late.clone()],
        "the forgery is not money taken"
    );
    assert_eq!(
        count(&system, &format!("SELECT count(*) FROM payment_anomalies WHERE order_number = '{forged}' AND kind = 'not_paid_at_wechat'")).await,
        1
    );
    assert!(system
        .events(&late)
        .await
        .contains(&"paid_after_close".to_owned()));

    // The late payment goes back through the system.
    let (status, body) = system
        .admin_request(
            reqwest::Method::POST,
            "/payment/refund",
            Some(testkit::ADMIN_TOKEN),
            Some(json!({"orderNumber": late, "reason": "paid after the order closed"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    system
        .wait_for_count(
            &format!(
                "SELECT count(*) FROM refunds WHERE order_number = '{late}' AND status = 'success'"
            ),
            1,
            Duration::from_secs(20),
        )
        .await;
    let at_wechat = system.sandbox.wechat_order(&late).unwrap();
    assert_eq!(
        at_wechat.transaction_id.as_deref(),
        Some(transaction.as_str())
    );
    assert_eq!(at_wechat.refunds.len(), 1);
    assert_eq!(
        system.statuses(&late).await,
        ("closed".into(), "pending".into())
    );
    // The customer cancelling it again sees the refund, as reading it does.
    let (status, cancelled) = system
        .client("o-late")
        .post(&format!("/orders/{late}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(
        cancelled["data"]["refund"]["status"], "success",
        "{cancelled}"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_refusal_not_known_to_mean_nothing_was_done_leaves_the_top_up_unknown_and_unrefunded() {
    let system = System::start(SystemOptions {
        // Its refund rounds are counted for this test alone.
        api_process: true,
        ..with(&[
            // No code is known: Unitel's vocabulary is not documented.
            ("UNITEL_REFUSAL_CODES", ""),
            ("AUTO_REFUND_FAILED", "true"),
            ("REFUND_SWEEP_INTERVAL_MS", "100"),
        ])
    })
    .await;
    let (order, outcome) = system
        .top_up_under(
            "o-unrecognised",
            sandbox::UnitelFaults {
                fail_next: 1,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(outcome, "unknown", "a person decides, not the code");
    system
        .api_metrics()
        .wait_for_rounds("refund_sweep", 2)
        .await;
    assert_eq!(
        count(
            &system,
            &format!("SELECT count(*) FROM refunds WHERE order_number = '{order}'")
        )
        .await,
        0,
        "nothing refunded"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn rate_limits_hold_across_instances_per_user_and_per_address() {
    let mut system = System::start(SystemOptions {
        workers: 0,
        ..with(&[
            ("RATE_LIMIT_ORDERS_PER_MINUTE", "4"),
            ("RATE_LIMIT_PER_ADDRESS_PER_MINUTE", "6"),
        ])
    })
    .await;
    let second = system.start_another_api().await;
    start_of_a_fresh_minute_if_close_to_the_end().await;
    let create = |base: &str, openid: &str, address: &str| {
        let client = system.client_at(base, openid);
        let address = address.to_owned();
        async move {
            client
                .post_raw(
                    "/orders",
                    &[
                        ("content-type", "application/json"),
                        ("x-wx-source", "wx_client"),
                        ("x-wx-openid", client.openid.as_deref().unwrap()),
                        ("x-original-forwarded-for", address.as_str()),
                    ],
                    json!({"phoneNumber": "88616600", "productOperator": "Unitel",
                           "rechargeType": "voice", "productCode": "SD5000"})
                    .to_string(),
                )
                .await
                .0
        }
    };
    let first = system.api_url.clone();
    for base in [&first, &second, &first, &second] {
        assert_eq!(
            create(base, "o-busy", "10.1.0.1").await,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        create(&second, "o-busy", "10.1.0.2").await,
        StatusCode::TOO_MANY_REQUESTS,
        "the fifth order of one user in a minute, on the other instance"
    );
    // One address, many users: the address limit (6, four of them used above) holds.
    for user in ["o-a", "o-b"] {
        assert_eq!(
            create(&second, user, "10.1.0.1").await,
            StatusCode::CREATED,
            "{user}"
        );
    }
    assert_eq!(
        create(&first, "o-c", "10.1.0.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    system.shutdown().await;
}

#[tokio::test]
async fn reading_an_unpaid_order_asks_wechat_at_most_once_per_interval_on_any_instance() {
    let mut system = System::start(SystemOptions {
        workers: 0,
        ..with(&[("ORDER_QUERY_EVERY_MS", "60000")])
    })
    .await;
    let second = system.start_another_api().await;
    let order = system
        .order_awaiting_payment("o-reader", "88616600", "voice", "SD5000")
        .await;
    let path = format!("/orders/{order}");
    for base in [
        system.api_url.clone(),
        second.clone(),
        system.api_url.clone(),
        second,
    ] {
        let (status, body) = system.client_at(&base, "o-reader").get(&path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(queries_for(&system, &order), 1);
    system.shutdown().await;
}

#[tokio::test]
async fn lookups_need_a_gateway_identity_are_limited_cached_and_forward_the_owner() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..with(&[("RATE_LIMIT_LOOKUPS_PER_MINUTE", "3")])
    })
    .await;
    start_of_a_fresh_minute_if_close_to_the_end().await;
    let lookup = json!({"msisdn": "88616600", "info": "1"});
    let (status, _) = system
        .anonymous()
        .post("/unitel/products/services", lookup.clone())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let user = system.client("o-browser");
    for _ in 0..2 {
        let (status, body) = user.post("/unitel/products/services", lookup.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let servicetype_calls = system
        .sandbox
        .api_calls()
        .iter()
        .filter(|c| c.path.ends_with("/service/servicetype") && c.body["msisdn"] == "88616600")
        .count();
    assert_eq!(
        servicetype_calls, 1,
        "the second lookup came from the cache"
    );

    let (status, body) = user
        .post(
            "/unitel/postpaid-bill",
            json!({"owner": "88616619", "msisdn": "88616629"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let bill_call = system
        .sandbox
        .api_calls()
        .into_iter()
        .find(|c| c.path.ends_with("/service/unitel"))
        .unwrap();
    assert_eq!(bill_call.body["owner"], "88616619");
    assert_eq!(bill_call.body["msisdn"], "88616629");

    let (status, _) = user.post("/unitel/products/services", lookup).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the fourth lookup (of either kind) in a minute"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn callbacks_nobody_verified_cannot_fill_the_database_or_mark_an_order() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..with(&[("CALLBACK_REJECTS_PER_MINUTE", "5")])
    })
    .await;
    start_of_a_fresh_minute_if_close_to_the_end().await;
    let order = system
        .order_awaiting_payment("o-target", "88616600", "voice", "SD5000")
        .await;
    let mut forged = callback_body(&order, 1136, "4200000000000000000000000002");
    forged["subMchId"] = "9999999999".into();
    forged["padding"] = "x".repeat(50_000).into();
    for _ in 0..10 {
        let (status, answer) = post_callback(&system, &order, &forged, "10.2.0.1").await;
        assert_eq!(
            (status, answer["errcode"].clone()),
            (StatusCode::OK, json!(0))
        );
    }
    assert_eq!(
        count(&system, "SELECT count(*) FROM payment_anomalies").await,
        5,
        "the rest were counted, not stored"
    );
    let largest: i32 =
        sqlx::query_scalar("SELECT max(length(detail::text)) FROM payment_anomalies")
            .fetch_one(&system.db.pool)
            .await
            .unwrap();
    assert!(largest <= 4200, "stored detail is capped: {largest} bytes");
    let anomaly: Option<String> =
        sqlx::query_scalar("SELECT anomaly FROM orders WHERE order_number = $1")
            .bind(&order)
            .fetch_one(&system.db.pool)
            .await
            .unwrap();
    assert_eq!(
        anomaly, None,
        "an unverified request does not mark the order"
    );
    assert!(!system.events(&order).await.contains(&"anomaly".to_owned()));

    // Whatever a forger's numbers are, the order's history still reads back.
    let (status, _) = system
        .anonymous()
        .post_raw(
            &format!("/payment/refund-callback/{order}"),
            &[
                ("content-type", "application/json"),
                ("x-wx-source", "wxpay"),
                ("x-original-forwarded-for", "10.2.0.2"),
            ],
            r#"{"subMchId": "9999999999", "huge": 1.7976931348623157e308, "small": 5e-324}"#
                .to_owned(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        count(&system, "SELECT count(*) FROM payment_anomalies").await,
        6
    );
    let (status, history) = system.admin_get(&format!("/admin/orders/{order}")).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(
        history["data"]["anomalies"][5]["detail"]["huge"],
        json!("1.7976931348623157e+308")
    );
    system.shutdown().await;
}

#[tokio::test]
async fn wrong_admin_tokens_are_throttled_per_address() {
    let system = System::start(with(&[("ADMIN_FAILURES_PER_MINUTE", "3")])).await;
    start_of_a_fresh_minute_if_close_to_the_end().await;
    let attempt = |token: &str, address: &str| {
        let request = system
            .http
            .get(format!("{}/admin/attention", system.api_url))
            .bearer_auth(token)
            .header("x-original-forwarded-for", address);
        async move { request.send().await.unwrap().status() }
    };
    for _ in 0..3 {
        assert_eq!(attempt("guess", "10.3.0.1").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        attempt(testkit::ADMIN_TOKEN, "10.3.0.1").await,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right token waits out the minute"
    );
    assert_eq!(
        attempt(testkit::ADMIN_TOKEN, "10.3.0.2").await,
        StatusCode::OK
    );
    system.shutdown().await;
}

#[tokio::test]
async fn customers_read_where_their_order_is_never_unitels_or_an_operators_words() {
    let system = System::start(with(&[
        ("AUTO_REFUND_FAILED", "true"),
        ("REFUND_SWEEP_INTERVAL_MS", "100"),
    ]))
    .await;
    let (order, outcome) = system
        .top_up_under(
            "o-reader",
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
            Duration::from_secs(20),
        )
        .await;
    let (status, body) = system
        .client("o-reader")
        .get(&format!("/orders/{order}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = body.to_string();
    for internal in [
        "Insufficient balance",
        "top-up failed",
        "requestedBy",
        "lastError",
        "reason",
    ] {
        assert!(!text.contains(internal), "{internal:?} in {text}");
    }
    assert_eq!(body["data"]["refund"]["status"], "success");
    assert!(body["data"]["rechargeNote"]
        .as_str()
        .is_some_and(|n| !n.is_empty()));

    let (_, history) = system.admin_get(&format!("/admin/orders/{order}")).await;
    assert_eq!(
        history["data"]["rechargeError"]["message"],
        "Insufficient balance"
    );
    assert_eq!(history["data"]["refund"]["requestedBy"], "auto");
    system.shutdown().await;
}

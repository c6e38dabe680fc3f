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
async fn production_serves_metrics_the_api_document_and_accepted_warnings_only_apart() {
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
    // The accepted unsafe settings are for operators: the operations address shows them,
    // the public port does not.
    let (status, health) = public.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert!(health["data"].get("warnings").is_none(), "{health}");
    assert!(!health.to_string().contains("WECHAT_API_BASE"), "{health}");
    let response = reqwest::get(format!("{operations}/health")).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "/health on the operations port"
    );
    let health: Value = response.json().await.unwrap();
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
        attempt("guess", "10.3.0.1").await,
        StatusCode::TOO_MANY_REQUESTS,
        "wrong guesses wait out the minute"
    );
    // Whoever else calls from that address (one gateway, one office) and holds the token
    // is not locked out by the guesses.
    assert_eq!(
        attempt(testkit::ADMIN_TOKEN, "10.3.0.1").await,
        StatusCode::OK,
        "the right token is never throttled"
    );
    assert_eq!(
        attempt("guess", "10.3.0.1").await,
        StatusCode::TOO_MANY_REQUESTS,
        "and accepting it does not lift the throttle"
    );
    assert_eq!(attempt("guess", "10.3.0.2").await, StatusCode::UNAUTHORIZED);
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

/// `POST /orders/{n}/cancel` of an order nobody has, by `openid` with these forwarding
/// headers: counted by the limits, and nothing else is done (404).
async fn cancel_from(system: &System, openid: &str, headers: &[(&str, &str)]) -> StatusCode {
    let mut request = system
        .http
        .post(format!(
            "{}/orders/ORDNOSUCHORDER0001/cancel",
            system.api_url
        ))
        .header("x-wx-source", "wx_client")
        .header("x-wx-openid", openid);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request sent").status()
}

#[tokio::test]
async fn the_client_address_is_the_entry_the_gateway_wrote_not_one_the_client_sent() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..with(&[
            ("RATE_LIMIT_PER_ADDRESS_PER_MINUTE", "3"),
            ("CALLBACK_REJECTS_PER_MINUTE", "2"),
        ])
    })
    .await;
    start_of_a_fresh_minute_if_close_to_the_end().await;
    // The gateway appends the address it saw to what the client sent: a new made-up
    // entry on the left each time is still one client.
    for (user, spoofed) in [
        ("o-s1", "1.1.1.1"),
        ("o-s2", "1.1.1.2"),
        ("o-s3", "1.1.1.3"),
    ] {
        let forwarded = format!("{spoofed}, 10.4.0.1");
        assert_eq!(
            cancel_from(&system, user, &[("x-original-forwarded-for", &forwarded)]).await,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        cancel_from(
            &system,
            "o-s4",
            &[("x-original-forwarded-for", "1.1.1.4, 9.9.9.9, 10.4.0.1")]
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS,
        "the fourth request from 10.4.0.1 in a minute"
    );
    // And a client cannot lock others out by naming their address on the left.
    for user in ["o-v1", "o-v2"] {
        assert_eq!(
            cancel_from(
                &system,
                user,
                &[("x-original-forwarded-for", "10.4.0.1, 10.4.0.2")]
            )
            .await,
            StatusCode::NOT_FOUND,
            "{user} at 10.4.0.2"
        );
    }

    // The rejected-callback cap counts the same address.
    let order = "ORDNOSUCHORDER0002";
    let mut forged = callback_body(order, 1136, "4200000000000000000000000003");
    forged["subMchId"] = "9999999999".into();
    for n in 0..6 {
        let forwarded = format!("172.16.0.{n}, 10.4.0.3");
        let (status, _) = post_callback(&system, order, &forged, &forwarded).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        count(&system, "SELECT count(*) FROM payment_anomalies").await,
        2,
        "one source however it names itself"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn ipv6_clients_are_counted_by_their_64_bit_network() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..with(&[("RATE_LIMIT_PER_ADDRESS_PER_MINUTE", "3")])
    })
    .await;
    start_of_a_fresh_minute_if_close_to_the_end().await;
    // One subscriber's /64 holds 2^64 addresses: rotating within it is one client.
    for (user, address) in [
        ("o-six1", "2001:db8:1:2::1"),
        ("o-six2", "2001:db8:1:2::2"),
        ("o-six3", "2001:db8:1:2:ffff:ffff:ffff:fffe"),
    ] {
        assert_eq!(
            cancel_from(&system, user, &[("x-original-forwarded-for", address)]).await,
            StatusCode::NOT_FOUND,
            "{address}"
        );
    }
    assert_eq!(
        cancel_from(
            &system,
            "o-six4",
            &[("x-original-forwarded-for", "2001:db8:1:2:abcd::9")]
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        cancel_from(
            &system,
            "o-six5",
            &[("x-original-forwarded-for", "2001:db8:1:3::1")]
        )
        .await,
        StatusCode::NOT_FOUND,
        "the next /64 is someone else"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn refused_requests_do_not_use_up_anyone_elses_allowance() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..with(&[
            ("RATE_LIMIT_CANCELS_PER_MINUTE", "2"),
            ("RATE_LIMIT_PER_ADDRESS_PER_MINUTE", "4"),
        ])
    })
    .await;
    start_of_a_fresh_minute_if_close_to_the_end().await;
    let shared = [("x-original-forwarded-for", "10.5.0.1")];
    // One user hammering from an address others share (one gateway address, one NAT).
    for _ in 0..2 {
        assert_eq!(
            cancel_from(&system, "o-hammer", &shared).await,
            StatusCode::NOT_FOUND
        );
    }
    for _ in 0..10 {
        assert_eq!(
            cancel_from(&system, "o-hammer", &shared).await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    // Only the two it was allowed count against the address.
    for user in ["o-next1", "o-next2"] {
        assert_eq!(
            cancel_from(&system, user, &shared).await,
            StatusCode::NOT_FOUND,
            "{user}"
        );
    }
    // The address is used up now; what it refuses does not use up the user's own
    // allowance either.
    for _ in 0..3 {
        assert_eq!(
            cancel_from(&system, "o-roaming", &shared).await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert_eq!(
        cancel_from(
            &system,
            "o-roaming",
            &[("x-original-forwarded-for", "10.5.0.2")]
        )
        .await,
        StatusCode::NOT_FOUND,
        "the user's own allowance is untouched"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn without_a_proxy_the_connection_is_the_client_whatever_the_headers_say() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..with(&[
            ("CLIENT_ADDRESS_FROM", "peer"),
            ("RATE_LIMIT_PER_ADDRESS_PER_MINUTE", "2"),
        ])
    })
    .await;
    start_of_a_fresh_minute_if_close_to_the_end().await;
    for (user, spoofed) in [("o-p1", "10.6.0.1"), ("o-p2", "10.6.0.2")] {
        assert_eq!(
            cancel_from(&system, user, &[("x-original-forwarded-for", spoofed)]).await,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        cancel_from(
            &system,
            "o-p3",
            &[
                ("x-original-forwarded-for", "10.6.0.3"),
                ("x-forwarded-for", "10.6.0.3")
            ]
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS,
        "all three came from 127.0.0.1"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn behind_two_proxies_the_address_is_the_one_the_outer_proxy_saw() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..with(&[
            ("CLIENT_ADDRESS_FROM", "x-forwarded-for"),
            ("TRUSTED_PROXY_HOPS", "2"),
            ("RATE_LIMIT_PER_ADDRESS_PER_MINUTE", "2"),
        ])
    })
    .await;
    start_of_a_fresh_minute_if_close_to_the_end().await;
    // client-supplied..., the client (written by the outer proxy), the outer proxy
    // (written by the inner one).
    for (user, forwarded) in [
        ("o-h1", "10.7.0.9, 10.7.0.1, 192.168.0.10"),
        ("o-h2", "10.7.0.1, 192.168.0.11"),
    ] {
        assert_eq!(
            cancel_from(&system, user, &[("x-forwarded-for", forwarded)]).await,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        cancel_from(
            &system,
            "o-h3",
            &[
                ("x-forwarded-for", "10.7.0.8"),
                ("x-forwarded-for", "10.7.0.1, 192.168.0.10")
            ]
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS,
        "10.7.0.1 a third time, the header sent twice"
    );
    assert_eq!(
        cancel_from(
            &system,
            "o-h4",
            &[("x-forwarded-for", "10.7.0.1, 10.7.0.2, 192.168.0.10")]
        )
        .await,
        StatusCode::NOT_FOUND,
        "another client behind the same proxies"
    );
    system.shutdown().await;
}

/// A request that may not reach an answer at all: `None` when the connection broke (a
/// handler that panicked).
async fn status_of(request: reqwest::RequestBuilder) -> Option<StatusCode> {
    request.send().await.ok().map(|r| r.status())
}

#[tokio::test]
async fn dates_out_of_the_business_range_are_a_400_never_a_panic() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let user = system.client("o-dates");
    let extreme = [
        "-262143-01-01",
        "-262144-01-01",
        "%2B262143-12-31",
        "262143-12-31",
        "%2B262142-12-31",
        "99999-01-01",
        "10000-01-01",
        "9999-12-31",
        "0000-01-01",
        "-0001-12-31",
        "1999-12-31",
        "2101-01-01",
        "2147483647-01-01",
    ];
    let mut answers = Vec::new();
    for day in extreme {
        for path in [
            format!("/orders/my?startDate={day}"),
            format!("/orders/my?endDate={day}"),
            format!("/orders/my?startDate=2026-01-01&endDate={day}"),
        ] {
            let request = system
                .http
                .get(format!("{}{path}", system.api_url))
                .header("x-wx-source", "wx_client")
                .header("x-wx-openid", "o-dates");
            answers.push((path, status_of(request).await));
        }
        for path in [
            format!("/admin/stats?from={day}"),
            format!("/admin/stats?to={day}"),
            format!("/admin/stats?from={day}&to={day}"),
            format!("/admin/stats?from=2026-01-01&to={day}"),
            format!("/statistics?startDate={day}"),
            format!("/statistics?endDate={day}"),
            format!("/statistics/users?startDate={day}"),
            format!("/statistics/orders?endDate={day}"),
            format!("/statistics/revenue?startDate={day}&endDate={day}"),
        ] {
            let request = system
                .http
                .get(format!("{}{path}", system.api_url))
                .bearer_auth(testkit::ADMIN_TOKEN);
            answers.push((path, status_of(request).await));
        }
    }
    let wrong: Vec<_> = answers
        .iter()
        .filter(|(_, status)| *status != Some(StatusCode::BAD_REQUEST))
        .collect();
    assert!(wrong.is_empty(), "not a 400: {wrong:?}");
    // The answer says why, in the caller's words.
    let (_, body) = user.get("/orders/my?startDate=-262143-01-01").await;
    assert!(
        body["message"].as_str().unwrap().contains("2000-01-01"),
        "{body}"
    );
    let (_, body) = system.admin_get("/admin/stats?to=2999-01-01").await;
    assert!(
        body["message"].as_str().unwrap().contains("2100-12-31"),
        "{body}"
    );
    // Days inside the range still answer.
    let (status, _) = user
        .get("/orders/my?startDate=2000-01-01&endDate=2100-12-31")
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = system
        .admin_get("/admin/stats?from=2100-01-01&to=2100-12-31")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = system.admin_get("/admin/stats?to=2000-01-05").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the default range starts at 2000-01-01: {body}"
    );
    assert_eq!(body["data"]["from"], "2000-01-01", "{body}");
    let (status, _) = system
        .admin_get("/statistics?startDate=2000-01-01&endDate=2100-12-31")
        .await;
    assert_eq!(status, StatusCode::OK);
    system.shutdown().await;
}

//! The mini-program's view: products, prices, orders, identity, errors, the envelope.

use reqwest::StatusCode;
use serde_json::json;
use testkit::{System, SystemOptions};

fn api_only() -> SystemOptions {
    SystemOptions {
        workers: 0,
        ..Default::default()
    }
}

/// For what only Cloud Hosting has: its gateway's identity headers, the open interface's
/// error codes. The suite's direct-mode pass runs these in cloud mode too.
fn cloud_only() -> SystemOptions {
    SystemOptions {
        overrides: vec![("WECHAT_PAY_MODE", "cloud".into())],
        ..api_only()
    }
}

#[tokio::test]
async fn prices_are_converted_exactly_and_fixed_on_the_order() {
    let system = System::start(api_only()).await;
    let (status, rate) = system.anonymous().get("/exchange-rate/current").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        rate["data"]["rate"], 440,
        "a JSON number, as the mini-program reads it"
    );
    assert_eq!(rate["data"]["currency"], "MNT_TO_CNY");

    let (status, products) = system
        .client("o-prices")
        .post(
            "/unitel/products/services",
            json!({"msisdn": "88616600", "info": "1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{products}");
    let card = products["data"]["service"]["cards"]["day"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "SD5000")
        .expect("SD5000 listed")
        .clone();
    assert_eq!(card["price"], 5000, "Unitel's own field, as received");
    assert_eq!(card["priceRmb"], "11.36");
    assert_eq!(card["priceFen"], 1136);

    let order = system
        .create_order("o-price", "88616600", "voice", "SD5000")
        .await;
    let (_, body) = system
        .client("o-price")
        .get(&format!("/orders/{order}"))
        .await;
    assert_eq!(body["data"]["amountFen"], 1136);
    assert_eq!(body["data"]["productPriceRmb"], "11.36");
    assert_eq!(body["data"]["productPriceTg"], "5000");
    assert_eq!(body["data"]["exchangeRate"], "440");

    // What WeChat is asked to charge is the order's amount, in fen.
    let (status, payment) = system
        .client("o-price")
        .post("/payment/create", json!({"orderNumber": order}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    assert!(payment["data"]["package"]
        .as_str()
        .unwrap()
        .starts_with("prepay_id="));
    let at_wechat = system
        .sandbox
        .wechat_order(&order)
        .expect("unifiedOrder reached WeChat");
    assert_eq!(at_wechat.total_fee, 1136);
    // Where WeChat reports the result: Cloud Hosting's path per order, or APIv3's
    // notify_url.
    match &at_wechat.v3 {
        Some(v3) if system.is_direct() => assert_eq!(v3.notify_url, testkit::NOTIFY_URL),
        _ => assert_eq!(
            at_wechat.container_path,
            format!("/payment/callback/{order}")
        ),
    }

    // A rate change later does not touch an existing order.
    sqlx::query("INSERT INTO exchange_rates (currency_pair, rate, set_by) VALUES ('MNT_TO_CNY', 400, 'test')")
        .execute(&system.db.pool)
        .await
        .unwrap();
    let (_, body) = system
        .client("o-price")
        .get(&format!("/orders/{order}"))
        .await;
    assert_eq!(body["data"]["amountFen"], 1136);
    let newer = system
        .create_order("o-price", "88616600", "voice", "SD5000")
        .await;
    let (_, body) = system
        .client("o-price")
        .get(&format!("/orders/{newer}"))
        .await;
    assert_eq!(body["data"]["amountFen"], 1250, "5000 / 400 = 12.50");
    system.shutdown().await;
}

#[tokio::test]
async fn orders_belong_to_their_owner_and_are_paid_once() {
    let system = System::start(api_only()).await;
    let order = system
        .create_order("o-owner", "88616600", "voice", "SD5000")
        .await;
    let owner = system.client("o-owner");
    let stranger = system.client("o-stranger");

    let (status, body) = stranger.get(&format!("/orders/{order}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], 404);
    assert_eq!(body["data"], serde_json::Value::Null);
    assert_eq!(body["path"], format!("/orders/{order}"));
    let (status, _) = stranger
        .post("/payment/create", json!({"orderNumber": order}))
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "someone else's order cannot be paid"
    );
    assert!(system.sandbox.wechat_order(&order).is_none());

    let (status, _) = owner.get("/orders/ORD1700000000000UNKNOWN1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = owner
        .post(
            "/payment/create",
            json!({"orderNumber": "ORD1700000000000UNKNOWN1"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Text that cannot be an order number names no order: 404, as there.
    let (status, body) = owner
        .post("/payment/create", json!({"orderNumber": "bad order"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["message"], "订单不存在");

    let (status, _) = owner
        .post("/payment/create", json!({"orderNumber": order}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    system.sandbox.pay(&order).await.unwrap();
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{order}' AND payment_status = 'paid'"),
            1,
            std::time::Duration::from_secs(10),
        )
        .await;
    let (status, body) = owner
        .post("/payment/create", json!({"orderNumber": order}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["message"], "订单已支付");

    let (status, page) = owner.get("/orders/my?paymentStatus=paid").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["data"]["pagination"]["total"], 1);
    assert_eq!(page["data"]["data"][0]["orderNumber"], order.as_str());
    assert_eq!(page["data"]["data"][0]["paymentStatus"], "paid");
    let (_, page) = owner.get("/orders/my?status=unpaid").await;
    assert_eq!(page["data"]["pagination"]["total"], 0);
    let (_, page) = stranger.get("/orders/my").await;
    assert_eq!(page["data"]["pagination"]["total"], 0);
    system.shutdown().await;
}

#[tokio::test]
async fn my_orders_paginate_and_filter_by_date() {
    let system = System::start(api_only()).await;
    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(
            system
                .create_order("o-pages", "88616600", "voice", "SD5000")
                .await,
        );
    }
    let client = system.client("o-pages");
    let (_, first) = client.get("/orders/my?page=1&limit=2").await;
    assert_eq!(first["data"]["pagination"]["total"], 3);
    assert_eq!(first["data"]["pagination"]["totalPages"], 2);
    assert_eq!(first["data"]["pagination"]["page"], 1);
    assert_eq!(first["data"]["pagination"]["limit"], 2);
    assert_eq!(first["data"]["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        first["data"]["data"][0]["orderNumber"],
        created[2].as_str(),
        "newest first"
    );
    let (_, second) = client.get("/orders/my?page=2&limit=2").await;
    assert_eq!(
        second["data"]["data"][0]["orderNumber"],
        created[0].as_str()
    );

    let (_, none) = client.get("/orders/my?endDate=2020-01-01").await;
    assert_eq!(none["data"]["pagination"]["total"], 0);
    assert_eq!(none["data"]["pagination"]["totalPages"], 0);
    let (_, all) = client.get("/orders/my?startDate=2020-01-01").await;
    assert_eq!(all["data"]["pagination"]["total"], 3);

    for bad in [
        "limit=0",
        "limit=101",
        "page=0",
        "status=lost",
        "startDate=yesterday",
        "page=abc",
    ] {
        let (status, body) = client.get(&format!("/orders/my?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["code"], 400, "{bad}");
    }
    system.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_in_the_envelope() {
    let system = System::start(api_only()).await;
    let client = system.client("o-bad-input");
    let order = |phone: &str, kind: &str, code: &str| json!({"phoneNumber": phone, "productOperator": "Unitel", "rechargeType": kind, "productCode": code});
    let cases = [
        (order("123", "voice", "SD5000"), "充值手机号必须是 8 位"),
        (
            order("88616600", "sms", "SD5000"),
            "充值类型必须是有效的枚举值",
        ),
        (
            order("88616600", "voice", "NOPE"),
            "商品代码 NOPE 不存在或已下架",
        ),
        (order("88616600", "voice", "data3gb2d"), "不存在或已下架"),
        (order("88616600", "data", "SD5000"), "不存在或已下架"),
        (order("88616600", "voice", ""), "预付费订单必须提供商品代码"),
        // Unitel's own words ("Not a postpaid subscriber") stay in the log.
        (order("88616600", "postpaid", ""), "该号码无法办理此业务"),
        (order("88616609", "postpaid", ""), "无欠费账单"),
        (
            json!({"phoneNumber": "88616600", "productOperator": "mobicom", "rechargeType": "voice", "productCode": "SD5000"}),
            "不支持的运营商: mobicom",
        ),
        (
            json!({"phoneNumber": 88616600, "productOperator": "Unitel", "rechargeType": "voice"}),
            "充值手机号必须是字符串",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = client.post("/orders", body.clone()).await;
        assert!(status.is_client_error(), "{body} → {status} {answer}");
        assert_eq!(answer["code"], status.as_u16());
        let message = answer["message"].as_str().unwrap_or("");
        assert!(
            message.to_lowercase().contains(&expected.to_lowercase()),
            "{body}: message {message:?} should mention {expected:?}"
        );
    }
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders")
        .fetch_one(&system.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "no half-written order");

    // The caller as each mode names one: the gateway's headers, or a session.
    let bearer = client.session_token().await.map(|t| format!("Bearer {t}"));
    let identity: Vec<(&str, &str)> = match &bearer {
        Some(bearer) => vec![("authorization", bearer.as_str())],
        None => vec![("x-wx-openid", "o"), ("x-wx-source", "x")],
    };
    let raw_headers: Vec<(&str, &str)> = [("content-type", "application/json")]
        .into_iter()
        .chain(identity)
        .collect();
    let (status, answer) = client.post_raw("/orders", &raw_headers, "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["code"], 400);
    assert_eq!(answer["path"], "/orders");

    let (status, answer) = client
        .post_raw("/orders", &raw_headers, vec![b' '; 100_000])
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["code"], 413);

    let (status, answer) = client.get("/no/such/route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["message"], "Cannot GET /no/such/route");
    system.shutdown().await;
}

#[tokio::test]
async fn identity_comes_from_the_gateway_and_the_mock_header_only_in_development() {
    // The gateway's headers name the caller in cloud mode only (sessions.rs has direct
    // mode's refusal of them).
    let dev = System::start(cloud_only()).await;
    let create = json!({"phoneNumber": "88616600", "productOperator": "Unitel", "rechargeType": "voice", "productCode": "SD5000"});
    let (status, body) = dev.anonymous().post("/orders", create.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = dev
        .anonymous()
        .post_raw(
            "/orders",
            &[
                ("content-type", "application/json"),
                ("x-wx-openid", "o-no-source"),
            ],
            create.to_string(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "an openid without X-WX-SOURCE is not trusted"
    );
    let (status, body) = dev
        .anonymous()
        .post_raw(
            "/orders",
            &[
                ("content-type", "application/json"),
                ("x-mock-openid", "o-mock"),
            ],
            create.to_string(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "development accepts X-Mock-Openid: {body}"
    );
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM users WHERE openid = 'o-mock'")
        .fetch_one(&dev.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 1, "the user row is created on first call");
    dev.shutdown().await;

    let prod = System::start(SystemOptions {
        app_env: "production",
        ..cloud_only()
    })
    .await;
    let (status, _) = prod
        .anonymous()
        .post_raw(
            "/orders",
            &[
                ("content-type", "application/json"),
                ("x-mock-openid", "o-mock"),
            ],
            create.to_string(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "production ignores X-Mock-Openid"
    );
    let (status, _) = prod
        .anonymous()
        .post_raw(
            "/orders",
            &[
                ("content-type", "application/json"),
                ("x-wx-from-openid", "o-shared"),
                ("x-wx-source", "wx_client"),
            ],
            create.to_string(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "X-WX-FROM-OPENID identifies a caller from a sharing app"
    );
    prod.shutdown().await;
}

#[tokio::test]
async fn health_and_the_openapi_document_are_served() {
    let system = System::start(api_only()).await;
    let mut health = serde_json::Value::Null;
    for _ in 0..100 {
        let (status, body) = system.anonymous().get("/health").await;
        health = body;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(health["data"]["database"], "up", "{health}");
    assert_eq!(health["data"]["rabbitmq"], "up", "{health}");
    assert_eq!(health["data"]["outboxBacklog"], 0);

    let (status, doc) = system.anonymous().get("/api-json").await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/orders",
        "/orders/my",
        "/payment/create",
        "/payment/callback/{orderNumber}",
        "/unitel/products/services",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    let metrics = system
        .http
        .get(format!("{}/metrics", system.api_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("http_requests_total{route=\"/api-json\",method=\"GET\",status=\"200\"}"),
        "requests by route: {metrics}"
    );
    assert!(metrics.contains("http_request_duration_seconds_bucket{route=\"/health\""));
    let page = system
        .http
        .get(format!("{}/api/", system.api_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text().await.unwrap().contains("swagger"),
        "Swagger UI served"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn wechat_pay_refusals_become_clear_errors_never_a_payment_less_success() {
    // The open interface's errcode and v2 err_code refusals.
    let system = System::start(cloud_only()).await;
    let order = system
        .create_order("o-wx-fail", "88616600", "voice", "SD5000")
        .await;
    let client = system.client("o-wx-fail");
    let refusal = |errcode: Option<i64>, code: &str| sandbox::UnifiedOrderError {
        errcode,
        err_code: Some(code.to_owned()),
        err_code_des: Some(format!("{code} from the test")),
    };
    system.sandbox.set_faults(sandbox::Faults {
        wechat: sandbox::WechatFaults {
            unified_order_errors: vec![
                refusal(Some(-1), "PLATFORM"),
                refusal(None, "NOAUTH"),
                refusal(None, "SYSTEMERROR"),
                refusal(None, "ORDERCLOSED"),
            ],
            ..Default::default()
        },
        ..Default::default()
    });
    let expected = [
        (StatusCode::BAD_GATEWAY, "微信支付暂时不可用"),
        // WeChat's code and words go to the log, not to the customer.
        (StatusCode::BAD_REQUEST, "微信支付暂时无法受理此订单"),
        (StatusCode::SERVICE_UNAVAILABLE, "微信支付繁忙"),
        (StatusCode::BAD_REQUEST, "订单已关闭"),
    ];
    for (status, message) in expected {
        let (got, body) = client
            .post("/payment/create", json!({"orderNumber": order}))
            .await;
        assert_eq!(got, status, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains(message),
            "{body}"
        );
        assert_eq!(body["data"], serde_json::Value::Null);
    }
    let (prepay,): (Option<String>,) =
        sqlx::query_as("SELECT prepay_id FROM orders WHERE order_number = $1")
            .bind(&order)
            .fetch_one(&system.db.pool)
            .await
            .unwrap();
    assert_eq!(prepay, None);
    // With the faults used up, the same order can be paid.
    let (status, body) = client
        .post("/payment/create", json!({"orderNumber": order}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    system.shutdown().await;
}

#[tokio::test]
async fn the_binary_refuses_to_start_without_its_configuration() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_payment-api"))
        .env_clear()
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
        .env("WECHAT_MCH_ID", "1712734762")
        .env("WECHAT_ENV_ID", "env")
        .env("WECHAT_PAYMENT_CALLBACK_SERVICE", "svc")
        .env("UNITEL_USERNAME", "u")
        .env("UNITEL_PASSWORD", "p")
        .env("PORT", "not-a-port")
        .output()
        .expect("payment-api runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PORT"), "{stderr}");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_payment-api"))
        .env_clear()
        .output()
        .expect("payment-api runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("WECHAT_MCH_ID") || stderr.contains("DATABASE_URL"),
        "{stderr}"
    );
}

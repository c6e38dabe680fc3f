//! The operator's page in headless Chromium — log in, read the charts, resolve an order,
//! set the rate — and the admin routes it uses.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::{Browser, System, SystemOptions, ADMIN_TOKEN};

async fn credited(system: &System, openid: &str) -> String {
    let (order, outcome) = system.top_up(openid).await;
    assert_eq!(outcome, "success");
    order
}

#[tokio::test]
async fn an_operator_logs_in_reads_the_charts_resolves_an_order_and_sets_the_rate() {
    let system = System::start(SystemOptions::default()).await;
    for openid in ["o-page-1", "o-page-2", "o-page-3"] {
        credited(&system, openid).await;
    }
    let (unknown, outcome) = system
        .top_up_under(
            "o-page-4",
            sandbox::UnitelFaults {
                drop_after_credit: 1,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(outcome, "unknown");

    // Today's books reconciled with WeChat's bill, with one difference to settle: a
    // credited order missing from the bill.
    let missing = credited(&system, "o-page-5").await;
    system.sandbox.set_faults(sandbox::Faults {
        wechat: sandbox::WechatFaults {
            bill_drop_orders: vec![missing.clone()],
            ..Default::default()
        },
        ..Default::default()
    });
    let china = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let today = chrono::Utc::now()
        .with_timezone(&china)
        .date_naive()
        .to_string();
    let (status, body) = system
        .admin_request(
            Method::POST,
            &format!("/admin/reconciliation/run?date={today}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["status"], "differences");

    let browser = Browser::start().await;
    browser.goto(&format!("{}/admin", system.api_url)).await;

    // A wrong token is refused and nothing is shown.
    browser.type_into("#token", "not-the-token").await;
    browser.click("#login-button").await;
    browser
        .wait_for(
            "the refusal",
            "return document.querySelector('#login-error').textContent.length > 0",
            json!([]),
        )
        .await;
    assert_eq!(
        browser
            .run(
                "return document.querySelector('#dashboard').hidden",
                json!([])
            )
            .await,
        true
    );

    browser.type_into("#token", ADMIN_TOKEN).await;
    browser.click("#login-button").await;
    browser
        .wait_for(
            "the charts",
            "return !!document.body.dataset.loaded",
            json!([]),
        )
        .await;

    // The tiles and charts show what the API says: five paid orders today, one unknown.
    assert_eq!(browser.text("[data-figure=ordersPaid] .value").await, "5");
    assert_eq!(
        browser.text("[data-figure=rechargeUnknown] .value").await,
        "1"
    );
    assert_eq!(
        browser.text("[data-figure=rechargeSuccess] .value").await,
        "4"
    );
    let charted = browser
        .run(
            "return [...document.querySelectorAll(arguments[0])]
                .reduce((sum, bar) => sum + Number(bar.dataset.value), 0)",
            json!(["#chart-days rect[data-series=ordersPaid]"]),
        )
        .await;
    assert_eq!(charted, 5, "paid orders per day add up to the total");
    let days = browser
        .run(
            "return document.querySelectorAll('#chart-days rect[data-series=ordersCreated]').length",
            json!([]),
        )
        .await;
    assert_eq!(days, 30, "one bar per day of the default range");
    let by_hour = browser
        .run(
            "return [...document.querySelectorAll('#chart-hours rect[data-series=ordersPaid]')]
                .reduce((sum, bar) => sum + Number(bar.dataset.value), 0)",
            json!([]),
        )
        .await;
    assert_eq!(by_hour, 5);
    assert!(browser.text("#products").await.contains("voice"));

    // The unknown top-up is listed; the operator resolves it as credited.
    let row = format!("#attention tr[data-order='{unknown}']");
    assert!(browser.text(&row).await.contains("top-up outcome unknown"));
    browser.click(&format!("{row} button.resolve")).await;
    browser
        .run(
            "document.querySelector('#outcome').value = 'success'",
            json!([]),
        )
        .await;
    browser
        .type_into("#note", "Unitel support confirmed the credit")
        .await;
    browser.click("#action-submit").await;
    browser
        .wait_for(
            "the resolved order leave the list",
            "return !document.querySelector(arguments[0])",
            json!([row]),
        )
        .await;
    assert_eq!(system.statuses(&unknown).await.1, "success");
    let (_, history) = system.admin_get(&format!("/admin/orders/{unknown}")).await;
    let last = history["data"]["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["event"], "success");
    assert_eq!(
        last["detail"]["note"],
        "Unitel support confirmed the credit"
    );
    assert_eq!(
        browser.text("[data-figure=rechargeSuccess] .value").await,
        "5",
        "the page reloads its figures"
    );

    // The reconciled day and its difference; the operator settles it with a note.
    let day_row = format!("#reconciliation tr[data-day='{today}']");
    assert!(browser.text(&day_row).await.contains("differences"));
    assert!(browser
        .text("#reconciliation-open")
        .await
        .contains("1 open"));
    browser.click(&format!("{day_row} button.show-day")).await;
    browser
        .wait_for(
            "the day's differences",
            "return document.querySelectorAll('#differences tbody tr').length === 1",
            json!([]),
        )
        .await;
    assert!(browser
        .text("#differences")
        .await
        .contains("missing_at_wechat"));
    assert!(browser.text("#differences").await.contains(&missing));
    browser
        .click("#differences button.resolve-difference")
        .await;
    browser
        .type_into(
            "#difference-note",
            "test payment, refunded in the merchant platform",
        )
        .await;
    browser.click("#difference-submit").await;
    browser
        .wait_for(
            "the difference settled",
            "return document.querySelector('#differences').textContent.includes('admin:admin')",
            json!([]),
        )
        .await;
    let (_, view) = system
        .admin_get(&format!("/admin/reconciliation?date={today}"))
        .await;
    assert_eq!(view["data"]["day"]["differencesOpen"], 0);
    assert_eq!(
        view["data"]["day"]["differences"][0]["resolution"],
        "test payment, refunded in the merchant platform"
    );

    // The rate.
    browser.type_into("#rate-new", "452.5").await;
    browser.click("#rate-save").await;
    browser
        .wait_for(
            "the new rate",
            "return document.querySelector('#rate-current').textContent === '452.5'",
            json!([]),
        )
        .await;
    let (_, rate) = system.anonymous().get("/exchange-rate/current").await;
    assert_eq!(rate["data"]["rate"], serde_json::json!(452.5));
    browser.close().await;
}

#[tokio::test]
async fn the_page_loads_nothing_from_elsewhere() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let response = system
        .http
        .get(format!("{}/admin", system.api_url))
        .send()
        .await
        .unwrap();
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    let page = response.text().await.unwrap();
    for asset in ["/admin/app.js", "/admin/app.css"] {
        let body = system
            .http
            .get(format!("{}{asset}", system.api_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for text in [&page, &body] {
            // The SVG namespace is a name, not an address anything is fetched from.
            let text = text.replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(
                !text.contains("://") && !text.contains("=\"//") && !text.contains("url("),
                "no external address in {asset} or the page"
            );
        }
    }
}

async fn retry(system: &System, order: &str, note: &str) -> (StatusCode, Value) {
    system
        .admin_request(
            Method::POST,
            &format!("/admin/refunds/{order}/retry"),
            Some(ADMIN_TOKEN),
            Some(json!({ "note": note })),
        )
        .await
}

#[tokio::test]
async fn the_attention_list_refunds_and_rate_routes_check_their_input() {
    // Automatic refunds off, so the failed top-up waits for a person; the refund sweep
    // runs often, so a retried refund reaches WeChat quickly.
    let system = System::start(SystemOptions {
        overrides: vec![
            ("AUTO_REFUND_FAILED", "false".into()),
            ("REFUND_SWEEP_INTERVAL_MS", "100".into()),
        ],
        ..Default::default()
    })
    .await;
    let (failed, outcome) = system
        .top_up_under(
            "o-attention",
            sandbox::UnitelFaults {
                fail_next: 1,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(outcome, "failed");

    for (method, path, body) in [
        (Method::GET, "/admin/attention".to_owned(), None),
        (
            Method::PUT,
            "/admin/exchange-rate".to_owned(),
            Some(json!({"rate": "450"})),
        ),
        (
            Method::POST,
            format!("/admin/refunds/{failed}/retry"),
            Some(json!({"note": "again"})),
        ),
    ] {
        for token in [None, Some("wrong")] {
            let (status, body) = system
                .admin_request(method.clone(), &path, token, body.clone())
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(body["data"], Value::Null);
            assert!(!body.to_string().contains("88616600"), "{body}");
        }
    }

    // Failed with no refund: listed.
    let (status, body) = system.admin_get("/admin/attention").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["total"], 1, "{body}");
    assert_eq!(body["data"]["orders"][0]["orderNumber"], failed.as_str());
    assert_eq!(body["data"]["orders"][0]["needs"], "failed_not_refunded");
    assert_eq!(body["data"]["orders"][0]["amountYuan"], "11.36");

    // Only a failed refund can be retried; a refund that failed can.
    assert_eq!(retry(&system, &failed, "x").await.0, StatusCode::NOT_FOUND);
    sqlx::query(
        "INSERT INTO refunds (order_number, out_refund_no, amount_fen, reason, requested_by,
                              status, last_error, next_check_at)
         VALUES ($1, 'RF' || $1, 1136, 'test', 'admin:test', 'failed', 'NOTENOUGH', 'infinity')",
    )
    .bind(&failed)
    .execute(&system.db.pool)
    .await
    .unwrap();
    let (_, body) = system.admin_get("/admin/attention").await;
    assert_eq!(body["data"]["orders"][0]["needs"], "refund_failed");
    assert_eq!(body["data"]["orders"][0]["detail"], "NOTENOUGH");
    assert_eq!(
        retry(&system, &failed, "   ").await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, body) = retry(&system, &failed, "merchant balance topped up").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["outRefundNo"], format!("RF{failed}"));
    assert_eq!(
        retry(&system, &failed, "twice").await.0,
        StatusCode::CONFLICT
    );
    assert!(system
        .events(&failed)
        .await
        .contains(&"refund_retried".to_owned()));
    let (_, body) = system.admin_get("/admin/attention").await;
    assert_eq!(body["data"]["total"], 0, "a refund under way needs no one");
    // The retried refund goes to WeChat once, under the same number, and is confirmed.
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM refunds WHERE order_number = '{failed}' AND status = 'success'"),
            1,
            Duration::from_secs(10),
        )
        .await;
    let at_wechat = system.sandbox.wechat_order(&failed).unwrap();
    assert_eq!(at_wechat.refunds.len(), 1, "refunded exactly once");

    // The rate: exact, bounded, and used for the next order only.
    for bad in [
        json!("445.12345"),
        json!("0"),
        json!("abc"),
        json!(null),
        json!("100000"),
    ] {
        let (status, body) = system
            .admin_request(
                Method::PUT,
                "/admin/exchange-rate",
                Some(ADMIN_TOKEN),
                Some(json!({ "rate": bad })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, body) = system
        .admin_request(
            Method::PUT,
            "/admin/exchange-rate",
            Some(ADMIN_TOKEN),
            Some(json!({"rate": 500, "setBy": "ops"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["setBy"], "admin:ops");
    let order = system
        .create_order("o-new-rate", "88616600", "voice", "SD5000")
        .await;
    let (fen, rate): (i64, rust_decimal::Decimal) =
        sqlx::query_as("SELECT amount_fen, exchange_rate FROM orders WHERE order_number = $1")
            .bind(&order)
            .fetch_one(&system.db.pool)
            .await
            .unwrap();
    assert_eq!((fen, rate.normalize().to_string()), (1000, "500".into()));
}

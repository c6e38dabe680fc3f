//! `downloadbill` over real HTTP: the bill's format line by line against the contract, its
//! summary, when it is ready, its faults, refunds made outside the API, and bulk history.

mod common;

use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate, Timelike, Utc};
use common::*;
use sandbox::{BillsReady, CallbackKind, PaidOrder, Sandbox, SandboxConfig};
use serde_json::{json, Value};

const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const SUMMARY_HEADER: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";
const OPENID: &str = "oZp5x0aAbCdEfGhIjKlMnOpQrStU";

fn china_today() -> NaiveDate {
    (Utc::now() + chrono::Duration::hours(8)).date_naive()
}

fn bill_request(date: NaiveDate) -> Value {
    json!({"bill_date": date.format("%Y%m%d").to_string(), "bill_type": "ALL", "sub_mch_id": MERCHANT})
}

/// The bill text, or the failure respdata.
async fn download(sandbox: &Sandbox, date: NaiveDate) -> Result<String, Value> {
    match wechat_respdata(sandbox, "downloadbill", &bill_request(date)).await {
        Value::String(text) => Ok(text),
        refusal => Err(refusal),
    }
}

async fn download_ok(sandbox: &Sandbox, date: NaiveDate) -> String {
    download(sandbox, date).await.expect("a bill")
}

fn assert_refused(refusal: &Value, return_msg: &str, error_code: &str) {
    assert_eq!(
        refusal,
        &json!({"return_code": "FAIL", "return_msg": return_msg, "error_code": error_code})
    );
}

/// The day a paid order's time_end falls on (China date).
fn paid_day(sandbox: &Sandbox, out_trade_no: &str) -> NaiveDate {
    let time_end = sandbox
        .wechat_order(out_trade_no)
        .unwrap()
        .time_end
        .unwrap();
    NaiveDate::parse_from_str(&time_end[..8], "%Y%m%d").unwrap()
}

/// `yyyyMMddHHmmss` as the bill writes it.
fn bill_time(time_end: &str) -> String {
    format!(
        "{}-{}-{} {}:{}:{}",
        &time_end[0..4],
        &time_end[4..6],
        &time_end[6..8],
        &time_end[8..10],
        &time_end[10..12],
        &time_end[12..14]
    )
}

/// Trade lines (without header and summary) split into fields.
fn trade_lines(text: &str) -> Vec<Vec<String>> {
    let lines: Vec<&str> = text.split("\r\n").collect();
    let summary_at = lines.iter().position(|l| *l == SUMMARY_HEADER).unwrap();
    lines[1..summary_at]
        .iter()
        .map(|line| {
            line.strip_prefix('`')
                .unwrap()
                .split(",`")
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn summary_line(text: &str) -> String {
    let lines: Vec<&str> = text.split("\r\n").collect();
    let summary_at = lines.iter().position(|l| *l == SUMMARY_HEADER).unwrap();
    lines[summary_at + 1].to_owned()
}

async fn paid_order(sandbox: &Sandbox, out_trade_no: &str) -> String {
    place_order(sandbox, out_trade_no).await;
    sandbox.pay_without_callback(out_trade_no).await.unwrap()
}

fn refund_request(out_trade_no: &str, out_refund_no: &str, refund_fee: i64) -> Value {
    json!({
        "body": "refund",
        "out_trade_no": out_trade_no,
        "out_refund_no": out_refund_no,
        "env_id": "prod-66733tes755tabc",
        "sub_mch_id": MERCHANT,
        "total_fee": 1137,
        "refund_fee": refund_fee,
        "refund_desc": "top-up failed",
        "callback_type": 2,
        "container": {"service": "elife-backend", "path": "/payment/refund-callback"},
    })
}

async fn put_faults(sandbox: &Sandbox, faults: Value) {
    let response = client()
        .put(format!("{}/sandbox/faults", sandbox.control_url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_bill_lists_payments_and_refunds_as_the_contract_writes_them() {
    let sandbox = start("http://127.0.0.1:9").await;
    let first = paid_order(&sandbox, "ORDBILL00001").await;
    let second = paid_order(&sandbox, "ORDBILL00002").await;
    let accepted = wechat_respdata(
        &sandbox,
        "refund",
        &refund_request("ORDBILL00001", "RFBILL1", 1000),
    )
    .await;
    assert_eq!(accepted["result_code"], "SUCCESS", "{accepted}");
    assert!(
        eventually(Duration::from_secs(5), || {
            sandbox.wechat_order("ORDBILL00001").unwrap().refunds[0].status == "SUCCESS"
        })
        .await
    );
    let day = paid_day(&sandbox, "ORDBILL00001");
    assert_eq!(paid_day(&sandbox, "ORDBILL00002"), day);

    let text = download_ok(&sandbox, day).await;
    assert!(text.ends_with("\r\n"), "every line ends with CRLF");
    let lines: Vec<&str> = text.trim_end_matches("\r\n").split("\r\n").collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert_eq!(lines[0], HEADER);

    let order = |no: &str| sandbox.wechat_order(no).unwrap();
    let payment_line = |no: &str, transaction_id: &str| {
        format!(
            "`{},`wx5c9a1e0b3d7f2a64,`1800780001,`{MERCHANT},`,`{transaction_id},`{no},`{OPENID},\
             `JSAPI,`SUCCESS,`OTHERS,`CNY,`11.37,`0.00,`0,`0,`0.00,`0.00,`,`,\
             `境外话费充值 - 5000 нэгж,`{{\"orderNumber\":\"x\"}},`0.06822,`0.60%,`11.37,`0.00,`",
            bill_time(order(no).time_end.as_deref().unwrap()),
        )
    };
    let refund = order("ORDBILL00001").refunds[0].clone();
    let refund_time = (refund.requested_at + chrono::Duration::hours(8))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let refund_line = format!(
        "`{refund_time},`wx5c9a1e0b3d7f2a64,`1800780001,`{MERCHANT},`,`{first},`ORDBILL00001,\
         `{OPENID},`JSAPI,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`{},`RFBILL1,`10.00,`0.00,`ORIGINAL,\
         `SUCCESS,`境外话费充值 - 5000 нэгж,`{{\"orderNumber\":\"x\"}},`-0.06000,`0.60%,`0.00,`10.00,`",
        refund.refund_id,
    );
    let mut expected = [
        payment_line("ORDBILL00001", &first),
        payment_line("ORDBILL00002", &second),
        refund_line,
    ];
    // Sorted by time (to the second): the refund came after both payments.
    expected.sort_by_key(|line| line[1..20].to_owned());
    assert_eq!(lines[1..4], expected[..]);
    assert_eq!(lines[4], SUMMARY_HEADER);
    // 3 lines; 22.74 settled and ordered; 10.00 refunded; fees 0.06822 × 2 − 0.06.
    assert_eq!(lines[5], "`3,`22.74,`10.00,`0.00,`0.07644,`22.74,`10.00");

    // Every trade line has the header's 27 fields, each behind a backtick.
    for fields in trade_lines(&text) {
        assert_eq!(fields.len(), 27, "{fields:?}");
    }
}

#[tokio::test]
async fn the_refund_line_shows_the_refund_as_it_stands() {
    let sandbox = start("http://127.0.0.1:9").await;
    paid_order(&sandbox, "ORDBILL00003").await;
    wechat_respdata(
        &sandbox,
        "refund",
        &refund_request("ORDBILL00003", "RFBILL3", 1137),
    )
    .await;
    let day = paid_day(&sandbox, "ORDBILL00003");
    assert!(
        eventually(Duration::from_secs(5), || {
            sandbox.wechat_order("ORDBILL00003").unwrap().refunds[0].status == "SUCCESS"
        })
        .await
    );
    let text = download_ok(&sandbox, day).await;
    let refund = &trade_lines(&text)[1];
    assert_eq!(refund[9], "REFUND");
    assert_eq!(refund[19], "SUCCESS");
    assert_eq!(
        summary_line(&text),
        "`2,`11.37,`11.37,`0.00,`0.00000,`11.37,`11.37"
    );

    // SUCCESS and REFUND bills hold one kind each.
    let mut only = bill_request(day);
    only["bill_type"] = "SUCCESS".into();
    let success = wechat_respdata(&sandbox, "downloadbill", &only).await;
    let success = success.as_str().unwrap();
    assert_eq!(trade_lines(success).len(), 1);
    assert_eq!(trade_lines(success)[0][9], "SUCCESS");
    only["bill_type"] = "REFUND".into();
    let refunds = wechat_respdata(&sandbox, "downloadbill", &only).await;
    assert_eq!(trade_lines(refunds.as_str().unwrap())[0][9], "REFUND");
}

#[tokio::test]
async fn a_day_without_trades_has_no_bill() {
    let sandbox = start("http://127.0.0.1:9").await;
    // An order placed but never paid is no trade.
    place_order(&sandbox, "ORDBILLUNPAID").await;
    let refusal = download(&sandbox, china_today()).await.unwrap_err();
    assert_refused(&refusal, "No Bill Exist", "20002");
}

#[tokio::test]
async fn wrong_requests_are_refused_as_wechat_pay_would() {
    let sandbox = start("http://127.0.0.1:9").await;
    let today = china_today();
    let cases = [
        (
            json!({"sub_mch_id": "1900000109"}),
            "受理关系不存在",
            "NOAUTH",
        ),
        (
            json!({"bill_date": "2026-12-04"}),
            "data format error",
            "20001",
        ),
        (
            json!({"bill_date": "20261340"}),
            "data format error",
            "20001",
        ),
        (
            json!({"bill_date": (today + Days::new(1)).format("%Y%m%d").to_string()}),
            "data format error",
            "20001",
        ),
        (
            json!({"bill_date": (today - Days::new(100)).format("%Y%m%d").to_string()}),
            "data format error",
            "20001",
        ),
        (
            json!({"bill_type": "RECHARGE_REFUND"}),
            "invalid bill_type",
            "20001",
        ),
        (json!({"bill_date": null}), "missing parameter", "20001"),
    ];
    for (change, return_msg, error_code) in cases {
        let mut request = bill_request(today);
        for (key, value) in change.as_object().unwrap() {
            request[key] = value.clone();
        }
        let refusal = wechat_respdata(&sandbox, "downloadbill", &request).await;
        assert_refused(&refusal, return_msg, error_code);
    }
}

/// Paid orders of `day` at 12:00 China time, seeded.
fn history(day: NaiveDate, count: usize, prefix: &str) -> Vec<PaidOrder> {
    (0..count)
        .map(|n| PaidOrder {
            out_trade_no: format!("{prefix}{n:08}"),
            total_fee: 100 + (n as i64 % 5_000),
            transaction_id: format!("4200001234{}{n:010}", day.format("%Y%m%d")),
            time_end: format!(
                "{}12{:02}{:02}",
                day.format("%Y%m%d"),
                (n / 60) % 60,
                n % 60
            ),
            openid: OPENID.into(),
        })
        .collect()
}

#[tokio::test]
async fn with_platform_timing_a_day_is_served_from_ten_the_next_morning() {
    let mut config = SandboxConfig::for_tests("http://127.0.0.1:9");
    config.bills_ready = BillsReady::Platform;
    let sandbox = start_with(config).await;
    let today = china_today();
    let yesterday = today - Days::new(1);
    sandbox
        .seed_paid_orders(history(yesterday, 2, "YDAY"))
        .unwrap();
    paid_order(&sandbox, "ORDBILLTODAY").await;

    let refusal = download(&sandbox, today).await.unwrap_err();
    assert_refused(&refusal, "Bill Creating", "20002");

    let china_hour = (Utc::now() + chrono::Duration::hours(8)).hour();
    match download(&sandbox, yesterday).await {
        Ok(text) => {
            assert!(china_hour >= 10, "served before 10:00 China time");
            assert_eq!(trade_lines(&text).len(), 2);
        }
        Err(refusal) => {
            assert!(china_hour < 10, "not served at {china_hour}:xx China time");
            assert_refused(&refusal, "Bill Creating", "20002");
        }
    }
}

#[tokio::test]
async fn bill_faults_are_counted_and_named() {
    let sandbox = start("http://127.0.0.1:9").await;
    paid_order(&sandbox, "ORDBILLF0001").await;
    paid_order(&sandbox, "ORDBILLF0002").await;
    let day = paid_day(&sandbox, "ORDBILLF0001");
    let clean = download_ok(&sandbox, day).await;

    // billErrors: the platform fails the call, without respdata.
    put_faults(&sandbox, json!({"wechat": {"billErrors": 1}})).await;
    let envelope = wechat_call(&sandbox, "downloadbill", &bill_request(day)).await;
    assert_eq!(envelope["errcode"], -1, "{envelope}");
    assert!(envelope.get("respdata").is_none());
    assert_eq!(download_ok(&sandbox, day).await, clean);

    // billNotReady: N times "Bill Creating", then the bill.
    put_faults(&sandbox, json!({"wechat": {"billNotReady": 2}})).await;
    for _ in 0..2 {
        let refusal = download(&sandbox, day).await.unwrap_err();
        assert_refused(&refusal, "Bill Creating", "20002");
    }
    assert_eq!(download_ok(&sandbox, day).await, clean);

    // billMalformedLine: the first trade line's amount is garbled, once.
    put_faults(&sandbox, json!({"wechat": {"billMalformedLine": 1}})).await;
    let garbled = download_ok(&sandbox, day).await;
    assert_eq!(trade_lines(&garbled)[0][12], "11.37x");
    assert_eq!(trade_lines(&garbled)[1][12], "11.37");
    assert_eq!(summary_line(&garbled), summary_line(&clean));
    assert_eq!(download_ok(&sandbox, day).await, clean);

    // billTotalsOff: 应结订单总金额 0.01 yuan too high, once.
    put_faults(&sandbox, json!({"wechat": {"billTotalsOff": 1}})).await;
    let off = download_ok(&sandbox, day).await;
    assert_eq!(
        summary_line(&clean),
        "`2,`22.74,`0.00,`0.00,`0.13644,`22.74,`0.00"
    );
    assert_eq!(
        summary_line(&off),
        "`2,`22.75,`0.00,`0.00,`0.13644,`22.74,`0.00"
    );
    assert_eq!(trade_lines(&off), trade_lines(&clean));
    assert_eq!(download_ok(&sandbox, day).await, clean);

    // billDropOrders: absent while set; the summary adds up what is shown.
    put_faults(
        &sandbox,
        json!({"wechat": {"billDropOrders": ["ORDBILLF0001"]}}),
    )
    .await;
    for _ in 0..2 {
        let dropped = download_ok(&sandbox, day).await;
        let lines = trade_lines(&dropped);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0][6], "ORDBILLF0002");
        assert_eq!(
            summary_line(&dropped),
            "`1,`11.37,`0.00,`0.00,`0.06822,`11.37,`0.00"
        );
    }
    put_faults(
        &sandbox,
        json!({"wechat": {"billDropOrders": ["ORDBILLF0001", "ORDBILLF0002"]}}),
    )
    .await;
    assert_refused(
        &download(&sandbox, day).await.unwrap_err(),
        "No Bill Exist",
        "20002",
    );

    // billAlterOrders: the named order's line differs, in every field asked for.
    put_faults(
        &sandbox,
        json!({"wechat": {"billAlterOrders": [
            {"outTradeNo": "ORDBILLF0002", "totalFee": 1, "subMchId": "1900000109", "transactionId": "4200000000000000000000000000"}
        ]}}),
    )
    .await;
    let altered = download_ok(&sandbox, day).await;
    let lines = trade_lines(&altered);
    let line = lines.iter().find(|l| l[6] == "ORDBILLF0002").unwrap();
    assert_eq!(line[3], "1900000109");
    assert_eq!(line[5], "4200000000000000000000000000");
    assert_eq!((line[12].as_str(), line[24].as_str()), ("0.01", "0.01"));
    assert_eq!(
        summary_line(&altered),
        "`2,`11.38,`0.00,`0.00,`0.06828,`11.38,`0.00"
    );
    let untouched = lines.iter().find(|l| l[6] == "ORDBILLF0001").unwrap();
    assert_eq!(untouched[12], "11.37");
    // Only the bill lies: queryorder still tells the truth.
    let queried = wechat_respdata(
        &sandbox,
        "queryorder",
        &json!({"out_trade_no": "ORDBILLF0002", "sub_mch_id": MERCHANT}),
    )
    .await;
    assert_eq!(queried["total_fee"], 1137);

    // Counters read back as used up.
    let faults: Value = client()
        .get(format!("{}/sandbox/faults", sandbox.control_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["wechat"]["billNotReady"], 0);
    assert_eq!(faults["wechat"]["billAlterOrders"][0]["totalFee"], 1);
}

#[tokio::test]
async fn a_refund_made_outside_the_api_shows_everywhere_and_is_never_called_back() {
    let receiver = Receiver::start(0).await;
    let sandbox = start(&receiver.url).await;
    let transaction_id = paid_order(&sandbox, "ORDOUTSIDE01").await;
    paid_order(&sandbox, "ORDOUTSIDE02").await;
    let day = paid_day(&sandbox, "ORDOUTSIDE01");

    let control = |path: &str, body: Value| {
        client()
            .post(format!("{}{path}", sandbox.control_url()))
            .json(&body)
            .send()
    };
    let response = control(
        "/sandbox/wechat/refund-outside",
        json!({"outTradeNo": "ORDOUTSIDE01", "refundFee": 500}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let outside: Value = response.json().await.unwrap();
    assert_eq!(outside["refundFee"], 500);
    assert_eq!(outside["status"], "PROCESSING");
    assert_eq!(outside["outRefundNo"], outside["refundId"]);
    // The Rust helper does the same; an API refund on the other order, for comparison.
    let second = sandbox.refund_outside("ORDOUTSIDE01", 600).unwrap();
    assert_eq!(second.refund_fee, 600);
    wechat_respdata(
        &sandbox,
        "refund",
        &refund_request("ORDOUTSIDE02", "RFAPI2", 1137),
    )
    .await;

    // Both outside refunds succeed; the API refund's callback arrives meanwhile.
    assert!(
        eventually(Duration::from_secs(5), || {
            let outside_done = sandbox
                .wechat_order("ORDOUTSIDE01")
                .unwrap()
                .refunds
                .iter()
                .all(|refund| refund.status == "SUCCESS");
            let api_called_back = sandbox
                .callback_log()
                .iter()
                .any(|d| d.kind == CallbackKind::Refund && d.out_trade_no == "ORDOUTSIDE02");
            outside_done && api_called_back
        })
        .await
    );
    assert!(
        !sandbox
            .callback_log()
            .iter()
            .any(|d| d.out_trade_no == "ORDOUTSIDE01"),
        "{:?}",
        sandbox.callback_log()
    );

    let queried = wechat_respdata(
        &sandbox,
        "queryorder",
        &json!({"out_trade_no": "ORDOUTSIDE01", "sub_mch_id": MERCHANT}),
    )
    .await;
    assert_eq!(queried["trade_state"], "REFUND");
    let refunds = wechat_respdata(
        &sandbox,
        "queryrefund",
        &json!({"out_trade_no": "ORDOUTSIDE01", "sub_mch_id": MERCHANT}),
    )
    .await;
    assert_eq!(refunds["refund_count"], 2);
    assert_eq!(refunds["refund_fee_list"], json!([500, 600]));
    assert_eq!(refunds["refund_status_list"], json!(["SUCCESS", "SUCCESS"]));

    let text = download_ok(&sandbox, day).await;
    let refund_lines: Vec<_> = trade_lines(&text)
        .into_iter()
        .filter(|l| l[6] == "ORDOUTSIDE01" && l[9] == "REFUND")
        .collect();
    assert_eq!(refund_lines.len(), 2);
    assert!(refund_lines.iter().all(|l| l[5] == transaction_id));
    let mut refund_ids: Vec<&str> = refund_lines.iter().map(|l| l[14].as_str()).collect();
    refund_ids.sort_unstable();
    let mut expected_ids = vec![
        outside["refundId"].as_str().unwrap(),
        second.refund_id.as_str(),
    ];
    expected_ids.sort_unstable();
    assert_eq!(refund_ids, expected_ids);

    // Refused: unknown order, unpaid order, more than was paid.
    place_order(&sandbox, "ORDOUTSIDE03").await;
    for (body, status) in [
        (json!({"outTradeNo": "NOSUCHORDER", "refundFee": 1}), 404),
        (json!({"outTradeNo": "ORDOUTSIDE03", "refundFee": 1}), 409),
        (json!({"outTradeNo": "ORDOUTSIDE01", "refundFee": 38}), 409),
    ] {
        let response = control("/sandbox/wechat/refund-outside", body.clone())
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{body}");
    }
}

#[tokio::test]
async fn a_hundred_thousand_paid_orders_seed_and_bill_quickly() {
    let sandbox = start("http://127.0.0.1:9").await;
    let day = china_today() - Days::new(1);
    let orders = history(day, 100_000, "BULK");
    let expected_total: i64 = orders.iter().map(|o| o.total_fee).sum();

    let seeding = Instant::now();
    let response = client()
        .post(format!(
            "{}/sandbox/wechat/orders/bulk",
            sandbox.control_url()
        ))
        .json(&orders)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seeded: Value = response.json().await.unwrap();
    assert_eq!(seeded["seeded"], 100_000);
    let seeding = seeding.elapsed();

    let building = Instant::now();
    let text = download_ok(&sandbox, day).await;
    let building = building.elapsed();
    eprintln!("seeded 100,000 orders in {seeding:?}; bill downloaded in {building:?}");

    let lines = trade_lines(&text);
    assert_eq!(lines.len(), 100_000);
    assert!(
        lines.windows(2).all(|pair| pair[0][0] <= pair[1][0]),
        "sorted by time"
    );
    let summary = summary_line(&text);
    let settled = format!("{}.{:02}", expected_total / 100, expected_total % 100);
    assert!(
        summary.starts_with(&format!("`100000,`{settled},`0.00,")),
        "{summary}"
    );
    // Generous for an unoptimised build on a shared machine; a release build takes a
    // fraction of this.
    assert!(building < Duration::from_secs(5), "{building:?}");

    // All or none: one taken number refuses the whole batch.
    let again = history(day, 3, "BULKNEW");
    let mut batch = again.clone();
    batch.push(orders[0].clone());
    let response = client()
        .post(format!(
            "{}/sandbox/wechat/orders/bulk",
            sandbox.control_url()
        ))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    assert!(sandbox.wechat_order(&again[0].out_trade_no).is_none());

    let mut bad = again[0].clone();
    bad.time_end = "2026-12-04".into();
    assert!(sandbox.seed_paid_orders(vec![bad]).is_err());
    assert_eq!(sandbox.seed_paid_orders(again).unwrap(), 3);
    // Seeded orders are paid like any other.
    let queried = wechat_respdata(
        &sandbox,
        "queryorder",
        &json!({"out_trade_no": "BULKNEW00000000", "sub_mch_id": MERCHANT}),
    )
    .await;
    assert_eq!(queried["trade_state"], "SUCCESS");
}

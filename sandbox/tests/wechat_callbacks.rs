//! Paying, the payment and refund callbacks, and refunds over real HTTP.

mod common;

use std::time::Duration;

use common::*;
use sandbox::{CallbackKind, RefundStatus, SandboxError, TradeState};
use serde_json::{json, Value};

#[tokio::test]
async fn the_payment_callback_is_retried_until_a_top_level_errcode_zero() {
    let receiver = Receiver::start(2).await;
    let sandbox = start(&receiver.url).await;
    place_order(&sandbox, "ORDPAY000001").await;

    let transaction_id = sandbox.pay("ORDPAY000001").await.unwrap();
    assert_eq!(
        sandbox.wechat_order("ORDPAY000001").unwrap().trade_state,
        TradeState::Success
    );

    let delivered = eventually(Duration::from_secs(3), || {
        sandbox
            .callback_log()
            .iter()
            .any(|delivery| delivery.accepted)
    })
    .await;
    assert!(delivered, "log: {:#?}", sandbox.callback_log());

    let log = sandbox.callback_log();
    assert_eq!(log.len(), 3, "two refusals, then acceptance: {log:#?}");
    assert_eq!(
        log.iter().map(|d| d.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(!log[0].accepted, "a wrapped errcode is not acceptance");
    assert_eq!(log[0].http_status, Some(200));
    assert!(!log[1].accepted);
    assert_eq!(log[1].http_status, Some(500));
    assert!(log[2].accepted);
    assert!(log.iter().all(|d| d.kind == CallbackKind::Payment));

    let hits = receiver.hits();
    assert_eq!(hits.len(), 3);
    let hit = &hits[2];
    assert_eq!(hit.path, "/payment/callback/ORDPAY000001");
    assert_eq!(hit.wx_source.as_deref(), Some("wxpay"));
    let body = &hit.body;
    assert_eq!(body["returnCode"], "SUCCESS");
    assert_eq!(body["resultCode"], "SUCCESS");
    assert_eq!(body["subMchId"], MERCHANT);
    assert_eq!(body["outTradeNo"], "ORDPAY000001");
    assert_eq!(body["transactionId"], transaction_id.as_str());
    assert_eq!(body["totalFee"], 1137);
    assert_eq!(body["cashFee"], 1137);
    assert_eq!(body["subOpenid"], "oZp5x0aAbCdEfGhIjKlMnOpQrStU");
    assert_eq!(body["attach"], "{\"orderNumber\":\"x\"}");
    for field in [
        "appid",
        "mchId",
        "subAppid",
        "nonceStr",
        "openid",
        "isSubscribe",
        "subIsSubscribe",
        "tradeType",
        "bankType",
        "feeType",
        "timeEnd",
    ] {
        assert!(body[field].is_string(), "{field} in {body}");
    }

    // Nothing more arrives once accepted: the delivery is over, not merely paused.
    assert!(
        eventually(Duration::from_secs(30), || sandbox.callbacks_owed() == 0).await,
        "still delivering after acceptance"
    );
    assert_eq!(receiver.hits().len(), 3);
}

#[tokio::test]
async fn duplicates_arrive_concurrently_with_the_first_callback() {
    let receiver = Receiver::start(0).await;
    let sandbox = start(&receiver.url).await;
    let mut faults = sandbox.faults();
    faults.wechat.callback_duplicates = 2;
    sandbox.set_faults(faults);
    place_order(&sandbox, "ORDDUP000001").await;
    sandbox.pay("ORDDUP000001").await.unwrap();

    assert!(eventually(Duration::from_secs(2), || receiver.hits().len() == 3).await);
    let hits = receiver.hits();
    assert!(hits.iter().all(|hit| hit.body == hits[0].body));
    let mut copies: Vec<u32> = sandbox.callback_log().iter().map(|d| d.copy).collect();
    copies.sort();
    assert_eq!(copies, vec![0, 1, 2]);
}

#[tokio::test]
async fn the_callback_base_can_be_set_after_start() {
    let sandbox = start("http://127.0.0.1:9").await;
    let receiver = Receiver::start(0).await;
    sandbox.set_callback_base(receiver.url.clone());
    place_order(&sandbox, "ORDLATE00001").await;
    sandbox.pay("ORDLATE00001").await.unwrap();
    assert!(eventually(Duration::from_secs(2), || receiver.hits().len() == 1).await);
}

#[tokio::test]
async fn only_unpaid_orders_can_be_paid() {
    let sandbox = start("http://127.0.0.1:9").await;
    assert_eq!(
        sandbox.pay("ORDNOPE00001").await,
        Err(SandboxError::OrderNotFound("ORDNOPE00001".into()))
    );
    place_order(&sandbox, "ORDTWICE0001").await;
    let transaction_id = sandbox.pay("ORDTWICE0001").await.unwrap();
    assert_eq!(
        sandbox.pay("ORDTWICE0001").await,
        Err(SandboxError::AlreadyPaid {
            out_trade_no: "ORDTWICE0001".into(),
            transaction_id,
        })
    );
}

#[tokio::test]
async fn the_control_api_pays_and_shows_orders_and_callbacks() {
    let receiver = Receiver::start(0).await;
    let sandbox = start(&receiver.url).await;
    let control = sandbox.control_url();
    let http = client();
    place_order(&sandbox, "ORDCTRL00001").await;

    let paid = http
        .post(format!("{control}/sandbox/wechat/pay"))
        .json(&json!({"outTradeNo": "ORDCTRL00001"}))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    let paid: Value = paid.json().await.unwrap();
    assert_eq!(paid["transactionId"].as_str().unwrap().len(), 28);

    let again = http
        .post(format!("{control}/sandbox/wechat/pay"))
        .json(&json!({"outTradeNo": "ORDCTRL00001"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let unknown = http
        .post(format!("{control}/sandbox/wechat/pay"))
        .json(&json!({"outTradeNo": "ORDCTRL99999"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let order: Value = http
        .get(format!("{control}/sandbox/wechat/orders/ORDCTRL00001"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(order["tradeState"], "SUCCESS");
    assert_eq!(order["transactionId"], paid["transactionId"]);
    assert_eq!(order["containerPath"], "/payment/callback/ORDCTRL00001");

    assert!(eventually(Duration::from_secs(2), || receiver.hits().len() == 1).await);
    let log: Value = http
        .get(format!("{control}/sandbox/wechat/callbacks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log[0]["outTradeNo"], "ORDCTRL00001");
    assert_eq!(log[0]["kind"], "payment");
    assert_eq!(log[0]["httpStatus"], 200);
    assert_eq!(log[0]["accepted"], true);
}

#[tokio::test]
async fn a_payment_without_notification_is_paid_but_sends_no_callback() {
    let receiver = Receiver::start(0).await;
    let sandbox = start(&receiver.url).await;
    let control = sandbox.control_url();
    place_order(&sandbox, "ORDQUIET0001").await;

    let paid: Value = client()
        .post(format!("{control}/sandbox/wechat/pay"))
        .json(&json!({"outTradeNo": "ORDQUIET0001", "notify": false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paid["totalFee"], 1137);
    assert_eq!(paid["subMchId"], MERCHANT);
    let order = sandbox.wechat_order("ORDQUIET0001").unwrap();
    assert_eq!(order.trade_state, TradeState::Success);
    assert_eq!(
        order.transaction_id.as_deref(),
        paid["transactionId"].as_str()
    );

    // A notification would be owed from the moment the payment was answered, and logged
    // once delivered.
    assert!(
        eventually(Duration::from_secs(30), || sandbox.callbacks_owed() == 0).await,
        "a callback is being delivered"
    );
    assert!(receiver.hits().is_empty(), "{:?}", receiver.hits());
    assert!(sandbox.callback_log().is_empty());
}

fn refund_request(out_refund_no: &str, refund_fee: i64) -> Value {
    json!({
        "body": "refund",
        "out_trade_no": "ORDREFUND001",
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

#[tokio::test]
async fn refunds_are_idempotent_bounded_and_called_back() {
    let receiver = Receiver::start(0).await;
    let sandbox = start(&receiver.url).await;
    place_order(&sandbox, "ORDREFUND001").await;

    let unpaid = wechat_respdata(&sandbox, "refund", &refund_request("RF1", 1137)).await;
    assert_eq!(
        unpaid["result_code"], "FAIL",
        "an unpaid order cannot be refunded"
    );

    sandbox.pay("ORDREFUND001").await.unwrap();
    let accepted = wechat_respdata(&sandbox, "refund", &refund_request("RF1", 1000)).await;
    assert_eq!(accepted["result_code"], "SUCCESS", "{accepted}");
    assert_eq!(accepted["refund_fee"], 1000);
    let refund_id = accepted["refund_id"].clone();

    let repeated = wechat_respdata(&sandbox, "refund", &refund_request("RF1", 1000)).await;
    assert_eq!(
        repeated["refund_id"], refund_id,
        "same out_refund_no, same refund"
    );

    let too_much = wechat_respdata(&sandbox, "refund", &refund_request("RF2", 200)).await;
    assert_eq!(too_much["result_code"], "FAIL", "1000 + 200 > 1137");
    let mut wrong_total = refund_request("RF3", 100);
    wrong_total["total_fee"] = 1.into();
    let wrong_total = wechat_respdata(&sandbox, "refund", &wrong_total).await;
    assert_fails_with(&wrong_total, "PARAM_ERROR");

    let order = sandbox.wechat_order("ORDREFUND001").unwrap();
    assert_eq!(order.refunds.len(), 1);
    assert_eq!(order.trade_state, TradeState::Refund);

    assert!(
        eventually(Duration::from_secs(2), || receiver
            .hits()
            .iter()
            .any(|hit| hit.path == "/payment/refund-callback"))
        .await
    );
    let refund_hit = receiver
        .hits()
        .into_iter()
        .find(|hit| hit.path == "/payment/refund-callback")
        .unwrap();
    assert_eq!(refund_hit.body["refundStatus"], "SUCCESS");
    assert_eq!(refund_hit.body["outRefundNo"], "RF1");
    assert_eq!(refund_hit.body["refundFee"], 1000);
    assert_eq!(refund_hit.body["refundId"], refund_id);
    assert_eq!(
        sandbox.wechat_order("ORDREFUND001").unwrap().refunds[0].status,
        RefundStatus::Success
    );

    let queried = wechat_respdata(
        &sandbox,
        "queryrefund",
        &json!({"out_trade_no": "ORDREFUND001", "sub_mch_id": MERCHANT}),
    )
    .await;
    assert_eq!(queried["result_code"], "SUCCESS");
    assert_eq!(queried["refund_count"], 1);
    assert_eq!(queried["out_refund_no_list"], json!(["RF1"]));
    assert_eq!(queried["refund_status_list"], json!(["SUCCESS"]));
    assert_eq!(queried["refund_fee_list"], json!([1000]));
    assert_eq!(queried["refund_status_0"], "SUCCESS");
    assert_eq!(queried["trade_state"], Value::Null);

    // A refund accepted again after it succeeded is still the same refund, not a second one.
    let after = wechat_respdata(&sandbox, "refund", &refund_request("RF1", 1000)).await;
    assert_eq!(after["refund_id"], refund_id);
    assert!(
        eventually(Duration::from_secs(30), || sandbox.callbacks_owed() == 0).await,
        "a refund callback is being delivered"
    );
    let refund_callbacks = receiver
        .hits()
        .iter()
        .filter(|hit| hit.path == "/payment/refund-callback")
        .count();
    assert_eq!(refund_callbacks, 1);
}

#[tokio::test]
async fn queryrefund_without_refunds_says_so() {
    let sandbox = start("http://127.0.0.1:9").await;
    place_order(&sandbox, "ORDNOREFUND1").await;
    let respdata = wechat_respdata(
        &sandbox,
        "queryrefund",
        &json!({"out_trade_no": "ORDNOREFUND1", "sub_mch_id": MERCHANT}),
    )
    .await;
    assert_fails_with(&respdata, "REFUNDNOTEXIST");
}

//! unifiedOrder, queryorder and closeorder over real HTTP.

mod common;

use std::time::Duration;

use common::*;
use sandbox::{SandboxConfig, TradeState, UnifiedOrderError};
use serde_json::{json, Value};

#[tokio::test]
async fn unified_order_returns_what_request_payment_needs() {
    let sandbox = start("http://127.0.0.1:9").await;
    let respdata = place_order(&sandbox, "ORD1728546789123abcd").await;

    assert_eq!(respdata["return_code"], "SUCCESS");
    assert_eq!(respdata["sub_mch_id"], MERCHANT);
    assert_eq!(respdata["trade_type"], "JSAPI");
    let prepay_id = respdata["prepay_id"].as_str().unwrap();
    assert!(prepay_id.starts_with("wx"));
    let payment = &respdata["payment"];
    assert_eq!(payment["package"], format!("prepay_id={prepay_id}"));
    for field in ["appId", "timeStamp", "nonceStr", "signType", "paySign"] {
        assert!(payment[field].is_string(), "payment.{field} in {payment}");
    }

    let order = sandbox.wechat_order("ORD1728546789123abcd").unwrap();
    assert_eq!(order.trade_state, TradeState::NotPay);
    assert_eq!(order.total_fee, 1137);
    assert_eq!(
        order.container_path,
        "/payment/callback/ORD1728546789123abcd"
    );
    assert_eq!(order.prepay_id, prepay_id);
}

#[tokio::test]
async fn unparseable_json_is_refused_by_the_platform() {
    let sandbox = start("http://127.0.0.1:9").await;
    let response = client()
        .post(format!("{}/_/pay/unifiedOrder", sandbox.wechat_url()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let envelope: Value = response.json().await.unwrap();
    assert_eq!(envelope["errcode"], 40097);
    assert!(envelope["errmsg"].as_str().unwrap().contains("invalid"));
    assert!(envelope.get("respdata").is_none());
}

#[tokio::test]
async fn malformed_orders_are_param_errors() {
    let sandbox = start("http://127.0.0.1:9").await;
    let cases: Vec<(&str, Value)> = vec![
        ("total_fee as a string", json!({"total_fee": "1137"})),
        ("total_fee as a float", json!({"total_fee": 11.5})),
        ("total_fee zero", json!({"total_fee": 0})),
        ("mch_id sent", json!({"mch_id": "1800780001"})),
        ("appid sent", json!({"appid": "wx123"})),
        ("sign sent", json!({"sign": "ABC"})),
        ("sign_type sent", json!({"sign_type": "MD5"})),
        ("out_trade_no too short", json!({"out_trade_no": "ab12"})),
        (
            "out_trade_no too long",
            json!({"out_trade_no": "A".repeat(33)}),
        ),
        (
            "out_trade_no with a dot",
            json!({"out_trade_no": "ORD.12345"}),
        ),
        ("trade_type NATIVE", json!({"trade_type": "NATIVE"})),
        ("callback_type 1", json!({"callback_type": 1})),
        (
            "path without slash",
            json!({"container": {"service": "s", "path": "callback"}}),
        ),
    ];
    for (case, change) in cases {
        let mut request = order_request("ORDPARAM0001");
        for (key, value) in change.as_object().unwrap() {
            request[key] = value.clone();
        }
        let respdata = wechat_respdata(&sandbox, "unifiedOrder", &request).await;
        assert_eq!(respdata["result_code"], "FAIL", "{case}: {respdata}");
        assert_eq!(respdata["err_code"], "PARAM_ERROR", "{case}: {respdata}");
    }
    assert!(sandbox.wechat_order("ORDPARAM0001").is_none());
}

#[tokio::test]
async fn missing_fields_are_lack_params() {
    let sandbox = start("http://127.0.0.1:9").await;
    for field in [
        "body",
        "openid",
        "out_trade_no",
        "total_fee",
        "spbill_create_ip",
        "env_id",
        "sub_mch_id",
        "trade_type",
        "container",
    ] {
        let mut request = order_request("ORDLACK00001");
        request.as_object_mut().unwrap().remove(field);
        let respdata = wechat_respdata(&sandbox, "unifiedOrder", &request).await;
        assert_fails_with(&respdata, "LACK_PARAMS");
    }
}

#[tokio::test]
async fn another_merchant_has_no_authorisation() {
    let sandbox = start("http://127.0.0.1:9").await;
    let mut request = order_request("ORDNOAUTH001");
    request["sub_mch_id"] = "1999999999".into();
    let respdata = wechat_respdata(&sandbox, "unifiedOrder", &request).await;
    assert_fails_with(&respdata, "NOAUTH");
    assert_eq!(respdata["err_code_des"], "受理关系不存在");
}

#[tokio::test]
async fn placing_the_same_order_again_follows_its_state() {
    let sandbox = start("http://127.0.0.1:9").await;
    let first = place_order(&sandbox, "ORDAGAIN0001").await;
    let second = place_order(&sandbox, "ORDAGAIN0001").await;
    assert_eq!(first["prepay_id"], second["prepay_id"]);

    let mut other_fee = order_request("ORDAGAIN0001");
    other_fee["total_fee"] = 1.into();
    let respdata = wechat_respdata(&sandbox, "unifiedOrder", &other_fee).await;
    assert_fails_with(&respdata, "OUT_TRADE_NO_USED");

    let mut other_payer = order_request("ORDAGAIN0001");
    other_payer["openid"] = "oSomebodyElse".into();
    let respdata = wechat_respdata(&sandbox, "unifiedOrder", &other_payer).await;
    assert_fails_with(&respdata, "OUT_TRADE_NO_USED");

    sandbox.pay("ORDAGAIN0001").await.unwrap();
    let respdata = wechat_respdata(&sandbox, "unifiedOrder", &order_request("ORDAGAIN0001")).await;
    assert_fails_with(&respdata, "ORDERPAID");

    place_order(&sandbox, "ORDAGAIN0002").await;
    let close = json!({"out_trade_no": "ORDAGAIN0002", "sub_mch_id": MERCHANT});
    let closed = wechat_respdata(&sandbox, "closeorder", &close).await;
    assert_eq!(closed["result_code"], "SUCCESS", "{closed}");
    let respdata = wechat_respdata(&sandbox, "unifiedOrder", &order_request("ORDAGAIN0002")).await;
    assert_fails_with(&respdata, "ORDERCLOSED");
}

#[tokio::test]
async fn queryorder_reports_every_state() {
    let sandbox = start("http://127.0.0.1:9").await;
    let query = |no: &str| json!({"out_trade_no": no, "sub_mch_id": MERCHANT});

    let unknown = wechat_respdata(&sandbox, "queryorder", &query("ORDUNKNOWN01")).await;
    assert_fails_with(&unknown, "ORDERNOTEXIST");

    place_order(&sandbox, "ORDQUERY0001").await;
    let unpaid = wechat_respdata(&sandbox, "queryorder", &query("ORDQUERY0001")).await;
    assert_eq!(unpaid["result_code"], "SUCCESS");
    assert_eq!(unpaid["trade_state"], "NOTPAY");
    assert!(unpaid.get("transaction_id").is_none());

    let transaction_id = sandbox.pay("ORDQUERY0001").await.unwrap();
    let paid = wechat_respdata(&sandbox, "queryorder", &query("ORDQUERY0001")).await;
    assert_eq!(paid["trade_state"], "SUCCESS");
    assert_eq!(paid["trade_state_desc"], "支付成功");
    assert_eq!(paid["transaction_id"], transaction_id.as_str());
    assert_eq!(paid["total_fee"], 1137);
    assert_eq!(paid["cash_fee"], 1137);
    assert_eq!(paid["out_trade_no"], "ORDQUERY0001");
    assert_eq!(paid["sub_openid"], "oZp5x0aAbCdEfGhIjKlMnOpQrStU");
    assert!(paid["openid"].is_string());
    assert_eq!(paid["attach"], "{\"orderNumber\":\"x\"}");
    let time_end = paid["time_end"].as_str().unwrap();
    assert_eq!(time_end.len(), 14);
    assert!(time_end.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(transaction_id.len(), 28);

    let wrong_merchant = json!({"out_trade_no": "ORDQUERY0001", "sub_mch_id": "1999999999"});
    let refused = wechat_respdata(&sandbox, "queryorder", &wrong_merchant).await;
    assert_fails_with(&refused, "NOAUTH");
}

#[tokio::test]
async fn closing_follows_the_platform_rules() {
    let sandbox = start("http://127.0.0.1:9").await;
    let close = |no: &str| json!({"out_trade_no": no, "sub_mch_id": MERCHANT});

    place_order(&sandbox, "ORDCLOSE0001").await;
    sandbox.pay("ORDCLOSE0001").await.unwrap();
    let paid = wechat_respdata(&sandbox, "closeorder", &close("ORDCLOSE0001")).await;
    assert_fails_with(&paid, "ORDERPAID");

    place_order(&sandbox, "ORDCLOSE0002").await;
    let closed = wechat_respdata(&sandbox, "closeorder", &close("ORDCLOSE0002")).await;
    assert_eq!(closed["result_code"], "SUCCESS");
    let again = wechat_respdata(&sandbox, "closeorder", &close("ORDCLOSE0002")).await;
    assert_fails_with(&again, "ORDERCLOSED");
    let queried = wechat_respdata(
        &sandbox,
        "queryorder",
        &json!({"out_trade_no": "ORDCLOSE0002", "sub_mch_id": MERCHANT}),
    )
    .await;
    assert_eq!(queried["trade_state"], "CLOSED");
    assert!(sandbox.pay("ORDCLOSE0002").await.is_err());

    let unknown = wechat_respdata(&sandbox, "closeorder", &close("ORDCLOSE9999")).await;
    assert_fails_with(&unknown, "ORDERNOTEXIST");
}

#[tokio::test]
async fn a_young_order_cannot_be_closed_yet() {
    let mut config = SandboxConfig::for_tests("http://127.0.0.1:9");
    config.close_min_age = Duration::from_secs(300);
    let sandbox = start_with(config).await;
    place_order(&sandbox, "ORDYOUNG0001").await;
    let respdata = wechat_respdata(
        &sandbox,
        "closeorder",
        &json!({"out_trade_no": "ORDYOUNG0001", "sub_mch_id": MERCHANT}),
    )
    .await;
    assert_fails_with(&respdata, "SYSTEMERROR");
    assert_eq!(
        sandbox.wechat_order("ORDYOUNG0001").unwrap().trade_state,
        TradeState::NotPay
    );
}

#[tokio::test]
async fn injected_unified_order_errors_are_used_once_each() {
    let sandbox = start("http://127.0.0.1:9").await;
    let mut faults = sandbox.faults();
    faults.wechat.unified_order_errors = vec![
        UnifiedOrderError {
            errcode: Some(-1),
            err_code: None,
            err_code_des: Some("system error".into()),
        },
        UnifiedOrderError {
            errcode: None,
            err_code: Some("SYSTEMERROR".into()),
            err_code_des: None,
        },
    ];
    sandbox.set_faults(faults);

    let platform = wechat_call(&sandbox, "unifiedOrder", &order_request("ORDFAULT0001")).await;
    assert_eq!(platform["errcode"], -1);
    assert!(platform.get("respdata").is_none());
    let business = wechat_respdata(&sandbox, "unifiedOrder", &order_request("ORDFAULT0001")).await;
    assert_fails_with(&business, "SYSTEMERROR");
    place_order(&sandbox, "ORDFAULT0001").await;
}

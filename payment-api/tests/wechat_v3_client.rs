//! The APIv3 client against a small WeChat Pay of this test's own that checks our
//! `Authorization` and signs its answers: what the client believes and what it refuses.
//! (The full protocol, with notifications, is the sandbox's.)

use std::sync::Arc;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    KeyPair, RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::Utc;
use payment_api::wechat::v3::{V3Config, WechatPayV3};
use payment_api::wechat::{CloseOutcome, WechatError};
use serde_json::{json, Value};
use shared::config::Settings;
use shared::money::Fen;
use shared::order::{OpenId, OrderNumber, PaymentStatus};

const MCHID: &str = "1900007291";
const APPID: &str = "wxd678efh567hg6787";
const PUB_KEY_ID: &str = "PUB_KEY_ID_0119000072912024";

struct Keys {
    merchant: RsaKeyPair,
    wechat: RsaKeyPair,
    stranger: RsaKeyPair,
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = BASE64.encode(der);
    let lines: Vec<String> = body
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn sign(key: &RsaKeyPair, message: &[u8]) -> String {
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        message,
        &mut signature,
    )
    .unwrap();
    BASE64.encode(signature)
}

/// The test's WeChat Pay: checks our signature, answers by order number.
async fn wechat_pay(State(keys): State<Arc<Keys>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let path_and_query = parts.uri.path_and_query().unwrap().as_str().to_owned();
    let signed_by = |key: &RsaKeyPair, status: StatusCode, answer: Vec<u8>| {
        let (timestamp, nonce) = (Utc::now().timestamp().to_string(), "n0nce");
        let mut message = format!("{timestamp}\n{nonce}\n").into_bytes();
        message.extend_from_slice(&answer);
        message.push(b'\n');
        Response::builder()
            .status(status)
            .header("Wechatpay-Timestamp", &timestamp)
            .header("Wechatpay-Nonce", nonce)
            .header("Wechatpay-Serial", PUB_KEY_ID)
            .header("Wechatpay-Signature", sign(key, &message))
            .body(Body::from(answer))
            .unwrap()
    };
    let signed = |status: StatusCode, answer: Value| {
        let bytes = if answer.is_null() {
            Vec::new()
        } else {
            answer.to_string().into_bytes()
        };
        signed_by(&keys.wechat, status, bytes)
    };
    if !authorized(&keys, &parts.method, &path_and_query, &parts.headers, &body) {
        return signed(
            StatusCode::UNAUTHORIZED,
            json!({"code": "SIGN_ERROR", "message": "签名错误"}),
        );
    }
    let order = parts.uri.path().split('/').nth(5).unwrap_or("").to_owned();
    let transaction = |state: &str| {
        json!({"mchid": MCHID, "appid": APPID, "out_trade_no": order, "transaction_id": "4200000001",
               "trade_state": state, "success_time": "2026-12-04T10:00:00+08:00",
               "amount": {"total": 2000, "currency": "CNY"}, "payer": {"openid": "o1"}})
    };
    match (parts.method.as_str(), parts.uri.path()) {
        ("POST", "/v3/pay/transactions/jsapi") => {
            let sent: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                (sent["mchid"].as_str(), sent["appid"].as_str()),
                (Some(MCHID), Some(APPID))
            );
            assert_eq!(sent["amount"], json!({"total": 2000, "currency": "CNY"}));
            assert_eq!(sent["payer"]["openid"], "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
            assert_eq!(sent["notify_url"], "http://127.0.0.1:1/payment/notify");
            signed(
                StatusCode::OK,
                json!({"prepay_id": "wx26112221580621e9b071c00d9e093b0000"}),
            )
        }
        (_, path) if path.ends_with("/close") => signed(StatusCode::NO_CONTENT, Value::Null),
        _ if order.starts_with("ORDUNSIGNED") => {
            Response::new(Body::from(transaction("SUCCESS").to_string()))
        }
        _ if order.starts_with("ORDFORGED") => signed_by(
            &keys.stranger,
            StatusCode::OK,
            transaction("SUCCESS").to_string().into_bytes(),
        ),
        _ if order.starts_with("ORDMISSING") => signed(
            StatusCode::NOT_FOUND,
            json!({"code": "ORDER_NOT_EXIST", "message": "订单不存在"}),
        ),
        _ if order.starts_with("ORDPAID") => signed(StatusCode::OK, transaction("SUCCESS")),
        _ => signed(StatusCode::OK, transaction("NOTPAY")),
    }
}

/// `Authorization` as WeChat reads it: the merchant's signature over the five lines.
fn authorized(
    keys: &Keys,
    method: &axum::http::Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> bool {
    let Some(params) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("WECHATPAY2-SHA256-RSA2048 "))
    else {
        return false;
    };
    let field = |name: &str| {
        params
            .split(',')
            .find_map(|p| p.strip_prefix(&format!("{name}=\"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_default()
            .to_owned()
    };
    if field("mchid") != MCHID || field("serial_no") != "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C" {
        return false;
    }
    let mut message = format!(
        "{method}\n{path_and_query}\n{}\n{}\n",
        field("timestamp"),
        field("nonce_str")
    )
    .into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    let Ok(signature) = BASE64.decode(field("signature")) else {
        return false;
    };
    UnparsedPublicKey::new(
        &RSA_PKCS1_2048_8192_SHA256,
        keys.merchant.public_key().as_ref(),
    )
    .verify(&message, &signature)
    .is_ok()
}

struct Setup {
    client: WechatPayV3,
    _public_key_file: TempFile,
}

struct TempFile(std::path::PathBuf);
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn setup(signing_key: Option<&RsaKeyPair>) -> Setup {
    let generate = || RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let keys = Arc::new(Keys {
        merchant: generate(),
        wechat: generate(),
        stranger: generate(),
    });
    let app = axum::Router::new()
        .fallback(wechat_pay)
        .with_state(keys.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let public_key = AsDer::<PublicKeyX509Der>::as_der(keys.wechat.public_key()).unwrap();
    let file = std::env::temp_dir().join(format!(
        "elife-v3-client-{}-{}.pem",
        std::process::id(),
        base.replace([':', '/', '.'], "")
    ));
    std::fs::write(&file, pem("PUBLIC KEY", public_key.as_ref())).unwrap();
    let merchant_private =
        AsDer::<Pkcs8V1Der>::as_der(signing_key.unwrap_or(&keys.merchant)).unwrap();
    let merchant_pem = pem("PRIVATE KEY", merchant_private.as_ref());
    let settings = Settings::from_pairs([
        ("APP_ENV", "development"),
        ("WECHAT_APP_ID", APPID),
        ("WECHAT_MCH_ID", MCHID),
        (
            "WECHAT_MERCHANT_SERIAL",
            "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C",
        ),
        ("WECHAT_MERCHANT_PRIVATE_KEY", merchant_pem.as_str()),
        ("WECHAT_API_V3_KEY", "0123456789abcdefghijABCDEFGHIJkl"),
        ("WECHAT_PAY_PUBLIC_KEY_FILE", file.to_str().unwrap()),
        ("WECHAT_PAY_PUBLIC_KEY_ID", PUB_KEY_ID),
        ("WECHAT_NOTIFY_URL", "http://127.0.0.1:1/payment/notify"),
        ("WECHAT_PAY_API_BASE", base.as_str()),
    ]);
    Setup {
        client: WechatPayV3::new(V3Config::from_settings(&settings).unwrap()).unwrap(),
        _public_key_file: TempFile(file),
    }
}

fn order(prefix: &str) -> OrderNumber {
    OrderNumber::parse(&format!("{prefix}1700000000000")).unwrap()
}

#[tokio::test]
async fn a_prepay_is_signed_and_returns_what_wx_request_payment_takes() {
    let s = setup(None).await;
    let prepaid = s
        .client
        .jsapi_prepay(
            &order("ORDNEW"),
            &OpenId::parse("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o").unwrap(),
            Fen::new(2000).unwrap(),
            "话费充值",
            "a1",
            Utc::now() + chrono::Duration::minutes(30),
        )
        .await
        .unwrap();
    assert_eq!(prepaid.prepay_id, "wx26112221580621e9b071c00d9e093b0000");
    assert_eq!(
        prepaid.payment["package"],
        "prepay_id=wx26112221580621e9b071c00d9e093b0000"
    );
    assert_eq!(prepaid.payment["signType"], "RSA");
}

#[tokio::test]
async fn queries_believe_only_what_wechat_signed() {
    let s = setup(None).await;
    let paid = s.client.query_order(&order("ORDPAID")).await.unwrap();
    assert_eq!(
        (paid.status, paid.total_fee),
        (PaymentStatus::Paid, Some(2000))
    );

    for forged in ["ORDUNSIGNED", "ORDFORGED"] {
        match s.client.query_order(&order(forged)).await {
            Err(WechatError::Platform(why)) => {
                assert!(why.contains("not from WeChat Pay"), "{why}")
            }
            other => panic!("{forged}: {other:?}"),
        }
    }
    match s.client.query_order(&order("ORDMISSING")).await {
        Err(WechatError::Business { code, .. }) => assert_eq!(code, "ORDERNOTEXIST"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn close_answers_already_paid_when_the_order_was_paid() {
    let s = setup(None).await;
    assert_eq!(
        s.client.close_order(&order("ORDOPEN")).await.unwrap(),
        CloseOutcome::Closed
    );
    assert_eq!(
        s.client.close_order(&order("ORDPAID")).await.unwrap(),
        CloseOutcome::AlreadyPaid
    );
}

#[tokio::test]
async fn a_request_signed_with_another_key_is_refused() {
    let other = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let s = setup(Some(&other)).await;
    match s.client.query_order(&order("ORDPAID")).await {
        Err(WechatError::Business { code, .. }) => assert_eq!(code, "SIGN_ERROR"),
        other => panic!("{other:?}"),
    }
}

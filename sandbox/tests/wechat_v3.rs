//! WeChat Pay APIv3 against the simulator, through a minimal client written here from the
//! contract (aws-lc-rs only): signed requests, verified answers, decrypted notifications.

mod common;

use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine as _;
use common::eventually;
use sandbox::{CallbackKind, Faults, Sandbox, SandboxConfig, V3Merchant, V3Signer};
use serde_json::{json, Value};

const MCHID: &str = "1712734762";
const APPID: &str = "wx8b3f0d2e6a1c9754";
const SERIAL: &str = "3775B6A45ACD588826D15E583A95F5DD00112233";
const API_V3_KEY: &str = "0123456789abcdefghijklmnopqrstuv";
const OPENID: &str = "oZp5x0aAbCdEfGhIjKlMnOpQrStU";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = b64(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn pem_der(text: &str) -> Vec<u8> {
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    unb64(&body)
}

fn sign(key: &RsaKeyPair, message: &[u8]) -> String {
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        message,
        &mut signature,
    )
    .unwrap();
    b64(&signature)
}

fn verifies(public_key_der: &[u8], message: &[u8], signature: &str) -> bool {
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature) else {
        return false;
    };
    signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public_key_der)
        .verify(message, &signature)
        .is_ok()
}

/// `timestamp\nnonce\nbody\n`, as WeChat signs answers and notifications.
fn wechat_message(headers: &reqwest::header::HeaderMap, body: &[u8]) -> Option<(Vec<u8>, String)> {
    let get = |name: &str| Some(headers.get(name)?.to_str().ok()?.to_owned());
    let mut message = format!(
        "{}\n{}\n",
        get("wechatpay-timestamp")?,
        get("wechatpay-nonce")?
    )
    .into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    Some((message, get("wechatpay-signature")?))
}

fn decrypt(resource: &Value) -> Value {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, API_V3_KEY.as_bytes()).unwrap());
    let nonce =
        Nonce::try_assume_unique_for_key(resource["nonce"].as_str().unwrap().as_bytes()).unwrap();
    let mut data = unb64(resource["ciphertext"].as_str().unwrap());
    let aad = resource["associated_data"].as_str().unwrap();
    let plain = key
        .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut data)
        .unwrap();
    serde_json::from_slice(plain).unwrap()
}

/// The merchant side: its key pair, and the simulator's published public key.
struct Client {
    base: String,
    key: RsaKeyPair,
    mchid: String,
    wechat_public_key: Vec<u8>,
    http: reqwest::Client,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn signature_verifies(&self, public_key_der: &[u8]) -> bool {
        wechat_message(&self.headers, &self.body)
            .is_some_and(|(message, signature)| verifies(public_key_der, &message, &signature))
    }
}

impl Client {
    async fn call(&self, method: &str, target: &str, body: Option<&Value>) -> Answer {
        self.call_signed_by(&self.key, 0, method, target, body, &[])
            .await
    }

    async fn call_signed_by(
        &self,
        key: &RsaKeyPair,
        age_secs: i64,
        method: &str,
        target: &str,
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let timestamp = chrono::Utc::now().timestamp() - age_secs;
        let nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS";
        let message = format!("{method}\n{target}\n{timestamp}\n{nonce}\n{body}\n");
        let authorization = format!(
            "WECHATPAY2-SHA256-RSA2048 mchid=\"{}\",nonce_str=\"{nonce}\",signature=\"{}\",timestamp=\"{timestamp}\",serial_no=\"{SERIAL}\"",
            self.mchid,
            sign(key, message.as_bytes())
        );
        let url = if target.starts_with("http") {
            target.to_owned()
        } else {
            format!("{}{target}", self.base)
        };
        let mut request = self
            .http
            .request(method.parse().unwrap(), &url)
            .header("authorization", authorization)
            .header("accept", "application/json");
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        if method == "POST" {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap().to_vec(),
        }
    }
}

/// Stands in for our notification endpoint: records every request as received (raw
/// bytes, headers) and answers the scripted statuses, then 204.
#[derive(Clone)]
struct Inbox {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

#[derive(Clone, Debug)]
struct Hit {
    path: String,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
    at: Instant,
}

impl Inbox {
    async fn start(script: Vec<u16>) -> Inbox {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script));
        let recorded = hits.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let recorded = recorded.clone();
                let script = script.clone();
                async move {
                    recorded.lock().unwrap().push(Hit {
                        path: uri.path().to_owned(),
                        headers,
                        body: body.to_vec(),
                        at: Instant::now(),
                    });
                    let status = {
                        let mut script = script.lock().unwrap();
                        if script.is_empty() {
                            204
                        } else {
                            script.remove(0)
                        }
                    };
                    let status = axum::http::StatusCode::from_u16(status).unwrap();
                    if status.is_success() {
                        (status, String::new())
                    } else {
                        (status, r#"{"code":"FAIL","message":"失败"}"#.to_owned())
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Inbox { url, hits }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize, within: Duration) -> Vec<Hit> {
        assert!(
            eventually(within, || self.hits().len() >= count).await,
            "expected {count} notifications, got {:?}",
            self.hits()
        );
        self.hits()
    }
}

async fn setup(inbox: &Inbox) -> (Sandbox, Client) {
    let sandbox = Sandbox::start(SandboxConfig::for_tests(inbox.url.clone()))
        .await
        .unwrap();
    let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let public_pem = pem("PUBLIC KEY", key.public_key().as_der().unwrap().as_ref());
    sandbox
        .register_v3_merchant(V3Merchant {
            mchid: MCHID.into(),
            appid: APPID.into(),
            sp_mchid: None,
            sp_appid: None,
            merchant_serial: SERIAL.into(),
            merchant_public_key_pem: public_pem,
            api_v3_key: API_V3_KEY.into(),
        })
        .unwrap();
    let client = Client {
        base: sandbox.wechat_url(),
        key,
        mchid: MCHID.into(),
        wechat_public_key: pem_der(&sandbox.wechat_pay_public_key_pem()),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    };
    (sandbox, client)
}

fn prepay_body(inbox: &Inbox, out_trade_no: &str) -> Value {
    json!({
        "appid": APPID,
        "mchid": MCHID,
        "description": "境外话费充值 - 5000 нэгж",
        "out_trade_no": out_trade_no,
        "notify_url": format!("{}/payment/notify", inbox.url),
        "attach": "{\"orderNumber\":\"x\"}",
        "amount": {"total": 1137, "currency": "CNY"},
        "payer": {"openid": OPENID},
    })
}

async fn prepay(client: &Client, inbox: &Inbox, out_trade_no: &str) -> Answer {
    let answer = client
        .call(
            "POST",
            "/v3/pay/transactions/jsapi",
            Some(&prepay_body(inbox, out_trade_no)),
        )
        .await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    answer
}

#[tokio::test]
async fn a_signed_prepay_succeeds_and_its_answer_verifies_with_the_published_key() {
    let inbox = Inbox::start(vec![]).await;
    let (sandbox, client) = setup(&inbox).await;
    let answer = prepay(&client, &inbox, "ORDV3PREPAY1").await;
    assert!(answer.json()["prepay_id"]
        .as_str()
        .unwrap()
        .starts_with("wx"));
    assert_eq!(
        answer.headers["wechatpay-serial"],
        sandbox.wechat_pay_public_key_id().as_str()
    );
    assert!(sandbox
        .wechat_pay_public_key_id()
        .starts_with("PUB_KEY_ID_"));
    assert!(answer.signature_verifies(&client.wechat_public_key));
    // The signature covers these bytes exactly.
    let mut altered = answer.body.clone();
    altered.push(b' ');
    assert!(
        !wechat_message(&answer.headers, &altered).is_some_and(|(m, s)| verifies(
            &client.wechat_public_key,
            &m,
            &s
        ))
    );

    let order = sandbox.wechat_order("ORDV3PREPAY1").unwrap();
    assert_eq!(order.protocol, sandbox::Protocol::ApiV3);
    assert_eq!(order.total_fee, 1137);
    assert_eq!(
        sandbox.api_calls().last().unwrap().path,
        "/v3/pay/transactions/jsapi"
    );
}

#[tokio::test]
async fn a_wrong_signature_is_401_sign_error() {
    let inbox = Inbox::start(vec![]).await;
    let (sandbox, client) = setup(&inbox).await;
    let stranger = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let body = prepay_body(&inbox, "ORDV3SIGN001");
    let path = "/v3/pay/transactions/jsapi";
    for (key, age) in [(&stranger, 0), (&client.key, 6 * 60)] {
        let answer = client
            .call_signed_by(key, age, "POST", path, Some(&body), &[])
            .await;
        assert_eq!(answer.status, 401);
        assert_eq!(answer.json()["code"], "SIGN_ERROR");
        assert!(answer.json()["message"].is_string());
    }
    let unsigned = client
        .http
        .post(format!("{}{path}", client.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    assert!(sandbox.wechat_order("ORDV3SIGN001").is_none());

    // The signed path includes the query string.
    let mut tampered = Client { ..client };
    tampered.mchid = "1900000001".into();
    let answer = tampered
        .call(
            "GET",
            "/v3/pay/transactions/out-trade-no/ORDV3SIGN001?mchid=1712734762",
            None,
        )
        .await;
    assert_eq!(answer.json()["code"], "SIGN_ERROR");
}

/// One change to a valid prepay body.
type Change = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn what_wechat_validates_is_refused_with_its_codes() {
    let inbox = Inbox::start(vec![]).await;
    let (_sandbox, client) = setup(&inbox).await;
    let path = "/v3/pay/transactions/jsapi";
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "appid",
            Box::new(|b| b["appid"] = "wx0000000000000000".into()),
            "APPID_MCHID_NOT_MATCH",
        ),
        (
            "mchid",
            Box::new(|b| b["mchid"] = "1900000001".into()),
            "APPID_MCHID_NOT_MATCH",
        ),
        (
            "total as text",
            Box::new(|b| b["amount"]["total"] = "1137".into()),
            "PARAM_ERROR",
        ),
        (
            "total as float",
            Box::new(|b| b["amount"]["total"] = json!(11.37)),
            "PARAM_ERROR",
        ),
        (
            "total zero",
            Box::new(|b| b["amount"]["total"] = json!(0)),
            "PARAM_ERROR",
        ),
        (
            "currency",
            Box::new(|b| b["amount"]["currency"] = "USD".into()),
            "PARAM_ERROR",
        ),
        (
            "query in notify_url",
            Box::new(|b| b["notify_url"] = "https://pay.example.com/n?x=1".into()),
            "PARAM_ERROR",
        ),
        (
            "plain http elsewhere",
            Box::new(|b| b["notify_url"] = "http://pay.example.com/n".into()),
            "PARAM_ERROR",
        ),
        (
            "description 128",
            Box::new(|b| b["description"] = "话".repeat(128).into()),
            "PARAM_ERROR",
        ),
        (
            "out_trade_no charset",
            Box::new(|b| b["out_trade_no"] = "ORD.V3.0001".into()),
            "PARAM_ERROR",
        ),
        (
            "out_trade_no short",
            Box::new(|b| b["out_trade_no"] = "ORD1".into()),
            "PARAM_ERROR",
        ),
        ("payer", Box::new(|b| b["payer"] = json!({})), "PARAM_ERROR"),
    ];
    for (what, change, code) in cases {
        let mut body = prepay_body(&inbox, "ORDV3VALID01");
        change(&mut body);
        let answer = client.call("POST", path, Some(&body)).await;
        assert_eq!(answer.json()["code"], code, "{what}: {}", answer.json());
        assert!(answer.status >= 400, "{what}");
        assert!(
            answer.signature_verifies(&client.wechat_public_key),
            "{what}: error answers are signed too"
        );
    }
    // The description limit is in characters: 127 Chinese characters pass.
    let mut body = prepay_body(&inbox, "ORDV3VALID02");
    body["description"] = "话".repeat(127).into();
    assert_eq!(client.call("POST", path, Some(&body)).await.status, 200);
    // HTTPS anywhere is fine.
    let mut body = prepay_body(&inbox, "ORDV3VALID03");
    body["notify_url"] = "https://pay.example.com/payment/notify".into();
    assert_eq!(client.call("POST", path, Some(&body)).await.status, 200);
}

#[tokio::test]
async fn query_close_refund_refund_query_and_bill_round_trip() {
    let inbox = Inbox::start(vec![]).await;
    let (sandbox, client) = setup(&inbox).await;
    let key = client.wechat_public_key.clone();
    let query = |no: &str| format!("/v3/pay/transactions/out-trade-no/{no}?mchid={MCHID}");

    prepay(&client, &inbox, "ORDV3TRIP001").await;
    let answer = client.call("GET", &query("ORDV3TRIP001"), None).await;
    assert_eq!(answer.status, 200);
    assert!(answer.signature_verifies(&key));
    assert_eq!(answer.json()["trade_state"], "NOTPAY");
    assert_eq!(answer.json()["appid"], APPID);

    let transaction_id = sandbox.pay_without_callback("ORDV3TRIP001").await.unwrap();
    let paid = client
        .call("GET", &query("ORDV3TRIP001"), None)
        .await
        .json();
    assert_eq!(paid["trade_state"], "SUCCESS");
    assert_eq!(paid["transaction_id"], transaction_id.as_str());
    assert_eq!(paid["amount"]["total"], 1137);
    assert_eq!(paid["payer"]["openid"], OPENID);
    assert!(paid["success_time"].as_str().unwrap().ends_with("+08:00"));

    let unknown = client.call("GET", &query("ORDV3NOSUCH1"), None).await;
    assert_eq!(
        (unknown.status, unknown.json()["code"].clone()),
        (404, json!("ORDER_NOT_EXIST"))
    );

    // Close: 204 with an empty signed body, then ORDER_CLOSED.
    prepay(&client, &inbox, "ORDV3TRIP002").await;
    let close = "/v3/pay/transactions/out-trade-no/ORDV3TRIP002/close";
    let closed = client
        .call("POST", close, Some(&json!({"mchid": MCHID})))
        .await;
    assert_eq!(closed.status, 204);
    assert!(closed.body.is_empty());
    assert!(closed.signature_verifies(&key));
    assert_eq!(
        client
            .call("GET", &query("ORDV3TRIP002"), None)
            .await
            .json()["trade_state"],
        "CLOSED"
    );
    let again = client
        .call("POST", close, Some(&json!({"mchid": MCHID})))
        .await;
    assert_eq!(
        (again.status, again.json()["code"].clone()),
        (400, json!("ORDER_CLOSED"))
    );

    // Refund, refund query, and its REFUND.SUCCESS notification.
    let refund = json!({
        "out_trade_no": "ORDV3TRIP001",
        "out_refund_no": "RFORDV3TRIP001",
        "reason": "充值失败",
        "notify_url": format!("{}/payment/notify/refund", inbox.url),
        "amount": {"refund": 1137, "total": 1137, "currency": "CNY"},
    });
    let accepted = client
        .call("POST", "/v3/refund/domestic/refunds", Some(&refund))
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.json());
    assert!(accepted.signature_verifies(&key));
    assert_eq!(accepted.json()["status"], "PROCESSING");
    assert_eq!(accepted.json()["amount"]["refund"], 1137);
    let refund_id = accepted.json()["refund_id"].clone();
    let hits = inbox.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(hits[0].path, "/payment/notify/refund");
    let notice: Value = serde_json::from_slice(&hits[0].body).unwrap();
    assert_eq!(notice["event_type"], "REFUND.SUCCESS");
    let plain = decrypt(&notice["resource"]);
    assert_eq!(plain["refund_status"], "SUCCESS");
    assert_eq!(plain["refund_id"], refund_id);
    assert_eq!(plain["mchid"], MCHID);
    let queried = client
        .call("GET", "/v3/refund/domestic/refunds/RFORDV3TRIP001", None)
        .await;
    assert!(queried.signature_verifies(&key));
    assert_eq!(queried.json()["status"], "SUCCESS");
    assert_eq!(queried.json()["refund_id"], refund_id);
    let missing = client
        .call("GET", "/v3/refund/domestic/refunds/RFNOSUCH", None)
        .await;
    assert_eq!(
        (missing.status, missing.json()["code"].clone()),
        (404, json!("RESOURCE_NOT_EXISTS"))
    );
    let over = json!({"out_trade_no": "ORDV3TRIP001", "out_refund_no": "RF2", "amount": {"refund": 1, "total": 1137, "currency": "CNY"}});
    assert_eq!(
        client
            .call("POST", "/v3/refund/domestic/refunds", Some(&over))
            .await
            .status,
        400
    );

    // The trade bill: a signed, hashed URL; the file itself unsigned.
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).format("%Y-%m-%d");
    for gzip in [false, true] {
        let tar = if gzip { "&tar_type=GZIP" } else { "" };
        let applied = client
            .call(
                "GET",
                &format!("/v3/bill/tradebill?bill_date={today}&bill_type=ALL{tar}"),
                None,
            )
            .await;
        assert_eq!(applied.status, 200, "{}", applied.json());
        assert!(applied.signature_verifies(&key));
        let applied = applied.json();
        assert_eq!(applied["hash_type"], "SHA1");
        let url = applied["download_url"].as_str().unwrap();
        let path = url
            .split_once("/v3/")
            .map(|(_, rest)| format!("/v3/{rest}"))
            .unwrap();
        let file = client.call("GET", &path, None).await;
        assert_eq!(file.status, 200);
        assert!(!file.headers.contains_key("wechatpay-signature"));
        let text = if gzip {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&file.body[..])
                .read_to_string(&mut text)
                .unwrap();
            text
        } else {
            String::from_utf8(file.body.clone()).unwrap()
        };
        let sha1 = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            text.as_bytes(),
        );
        let hex: String = sha1.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(applied["hash_value"], hex.as_str());
        assert!(text.contains(&format!("`{APPID},`{MCHID},`0,")), "{text}");
        assert!(text.contains("`ORDV3TRIP001,"));
        assert!(text.contains("`RFORDV3TRIP001,"));
        assert!(
            !text.contains("ORDV3TRIP002"),
            "an unpaid order is in no bill"
        );
    }
    let expired = client
        .call("GET", "/v3/billdownload/file?token=nosuchtoken", None)
        .await;
    assert_eq!(
        (expired.status, expired.json()["code"].clone()),
        (400, json!("INVALID_REQUEST"))
    );
    let yesterday = (chrono::Utc::now() + chrono::Duration::hours(8) - chrono::Duration::days(1))
        .format("%Y-%m-%d");
    let empty = client
        .call(
            "GET",
            &format!("/v3/bill/tradebill?bill_date={yesterday}"),
            None,
        )
        .await;
    assert_eq!(empty.json()["code"], "NO_STATEMENT_EXIST");
    sandbox.set_faults(serde_json::from_value(json!({"wechat": {"billNotReady": 1}})).unwrap());
    let creating = client
        .call(
            "GET",
            &format!("/v3/bill/tradebill?bill_date={today}"),
            None,
        )
        .await;
    assert_eq!(creating.json()["code"], "STATEMENT_CREATING");
    // Open-interface bills never show APIv3 orders.
    let cloud = common::wechat_respdata(
        &sandbox,
        "downloadbill",
        &json!({"bill_date": today.to_string().replace('-', ""), "bill_type": "ALL", "sub_mch_id": MCHID}),
    )
    .await;
    assert_eq!(cloud["return_msg"], "No Bill Exist", "{cloud}");
}

#[tokio::test]
async fn a_paid_order_notifies_a_signed_encrypted_transaction() {
    let inbox = Inbox::start(vec![]).await;
    let (sandbox, client) = setup(&inbox).await;
    prepay(&client, &inbox, "ORDV3NOTE001").await;
    let transaction_id = sandbox.pay("ORDV3NOTE001").await.unwrap();
    let hits = inbox.wait_for(1, Duration::from_secs(5)).await;
    let hit = &hits[0];
    assert_eq!(hit.path, "/payment/notify");
    assert_eq!(
        hit.headers["wechatpay-serial"],
        sandbox.wechat_pay_public_key_id().as_str()
    );
    let (message, signature) = wechat_message(&hit.headers, &hit.body).unwrap();
    assert!(verifies(&client.wechat_public_key, &message, &signature));
    let notice: Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(notice["event_type"], "TRANSACTION.SUCCESS");
    assert_eq!(notice["resource_type"], "encrypt-resource");
    assert_eq!(notice["resource"]["algorithm"], "AEAD_AES_256_GCM");
    assert_eq!(notice["resource"]["original_type"], "transaction");
    assert_eq!(notice["resource"]["nonce"].as_str().unwrap().len(), 12);
    let transaction = decrypt(&notice["resource"]);
    assert_eq!(transaction["out_trade_no"], "ORDV3NOTE001");
    assert_eq!(transaction["transaction_id"], transaction_id.as_str());
    assert_eq!(transaction["trade_state"], "SUCCESS");
    assert_eq!(transaction["amount"]["total"], 1137);
    assert_eq!(transaction["amount"]["currency"], "CNY");
    assert_eq!(transaction["mchid"], MCHID);
    assert_eq!(transaction["appid"], APPID);
    assert_eq!(transaction["payer"]["openid"], OPENID);
    assert_eq!(transaction["attach"], "{\"orderNumber\":\"x\"}");

    assert!(eventually(Duration::from_secs(5), || sandbox.callbacks_owed() == 0).await);
    let log = sandbox.callback_log();
    assert_eq!(log.len(), 1);
    assert!(log[0].accepted);
    assert_eq!(log[0].http_status, Some(204));
    assert_eq!(log[0].kind, CallbackKind::Payment);
}

#[tokio::test]
async fn a_refused_notification_is_retried_after_15_seconds() {
    let inbox = Inbox::start(vec![500]).await;
    let (sandbox, client) = setup(&inbox).await;
    prepay(&client, &inbox, "ORDV3RETRY01").await;
    sandbox.pay("ORDV3RETRY01").await.unwrap();
    let hits = inbox.wait_for(2, Duration::from_secs(25)).await;
    let gap = hits[1].at - hits[0].at;
    assert!(
        gap >= Duration::from_millis(14_900),
        "retried after {gap:?}"
    );
    assert!(gap < Duration::from_secs(20), "retried after {gap:?}");
    // Same notification, signed again at send time.
    assert_eq!(hits[0].body, hits[1].body);
    assert_ne!(
        hits[0].headers["wechatpay-nonce"],
        hits[1].headers["wechatpay-nonce"]
    );
    let (message, signature) = wechat_message(&hits[1].headers, &hits[1].body).unwrap();
    assert!(verifies(&client.wechat_public_key, &message, &signature));
    assert!(eventually(Duration::from_secs(5), || sandbox.callbacks_owed() == 0).await);
    let log = sandbox.callback_log();
    assert_eq!(
        log.iter()
            .map(|d| (d.attempt, d.http_status, d.accepted))
            .collect::<Vec<_>>(),
        vec![(1, Some(500), false), (2, Some(204), true)]
    );
}

/// Pays a fresh order with `faults` set and returns what arrived (after delivery ended).
async fn notified_with(
    sandbox: &Sandbox,
    client: &Client,
    inbox: &Inbox,
    no: &str,
    faults: Value,
    expected: usize,
) -> Vec<Hit> {
    let before = inbox.hits().len();
    sandbox
        .set_faults(serde_json::from_value::<Faults>(json!({"wechat": {"v3": faults}})).unwrap());
    prepay(client, inbox, no).await;
    sandbox.pay(no).await.unwrap();
    inbox
        .wait_for(before + expected, Duration::from_secs(5))
        .await;
    assert!(eventually(Duration::from_secs(5), || sandbox.callbacks_owed() == 0).await);
    inbox.hits()[before..].to_vec()
}

#[tokio::test]
async fn each_notification_fault_does_what_it_says() {
    let inbox = Inbox::start(vec![]).await;
    let (sandbox, client) = setup(&inbox).await;
    let key = client.wechat_public_key.clone();
    let verified = |hit: &Hit| {
        wechat_message(&hit.headers, &hit.body).is_some_and(|(m, s)| verifies(&key, &m, &s))
    };
    let header = |hit: &Hit, name: &str| hit.headers[name].to_str().unwrap().to_owned();

    let hits = notified_with(
        &sandbox,
        &client,
        &inbox,
        "ORDV3FAULT01",
        json!({"notificationBadSignature": 1}),
        1,
    )
    .await;
    assert!(header(&hits[0], "wechatpay-signature").starts_with("WECHATPAY/SIGNTEST/"));
    assert!(!verified(&hits[0]));

    let hits = notified_with(
        &sandbox,
        &client,
        &inbox,
        "ORDV3FAULT02",
        json!({"notificationOldTimestamp": 1}),
        1,
    )
    .await;
    let age = chrono::Utc::now().timestamp()
        - header(&hits[0], "wechatpay-timestamp")
            .parse::<i64>()
            .unwrap();
    assert!(age >= 360, "only {age} s old");
    assert!(
        verified(&hits[0]),
        "a stale notification is otherwise genuine"
    );

    let hits = notified_with(
        &sandbox,
        &client,
        &inbox,
        "ORDV3FAULT03",
        json!({"notificationReplay": 1}),
        2,
    )
    .await;
    assert_eq!(hits.len(), 2);
    for name in [
        "wechatpay-nonce",
        "wechatpay-timestamp",
        "wechatpay-signature",
    ] {
        assert_eq!(header(&hits[0], name), header(&hits[1], name));
    }
    assert_eq!(hits[0].body, hits[1].body);
    assert!(verified(&hits[1]));
    assert!(sandbox
        .callback_log()
        .iter()
        .any(|d| d.fault.as_deref() == Some("replay")));

    let hits = notified_with(
        &sandbox,
        &client,
        &inbox,
        "ORDV3FAULT04",
        json!({"notificationRotatedKey": 1}),
        1,
    )
    .await;
    let serial = header(&hits[0], "wechatpay-serial");
    assert!(serial.starts_with("PUB_KEY_ID_"));
    assert_ne!(serial, sandbox.wechat_pay_public_key_id());
    assert!(!verified(&hits[0]));

    let hits = notified_with(
        &sandbox,
        &client,
        &inbox,
        "ORDV3FAULT05",
        json!({"notificationWrongSerial": 1}),
        1,
    )
    .await;
    assert_eq!(
        header(&hits[0], "wechatpay-serial"),
        sandbox.platform_certificate_serial()
    );
    assert!(
        verified(&hits[0]),
        "signed by the public key, named as the certificate"
    );

    let hits = notified_with(
        &sandbox,
        &client,
        &inbox,
        "ORDV3FAULT06",
        json!({"notificationTruncatedBody": 1}),
        1,
    )
    .await;
    assert!(serde_json::from_slice::<Value>(&hits[0].body).is_err());
    assert!(!verified(&hits[0]));

    let hits = notified_with(
        &sandbox,
        &client,
        &inbox,
        "ORDV3FAULT07",
        json!({"notificationDuplicates": 2}),
        3,
    )
    .await;
    assert_eq!(hits.len(), 3);
    let ids: Vec<Value> = hits
        .iter()
        .map(|h| serde_json::from_slice::<Value>(&h.body).unwrap()["id"].clone())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "the same notification, three times"
    );
    assert!(hits.iter().all(verified));

    // Without faults, a notification verifies: the faults above were the only difference.
    let hits = notified_with(&sandbox, &client, &inbox, "ORDV3FAULT08", json!({}), 1).await;
    assert!(verified(&hits[0]));
}

#[tokio::test]
async fn answer_faults_and_refund_closed() {
    let inbox = Inbox::start(vec![]).await;
    let (sandbox, client) = setup(&inbox).await;
    let key = client.wechat_public_key.clone();
    prepay(&client, &inbox, "ORDV3ANSW001").await;
    let query = format!("/v3/pay/transactions/out-trade-no/ORDV3ANSW001?mchid={MCHID}");

    sandbox.set_faults(
        serde_json::from_value(json!({"wechat": {"v3": {"unsignedAnswer": 1}}})).unwrap(),
    );
    let unsigned = client.call("GET", &query, None).await;
    assert_eq!(unsigned.status, 200);
    assert!(!unsigned.headers.contains_key("wechatpay-signature"));
    assert!(
        client
            .call("GET", &query, None)
            .await
            .signature_verifies(&key),
        "one answer only"
    );

    sandbox.set_faults(
        serde_json::from_value(json!({"wechat": {"v3": {"wrongAnswerSignature": 1}}})).unwrap(),
    );
    let wrong = client.call("GET", &query, None).await;
    assert!(wrong.headers.contains_key("wechatpay-signature"));
    assert!(!wrong.signature_verifies(&key));

    sandbox.set_faults(
        serde_json::from_value(json!({"wechat": {"latencyMs": 300, "v3": {"refundClose": 1}}}))
            .unwrap(),
    );
    let started = Instant::now();
    assert!(client
        .call("GET", &query, None)
        .await
        .signature_verifies(&key));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "latency applies to APIv3"
    );

    sandbox.pay_without_callback("ORDV3ANSW001").await.unwrap();
    let refund = json!({
        "out_trade_no": "ORDV3ANSW001",
        "out_refund_no": "RFORDV3ANSW001",
        "notify_url": format!("{}/payment/notify/refund", inbox.url),
        "amount": {"refund": 100, "total": 1137, "currency": "CNY"},
    });
    assert_eq!(
        client
            .call("POST", "/v3/refund/domestic/refunds", Some(&refund))
            .await
            .status,
        200
    );
    let hits = inbox.wait_for(1, Duration::from_secs(5)).await;
    let notice: Value = serde_json::from_slice(&hits[0].body).unwrap();
    assert_eq!(notice["event_type"], "REFUND.CLOSED");
    assert_eq!(decrypt(&notice["resource"])["refund_status"], "CLOSED");
    let queried = client
        .call("GET", "/v3/refund/domestic/refunds/RFORDV3ANSW001", None)
        .await;
    assert_eq!(queried.json()["status"], "CLOSED");
}

#[tokio::test]
async fn certificate_mode_and_the_partner_form() {
    let inbox = Inbox::start(vec![]).await;
    let (sandbox, mut client) = setup(&inbox).await;
    sandbox.set_v3_signer(V3Signer::Certificate);
    let certificate = sandbox.platform_certificate_pem();
    assert!(certificate.starts_with("-----BEGIN CERTIFICATE-----"));
    let serial = sandbox.platform_certificate_serial();
    assert_eq!(serial.len(), 40);
    let answer = prepay(&client, &inbox, "ORDV3CERT001").await;
    assert_eq!(answer.headers["wechatpay-serial"], serial.as_str());
    assert!(!answer.signature_verifies(&client.wechat_public_key));
    // A request naming the public key gets an answer signed with it, as WeChat does mid-migration.
    let query = format!("/v3/pay/transactions/out-trade-no/ORDV3CERT001?mchid={MCHID}");
    let id = sandbox.wechat_pay_public_key_id();
    let answer = client
        .call_signed_by(
            &client.key,
            0,
            "GET",
            &query,
            None,
            &[("wechatpay-serial", id.as_str())],
        )
        .await;
    assert!(answer.signature_verifies(&client.wechat_public_key));

    // The control API publishes the same keys.
    let keys: Value = client
        .http
        .get(format!("{}/sandbox/wechat/v3/keys", sandbox.wechat_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys["publicKeyId"], id.as_str());
    assert_eq!(keys["platformCertificateSerial"], serial.as_str());
    assert_eq!(keys["signer"], "certificate");

    // Partner form: the service provider signs; direct paths are refused.
    sandbox.set_v3_signer(V3Signer::PublicKey);
    let public_pem = pem(
        "PUBLIC KEY",
        client.key.public_key().as_der().unwrap().as_ref(),
    );
    let registered: Value = client
        .http
        .put(format!("{}/sandbox/wechat/v3/merchant", sandbox.wechat_url()))
        .json(&json!({"mchid": MCHID, "appid": APPID, "spMchid": "1900000109", "spAppid": "wxsp00000000000001",
                      "merchantSerial": SERIAL, "merchantPublicKeyPem": public_pem, "apiV3Key": API_V3_KEY}))
        .send().await.unwrap().json().await.unwrap();
    assert!(
        registered.get("apiV3Key").is_none(),
        "the APIv3 key is never shown"
    );
    client.mchid = "1900000109".into();
    let body = json!({
        "sp_appid": "wxsp00000000000001", "sp_mchid": "1900000109", "sub_appid": APPID, "sub_mchid": MCHID,
        "description": "top-up", "out_trade_no": "ORDV3PART001",
        "notify_url": format!("{}/payment/notify", inbox.url),
        "amount": {"total": 500}, "payer": {"sub_openid": OPENID},
    });
    let answer = client
        .call("POST", "/v3/pay/partner/transactions/jsapi", Some(&body))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json());
    let direct = client
        .call(
            "POST",
            "/v3/pay/transactions/jsapi",
            Some(&prepay_body(&inbox, "ORDV3PART002")),
        )
        .await;
    assert_eq!(
        (direct.status, direct.json()["code"].clone()),
        (403, json!("NO_AUTH"))
    );
    sandbox.pay("ORDV3PART001").await.unwrap();
    let hits = inbox.wait_for(1, Duration::from_secs(5)).await;
    let transaction = decrypt(&serde_json::from_slice::<Value>(&hits[0].body).unwrap()["resource"]);
    assert_eq!(transaction["sp_mchid"], "1900000109");
    assert_eq!(transaction["sub_mchid"], MCHID);
    assert_eq!(transaction["payer"]["sub_openid"], OPENID);
    let queried = client
        .call("GET", &format!("/v3/pay/partner/transactions/out-trade-no/ORDV3PART001?sp_mchid=1900000109&sub_mchid={MCHID}"), None)
        .await;
    assert_eq!(queried.json()["trade_state"], "SUCCESS");
}

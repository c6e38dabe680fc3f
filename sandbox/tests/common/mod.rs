//! Helpers shared by the integration tests: a started sandbox, a callback receiver that
//! answers as scripted, and thin clients for both simulated APIs.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};

pub const MERCHANT: &str = "1712734762";

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub async fn start(callback_base: &str) -> Sandbox {
    start_with(SandboxConfig::for_tests(callback_base)).await
}

pub async fn start_with(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config).await.expect("sandbox starts")
}

/// A unifiedOrder body the sandbox accepts; tests change one field at a time.
pub fn order_request(out_trade_no: &str) -> Value {
    json!({
        "body": "境外话费充值 - 5000 нэгж",
        "openid": "oZp5x0aAbCdEfGhIjKlMnOpQrStU",
        "out_trade_no": out_trade_no,
        "spbill_create_ip": "127.0.0.1",
        "env_id": "prod-66733tes755tabc",
        "sub_mch_id": MERCHANT,
        "total_fee": 1137,
        "callback_type": 2,
        "trade_type": "JSAPI",
        "attach": "{\"orderNumber\":\"x\"}",
        "container": {"service": "elife-backend", "path": format!("/payment/callback/{out_trade_no}")},
    })
}

/// POSTs to `/_/pay/{name}` and returns the whole envelope.
pub async fn wechat_call(sandbox: &Sandbox, name: &str, body: &Value) -> Value {
    let response = client()
        .post(format!("{}/_/pay/{name}", sandbox.wechat_url()))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().contains_key("x-openapi-seqid"),
        "every relayed answer carries x-openapi-seqid"
    );
    response.json().await.unwrap()
}

/// The respdata of a call the platform relayed.
pub async fn wechat_respdata(sandbox: &Sandbox, name: &str, body: &Value) -> Value {
    let envelope = wechat_call(sandbox, name, body).await;
    assert_eq!(envelope["errcode"], 0, "{envelope}");
    envelope["respdata"].clone()
}

pub async fn place_order(sandbox: &Sandbox, out_trade_no: &str) -> Value {
    let respdata = wechat_respdata(sandbox, "unifiedOrder", &order_request(out_trade_no)).await;
    assert_eq!(respdata["result_code"], "SUCCESS", "{respdata}");
    respdata
}

pub fn assert_fails_with(respdata: &Value, err_code: &str) {
    assert_eq!(respdata["return_code"], "SUCCESS", "{respdata}");
    assert_eq!(respdata["result_code"], "FAIL", "{respdata}");
    assert_eq!(respdata["err_code"], err_code, "{respdata}");
}

/// Polls until `check` holds or `within` passes.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One callback the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub wx_source: Option<String>,
    pub body: Value,
}

/// A stand-in for the service's callback endpoint: the first `failures` requests get a
/// wrong answer (alternately the wrapped `{"code":200,"data":{"errcode":0}}` and an HTTP
/// 500), the rest `{"errcode":0,"errmsg":""}`.
pub struct Receiver {
    pub url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

#[derive(Clone)]
struct ReceiverState {
    hits: Arc<Mutex<Vec<Hit>>>,
    failures: usize,
}

impl Receiver {
    pub async fn start(failures: usize) -> Receiver {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let state = ReceiverState {
            hits: hits.clone(),
            failures,
        };
        let app = axum::Router::new().fallback(record).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, hits }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

async fn record(
    State(state): State<ReceiverState>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let seen = {
        let mut hits = state.hits.lock().unwrap();
        hits.push(Hit {
            path: uri.path().to_owned(),
            wx_source: headers
                .get("x-wx-source")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        hits.len()
    };
    if seen > state.failures {
        Json(json!({"errcode": 0, "errmsg": ""})).into_response()
    } else if seen % 2 == 1 {
        Json(json!({"code": 200, "data": {"errcode": 0, "errmsg": ""}, "message": "success"}))
            .into_response()
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
    }
}

/// The Unitel API through a fresh bearer token.
pub struct Unitel {
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
}

impl Unitel {
    pub async fn login(sandbox: &Sandbox) -> Unitel {
        let client = client();
        let base = sandbox.unitel_url();
        let response = client
            .post(format!("{base}/auth"))
            .basic_auth("elife", Some("elife-secret"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        Unitel {
            base,
            token: body["access_token"].as_str().unwrap().to_owned(),
            client,
        }
    }

    pub async fn send(&self, path: &str, body: Value) -> reqwest::Result<reqwest::Response> {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
    }

    /// Status and JSON body of a call that must get an HTTP answer.
    pub async fn call(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self.send(path, body).await.expect("an HTTP answer");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

pub fn recharge_body(msisdn: &str, card: &str, amount: &str, journal_id: &str) -> Value {
    json!({
        "msisdn": msisdn,
        "card": card,
        "vatflag": "1",
        "vat_register_no": "",
        "transactions": [{"journal_id": journal_id, "amount": amount, "description": "Recharge", "account": ""}],
    })
}

pub fn package_body(msisdn: &str, package: &str, amount: &str, journal_id: &str) -> Value {
    json!({
        "msisdn": msisdn,
        "package": package,
        "vatflag": "1",
        "vat_register_no": "",
        "transactions": [{"journal_id": journal_id, "amount": amount, "description": "Data", "account": ""}],
    })
}

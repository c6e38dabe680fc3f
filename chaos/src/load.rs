//! The customers: orders placed and paid concurrently, as the mini-program and WeChat
//! would, retried the way a person retries when the service hiccups. And the forgers.

use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use testkit::wechat_pay::WechatPay;

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    /// The deployment's address: a proxy in front of the payment-api instances.
    pub api: String,
    pub control: String,
    /// Direct mode: customers log in with `wx.login` codes and carry our session token;
    /// payment results are APIv3 notifications.
    pub direct: bool,
    /// Direct mode: the merchant's APIv3 key, which a forger is assumed to hold.
    pub api_v3_key: Option<String>,
}

/// A customer's own address, as the gateway reports it: per-address limits apply to each
/// customer as they would in production.
fn address_of(customer: usize) -> String {
    let [_, a, b, c] = (customer as u32).to_be_bytes();
    format!("10.{a}.{b}.{c}")
}

/// What to buy for the n-th order: every recharge type, across the sandbox's tariffs.
pub fn product_for(n: usize) -> (String, &'static str, &'static str) {
    match n % 10 {
        // Smart-data (last digit 0/3/6), Smart-days (1/4/7), Smart-talk (2/5/8), postpaid (9).
        0 | 3 => (
            format!("8870{:03}{}", n % 1000, [0, 3, 6][n % 3]),
            "voice",
            "SD5000",
        ),
        1 | 4 => (
            format!("8871{:03}{}", n % 1000, [1, 4, 7][n % 3]),
            "voice",
            "SY5000",
        ),
        2 | 5 => (
            format!("8872{:03}{}", n % 1000, [2, 5, 8][n % 3]),
            "voice",
            "ST5000",
        ),
        6..=8 => (
            format!("8873{:03}{}", n % 1000, [0, 3, 6][n % 3]),
            "data",
            "data3gb2d",
        ),
        _ => (format!("8874{:02}19", n % 100), "postpaid", ""),
    }
}

impl Client {
    /// Retries what a person would retry, as a person would: the service being unavailable
    /// for a moment, tried again after a second, then two, ... at most eight times (within
    /// the shipped per-customer limits).
    async fn post(
        &self,
        url: &str,
        customer: Option<(usize, &str)>,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let mut last = None;
        for attempt in 0..8u64 {
            let mut request = self.http.post(url).json(body);
            if let Some((customer, session)) = customer {
                request = request.header("X-Original-Forwarded-For", address_of(customer));
                request = match self.direct {
                    true if session.is_empty() => request,
                    true => request.bearer_auth(session),
                    false => request
                        .header("X-WX-OPENID", format!("chaos-user-{customer}"))
                        .header("X-WX-SOURCE", "wx_client"),
                };
            }
            match request.send().await {
                Ok(response) if response.status().is_server_error() => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    last = Some(format!("HTTP {status} {body}"));
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.json().await.unwrap_or(Value::Null);
                    return Ok((status, body));
                }
                Err(error) => last = Some(error.to_string()),
            }
            tokio::time::sleep(Duration::from_secs(attempt + 1)).await;
        }
        anyhow::bail!("{url}: gave up: {}", last.unwrap_or_default())
    }

    pub async fn place_order(&self, n: usize) -> anyhow::Result<String> {
        let (msisdn, kind, code) = product_for(n);
        // Every order a customer of its own: the run's rate is many people's, not one's.
        let session = self.log_in(n).await?;
        let customer = Some((n, session.as_str()));
        let (status, body) = self
            .post(
                &format!("{}/orders", self.api),
                customer,
                &json!({"phoneNumber": msisdn, "productOperator": "Unitel", "rechargeType": kind, "productCode": code}),
            )
            .await?;
        anyhow::ensure!(status == 201, "order {n}: HTTP {status} {body}");
        let order = body["data"]["orderNumber"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (status, body) = self
            .post(
                &format!("{}/payment/create", self.api),
                customer,
                &json!({"orderNumber": order}),
            )
            .await?;
        anyhow::ensure!(
            status == 201,
            "payment/create {order}: HTTP {status} {body}"
        );
        Ok(order)
    }

    /// Direct mode: the customer opens the mini-program (`wx.login`, played by the
    /// sandbox) and logs in; our session token. Cloud mode: the gateway names them.
    async fn log_in(&self, customer: usize) -> anyhow::Result<String> {
        if !self.direct {
            return Ok(String::new());
        }
        let (status, minted) = self
            .post(
                &format!("{}/sandbox/wechat/login-code", self.control),
                None,
                &json!({"openid": format!("chaos-user-{customer}")}),
            )
            .await?;
        anyhow::ensure!(status == 200, "login code: HTTP {status} {minted}");
        let (status, session) = self
            .post(
                &format!("{}/auth/login", self.api),
                Some((customer, "")),
                &json!({"code": minted["code"]}),
            )
            .await?;
        anyhow::ensure!(status == 201, "login: HTTP {status} {session}");
        Ok(session["data"]["token"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The user pays in WeChat; the platform then calls back (several times, concurrently).
    pub async fn pay(&self, order: &str) -> anyhow::Result<()> {
        let (status, body) = self
            .post(
                &format!("{}/sandbox/wechat/pay", self.control),
                None,
                &json!({"outTradeNo": order}),
            )
            .await?;
        anyhow::ensure!(
            status == 200 || status == 409,
            "pay {order}: HTTP {status} {body}"
        );
        Ok(())
    }

    /// Someone refunds part of a payment by hand in WeChat's merchant platform: money
    /// goes back that the service never asked to return. Returns the `out_refund_no`.
    pub async fn refund_by_hand(&self, order: &str, fen: i64) -> anyhow::Result<String> {
        let (status, body) = self
            .post(
                &format!("{}/sandbox/wechat/refund-outside", self.control),
                None,
                &json!({"outTradeNo": order, "refundFee": fen}),
            )
            .await?;
        anyhow::ensure!(
            status == 200,
            "refund-outside {order}: HTTP {status} {body}"
        );
        Ok(body["outRefundNo"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn set_faults(&self, faults: &Value) -> anyhow::Result<()> {
        let response = self
            .http
            .put(format!("{}/sandbox/faults", self.control))
            .json(faults)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "set faults: HTTP {}",
            response.status()
        );
        Ok(())
    }

    /// Orders WeChat (the sandbox) has taken the money for.
    pub async fn paid_at_wechat(&self) -> anyhow::Result<Vec<String>> {
        let orders = self.control_get("/sandbox/wechat/orders").await?;
        Ok(orders
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter(|o| matches!(o["tradeState"].as_str(), Some("SUCCESS" | "REFUND")))
            .filter_map(|o| o["outTradeNo"].as_str().map(str::to_owned))
            .collect())
    }

    /// The deployment answers `/health` with 200.
    pub async fn healthy(&self) -> bool {
        self.http
            .get(format!("{}/health", self.api))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// An admin route with the run's admin token; the answer's `data`.
    pub async fn admin_post(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.api))
            .bearer_auth(crate::verdict::ADMIN_TOKEN)
            .timeout(std::time::Duration::from_secs(120))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {body}");
        Ok(body["data"].clone())
    }

    pub async fn control_get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.control))
            .send()
            .await?
            .json()
            .await?)
    }

    /// Sends a forged callback; returns the `errcode` payment-api answered.
    pub async fn forge(
        &self,
        path_order: &str,
        body: Value,
        with_source: bool,
    ) -> anyhow::Result<i64> {
        let mut request = self
            .http
            .post(format!("{}/payment/callback/{path_order}", self.api))
            .json(&body);
        if with_source {
            request = request.header("X-WX-SOURCE", "wxpay");
        }
        request = request.header("X-Original-Forwarded-For", "10.250.0.1");
        let answer: Value = request.send().await?.json().await?;
        Ok(answer["errcode"].as_i64().unwrap_or(-1))
    }
}

/// A callback body as the platform would send it.
pub fn callback_body(order: &str, total_fee: i64, merchant: &str) -> Value {
    testkit::processes::payment_notification(
        order,
        "4200000000000000000000000000",
        total_fee,
        merchant,
    )
}

/// A forger holding the merchant's APIv3 key (so the resource decrypts and reads as a
/// genuine payment) but not WeChat Pay's private key: only the signature can betray it.
fn forger(api_v3_key: &str) -> anyhow::Result<&'static WechatPay> {
    static FORGER: std::sync::OnceLock<WechatPay> = std::sync::OnceLock::new();
    if let Some(forger) = FORGER.get() {
        return Ok(forger);
    }
    let made = WechatPay::generate(api_v3_key)?;
    Ok(FORGER.get_or_init(|| made))
}

impl Client {
    /// Direct mode: an APIv3 payment notification for `order`, its amount and attach as
    /// WeChat holds them, signed with a forger's key under `serial`, `age_seconds` old;
    /// returns the HTTP status payment-api answered.
    pub async fn forge_notification(
        &self,
        order: &str,
        serial: &str,
        age_seconds: i64,
    ) -> anyhow::Result<u16> {
        let api_v3_key = self
            .api_v3_key
            .as_deref()
            .context("forging a notification outside direct mode")?;
        // An order WeChat never heard of (a ghost) is forged at a plausible amount.
        let at_wechat = self
            .control_get(&format!("/sandbox/wechat/orders/{order}"))
            .await
            .unwrap_or(Value::Null);
        let amount = at_wechat["totalFee"].as_i64().unwrap_or(1136);
        let transaction = json!({
            "mchid": testkit::MCH_ID, "appid": testkit::APP_ID,
            "out_trade_no": order, "transaction_id": "4200000000000000000000000000",
            "trade_type": "JSAPI", "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
            "bank_type": "OTHERS", "attach": at_wechat["attach"],
            "success_time": "2026-12-04T12:00:00+08:00", "payer": {"openid": "forger"},
            "amount": {"total": amount, "payer_total": amount, "currency": "CNY", "payer_currency": "CNY"},
        });
        let signed_at = chrono::Utc::now() - chrono::Duration::seconds(age_seconds);
        let notification = forger(api_v3_key)?.notification_signed_at(&transaction, signed_at);
        let mut request = self
            .http
            .post(format!("{}/payment/notify", self.api))
            .header("content-type", "application/json")
            .header("X-Original-Forwarded-For", "10.250.0.1");
        for (name, value) in &notification.headers {
            // The serial is not signed: a forger names whichever key it likes.
            let value = if *name == "wechatpay-serial" {
                serial
            } else {
                value
            };
            request = request.header(*name, value);
        }
        let response = request.body(notification.body).send().await?;
        Ok(response.status().as_u16())
    }

    /// The id of the key WeChat Pay (the sandbox) signs with.
    pub async fn wechatpay_serial(&self) -> anyhow::Result<String> {
        let keys = self.control_get("/sandbox/wechat/v3/keys").await?;
        Ok(keys["publicKeyId"].as_str().unwrap_or_default().to_owned())
    }
}

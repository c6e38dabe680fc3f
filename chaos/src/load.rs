//! The customers: orders placed and paid concurrently, as the mini-program and WeChat
//! would, retried the way a person retries when the service hiccups. And the forgers.

use std::time::Duration;

use serde_json::{json, Value};

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    /// The deployment's address: a proxy in front of the payment-api instances.
    pub api: String,
    pub control: String,
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
        customer: Option<usize>,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let mut last = None;
        for attempt in 0..8u64 {
            let mut request = self.http.post(url).json(body);
            if let Some(customer) = customer {
                request = request
                    .header("X-WX-OPENID", format!("chaos-user-{customer}"))
                    .header("X-WX-SOURCE", "wx_client")
                    .header("X-Original-Forwarded-For", address_of(customer));
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
        let customer = Some(n);
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

//! The customers: orders placed and paid concurrently, as the mini-program and WeChat
//! would, retried the way a person retries when the service hiccups. And the forgers.

use std::time::Duration;

use serde_json::{json, Value};

pub struct Client {
    pub http: reqwest::Client,
    pub api: String,
    pub control: String,
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
    /// Retries what a person would retry: the service being unavailable for a moment.
    async fn post(
        &self,
        url: &str,
        openid: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let mut last = None;
        for attempt in 0..40 {
            let mut request = self.http.post(url).json(body);
            if let Some(openid) = openid {
                request = request
                    .header("X-WX-OPENID", openid)
                    .header("X-WX-SOURCE", "wx_client");
            }
            match request.send().await {
                Ok(response) if response.status().is_server_error() => {
                    last = Some(format!("HTTP {}", response.status()));
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.json().await.unwrap_or(Value::Null);
                    return Ok((status, body));
                }
                Err(error) => last = Some(error.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(100 * (attempt + 1).min(10))).await;
        }
        anyhow::bail!("{url}: gave up: {}", last.unwrap_or_default())
    }

    pub async fn place_order(&self, n: usize) -> anyhow::Result<String> {
        let (msisdn, kind, code) = product_for(n);
        let openid = format!("chaos-user-{}", n % 97);
        let (status, body) = self
            .post(
                &format!("{}/orders", self.api),
                Some(&openid),
                &json!({"phoneNumber": msisdn, "productOperator": "unitel", "rechargeType": kind, "productCode": code}),
            )
            .await?;
        anyhow::ensure!(status == 200, "order {n}: HTTP {status} {body}");
        let order = body["data"]["orderNumber"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (status, body) = self
            .post(
                &format!("{}/payment/create", self.api),
                Some(&openid),
                &json!({"orderNumber": order}),
            )
            .await?;
        anyhow::ensure!(
            status == 200,
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

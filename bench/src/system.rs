//! The system under benchmark: a fresh database, queue names of its own, and the real
//! binaries (sandbox, payment-api, recharge-workers) as separate processes, so that each
//! one's memory can be read and workers can be added and stopped. In either payment mode:
//! Cloud Hosting's callbacks, or WeChat Pay APIv3 directly (`WECHAT_PAY_MODE=direct`),
//! where customers log in and the benchmark signs the notifications as WeChat Pay does.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use testkit::processes::{
    base_env, delete_queues, payment_notification, peak_rss, ApiPorts, Layout, Ports, Processes,
    MERCHANT,
};
use testkit::TestDb;

use crate::wechat_pay::{Notification, WechatPay, PUBLIC_KEY_ID};

/// How payment-api takes payments (`WECHAT_PAY_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Through Cloud Hosting: its gateway's headers, unsigned callbacks.
    Cloud,
    /// WeChat Pay APIv3 with our own keys: sessions, signed and encrypted notifications.
    Direct,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Cloud => "cloud",
            Mode::Direct => "direct",
        }
    }
}

/// Peak resident memory (`VmHWM`), in bytes, of payment-api and of the largest worker.
#[derive(Debug, Default, Clone, Copy)]
pub struct Memory {
    pub api: u64,
    pub worker: u64,
}

impl Memory {
    pub fn max(self, other: Memory) -> Memory {
        Memory {
            api: self.api.max(other.api),
            worker: self.worker.max(other.worker),
        }
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// An order paid at WeChat: what the platform's notification carries.
#[derive(Debug, Clone)]
pub struct Paid {
    pub order_number: String,
    pub transaction_id: String,
    pub total_fee: i64,
    /// Direct mode: the transaction as WeChat Pay's query answers it, which its
    /// notification carries encrypted.
    pub transaction: Option<Value>,
}

/// One delivery of an order's payment result, made before it is timed: in direct mode
/// the notification is signed and encrypted then (fresh nonces each), so that the load
/// generator's RSA signing does not take the two cores from the service while it is
/// measured (cloud mode's callbacks cost the generator next to nothing).
pub struct Delivery<'a> {
    pub paid: &'a Paid,
    notification: Option<Notification>,
}

/// Direct mode: what playing WeChat Pay needs, and the customers' sessions.
struct Direct {
    wechat_pay: WechatPay,
    /// Bearer tokens by customer (`n % CUSTOMERS`).
    sessions: Vec<String>,
    key_dir: PathBuf,
}

pub struct Bench {
    pub db: TestDb,
    processes: Processes,
    ports: Ports,
    prefix: String,
    http: reqwest::Client,
    memory: Memory,
    direct: Option<Direct>,
}

/// Settings every benchmark shares. Orders are prepared before they are paid, sometimes
/// for longer than the default minute after which the payment sweep asks WeChat about an
/// unpaid order: the sweep would then record the payment itself, before the callback
/// being measured.
const SETTINGS: &[(&str, &str)] = &[
    ("PAYMENT_QUERY_AFTER_MS", "3600000"),
    ("PAYMENT_WINDOW_MS", "7200000"),
    // One load generator on one address stands for many customers: the limits would
    // measure themselves, not the service.
    ("RATE_LIMIT_ORDERS_PER_MINUTE", "1000000"),
    ("RATE_LIMIT_PAYMENTS_PER_MINUTE", "1000000"),
    ("RATE_LIMIT_PER_ADDRESS_PER_MINUTE", "1000000"),
    ("CALLBACK_REJECTS_PER_MINUTE", "1000000"),
];

impl Bench {
    /// Cloud mode, as every scenario but the direct callbacks runs.
    pub async fn start(workers: usize, settings: &[(&str, &str)]) -> anyhow::Result<Bench> {
        Bench::start_in(Mode::Cloud, workers, settings).await
    }

    /// In direct mode payment-api has the settings testkit's direct systems have (the
    /// merchant registered with the sandbox, which answers the APIv3 calls), except that
    /// the WeChat Pay public key it trusts for notifications is the benchmark's. The
    /// sandbox signs its answers with its platform certificate, which payment-api is
    /// given as well (a deployment during WeChat Pay's key migration holds both).
    pub async fn start_in(
        mode: Mode,
        workers: usize,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<Bench> {
        let db = TestDb::create().await;
        let prefix = format!("bench-{}", db.name);
        let ports = Ports::free()?;
        let mut env = base_env(&ports, &db.url, &prefix);
        for (name, value) in SETTINGS.iter().chain(settings) {
            env.insert(name.to_string(), value.to_string());
        }
        let api = ApiPorts {
            port: ports.api,
            operations: ports.operations,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let direct = match mode {
            Mode::Cloud => None,
            Mode::Direct => {
                let merchant = testkit::merchant_settings(&ports.control_url());
                let api_v3_key = merchant
                    .iter()
                    .find(|(name, _)| *name == "WECHAT_API_V3_KEY")
                    .map(|(_, key)| key.clone())
                    .context("no APIv3 key in the merchant's settings")?;
                env.extend(merchant.into_iter().map(|(k, v)| (k.to_owned(), v)));
                let wechat_pay = WechatPay::generate(&api_v3_key)?;
                let key_dir = std::env::temp_dir().join(format!("{prefix}-keys"));
                std::fs::create_dir_all(&key_dir)?;
                let public_key = key_dir.join("wechatpay-public-key.pem");
                std::fs::write(&public_key, wechat_pay.public_key_pem()?)?;
                for (name, value) in [
                    ("SANDBOX_V3_SIGNER", "certificate".to_owned()),
                    (
                        "WECHAT_PAY_PUBLIC_KEY_FILE",
                        public_key.to_string_lossy().into_owned(),
                    ),
                    ("WECHAT_PAY_PUBLIC_KEY_ID", PUBLIC_KEY_ID.to_owned()),
                ] {
                    env.insert(name.to_owned(), value);
                }
                Some(Direct {
                    wechat_pay,
                    sessions: Vec::new(),
                    key_dir,
                })
            }
        };
        let layout = Layout {
            // Direct mode: payment-api starts once the sandbox's certificate is known.
            apis: if direct.is_some() { vec![] } else { vec![api] },
            workers,
            platform_callback_timing: false,
        };
        let processes = Processes::start_with(env, &ports, &layout)?;
        let mut bench = Bench {
            db,
            processes,
            ports,
            prefix,
            http,
            memory: Memory::default(),
            direct,
        };
        if let Some(direct) = &bench.direct {
            bench
                .wait_for(&format!("{}/sandbox/health", bench.ports.control_url()))
                .await?;
            let keys: Value = bench
                .http
                .get(format!(
                    "{}/sandbox/wechat/v3/keys",
                    bench.ports.control_url()
                ))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let certificate = direct.key_dir.join("platform-certificate.pem");
            std::fs::write(
                &certificate,
                keys["platformCertificatePem"]
                    .as_str()
                    .context("no platformCertificatePem")?,
            )?;
            bench.processes.env.insert(
                "WECHAT_PLATFORM_CERTIFICATE_FILES".into(),
                certificate.to_string_lossy().into_owned(),
            );
            bench.processes.spawn_api(&api)?;
        }
        bench.wait_until_ready().await?;
        if bench.direct.is_some() {
            let sessions = bench.log_in_every_customer().await?;
            if let Some(direct) = bench.direct.as_mut() {
                direct.sessions = sessions;
            }
        }
        Ok(bench)
    }

    pub fn mode(&self) -> Mode {
        if self.direct.is_some() {
            Mode::Direct
        } else {
            Mode::Cloud
        }
    }

    async fn wait_for(&self, url: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.http.get(url).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                _ if Instant::now() > deadline => anyhow::bail!("{url} never answered"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Each customer logs in once, as the mini-program does (`wx.login`, then
    /// `POST /auth/login`), untimed; their requests then carry the session.
    async fn log_in_every_customer(&self) -> anyhow::Result<Vec<String>> {
        let mut sessions = crate::drive::closed_loop(0..CUSTOMERS, 32, |n| async move {
            let minted = self
                .post(
                    format!("{}/sandbox/wechat/login-code", self.ports.control_url()),
                    None,
                    json!({"openid": openid(n)}),
                )
                .await?;
            let response = self
                .http
                .post(format!("{}/auth/login", self.ports.api_url()))
                .header(CLIENT_ADDRESS, address(n))
                .json(&json!({"code": minted["code"]}))
                .send()
                .await?;
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            anyhow::ensure!(status.is_success(), "POST /auth/login: {status} {body}");
            let token = body["data"]["token"]
                .as_str()
                .context("no session token")?
                .to_owned();
            Ok((n, token))
        })
        .await?;
        sessions.sort();
        Ok(sessions.into_iter().map(|(_, token)| token).collect())
    }

    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        for url in [
            format!("{}/health", self.ports.api_url()),
            format!("{}/sandbox/health", self.ports.control_url()),
        ] {
            self.wait_for(&url).await?;
        }
        Ok(())
    }

    /// Reads the processes' peak memory so far (a stopped process can no longer tell).
    pub fn sample_memory(&mut self) -> Memory {
        let api = peak_rss(self.processes.api_pid()).unwrap_or(0);
        let worker = self
            .processes
            .worker_pids()
            .into_iter()
            .filter_map(|pid| peak_rss(pid).ok())
            .max()
            .unwrap_or(0);
        self.memory = self.memory.max(Memory { api, worker });
        self.memory
    }

    pub fn add_workers(&mut self, count: usize) -> anyhow::Result<()> {
        for _ in 0..count {
            self.processes.spawn_worker()?;
        }
        Ok(())
    }

    pub fn stop_workers(&mut self) {
        self.sample_memory();
        self.processes.stop_workers();
    }

    /// Stops everything, drops the database and the queues; returns the peak memory.
    pub async fn stop(mut self) -> Memory {
        let memory = self.sample_memory();
        drop(self.stop_keeping_database().await);
        memory
    }

    /// Stops the processes and deletes the queues; the database stays until dropped.
    pub async fn stop_keeping_database(mut self) -> TestDb {
        self.sample_memory();
        let processes = self.processes;
        let _ = tokio::task::spawn_blocking(move || processes.stop()).await;
        delete_queues(&self.prefix).await;
        if let Some(direct) = &self.direct {
            let _ = std::fs::remove_dir_all(&direct.key_dir);
        }
        self.db
    }

    /// An admin route, with the benchmark's admin token; the answer's JSON.
    pub async fn admin_post(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.ports.api_url()))
            .bearer_auth(testkit::ADMIN_TOKEN)
            .timeout(Duration::from_secs(600))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {body}");
        Ok(body)
    }

    /// A sandbox control route.
    pub async fn control_post(&self, path: &str, body: &Value) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}{path}", self.ports.control_url()))
            .json(body)
            .timeout(Duration::from_secs(120))
            .send()
            .await?;
        let status = response.status();
        anyhow::ensure!(
            status.is_success(),
            "{path}: {status} {}",
            response.text().await?
        );
        Ok(())
    }

    pub async fn set_unitel_latency(&self, millis: u64) -> anyhow::Result<()> {
        let response = self
            .http
            .put(format!("{}/sandbox/faults", self.ports.control_url()))
            .json(&json!({"unitel": {"latencyMs": millis}}))
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "setting Unitel's latency");
        Ok(())
    }

    /// A request as the n-th customer makes it: through Cloud Hosting's gateway, or in
    /// direct mode with their session, through an ingress that reports their address.
    async fn post(
        &self,
        url: String,
        customer: Option<usize>,
        body: Value,
    ) -> anyhow::Result<Value> {
        let mut request = self.http.post(&url).json(&body);
        match (customer, &self.direct) {
            (None, _) => {}
            (Some(n), None) => {
                request = request
                    .header("X-WX-OPENID", openid(n))
                    .header("X-WX-SOURCE", "wx_client");
            }
            (Some(n), Some(direct)) => {
                request = request
                    .bearer_auth(&direct.sessions[n % CUSTOMERS])
                    .header(CLIENT_ADDRESS, address(n));
            }
        }
        let response = request.send().await.with_context(|| url.clone())?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "{url}: HTTP {status} {body}");
        Ok(body)
    }

    /// `POST /orders` for the n-th customer order; returns the order number.
    pub async fn create_order(&self, n: usize) -> anyhow::Result<String> {
        let body = self
            .post(
                format!("{}/orders", self.ports.api_url()),
                Some(n),
                json!({"phoneNumber": format!("8870{:03}0", n % 1000), "productOperator": "Unitel",
                       "rechargeType": "voice", "productCode": "SD5000"}),
            )
            .await?;
        body["data"]["orderNumber"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no order number in {body}"))
    }

    /// `POST /payment/create`: payment-api calls unifiedOrder at the sandbox.
    pub async fn create_payment(&self, n: usize, order_number: &str) -> anyhow::Result<()> {
        self.post(
            format!("{}/payment/create", self.ports.api_url()),
            Some(n),
            json!({"orderNumber": order_number}),
        )
        .await
        .map(drop)
    }

    /// The customer pays in WeChat. With `notify`, the sandbox then calls back as the
    /// platform does; without, the caller delivers the notification itself.
    pub async fn pay_at_wechat(&self, order_number: &str, notify: bool) -> anyhow::Result<Paid> {
        let body = self
            .post(
                format!("{}/sandbox/wechat/pay", self.ports.control_url()),
                None,
                json!({"outTradeNo": order_number, "notify": notify}),
            )
            .await?;
        let transaction = match self.direct {
            None => None,
            Some(_) => Some(self.transaction_at_wechat(order_number).await?),
        };
        Ok(Paid {
            order_number: order_number.to_owned(),
            transaction_id: body["transactionId"]
                .as_str()
                .context("no transactionId")?
                .to_owned(),
            total_fee: body["totalFee"].as_i64().context("no totalFee")?,
            transaction,
        })
    }

    /// The paid transaction as WeChat Pay's APIv3 query answers it (and its
    /// `TRANSACTION.SUCCESS` carries it), from the sandbox's record of the order.
    async fn transaction_at_wechat(&self, order_number: &str) -> anyhow::Result<Value> {
        let url = format!(
            "{}/sandbox/wechat/orders/{order_number}",
            self.ports.control_url()
        );
        let order: Value = self
            .http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let v3 = &order["v3"];
        anyhow::ensure!(v3.is_object(), "{order_number} is not an APIv3 order");
        let paid_at: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(order["paidAt"].clone())
                .with_context(|| format!("{order_number} has no paidAt"))?;
        let china = chrono::FixedOffset::east_opt(8 * 3600).context("UTC+8")?;
        let mut payer = serde_json::Map::new();
        payer.insert(
            v3["payerField"].as_str().unwrap_or("openid").to_owned(),
            order["openid"].clone(),
        );
        Ok(json!({
            "appid": v3["appid"], "mchid": v3["mchid"],
            "out_trade_no": order_number, "transaction_id": order["transactionId"],
            "trade_type": "JSAPI", "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
            "bank_type": "OTHERS", "attach": order["attach"].as_str().unwrap_or_default(),
            "success_time": paid_at.with_timezone(&china).format("%Y-%m-%dT%H:%M:%S+08:00").to_string(),
            "payer": payer,
            "amount": {"total": order["totalFee"], "payer_total": order["totalFee"],
                       "currency": "CNY", "payer_currency": "CNY"},
        }))
    }

    /// The deliveries of `paid`, in order; direct mode signs each notification now,
    /// valid for WeChat Pay's five minutes.
    pub fn prepare<'a>(&self, paid: Vec<&'a Paid>) -> anyhow::Result<Vec<Delivery<'a>>> {
        paid.into_iter()
            .map(|paid| {
                let notification = match &self.direct {
                    None => None,
                    Some(direct) => Some(
                        direct.wechat_pay.notification(
                            paid.transaction
                                .as_ref()
                                .context("no transaction to notify: paid in cloud mode")?,
                        ),
                    ),
                };
                Ok(Delivery { paid, notification })
            })
            .collect()
    }

    /// The platform's payment notification: Cloud Hosting's callback (an answer other
    /// than `errcode` 0 is an error) or, in direct mode, WeChat Pay's signed
    /// `TRANSACTION.SUCCESS` (anything but 204 is an error).
    pub async fn deliver(&self, delivery: &Delivery<'_>) -> anyhow::Result<()> {
        match &delivery.notification {
            Some(notification) => {
                self.deliver_notification(notification, &delivery.paid.order_number)
                    .await
            }
            None => self.deliver_callback(delivery.paid).await,
        }
    }

    /// Cloud Hosting's callback for `paid`; an answer other than `errcode` 0 is an error.
    pub async fn deliver_callback(&self, paid: &Paid) -> anyhow::Result<()> {
        let url = format!(
            "{}/payment/callback/{}",
            self.ports.api_url(),
            paid.order_number
        );
        let response = self
            .http
            .post(&url)
            .header("X-WX-SOURCE", "wxpay")
            .json(&payment_notification(
                &paid.order_number,
                &paid.transaction_id,
                paid.total_fee,
                MERCHANT,
            ))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(
            status.is_success() && body["errcode"] == 0,
            "callback for {}: HTTP {status} {body}",
            paid.order_number
        );
        Ok(())
    }

    async fn deliver_notification(
        &self,
        notification: &Notification,
        order_number: &str,
    ) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/payment/notify", self.ports.api_url()))
            .headers(notification.header_map())
            .header("content-type", "application/json")
            .header(CLIENT_ADDRESS, WECHAT_PAY_ADDRESS)
            .body(notification.body.clone())
            .send()
            .await?;
        let status = response.status();
        anyhow::ensure!(
            status == reqwest::StatusCode::NO_CONTENT,
            "notification for {order_number}: HTTP {status} {}",
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Orders placed, given a payment, and paid at WeChat without a notification: ready
    /// for a callback. Prepared `concurrency` at a time, untimed.
    pub async fn orders_paid_quietly(
        &self,
        count: usize,
        first: usize,
    ) -> anyhow::Result<Vec<Paid>> {
        crate::drive::closed_loop(first..first + count, 32, |n| async move {
            let order = self.create_order(n).await?;
            self.create_payment(n, &order).await?;
            self.pay_at_wechat(&order, false).await
        })
        .await
    }

    /// Orders placed and given a payment, not yet paid.
    pub async fn orders_awaiting_payment(
        &self,
        count: usize,
        first: usize,
    ) -> anyhow::Result<Vec<String>> {
        crate::drive::closed_loop(first..first + count, 32, |n| async move {
            let order = self.create_order(n).await?;
            self.create_payment(n, &order).await?;
            Ok(order)
        })
        .await
    }

    /// Waits until every one of `orders` has a final top-up outcome; fails if any is not
    /// `success`.
    pub async fn wait_until_credited(
        &self,
        orders: &[String],
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let (credited, other): (i64, i64) = sqlx::query_as(
                "SELECT count(*) FILTER (WHERE recharge_status = 'success'),
                        count(*) FILTER (WHERE recharge_status IN ('failed', 'unknown'))
                 FROM orders WHERE order_number = ANY($1)",
            )
            .bind(orders)
            .fetch_one(&self.db.pool)
            .await?;
            anyhow::ensure!(other == 0, "{other} top-ups did not succeed");
            if credited as usize == orders.len() {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {credited} of {} credited after {within:?}",
                orders.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Customers repeat, as they do: 500 of them.
const CUSTOMERS: usize = 500;

fn openid(n: usize) -> String {
    format!("bench-customer-{}", n % CUSTOMERS)
}

/// Direct mode's ingress header (`CLIENT_ADDRESS_FROM` in testkit's merchant settings).
const CLIENT_ADDRESS: &str = "X-Original-Forwarded-For";

/// Each customer calls from an address of their own.
fn address(n: usize) -> String {
    let n = n % CUSTOMERS;
    format!("10.20.{}.{}", n / 250, n % 250 + 1)
}

/// Where WeChat Pay's notifications come from, as the ingress reports it.
const WECHAT_PAY_ADDRESS: &str = "101.226.103.10";

//! The system under benchmark: a fresh database, queue names of its own, and the real
//! binaries (sandbox, payment-api, recharge-workers) as separate processes, so that each
//! one's memory can be read and workers can be added and stopped.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use testkit::processes::{
    base_env, delete_queues, payment_notification, peak_rss, Ports, Processes, MERCHANT,
};
use testkit::TestDb;

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
}

pub struct Bench {
    pub db: TestDb,
    processes: Processes,
    ports: Ports,
    prefix: String,
    http: reqwest::Client,
    memory: Memory,
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
    pub async fn start(workers: usize, settings: &[(&str, &str)]) -> anyhow::Result<Bench> {
        let db = TestDb::create().await;
        let prefix = format!("bench-{}", db.name);
        let ports = Ports::free()?;
        let mut env = base_env(&ports, &db.url, &prefix);
        for (name, value) in SETTINGS.iter().chain(settings) {
            env.insert(name.to_string(), value.to_string());
        }
        let processes = Processes::start(env, &ports, workers)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let bench = Bench {
            db,
            processes,
            ports,
            prefix,
            http,
            memory: Memory::default(),
        };
        bench.wait_until_ready().await?;
        Ok(bench)
    }

    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for url in [
            format!("{}/health", self.ports.api_url()),
            format!("{}/sandbox/health", self.ports.control_url()),
        ] {
            loop {
                match self.http.get(&url).send().await {
                    Ok(response) if response.status().is_success() => break,
                    _ if Instant::now() > deadline => anyhow::bail!("{url} never answered"),
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
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

    async fn post(&self, url: String, openid: Option<&str>, body: Value) -> anyhow::Result<Value> {
        let mut request = self.http.post(&url).json(&body);
        if let Some(openid) = openid {
            request = request
                .header("X-WX-OPENID", openid)
                .header("X-WX-SOURCE", "wx_client");
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
                Some(&openid(n)),
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
            Some(&openid(n)),
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
        Ok(Paid {
            order_number: order_number.to_owned(),
            transaction_id: body["transactionId"]
                .as_str()
                .context("no transactionId")?
                .to_owned(),
            total_fee: body["totalFee"].as_i64().context("no totalFee")?,
        })
    }

    /// The platform's payment notification; an answer other than `errcode` 0 is an error.
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
fn openid(n: usize) -> String {
    format!("bench-customer-{}", n % 500)
}

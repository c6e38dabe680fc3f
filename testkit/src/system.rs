//! The whole system for one test: sandbox, payment-api, workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::BasicProperties;
use reqwest::StatusCode;
use sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};
use shared::amqp::Topology;
use shared::config::Settings;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{amqp_url, TestDb};

/// How long a paid top-up may take to reach its final status in a test.
pub const OUTCOME_WITHIN: Duration = Duration::from_secs(20);

/// The admin token every test system is started with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789-abcdefghij";

pub struct SystemOptions {
    /// Workers started in this process; tests that need worker processes spawn them from
    /// [`System::worker_env`].
    pub workers: usize,
    pub app_env: &'static str,
    pub unitel_timeout_ms: u64,
    pub retry_for_ms: u64,
    pub concurrency: u16,
    /// Settings to change from the harness's defaults, e.g. `("PAYMENT_WINDOW_MS", "500")`.
    pub overrides: Vec<(&'static str, String)>,
    /// payment-api as a process of its own, so that its `/metrics` count for this test
    /// alone ([`System::api_metrics`]); otherwise inside the test binary.
    pub api_process: bool,
}

/// How WeChat Pay is reached: `WECHAT_PAY_MODE` among a test's overrides, else
/// `TEST_WECHAT_PAY_MODE` (the suite runs the money path's tests in both modes), else
/// Cloud Hosting.
fn pay_mode(overrides: &[(&'static str, String)]) -> &'static str {
    let chosen = overrides
        .iter()
        .rev()
        .find(|(name, _)| *name == "WECHAT_PAY_MODE")
        .map(|(_, mode)| mode.clone())
        .or_else(|| std::env::var("TEST_WECHAT_PAY_MODE").ok());
    match chosen.as_deref() {
        Some("direct") => "direct",
        _ => "cloud",
    }
}

/// The settings of the mode's channel, pointed at the sandbox.
fn wechat_pay_settings(
    sandbox: &Sandbox,
    mode: &str,
    files: &std::path::Path,
) -> Vec<(&'static str, String)> {
    match mode {
        "direct" => crate::merchant::direct_mode(sandbox, files),
        _ => vec![
            ("WECHAT_API_BASE", sandbox.wechat_url()),
            ("WECHAT_MCH_ID", crate::MCH_ID.into()),
            ("WECHAT_ENV_ID", "test-env".into()),
            ("WECHAT_PAYMENT_CALLBACK_SERVICE", "elife-backend".into()),
            ("WECHAT_PAYMENT_CALLBACK_PATH", "/payment/callback".into()),
        ],
    }
}

impl Default for SystemOptions {
    fn default() -> Self {
        SystemOptions {
            workers: 1,
            app_env: "development",
            unitel_timeout_ms: 2_000,
            retry_for_ms: 10_000,
            concurrency: 8,
            overrides: Vec::new(),
            api_process: false,
        }
    }
}

enum Running {
    Task {
        stop: CancellationToken,
        task: JoinHandle<()>,
    },
    Process(ApiProcess),
}

impl Running {
    async fn stop(self) {
        match self {
            Running::Task { stop, task } => {
                stop.cancel();
                let _ = task.await;
            }
            Running::Process(process) => {
                let _ = tokio::task::spawn_blocking(move || process.terminate()).await;
            }
        }
    }
}

/// A payment-api process: killed if the test ends without stopping it.
struct ApiProcess(Option<std::process::Child>);

impl ApiProcess {
    /// SIGTERM (a graceful stop), then the exit; killed if it hangs.
    fn terminate(mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            for _ in 0..100 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub struct System {
    pub db: TestDb,
    pub sandbox: Sandbox,
    pub api_url: String,
    pub topology: Topology,
    pub http: reqwest::Client,
    settings: HashMap<String, String>,
    api: Option<Running>,
    api_process: bool,
    /// Where the running payment-api serves `/metrics` and `/api`, when apart from its port.
    pub operations_url: Option<String>,
    /// More payment-api instances on the same database and broker.
    more_apis: Vec<Running>,
    workers: Vec<Running>,
    /// Direct mode: each customer's session, opened on their first request and shared by
    /// every [`ApiClient`] of theirs.
    sessions: Arc<Mutex<HashMap<String, Arc<OnceCell<String>>>>>,
}

impl System {
    pub async fn start(options: SystemOptions) -> System {
        crate::init_logs();
        let db = TestDb::create().await;
        let sandbox = Sandbox::start(SandboxConfig::for_tests("http://127.0.0.1:1"))
            .await
            .expect("sandbox starts");
        let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        let mode = pay_mode(&options.overrides);
        let files = std::env::temp_dir().join(&prefix);
        let settings: HashMap<String, String> = [
            ("APP_ENV", options.app_env.to_owned()),
            ("HOST", "127.0.0.1".into()),
            ("PORT", "0".into()),
            ("DATABASE_URL", db.url.clone()),
            ("DATABASE_POOL_SIZE", "10".into()),
            ("AMQP_URL", amqp_url()),
            ("AMQP_PREFIX", prefix.clone()),
            ("AMQP_QUEUE_EXPIRES_MS", "600000".into()),
            ("UNITEL_API_URL", sandbox.unitel_url()),
            ("UNITEL_USERNAME", "elife".into()),
            ("UNITEL_PASSWORD", "elife-secret".into()),
            // The sandbox's one refusal code, documented as "nothing was done".
            ("UNITEL_REFUSAL_CODES", sandbox::REFUSAL_CODE.into()),
            ("UNITEL_TIMEOUT_MS", options.unitel_timeout_ms.to_string()),
            ("UNITEL_RETRY_FOR_MS", options.retry_for_ms.to_string()),
            ("RECHARGE_CONCURRENCY", options.concurrency.to_string()),
            ("WORKER_SHUTDOWN_GRACE_MS", "5000".into()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
            // Read in direct mode only (`WECHAT_PAY_MODE=direct` in the overrides): the
            // mini-program the sandbox knows, whose users log in there.
            ("WECHAT_APP_ID", sandbox::LOGIN_APP_ID.into()),
            ("WECHAT_APP_SECRET", sandbox::LOGIN_APP_SECRET.into()),
            ("WECHAT_LOGIN_API_BASE", sandbox.wechat_url()),
            // The sandbox stands in for WeChat: production mode accepts it only when told
            // so in these words, as any deployment pointing elsewhere would have to.
            (
                "ALLOW_UNSAFE_WECHAT_SETTINGS",
                "payments-can-be-forged".into(),
            ),
        ]
        .into_iter()
        .chain(wechat_pay_settings(&sandbox, mode, &files))
        // Production serves /metrics and /api apart; tests running side by side each need
        // a port of their own for it.
        .chain(
            (options.app_env == "production").then(|| ("METRICS_ADDR", "127.0.0.1:0".to_owned())),
        )
        .chain(options.overrides)
        .map(|(k, v)| (k.to_owned(), v))
        .collect();

        let topology = Topology::new(&prefix);
        let (api_url, operations_url, api) = start_api(settings.clone(), options.api_process).await;
        sandbox.set_callback_base(api_url.clone());

        let mut system = System {
            db,
            sandbox,
            api_url,
            operations_url,
            more_apis: Vec::new(),
            topology,
            http: reqwest::Client::new(),
            settings,
            api: Some(api),
            api_process: options.api_process,
            workers: Vec::new(),
            sessions: Arc::default(),
        };
        system.wait_until_healthy().await;
        for _ in 0..options.workers {
            system.start_worker().await;
        }
        system
    }

    /// Waits until payment-api reaches PostgreSQL and RabbitMQ (so the topology exists).
    pub async fn wait_until_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.anonymous().get("/health").await;
            if status == StatusCode::OK {
                return;
            }
            assert!(Instant::now() < deadline, "payment-api not healthy: {body}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops payment-api and starts it again with some settings changed (the same port is
    /// not guaranteed: `api_url` and the sandbox's callback base follow).
    pub async fn restart_api(&mut self, overrides: &[(&str, &str)]) {
        if let Some(api) = self.api.take() {
            api.stop().await;
        }
        let mut settings = self.settings.clone();
        for (name, value) in overrides {
            settings.insert((*name).to_owned(), (*value).to_owned());
        }
        let (api_url, operations_url, api) = start_api(settings, self.api_process).await;
        self.sandbox.set_callback_base(api_url.clone());
        self.api_url = api_url;
        self.operations_url = operations_url;
        self.api = Some(api);
    }

    /// A `recharge-worker` process joining this system, named `id`, with some settings
    /// changed (`None` removes one, leaving the binary's default).
    pub fn spawn_worker_process(
        &self,
        id: &str,
        changes: &[(&str, Option<&str>)],
    ) -> crate::processes::WorkerProcess {
        let mut env = self.settings.clone();
        env.insert("WORKER_ID".into(), id.to_owned());
        env.insert("RUST_LOG".into(), "warn".into());
        for (name, value) in changes {
            match value {
                Some(value) => env.insert((*name).to_owned(), (*value).to_owned()),
                None => env.remove(*name),
            };
        }
        crate::processes::WorkerProcess::spawn(env).expect("recharge-worker starts")
    }

    /// Environment for a `recharge-worker` or `payment-api` process joining this system.
    pub fn worker_env(&self) -> HashMap<String, String> {
        self.settings.clone()
    }

    /// The payment-api's Prometheus `/metrics`, e.g. to wait for a round of one of its jobs.
    /// Only with `api_process`: inside the test binary its counters would be shared with
    /// every test running beside this one.
    pub fn api_metrics(&self) -> crate::Metrics {
        assert!(
            self.api_process,
            "start the system with api_process to read payment-api's metrics"
        );
        crate::Metrics::at(self.operations_url.as_deref().unwrap_or(&self.api_url))
    }

    pub fn setting(&self, name: &str) -> &str {
        &self.settings[name]
    }

    pub async fn start_worker(&mut self) {
        let mut settings = self.settings.clone();
        settings.insert(
            "WORKER_ID".into(),
            format!(
                "{}-worker-{}",
                self.settings["AMQP_PREFIX"],
                self.workers.len() + 1
            ),
        );
        let config = recharge_worker::WorkerConfig::from_settings(&Settings::from_map(settings))
            .expect("worker configuration is valid");
        let stop = CancellationToken::new();
        let task = tokio::spawn(recharge_worker::run(config, stop.clone()));
        let task = tokio::spawn(async move {
            task.await.expect("worker task").expect("worker runs");
        });
        self.workers.push(Running::Task { stop, task });
    }

    pub async fn stop_workers(&mut self) {
        for worker in self.workers.drain(..) {
            worker.stop().await;
        }
    }

    /// A mini-program user. In cloud mode their requests carry the gateway's headers; in
    /// direct mode (`WECHAT_PAY_MODE=direct`) the first one logs in through the sandbox
    /// (a `wx.login` code, then `POST /auth/login`) and every one carries the session
    /// token as bearer.
    pub fn client(&self, openid: &str) -> ApiClient {
        self.client_at(&self.api_url, openid)
    }

    /// Whether payment-api runs in direct mode (its own sessions, no gateway).
    pub fn is_direct(&self) -> bool {
        self.settings.get("WECHAT_PAY_MODE").map(String::as_str) == Some("direct")
    }

    /// A request to an admin route with `token` (see [`ADMIN_TOKEN`]) as bearer.
    pub async fn admin_request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.api_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request sent")).await
    }

    /// `GET` on an admin route with the right token.
    pub async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        self.admin_request(reqwest::Method::GET, path, Some(ADMIN_TOKEN), None)
            .await
    }

    pub fn anonymous(&self) -> ApiClient {
        ApiClient {
            base: self.api_url.clone(),
            http: self.http.clone(),
            openid: None,
            login: None,
        }
    }

    /// Creates an order for `openid` and pays it through the sandbox; the callback follows.
    pub async fn order_and_pay(
        &self,
        openid: &str,
        msisdn: &str,
        recharge_type: &str,
        code: &str,
    ) -> String {
        let order_number = self
            .order_awaiting_payment(openid, msisdn, recharge_type, code)
            .await;
        self.sandbox.pay(&order_number).await.expect("sandbox pays");
        order_number
    }

    /// A voice top-up (SD5000 on a Smart-data number) ordered, paid and carried to its
    /// end. Returns the order and its final recharge status.
    pub async fn top_up(&self, openid: &str) -> (String, String) {
        let order = self
            .order_and_pay(openid, "88616600", "voice", "SD5000")
            .await;
        let outcome = self.wait_for_outcome(&order, OUTCOME_WITHIN).await;
        (order, outcome)
    }

    /// A voice top-up (SD5000 on a Smart-data number) paid while Unitel misbehaves as
    /// `faults` says. The faults are set only after the order is priced, so they hit the
    /// top-up and not the product lookup. Returns the order and its final recharge status.
    pub async fn top_up_under(
        &self,
        openid: &str,
        faults: sandbox::UnitelFaults,
    ) -> (String, String) {
        let order = self
            .order_awaiting_payment(openid, "88616600", "voice", "SD5000")
            .await;
        self.sandbox.set_faults(sandbox::Faults {
            unitel: faults,
            ..Default::default()
        });
        self.sandbox.pay(&order).await.expect("sandbox pays");
        let outcome = self.wait_for_outcome(&order, OUTCOME_WITHIN).await;
        (order, outcome)
    }

    /// Creates an order and starts its WeChat payment (`/payment/create`), unpaid yet.
    pub async fn order_awaiting_payment(
        &self,
        openid: &str,
        msisdn: &str,
        recharge_type: &str,
        code: &str,
    ) -> String {
        let order_number = self.create_order(openid, msisdn, recharge_type, code).await;
        let (status, body) = self
            .client(openid)
            .post("/payment/create", json!({"orderNumber": order_number}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "payment/create: {body}");
        order_number
    }

    pub async fn create_order(
        &self,
        openid: &str,
        msisdn: &str,
        recharge_type: &str,
        code: &str,
    ) -> String {
        let (status, body) = self
            .client(openid)
            .post(
                "/orders",
                json!({"phoneNumber": msisdn, "productOperator": "Unitel",
                       "rechargeType": recharge_type, "productCode": code}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create order: {body}");
        body["data"]["orderNumber"]
            .as_str()
            .expect("order number")
            .to_owned()
    }

    /// The order's (payment_status, recharge_status).
    pub async fn statuses(&self, order_number: &str) -> (String, String) {
        sqlx::query_as("SELECT payment_status, recharge_status FROM orders WHERE order_number = $1")
            .bind(order_number)
            .fetch_one(&self.db.pool)
            .await
            .expect("order exists")
    }

    /// How many times Unitel credited this order, by the sandbox's ledger.
    pub fn credits_for(&self, order_number: &str) -> usize {
        self.sandbox
            .ledger()
            .iter()
            .filter(|c| c.journal_id == order_number)
            .count()
    }

    /// The order's history, oldest first: event names.
    pub async fn events(&self, order_number: &str) -> Vec<String> {
        sqlx::query_scalar("SELECT event FROM order_events WHERE order_number = $1 ORDER BY id")
            .bind(order_number)
            .fetch_all(&self.db.pool)
            .await
            .expect("order events")
    }

    /// How many requests to Unitel were marked as sent for this order.
    pub async fn recharge_attempts(&self, order_number: &str) -> i32 {
        sqlx::query_scalar("SELECT recharge_attempts FROM orders WHERE order_number = $1")
            .bind(order_number)
            .fetch_one(&self.db.pool)
            .await
            .expect("order exists")
    }

    /// Waits until the order's recharge status is final, and returns it.
    pub async fn wait_for_outcome(&self, order_number: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let (_, recharge) = self.statuses(order_number).await;
            if ["success", "failed", "unknown"].contains(&recharge.as_str()) {
                return recharge;
            }
            assert!(
                Instant::now() < deadline,
                "order {order_number} still {recharge} after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until `sql` (a scalar count query) returns `expected`.
    pub async fn wait_for_count(&self, sql: &str, expected: i64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let count: i64 = sqlx::query_scalar(sql)
                .fetch_one(&self.db.pool)
                .await
                .expect("count query");
            if count == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{sql} = {count}, expected {expected} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the sandbox owes no callback: each one it started was accepted (or given
    /// up on) and is in its `callback_log`. Fails the test after 30 s.
    pub async fn wait_for_callbacks_delivered(&self) {
        let deadline = Instant::now() + crate::metrics::WAIT_AT_MOST;
        while self.sandbox.callbacks_owed() > 0 {
            assert!(
                Instant::now() < deadline,
                "{} callbacks still being delivered after {:?}: {:#?}",
                self.sandbox.callbacks_owed(),
                crate::metrics::WAIT_AT_MOST,
                self.sandbox.callback_log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Publishes `payload` to the system's exchange as an OrderPaid message, persistent,
    /// and returns once the broker confirmed it.
    pub async fn publish_order_paid(&self, payload: &[u8]) {
        let connection = shared::amqp::connect(&amqp_url(), "test")
            .await
            .expect("broker");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .basic_publish(
                self.topology.exchange.as_str().into(),
                shared::amqp::ORDER_PAID_ROUTING_KEY.into(),
                BasicPublishOptions::default(),
                payload,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("published")
            .await
            .expect("confirmed");
        let _ = connection.close(200, "".into()).await;
    }

    /// Publishes the order's OrderPaid message again, as the outbox wrote it: what a
    /// redelivery or a sweep's requeue hands a worker.
    pub async fn redeliver(&self, order_number: &str) {
        let payload: Value =
            sqlx::query_scalar("SELECT payload FROM outbox WHERE order_number = $1")
                .bind(order_number)
                .fetch_one(&self.db.pool)
                .await
                .expect("the order's outbox row");
        self.publish_order_paid(payload.to_string().as_bytes())
            .await;
    }

    /// Messages waiting in the recharge queue (declares nothing).
    pub async fn queued_messages(&self) -> u32 {
        let connection = shared::amqp::connect(&amqp_url(), "test")
            .await
            .expect("broker");
        let channel = connection.create_channel().await.expect("channel");
        let queue = channel
            .queue_declare(
                self.topology.queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .expect("queue exists");
        let _ = connection.close(200, "".into()).await;
        queue.message_count()
    }

    /// Has RabbitMQ close every connection whose name contains `name` (as a broker restart
    /// or a network cut would), through `rabbitmqctl`. Returns how many it closed.
    pub fn close_broker_connections(&self, name: &str) -> usize {
        let listed = std::process::Command::new("rabbitmqctl")
            .args([
                "list_connections",
                "-q",
                "--no-table-headers",
                "pid",
                "client_properties",
            ])
            .output()
            .expect("rabbitmqctl runs");
        let text = String::from_utf8_lossy(&listed.stdout);
        let mut closed = 0;
        for line in text.lines().filter(|l| l.contains(name)) {
            let pid = line.split_whitespace().next().unwrap_or_default();
            let status = std::process::Command::new("rabbitmqctl")
                .args(["close_connection", pid, "closed by a test"])
                .output()
                .expect("rabbitmqctl runs");
            if status.status.success() {
                closed += 1;
            }
        }
        closed
    }

    /// Stops everything and removes this test's queues and exchanges.
    /// Starts another payment-api on the same database and broker, as a second instance
    /// of a deployment; returns its base URL. It stops with the system.
    pub async fn start_another_api(&mut self) -> String {
        let (url, _, api) = start_api(self.settings.clone(), self.api_process).await;
        self.more_apis.push(api);
        url
    }

    /// A mini-program user talking to the payment-api at `base`.
    pub fn client_at(&self, base: &str, openid: &str) -> ApiClient {
        let login = self.is_direct().then(|| DirectLogin {
            sandbox: self.sandbox.control_url(),
            token: self
                .sessions
                .lock()
                .unwrap()
                .entry(openid.to_owned())
                .or_default()
                .clone(),
        });
        ApiClient {
            base: base.to_owned(),
            http: self.http.clone(),
            openid: Some(openid.to_owned()),
            login,
        }
    }

    pub async fn shutdown(mut self) {
        self.stop_workers().await;
        for api in self.more_apis.drain(..) {
            api.stop().await;
        }
        if let Some(api) = self.api.take() {
            api.stop().await;
        }
        if let Ok(connection) = shared::amqp::connect(&amqp_url(), "test cleanup").await {
            if let Ok(channel) = connection.create_channel().await {
                for queue in [&self.topology.queue, &self.topology.dead_letter_queue] {
                    let _ = channel
                        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
                for exchange in [&self.topology.exchange, &self.topology.dead_letter_exchange] {
                    let _ = channel
                        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                        .await;
                }
            }
            let _ = connection.close(200, "".into()).await;
        }
        self.sandbox.shutdown().await;
    }
}

async fn start_api(
    settings: HashMap<String, String>,
    as_process: bool,
) -> (String, Option<String>, Running) {
    if as_process {
        return start_api_process(settings).await;
    }
    let config = payment_api::ApiConfig::from_settings(&Settings::from_map(settings))
        .expect("test configuration is valid");
    let app = payment_api::Application::build(config)
        .await
        .expect("payment-api builds");
    let api_url = format!("http://127.0.0.1:{}", app.port());
    let operations_url = app
        .operations_port()
        .map(|port| format!("http://127.0.0.1:{port}"));
    let stop = CancellationToken::new();
    let until = stop.clone();
    let task = tokio::spawn(async move {
        app.run_until(until.cancelled_owned())
            .await
            .expect("payment-api runs");
    });
    (api_url, operations_url, Running::Task { stop, task })
}

/// payment-api from this build's binary, on free ports, once it answers `/health`.
async fn start_api_process(
    mut settings: HashMap<String, String>,
) -> (String, Option<String>, Running) {
    use crate::processes::{binary, free_port};
    let port = free_port().expect("a free port");
    settings.insert("PORT".into(), port.to_string());
    let operations_url = settings.contains_key("METRICS_ADDR").then(|| {
        let addr = format!("127.0.0.1:{}", free_port().expect("a free port"));
        settings.insert("METRICS_ADDR".into(), addr.clone());
        format!("http://{addr}")
    });
    settings.insert(
        "RUST_LOG".into(),
        std::env::var("TESTKIT_LOG").unwrap_or_else(|_| "error".into()),
    );
    let child = std::process::Command::new(binary("payment-api").expect("payment-api is built"))
        .env_clear()
        .envs(&settings)
        .stdout(crate::processes::log_output())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("payment-api starts");
    let mut process = ApiProcess(Some(child));
    let api_url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{api_url}/health")).send().await.is_err() {
        if let Some(Ok(Some(status))) = process.0.as_mut().map(|child| child.try_wait()) {
            panic!("payment-api exited at start: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "payment-api does not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (api_url, operations_url, Running::Process(process))
}

/// A mini-program user (or an anonymous caller) talking to payment-api.
#[derive(Clone)]
pub struct ApiClient {
    pub base: String,
    pub http: reqwest::Client,
    pub openid: Option<String>,
    /// Direct mode: how this user logs in, and the session once they did.
    login: Option<DirectLogin>,
}

#[derive(Clone)]
struct DirectLogin {
    /// The sandbox's control API, which plays `wx.login`.
    sandbox: String,
    token: Arc<OnceCell<String>>,
}

impl ApiClient {
    async fn with_identity(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let Some(openid) = &self.openid else {
            return request;
        };
        let request = request.header("X-Original-Forwarded-For", address_of(openid));
        match &self.login {
            None => request
                .header("X-WX-OPENID", openid)
                .header("X-WX-SOURCE", "wx_client"),
            Some(_) => request.bearer_auth(self.session_token().await.unwrap_or_default()),
        }
    }

    /// Direct mode: this user's session token, logging in first if they have none yet
    /// (panics if the login is refused). Cloud mode, or anonymous: `None`.
    pub async fn session_token(&self) -> Option<String> {
        let (login, openid) = (self.login.as_ref()?, self.openid.as_ref()?);
        let token = login
            .token
            .get_or_init(|| async {
                let (status, minted) = read(
                    self.http
                        .post(format!("{}/sandbox/wechat/login-code", login.sandbox))
                        .json(&json!({ "openid": openid }))
                        .send()
                        .await
                        .expect("sandbox reached"),
                )
                .await;
                assert_eq!(status, StatusCode::OK, "sandbox login code: {minted}");
                let (status, session) = self.log_in(minted["code"].as_str().unwrap()).await;
                assert_eq!(status, StatusCode::CREATED, "POST /auth/login: {session}");
                session["data"]["token"]
                    .as_str()
                    .expect("a token")
                    .to_owned()
            })
            .await;
        Some(token.clone())
    }

    /// `POST /auth/login {"code"}` from this user's address, without a bearer.
    pub async fn log_in(&self, code: &str) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}/auth/login", self.base))
            .json(&json!({ "code": code }));
        if let Some(openid) = &self.openid {
            request = request.header("X-Original-Forwarded-For", address_of(openid));
        }
        read(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let request = self
            .with_identity(self.http.get(format!("{}{path}", self.base)))
            .await;
        read(request.send().await.expect("request sent")).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let request = self
            .with_identity(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await;
        read(request.send().await.expect("request sent")).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read(request.send().await.expect("request sent")).await
    }
}

/// Each simulated customer calls from an address of their own, as customers behind the
/// gateway do: per-address limits apply to tests that mean them to.
fn address_of(openid: &str) -> String {
    let hash = openid.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    let [_, a, b, c] = hash.to_be_bytes();
    format!("10.{a}.{b}.{c}")
}

async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

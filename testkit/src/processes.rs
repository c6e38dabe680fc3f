//! The system as separate processes: the sandbox, payment-api and recharge-workers,
//! started from the binaries of this build, against the local PostgreSQL and RabbitMQ.
//! The fault run kills them; the benchmark scales them and reads their memory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use lapin::options::QueueDeleteOptions;

pub const MERCHANT: &str = "1712734762";

pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A binary of this build: beside the running one (a `cargo run` binary) or one directory
/// up (a test, which runs from `target/<profile>/deps`).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .context("no directory for the running binary")?;
    let found = [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join(name))
        .find(|path| path.exists());
    found.with_context(|| {
        format!(
            "{name} not found beside {}: build the binaries first (cargo build --bins)",
            exe.display()
        )
    })
}

pub struct Ports {
    pub api: u16,
    /// payment-api's `/metrics` and `/api` (`METRICS_ADDR`), apart in production.
    pub operations: u16,
    pub wechat: u16,
    pub unitel: u16,
}

impl Ports {
    pub fn free() -> anyhow::Result<Ports> {
        Ok(Ports {
            api: free_port()?,
            operations: free_port()?,
            wechat: free_port()?,
            unitel: free_port()?,
        })
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api)
    }

    /// The sandbox's WeChat port also serves its control API.
    pub fn control_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.wechat)
    }
}

/// Where the children's logs go: nowhere, unless `TESTKIT_LOG` asks for them.
pub(crate) fn log_output() -> Stdio {
    if std::env::var_os("TESTKIT_LOG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// The environment every process gets: production mode, this database, queues under
/// `prefix`, and the sandbox in place of WeChat and Unitel. Callers add their own.
pub fn base_env(ports: &Ports, database_url: &str, prefix: &str) -> HashMap<String, String> {
    [
        ("APP_ENV", "production".to_owned()),
        // Quiet by default; `TESTKIT_LOG=warn` (any RUST_LOG filter) shows more.
        (
            "RUST_LOG",
            std::env::var("TESTKIT_LOG").unwrap_or_else(|_| "error".into()),
        ),
        ("HOST", "127.0.0.1".into()),
        ("PORT", ports.api.to_string()),
        // The sandbox is not WeChat's open interface: production accepts it only when told
        // so in these words, as any deployment pointing elsewhere would have to.
        (
            "ALLOW_UNSAFE_WECHAT_SETTINGS",
            "payments-can-be-forged".into(),
        ),
        ("DATABASE_URL", database_url.to_owned()),
        ("AMQP_URL", crate::amqp_url()),
        ("AMQP_PREFIX", prefix.to_owned()),
        ("AMQP_QUEUE_EXPIRES_MS", "3600000".into()),
        (
            "WECHAT_API_BASE",
            format!("http://127.0.0.1:{}", ports.wechat),
        ),
        ("WECHAT_MCH_ID", MERCHANT.into()),
        ("WECHAT_ENV_ID", "local".into()),
        ("WECHAT_PAYMENT_CALLBACK_SERVICE", "elife-backend".into()),
        (
            "UNITEL_API_URL",
            format!("http://127.0.0.1:{}/api/v1", ports.unitel),
        ),
        ("UNITEL_USERNAME", "elife".into()),
        ("UNITEL_PASSWORD", "elife-secret".into()),
        ("UNITEL_REFUSAL_CODES", sandbox::REFUSAL_CODE.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// One payment-api instance's ports: its public port and its operations port.
#[derive(Debug, Clone, Copy)]
pub struct ApiPorts {
    pub port: u16,
    pub operations: u16,
}

impl ApiPorts {
    pub fn free() -> anyhow::Result<ApiPorts> {
        Ok(ApiPorts {
            port: free_port()?,
            operations: free_port()?,
        })
    }
}

/// How the system is laid out.
pub struct Layout {
    /// payment-api instances; the sandbox calls back at `Ports::api` (one instance there,
    /// or a proxy in front of several).
    pub apis: Vec<ApiPorts>,
    pub workers: usize,
    /// Callbacks retried on WeChat's own schedule (15 s, 15 s, 30 s, 3 min, ...) rather
    /// than a quick one.
    pub platform_callback_timing: bool,
}

pub struct Processes {
    pub env: HashMap<String, String>,
    sandbox: Option<Child>,
    apis: Vec<Option<Child>>,
    workers: Vec<Child>,
    /// `WORKER_ID` of each entry of `workers`.
    worker_ids: Vec<String>,
    started_workers: usize,
}

impl Processes {
    /// One payment-api on `ports.api`, `workers` workers, quick callback retries.
    pub fn start(
        env: HashMap<String, String>,
        ports: &Ports,
        workers: usize,
    ) -> anyhow::Result<Self> {
        let layout = Layout {
            apis: vec![ApiPorts {
                port: ports.api,
                operations: ports.operations,
            }],
            workers,
            platform_callback_timing: false,
        };
        Self::start_with(env, ports, &layout)
    }

    pub fn start_with(
        env: HashMap<String, String>,
        ports: &Ports,
        layout: &Layout,
    ) -> anyhow::Result<Self> {
        let mut sandbox = Command::new(binary("sandbox")?);
        // Only what the layout gives: nothing the caller's shell exported (a sourced
        // .env.example) may change the settings a run claims are the shipped ones.
        sandbox
            .arg("serve")
            .env_clear()
            .envs(&env)
            .env("SANDBOX_WECHAT_PORT", ports.wechat.to_string())
            .env("SANDBOX_UNITEL_PORT", ports.unitel.to_string())
            .env("SANDBOX_CALLBACK_BASE", ports.api_url())
            .env("SANDBOX_CLOSE_MIN_AGE_SECS", "0");
        if !layout.platform_callback_timing {
            sandbox.env(
                "SANDBOX_CALLBACK_RETRY_MS",
                "100,200,500,1000,1000,2000,2000,3000,5000,5000,5000,5000,5000,5000,5000,5000",
            );
        }
        let sandbox = sandbox
            .stdout(log_output())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the sandbox")?;
        let mut env = env;
        // Direct mode: payment-api verifies WeChat Pay with the key the sandbox made at
        // its start, which it writes into this directory.
        if let Some(dir) = env.get("SANDBOX_V3_KEYS_DIR").cloned() {
            let dir = std::path::PathBuf::from(dir);
            let id_file = dir.join("wechatpay_public_key_id");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while !id_file.exists() {
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "the sandbox wrote no WeChat Pay key into {}",
                    dir.display()
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let id = std::fs::read_to_string(&id_file)?.trim().to_owned();
            env.insert("WECHAT_PAY_PUBLIC_KEY_ID".into(), id);
            env.insert(
                "WECHAT_PAY_PUBLIC_KEY_FILE".into(),
                dir.join("wechatpay_public_key.pem")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        let mut processes = Processes {
            env,
            sandbox: Some(sandbox),
            apis: Vec::new(),
            workers: Vec::new(),
            worker_ids: Vec::new(),
            started_workers: 0,
        };
        for api in &layout.apis {
            processes.spawn_api(api)?;
        }
        for _ in 0..layout.workers {
            processes.spawn_worker()?;
        }
        Ok(processes)
    }

    /// Starts a payment-api instance with `self.env`: after the sandbox, for settings that
    /// are only known once it runs (the keys it made).
    pub fn spawn_api(&mut self, api: &ApiPorts) -> anyhow::Result<()> {
        let child = Command::new(binary("payment-api")?)
            .env_clear()
            .envs(&self.env)
            .env("PORT", api.port.to_string())
            // Its /metrics and /api: apart from the public port, as in production.
            .env("METRICS_ADDR", format!("127.0.0.1:{}", api.operations))
            .stdout(log_output())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting payment-api")?;
        self.apis.push(Some(child));
        Ok(())
    }

    /// SIGKILL one payment-api instance (no restart).
    pub fn kill_api(&mut self, index: usize) -> anyhow::Result<()> {
        if let Some(mut api) = self.apis.get_mut(index).and_then(Option::take) {
            api.kill()?;
            api.wait()?;
        }
        Ok(())
    }

    pub fn spawn_worker(&mut self) -> anyhow::Result<()> {
        self.started_workers += 1;
        let id = format!("worker-{}", self.started_workers);
        self.worker_ids.push(id.clone());
        let worker = Command::new(binary("recharge-worker")?)
            .env_clear()
            .envs(&self.env)
            .env("WORKER_ID", id)
            .stdout(log_output())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a recharge-worker")?;
        self.workers.push(worker);
        Ok(())
    }

    /// SIGKILL one worker (no chance to clean up) and start a replacement; returns the
    /// killed worker's `WORKER_ID`.
    pub fn kill_a_worker(&mut self, index: usize) -> anyhow::Result<Option<String>> {
        if self.workers.is_empty() {
            return Ok(None);
        }
        let position = index % self.workers.len();
        let id = self.worker_ids.remove(position);
        let mut victim = self.workers.remove(position);
        let killed = victim.kill();
        victim.wait()?;
        killed?;
        self.spawn_worker()?;
        Ok(Some(id))
    }

    pub fn api_pid(&self) -> u32 {
        self.apis.iter().flatten().next().map_or(0, Child::id)
    }

    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().map(Child::id).collect()
    }

    /// SIGTERM (a graceful stop) to every worker, then wait for them.
    pub fn stop_workers(&mut self) {
        stop(&mut self.workers);
        self.worker_ids.clear();
    }

    pub fn stop(mut self) {
        let mut all: Vec<Child> = self.workers.drain(..).collect();
        all.extend(self.apis.iter_mut().filter_map(Option::take));
        all.extend(self.sandbox.take());
        stop(&mut all);
    }
}

/// A run that ends early (a failed assertion, an error) leaves no process behind.
impl Drop for Processes {
    fn drop(&mut self) {
        let all = self
            .workers
            .iter_mut()
            .chain(self.apis.iter_mut().flatten())
            .chain(self.sandbox.as_mut());
        for child in all {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn stop(children: &mut Vec<Child>) {
    for child in children.iter() {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    for child in children.iter_mut() {
        // A graceful stop takes a moment; a process that hangs is killed.
        for _ in 0..50 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    children.clear();
}

/// The most memory a process has had resident since it started (`VmHWM`), in bytes.
pub fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc/<pid>/status")?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024)
}

/// The queues a run under `prefix` declared (they also expire by themselves).
pub async fn delete_queues(prefix: &str) {
    if let Ok(connection) = shared::amqp::connect(&crate::amqp_url(), "cleanup").await {
        if let Ok(channel) = connection.create_channel().await {
            for queue in [
                format!("{prefix}.recharge"),
                format!("{prefix}.recharge.dead"),
            ] {
                let _ = channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        let _ = connection.close(200, "".into()).await;
    }
}

/// A payment notification as the platform sends it, for an order paid at WeChat.
pub fn payment_notification(
    order: &str,
    transaction_id: &str,
    total_fee: i64,
    merchant: &str,
) -> serde_json::Value {
    serde_json::json!({
        "returnCode": "SUCCESS", "resultCode": "SUCCESS", "appid": "wx-app", "mchId": "1800780001",
        "subAppid": "wx-sub", "subMchId": merchant, "nonceStr": "f6444fd22de27b16",
        "openid": "oPoo", "isSubscribe": "N", "subOpenid": "oZWa", "subIsSubscribe": "N",
        "tradeType": "JSAPI", "bankType": "OTHERS", "totalFee": total_fee, "feeType": "CNY",
        "cashFee": total_fee, "transactionId": transaction_id, "outTradeNo": order,
        "timeEnd": "20261124120000", "attach": order,
    })
}

/// One recharge-worker process of a test's system: killed if the test ends without
/// stopping it, so that a failing test leaves nothing behind.
pub struct WorkerProcess {
    child: Option<Child>,
    /// Where it serves `/metrics`: its counters are this test's alone.
    metrics: Option<String>,
}

impl WorkerProcess {
    /// Serves `/metrics` on a free port unless `env` names one (`METRICS_ADDR`; port 0,
    /// which a test system sets for payment-api in production mode, names none).
    pub fn spawn(mut env: HashMap<String, String>) -> anyhow::Result<WorkerProcess> {
        let named = env
            .get("METRICS_ADDR")
            .and_then(|addr| addr.parse::<std::net::SocketAddr>().ok())
            .is_some_and(|addr| addr.port() != 0);
        if !named {
            env.insert("METRICS_ADDR".into(), format!("127.0.0.1:{}", free_port()?));
        }
        let metrics = env["METRICS_ADDR"]
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|addr| format!("http://{addr}"));
        let child = Command::new(binary("recharge-worker")?)
            .env_clear()
            .envs(env)
            .stdout(log_output())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a recharge-worker")?;
        Ok(WorkerProcess {
            child: Some(child),
            metrics,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Its Prometheus `/metrics`.
    pub fn metrics(&self) -> crate::Metrics {
        crate::Metrics::at(self.metrics.as_deref().expect("METRICS_ADDR is an address"))
    }

    /// Sends a signal by name (`KILL`, `TERM`, `STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status();
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().expect("a running worker");
        child.wait().expect("the worker exits")
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

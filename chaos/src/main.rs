//! The fault-injection run: the real system (sandbox, two payment-api instances behind a
//! round-robin proxy, several workers) under load while workers are SIGKILLed, one
//! payment-api instance is SIGKILLed, RabbitMQ and PostgreSQL restart, Unitel misbehaves
//! and forgers send callbacks. Then the books are checked and the figures printed: the
//! top-ups against Unitel's ledger, the payments and refunds against WeChat's, and how long
//! each fault took to heal.
//!
//! Every setting is the one a deployment ships with: nothing shortens a lease, a sweep or
//! a timeout. What it sets is what any deployment sets (addresses, the sandbox's refusal
//! code, and its consent to a WeChat address that is not WeChat's).
//!
//!   chaos [--orders N] [--workers N] [--concurrency N] [--no-restarts] [--keep-database]
//!         [--direct]
//!
//! `--direct`: the same run with WeChat Pay reached directly (APIv3, `WECHAT_PAY_MODE=direct`):
//! customers log in with `wx.login` codes, payments arrive as signed, encrypted
//! notifications, and the forgers forge those.
//!
//! Run it through `scripts/fault-run.sh`, which builds the binaries first.

mod load;
mod processes;
mod recovery;
mod verdict;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde_json::json;
use sqlx::{Connection, PgConnection};

use load::Client;
use recovery::{Fault, Recoveries};
use testkit::processes::{base_env, delete_queues, ApiPorts, Layout, Ports, Processes};
use testkit::proxy::RoundRobin;

const ADMIN_DB: &str = "postgres://postgres@127.0.0.1:5432/postgres";

struct Options {
    orders: usize,
    workers: usize,
    concurrency: usize,
    restarts: bool,
    keep_database: bool,
    direct: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        orders: 1000,
        workers: 3,
        concurrency: 32,
        restarts: true,
        keep_database: false,
        direct: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> anyhow::Result<usize> {
            args.next()
                .with_context(|| format!("{name} needs a number"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--orders" => options.orders = number("--orders")?,
            "--workers" => options.workers = number("--workers")?.max(1),
            "--concurrency" => options.concurrency = number("--concurrency")?.max(1),
            "--no-restarts" => options.restarts = false,
            "--keep-database" => options.keep_database = true,
            "--direct" => options.direct = true,
            other => anyhow::bail!(
                "unknown argument {other:?}; see the comment at the top of chaos/src/main.rs"
            ),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let started = Instant::now();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let database = format!("elife_chaos_{stamp}");
    let mut admin = PgConnection::connect(ADMIN_DB)
        .await
        .context("PostgreSQL must be running")?;
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let database_url = format!("postgres://postgres@127.0.0.1:5432/{database}");
    let prefix = format!("chaos-{stamp}");

    let ports = Ports::free()?;
    let mut env = base_env(&ports, &database_url, &prefix);
    // The run ends by reconciling its day with WeChat's bill, as an operator would (the
    // admin route); the simulated WeChat serves today's bill at once instead of at 10:00
    // tomorrow.
    env.insert("ADMIN_TOKEN".into(), verdict::ADMIN_TOKEN.into());
    env.insert("SANDBOX_BILLS_READY".into(), "immediately".into());
    if options.direct {
        // Outside Cloud Hosting: none of its settings, the merchant's own keys instead;
        // the sandbox registers the same merchant and writes the key it signs with.
        for cloud_only in [
            "WECHAT_API_BASE",
            "WECHAT_ENV_ID",
            "WECHAT_PAYMENT_CALLBACK_SERVICE",
        ] {
            env.remove(cloud_only);
        }
        let wechat_url = format!("http://127.0.0.1:{}", ports.wechat);
        for (name, value) in testkit::merchant_settings(&wechat_url) {
            env.insert(name.into(), value);
        }
        let keys = std::env::temp_dir().join(format!("{prefix}-wechatpay-keys"));
        env.insert(
            "SANDBOX_V3_KEYS_DIR".into(),
            keys.to_string_lossy().into_owned(),
        );
    }
    // The deployment's address is the proxy's: customers and WeChat's callbacks reach
    // whichever instance is alive.
    let apis = vec![ApiPorts::free()?, ApiPorts::free()?];
    let proxy = RoundRobin::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], ports.api)),
        apis.iter()
            .map(|a| std::net::SocketAddr::from(([127, 0, 0, 1], a.port)))
            .collect(),
    )
    .await?;

    println!(
        "fault run: {} orders, {} workers, concurrency {}, restarts {}, WeChat Pay {}",
        options.orders,
        options.workers,
        options.concurrency,
        if options.restarts { "on" } else { "off" },
        if options.direct {
            "APIv3 (direct)"
        } else {
            "Cloud Hosting"
        }
    );
    let layout = Layout {
        apis,
        workers: options.workers,
        // WeChat retries a callback that failed 15 s later, then 15 s, 30 s, 3 min...
        platform_callback_timing: true,
    };
    let api_v3_key = env.get("WECHAT_API_V3_KEY").cloned();
    let processes = Processes::start_with(env, &ports, &layout)?;
    // Each instance's /metrics: settling waits for rounds of its jobs.
    let operations: Vec<testkit::Metrics> = layout
        .apis
        .iter()
        .map(|api| testkit::Metrics::at(&format!("http://127.0.0.1:{}", api.operations)))
        .collect();
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        api: proxy.url(),
        control: ports.control_url(),
        direct: options.direct,
        api_v3_key,
    };
    let outcome = run(
        &options,
        &client,
        processes,
        &operations,
        &database_url,
        &prefix,
        started,
    )
    .await;

    if !options.keep_database {
        let mut admin = PgConnection::connect(ADMIN_DB).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
    }
    delete_queues(&prefix).await;
    let passed = outcome?;
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}

async fn run(
    options: &Options,
    client: &Client,
    mut processes: Processes,
    operations: &[testkit::Metrics],
    database_url: &str,
    prefix: &str,
    started: Instant,
) -> anyhow::Result<bool> {
    wait_for_health(client).await?;
    let db = sqlx::PgPool::connect(database_url).await?;
    // Unitel answers in 1.5 s and misbehaves at set rates throughout; each platform
    // callback comes three times.
    let faults = json!({
        "wechat": {"callbackDuplicates": 2, "v3": {"notificationDuplicates": 2}},
        "unitel": {"latencyMs": 1500, "failRate": 0.05, "timeoutAfterCreditRate": 0.02,
                   "dropAfterCreditRate": 0.02},
    });
    client.set_faults(&faults).await?;

    let paid = Arc::new(AtomicUsize::new(0));
    let orders = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let load = {
        let paid = paid.clone();
        let orders = orders.clone();
        futures::stream::iter(0..options.orders)
            .map(move |n| {
                let paid = paid.clone();
                let orders = orders.clone();
                async move {
                    let order = client.place_order(n).await?;
                    client.pay(&order).await?;
                    paid.fetch_add(1, Ordering::Relaxed);
                    orders.lock().await.push(order);
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(options.concurrency)
            .collect::<Vec<_>>()
    };

    let mut disruptions = Disruptions {
        db: Some(db.clone()),
        ..Disruptions::default()
    };
    let mut load = std::pin::pin!(load);
    let mut tick = tokio::time::interval(Duration::from_millis(1000));
    let results = loop {
        tokio::select! {
            results = &mut load => break results,
            _ = tick.tick() => {
                let done = paid.load(Ordering::Relaxed);
                disruptions.step(options, &mut processes, client, &faults, done).await?;
            }
        }
    };
    let failures: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    for failure in failures.iter().take(5) {
        eprintln!("load error: {failure}");
    }
    // Whatever restarts the load finished before, they happen in every run.
    disruptions
        .finish(options, &mut processes, client, &faults)
        .await?;
    let load_seconds = started.elapsed().as_secs_f64();

    let forged = verdict::forge(client).await?;
    client.set_faults(&json!({})).await?;
    // The shipped sweeps and retries run on their own periods (5 s, 2 min): settling
    // takes minutes, not seconds.
    let settled = verdict::settle(database_url, prefix, Duration::from_secs(420), operations).await;
    let healed = std::mem::take(&mut disruptions.recoveries).results().await;
    let report = verdict::check(
        client,
        database_url,
        prefix,
        &orders.lock().await,
        &forged,
        failures.len(),
        &healed,
    )
    .await?;
    processes.stop();
    println!("\nload phase {load_seconds:.1} s, whole run {:.1} s; workers SIGKILLed {}, payment-api instances SIGKILLed {}, RabbitMQ restarts {}, PostgreSQL restarts {}, Unitel refusal windows {}",
        started.elapsed().as_secs_f64(), disruptions.kills, disruptions.api_kills, disruptions.rabbit_restarts, disruptions.postgres_restarts, disruptions.refusals);
    if let Err(error) = settled {
        println!("settling: {error}");
    }
    report.print();
    Ok(report.passed())
}

async fn wait_for_health(client: &Client) -> anyhow::Result<()> {
    for _ in 0..200 {
        if let Ok(response) = client
            .http
            .get(format!("{}/health", client.api))
            .send()
            .await
        {
            if response.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("payment-api did not become healthy")
}

#[derive(Default)]
struct Disruptions {
    db: Option<sqlx::PgPool>,
    ticks: usize,
    kills: usize,
    api_kills: usize,
    refusals: usize,
    rabbit_restarts: usize,
    postgres_restarts: usize,
    recoveries: Recoveries,
}

impl Disruptions {
    /// Every tick: SIGKILL a worker; every tenth tick: Unitel refuses connections for a
    /// moment (and drops those open); once a fifth of the orders are paid, SIGKILL one payment-api instance; at a
    /// quarter, restart RabbitMQ; at half, PostgreSQL.
    async fn step(
        &mut self,
        options: &Options,
        processes: &mut Processes,
        client: &Client,
        faults: &serde_json::Value,
        paid: usize,
    ) -> anyhow::Result<()> {
        self.ticks += 1;
        if let Some(killed) = processes.kill_a_worker(self.ticks)? {
            if let Some(db) = &self.db {
                self.recoveries.worker_killed(db, &killed).await;
            }
        }
        self.kills += 1;
        if self.api_kills == 0 && paid * 5 >= options.orders {
            println!("SIGKILL payment-api instance 1 of 2 ({paid} orders paid)");
            processes.kill_api(0)?;
            if let Some(db) = &self.db {
                self.recoveries.api_killed(db, client).await;
            }
            self.api_kills += 1;
        }
        // Rarely enough that a customer's lookup (two calls of 1.5 s) can get through
        // between windows: each window also drops every connection open at the time.
        if self.ticks.is_multiple_of(10) {
            let mut refusing = faults.clone();
            refusing["unitel"]["refuseConnectionsForMs"] = json!(400);
            if client.set_faults(&refusing).await.is_ok() {
                self.refusals += 1;
            }
        }
        if options.restarts && self.rabbit_restarts == 0 && paid * 4 >= options.orders {
            println!("restarting RabbitMQ ({paid} orders paid)");
            let at = Instant::now();
            tokio::task::spawn_blocking(processes::restart_rabbitmq).await??;
            self.recoveries.restarted(Fault::RabbitRestart, at, client);
            self.rabbit_restarts += 1;
        }
        if options.restarts && self.postgres_restarts == 0 && paid * 2 >= options.orders {
            println!("restarting PostgreSQL ({paid} orders paid)");
            let at = Instant::now();
            tokio::task::spawn_blocking(processes::restart_postgres).await??;
            self.recoveries
                .restarted(Fault::PostgresRestart, at, client);
            self.postgres_restarts += 1;
        }
        Ok(())
    }

    async fn finish(
        &mut self,
        options: &Options,
        processes: &mut Processes,
        client: &Client,
        faults: &serde_json::Value,
    ) -> anyhow::Result<()> {
        if self.kills == 0 || self.api_kills == 0 {
            self.step(options, processes, client, faults, options.orders)
                .await?;
        }
        if options.restarts {
            let everything = options.orders;
            while self.rabbit_restarts == 0 || self.postgres_restarts == 0 {
                self.step(options, processes, client, faults, everything)
                    .await?;
            }
        }
        Ok(())
    }
}

//! `cargo run --release -p bench -- <scenario> [--name value ...]`; see docs/performance.md.

use std::collections::HashMap;

use bench::callbacks::{self, CallbackOptions};
use bench::credit::{self, CreditOptions};
use bench::measure::Table;
use bench::orders::{self, OrderOptions};
use bench::system::{mib, Memory, Mode};
use bench::workers::{self, WorkerOptions};

const USAGE: &str = "usage: bench <scenario> [options]

scenarios:
  callbacks  payment callbacks: throughput at each concurrency with 10 % duplicates,
             latency at a fixed rate, queryorder on and off, and pgbench for comparison
             --callbacks N (10000)  --rate N (500)  --seconds N (10)
             --concurrency N,N,... (1,16,64)  --queryorder on|off|both (both)
             --mode cloud|direct|both (both: Cloud Hosting's callbacks and WeChat Pay
             APIv3's signed notifications)  --verify N (2000: notifications verified
             in process for the cost of verification and decryption, direct mode)
  orders     POST /orders and POST /payment/create latency at a fixed rate
             --rate N (200)  --seconds N (10)
  credit     paid → credited latency at a fixed rate, Unitel at 0 and 200 ms
             --rate N (200)  --seconds N (10)  --workers N (2)  --concurrency N (32)
  workers    recharges/s with 1, 2 and 4 worker processes, Unitel at 200 ms
             --per-worker N (400)  --concurrency N (8)
  all        callbacks, orders, credit and workers with their defaults, then peak memory
  stats      GET /admin/stats over a year of orders
             --orders N (1000000)  --days N (365)  --requests N (50)  --changes N (20)
  reconcile  one day of WeChat Pay's bill matched against our books
             --orders N (100000)  --runs N (2)";

fn options(args: &[String]) -> anyhow::Result<HashMap<String, String>> {
    let mut options = HashMap::new();
    let mut args = args.iter();
    while let Some(name) = args.next() {
        let name = name
            .strip_prefix("--")
            .ok_or_else(|| anyhow::anyhow!("unexpected argument {name}\n{USAGE}"))?;
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("--{name} needs a value"))?;
        options.insert(name.to_owned(), value.clone());
    }
    Ok(options)
}

fn number<T: std::str::FromStr>(
    options: &HashMap<String, String>,
    name: &str,
    default: T,
) -> anyhow::Result<T> {
    match options.get(name) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| anyhow::anyhow!("--{name} must be a number, not {text}")),
    }
}

/// The system runs as processes built in this profile; `cargo run` built only this one.
fn build_the_system() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(|dir| dir.file_name())
        .is_some_and(|name| name == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args([
        "build",
        "--quiet",
        "--locked",
        "-p",
        "payment-api",
        "-p",
        "recharge-worker",
        "-p",
        "sandbox",
        "--bins",
    ]);
    if release {
        build.arg("--release");
    }
    let status = build.status()?;
    anyhow::ensure!(status.success(), "building the system failed");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_none() {
        // The system under test logs at warn on purpose (slow statements, 503s at start);
        // the benchmark's own output is its tables.
        std::env::set_var("RUST_LOG", "error,lapin=off");
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((scenario, rest)) = args.split_first() else {
        anyhow::bail!("{USAGE}");
    };
    if matches!(scenario.as_str(), "help" | "--help" | "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let options = options(rest)?;
    build_the_system()?;
    match scenario.as_str() {
        "callbacks" => {
            let defaults = CallbackOptions::default();
            callbacks::run(&CallbackOptions {
                callbacks: number(&options, "callbacks", defaults.callbacks)?,
                fixed_rate: number(&options, "rate", defaults.fixed_rate)?,
                fixed_seconds: number(&options, "seconds", defaults.fixed_seconds)?,
                concurrencies: match options.get("concurrency") {
                    Some(list) => list
                        .split(',')
                        .map(|n| {
                            n.trim()
                                .parse()
                                .map_err(|_| anyhow::anyhow!("--concurrency {list}"))
                        })
                        .collect::<anyhow::Result<_>>()?,
                    None => defaults.concurrencies,
                },
                confirm: match options.get("queryorder").map(String::as_str) {
                    None | Some("both") => defaults.confirm,
                    Some("on") => vec![true],
                    Some("off") => vec![false],
                    Some(other) => anyhow::bail!("--queryorder on|off|both, not {other}"),
                },
                modes: match options.get("mode").map(String::as_str) {
                    None | Some("both") => defaults.modes,
                    Some("cloud") => vec![Mode::Cloud],
                    Some("direct") => vec![Mode::Direct],
                    Some(other) => anyhow::bail!("--mode cloud|direct|both, not {other}"),
                },
                verify_notifications: number(&options, "verify", defaults.verify_notifications)?,
            })
            .await?;
        }
        "orders" => {
            let defaults = OrderOptions::default();
            orders::run(&OrderOptions {
                rate: number(&options, "rate", defaults.rate)?,
                seconds: number(&options, "seconds", defaults.seconds)?,
            })
            .await?;
        }
        "credit" => {
            let defaults = CreditOptions::default();
            credit::run(&CreditOptions {
                rate: number(&options, "rate", defaults.rate)?,
                seconds: number(&options, "seconds", defaults.seconds)?,
                workers: number(&options, "workers", defaults.workers)?,
                concurrency: number(&options, "concurrency", defaults.concurrency)?,
                ..defaults
            })
            .await?;
        }
        "workers" => {
            let defaults = WorkerOptions::default();
            workers::run(&WorkerOptions {
                orders_per_worker: number(&options, "per-worker", defaults.orders_per_worker)?,
                concurrency: number(&options, "concurrency", defaults.concurrency)?,
                ..defaults
            })
            .await?;
        }
        "all" => {
            anyhow::ensure!(options.is_empty(), "`all` takes no options\n{USAGE}");
            let memory = [
                callbacks::run(&CallbackOptions::default()).await?.memory,
                orders::run(&OrderOptions::default()).await?.memory,
                credit::run(&CreditOptions::default()).await?.memory,
                workers::run(&WorkerOptions::default()).await?.memory,
            ]
            .into_iter()
            .fold(Memory::default(), Memory::max);
            let table = Table::start(
                "Peak memory (VmHWM) over all scenarios",
                &["binary", "peak RSS MiB", "target MiB"],
            );
            table.row(&["payment-api".into(), mib(memory.api), "64".into()]);
            table.row(&["recharge-worker".into(), mib(memory.worker), "32".into()]);
        }
        "stats" => {
            let defaults = bench::stats::StatsOptions::default();
            let result = bench::stats::run(&bench::stats::StatsOptions {
                orders: number(&options, "orders", defaults.orders)?,
                days: number(&options, "days", defaults.days)?,
                requests: number(&options, "requests", defaults.requests)?,
                changes_between: number(&options, "changes", defaults.changes_between)?,
            })
            .await?;
            anyhow::ensure!(
                result.matches_count_of_orders,
                "the statistics differ from a count of the orders"
            );
        }
        "reconcile" => {
            let defaults = bench::reconcile::ReconcileOptions::default();
            let result = bench::reconcile::run(&bench::reconcile::ReconcileOptions {
                orders: number(&options, "orders", defaults.orders)?,
                runs: number(&options, "runs", defaults.runs)?,
            })
            .await?;
            anyhow::ensure!(
                result.status == "balanced" && result.lines_matched == result.orders,
                "the day did not balance: {} with {} of {} lines matched",
                result.status,
                result.lines_matched,
                result.orders
            );
        }
        other => anyhow::bail!("unknown scenario {other}\n{USAGE}"),
    }
    Ok(())
}

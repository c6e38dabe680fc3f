//! `cargo run --release -p bench -- <scenario> [--name value ...]`; see docs/performance.md.

use std::collections::HashMap;

const USAGE: &str = "usage: bench <scenario> [options]

scenarios:
  stats   GET /admin/stats over a year of orders
          --orders N (1000000)  --days N (365)  --requests N (50)  --changes N (20)";

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
    let options = options(rest)?;
    match scenario.as_str() {
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
        other => anyhow::bail!("unknown scenario {other}\n{USAGE}"),
    }
    Ok(())
}

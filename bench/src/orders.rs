//! `orders`: what the customer waits for before WeChat's payment sheet opens. `POST
//! /orders` at a fixed rate, each followed by its `POST /payment/create` (which calls
//! unifiedOrder at the sandbox), timed separately.

use std::time::Instant;

use crate::drive::{open_loop, since};
use crate::measure::{ms, Samples, Table};
use crate::system::{mib, Bench, Memory};

pub struct OrderOptions {
    pub rate: u32,
    pub seconds: u32,
}

impl Default for OrderOptions {
    fn default() -> Self {
        OrderOptions {
            rate: 200,
            seconds: 10,
        }
    }
}

pub struct OrderResult {
    pub create_order: Samples,
    pub create_payment: Samples,
    pub memory: Memory,
}

pub async fn run(options: &OrderOptions) -> anyhow::Result<OrderResult> {
    let mut bench = Bench::start(0, &[]).await?;
    let rate = f64::from(options.rate);
    // One second at the rate first, untimed: connections opened, statements prepared.
    let warm_up = options.rate as usize;
    open_loop(0..warm_up, rate, |n, _| {
        let bench = &bench;
        async move {
            let order = bench.create_order(n).await?;
            bench.create_payment(n, &order).await
        }
    })
    .await?;
    let count = (options.rate * options.seconds) as usize;
    let timings = open_loop(warm_up..warm_up + count, rate, |n, due| {
        let bench = &bench;
        async move {
            let order = bench.create_order(n).await?;
            let ordered = since(due);
            let started = Instant::now();
            bench.create_payment(n, &order).await?;
            Ok((ordered, started.elapsed()))
        }
    })
    .await?;
    let (create_order, create_payment): (Samples, Samples) = timings.into_iter().unzip();
    let created: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE prepay_id IS NOT NULL")
            .fetch_one(&bench.db.pool)
            .await?;
    anyhow::ensure!(
        created as usize == warm_up + count,
        "{count} orders sent, {created} with a payment"
    );
    let memory = bench.sample_memory();
    bench.stop().await;

    let table = Table::start(
        &format!(
            "Orders: latency at a fixed {} orders/s for {} s (open loop)",
            options.rate, options.seconds
        ),
        &["request", "requests", "p50 ms", "p99 ms", "max ms"],
    );
    for (name, samples) in [
        ("POST /orders", &create_order),
        ("POST /payment/create", &create_payment),
    ] {
        table.row(&[
            name.into(),
            samples.len().to_string(),
            ms(samples.percentile(50.0)),
            ms(samples.percentile(99.0)),
            ms(samples.max()),
        ]);
    }
    println!("\npayment-api peak RSS: {} MiB", mib(memory.api));
    Ok(OrderResult {
        create_order,
        create_payment,
        memory,
    })
}

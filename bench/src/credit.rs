//! `credit`: from a payment recorded to a number credited, at a fixed rate of payments,
//! with Unitel answering at once and after 200 ms. The customer pays in the sandbox, which
//! calls back as WeChat does; the time is read from each order's own record: `paid_at`
//! (set by payment-api when it records the payment) to `recharged_at` (set by the worker
//! when it records Unitel's answer).

use std::time::Duration;

use crate::drive::open_loop;
use crate::measure::{ms, Samples, Table};
use crate::system::{mib, Bench, Memory};

pub struct CreditOptions {
    pub rate: u32,
    pub seconds: u32,
    pub unitel_latencies_ms: Vec<u64>,
    pub workers: usize,
    /// `RECHARGE_CONCURRENCY` per worker.
    pub concurrency: u16,
}

impl Default for CreditOptions {
    fn default() -> Self {
        CreditOptions {
            rate: 200,
            seconds: 10,
            unitel_latencies_ms: vec![0, 200],
            workers: 2,
            concurrency: 32,
        }
    }
}

pub struct CreditRow {
    pub unitel_latency: Duration,
    pub samples: Samples,
}

pub struct CreditResult {
    pub rows: Vec<CreditRow>,
    pub memory: Memory,
}

pub async fn run(options: &CreditOptions) -> anyhow::Result<CreditResult> {
    let concurrency = options.concurrency.to_string();
    let mut bench = Bench::start(
        options.workers,
        &[("RECHARGE_CONCURRENCY", concurrency.as_str())],
    )
    .await?;
    let table = Table::start(
        &format!(
            "Paid → credited at {} payments/s for {} s ({} workers, RECHARGE_CONCURRENCY={})",
            options.rate, options.seconds, options.workers, options.concurrency
        ),
        &[
            "Unitel latency ms",
            "orders",
            "p50 ms",
            "p99 ms",
            "max ms",
            "p99 − Unitel ms",
        ],
    );
    let count = (options.rate * options.seconds) as usize;
    let mut rows = Vec::new();
    for (run, &latency) in options.unitel_latencies_ms.iter().enumerate() {
        bench.set_unitel_latency(latency).await?;
        let orders = bench.orders_awaiting_payment(count, run * count).await?;
        open_loop(&orders, f64::from(options.rate), |order, _due| {
            let bench = &bench;
            async move { bench.pay_at_wechat(order, true).await }
        })
        .await?;
        bench
            .wait_until_credited(&orders, Duration::from_secs(120))
            .await?;
        let seconds: Vec<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM recharged_at - paid_at)::float8
               FROM orders WHERE order_number = ANY($1)",
        )
        .bind(&orders)
        .fetch_all(&bench.db.pool)
        .await?;
        let samples: Samples = seconds
            .into_iter()
            .map(|s| Duration::from_secs_f64(s.max(0.0)))
            .collect();
        let unitel_latency = Duration::from_millis(latency);
        table.row(&[
            latency.to_string(),
            samples.len().to_string(),
            ms(samples.percentile(50.0)),
            ms(samples.percentile(99.0)),
            ms(samples.max()),
            ms(samples.percentile(99.0).saturating_sub(unitel_latency)),
        ]);
        rows.push(CreditRow {
            unitel_latency,
            samples,
        });
    }
    let memory = bench.sample_memory();
    bench.stop().await;
    println!(
        "\npeak RSS: payment-api {} MiB, largest worker {} MiB",
        mib(memory.api),
        mib(memory.worker)
    );
    Ok(CreditResult { rows, memory })
}

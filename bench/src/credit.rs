//! `credit`: from a payment recorded to a number credited, at a fixed rate of payments,
//! with Unitel answering at once and after 200 ms. The customer pays in the sandbox, which
//! calls back as WeChat does; the time is read from each order's own record: `payment_recorded_at`
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
    pub stages: Stages,
}

/// Each order's path through the system, from the timestamps it leaves: `payment_recorded_at`, the
/// outbox row's `published_at` (the relay's transaction start), the worker's `claimed`
/// event, `recharge_sent_at` and `recharged_at`.
pub struct Stages {
    pub total: Samples,
    pub to_relay: Samples,
    pub to_claim: Samples,
    pub to_send: Samples,
    pub to_record: Samples,
}

impl Stages {
    async fn of(bench: &Bench, orders: &[String]) -> anyhow::Result<Stages> {
        let rows: Vec<(f64, f64, f64, f64, f64)> = sqlx::query_as(
            "SELECT extract(epoch FROM o.recharged_at - o.payment_recorded_at)::float8,
                    extract(epoch FROM m.published_at - o.payment_recorded_at)::float8,
                    extract(epoch FROM c.created_at - m.published_at)::float8,
                    extract(epoch FROM o.recharge_sent_at - c.created_at)::float8,
                    extract(epoch FROM o.recharged_at - o.recharge_sent_at)::float8
               FROM orders o
               JOIN outbox m ON m.order_number = o.order_number
               JOIN LATERAL (SELECT max(created_at) AS created_at FROM order_events e
                              WHERE e.order_number = o.order_number AND e.event = 'claimed') c
                 ON true
              WHERE o.order_number = ANY($1)",
        )
        .bind(orders)
        .fetch_all(&bench.db.pool)
        .await?;
        anyhow::ensure!(
            rows.len() == orders.len(),
            "{} of {} orders have every timestamp",
            rows.len(),
            orders.len()
        );
        let column = |pick: fn(&(f64, f64, f64, f64, f64)) -> f64| -> Samples {
            rows.iter()
                .map(|row| Duration::from_secs_f64(pick(row).max(0.0)))
                .collect()
        };
        Ok(Stages {
            total: column(|r| r.0),
            to_relay: column(|r| r.1),
            to_claim: column(|r| r.2),
            to_send: column(|r| r.3),
            to_record: column(|r| r.4),
        })
    }
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
    let warm_up = options.rate as usize;
    let mut next_order = 0;
    let mut rows = Vec::new();
    for &latency in &options.unitel_latencies_ms {
        bench.set_unitel_latency(latency).await?;
        // One second at the rate first, untimed: every process's connections opened,
        // Unitel's token fetched.
        let mut paid = Vec::with_capacity(2);
        for orders in [warm_up, count] {
            let orders = bench.orders_awaiting_payment(orders, next_order).await?;
            next_order += orders.len();
            open_loop(&orders, f64::from(options.rate), |order, _due| {
                let bench = &bench;
                async move { bench.pay_at_wechat(order, true).await }
            })
            .await?;
            bench
                .wait_until_credited(&orders, Duration::from_secs(120))
                .await?;
            paid.push(orders);
        }
        let orders = paid.pop().unwrap_or_default();
        let stages = Stages::of(&bench, &orders).await?;
        let samples = stages.total.clone();
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
            stages,
        });
    }
    let breakdown = Table::start(
        "Paid → credited: where the time goes (p50 / p99 ms of each stage)",
        &[
            "Unitel latency ms",
            "recorded → relay picks up",
            "relay → worker claims",
            "claimed → sent",
            "sent → recorded",
        ],
    );
    for row in &rows {
        let cell = |s: &Samples| format!("{} / {}", ms(s.percentile(50.0)), ms(s.percentile(99.0)));
        breakdown.row(&[
            row.unitel_latency.as_millis().to_string(),
            cell(&row.stages.to_relay),
            cell(&row.stages.to_claim),
            cell(&row.stages.to_send),
            cell(&row.stages.to_record),
        ]);
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

//! `workers`: recharges per second with 1, 2 and 4 worker processes while Unitel takes
//! 200 ms. Paid orders wait in the queue before the workers start; the rate is read from
//! the orders' `recharged_at`, first credit to last, so start-up is not counted. The bound
//! Unitel sets is workers × RECHARGE_CONCURRENCY / latency: one credit call per order.

use std::time::Duration;

use crate::drive::closed_loop;
use crate::measure::Table;
use crate::system::{mib, Bench, Memory};

pub struct WorkerOptions {
    pub processes: Vec<usize>,
    /// Orders per worker process in each run.
    pub orders_per_worker: usize,
    pub unitel_latency_ms: u64,
    /// `RECHARGE_CONCURRENCY`; the shipped default is 8.
    pub concurrency: u16,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            processes: vec![1, 2, 4],
            orders_per_worker: 400,
            unitel_latency_ms: 200,
            concurrency: 8,
        }
    }
}

pub struct WorkerRow {
    pub processes: usize,
    pub orders: usize,
    pub per_second: f64,
    /// What Unitel's latency allows.
    pub bound: f64,
}

pub struct WorkerResult {
    pub rows: Vec<WorkerRow>,
    pub memory: Memory,
}

pub async fn run(options: &WorkerOptions) -> anyhow::Result<WorkerResult> {
    let concurrency = options.concurrency.to_string();
    let mut bench = Bench::start(0, &[("RECHARGE_CONCURRENCY", concurrency.as_str())]).await?;
    bench.set_unitel_latency(options.unitel_latency_ms).await?;
    let table = Table::start(
        &format!(
            "Workers: recharges/s with Unitel at {} ms (RECHARGE_CONCURRENCY={})",
            options.unitel_latency_ms, options.concurrency
        ),
        &[
            "processes",
            "orders",
            "recharges/s",
            "Unitel bound/s",
            "of bound",
            "vs 1 process",
        ],
    );
    let mut rows: Vec<WorkerRow> = Vec::new();
    let mut next_order = 0;
    for &processes in &options.processes {
        let count = processes * options.orders_per_worker;
        let orders = bench.orders_awaiting_payment(count, next_order).await?;
        next_order += count;
        closed_loop(&orders, 32, |order| bench.pay_at_wechat(order, true)).await?;
        wait_until_queued(&bench, &orders).await?;

        bench.add_workers(processes)?;
        bench
            .wait_until_credited(&orders, Duration::from_secs(300))
            .await?;
        bench.stop_workers();
        let (first_to_last,): (f64,) = sqlx::query_as(
            "SELECT extract(epoch FROM max(recharged_at) - min(recharged_at))::float8
               FROM orders WHERE order_number = ANY($1)",
        )
        .bind(&orders)
        .fetch_one(&bench.db.pool)
        .await?;
        let row = WorkerRow {
            processes,
            orders: count,
            // The first round of credits (every slot busy at once) completes at the start
            // of the span; the rest complete within it.
            per_second: count
                .saturating_sub(processes * usize::from(options.concurrency))
                .max(1) as f64
                / first_to_last.max(f64::EPSILON),
            bound: processes as f64 * f64::from(options.concurrency) * 1000.0
                / options.unitel_latency_ms.max(1) as f64,
        };
        let scaling = rows
            .first()
            .map(|one| format!("{:.2}×", row.per_second / one.per_second))
            .unwrap_or_else(|| "1.00×".into());
        table.row(&[
            processes.to_string(),
            count.to_string(),
            format!("{:.1}", row.per_second),
            format!("{:.0}", row.bound),
            format!("{:.0} %", 100.0 * row.per_second / row.bound),
            scaling,
        ]);
        rows.push(row);
    }
    let memory = bench.stop().await;
    println!("\nlargest worker peak RSS: {} MiB", mib(memory.worker));
    Ok(WorkerResult { rows, memory })
}

/// Every payment recorded and its OrderPaid message published to the queue.
async fn wait_until_queued(bench: &Bench, orders: &[String]) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM orders WHERE order_number = ANY($1)
                      AND payment_status <> 'paid')
                  + (SELECT count(*) FROM outbox WHERE published_at IS NULL)",
        )
        .bind(orders)
        .fetch_one(&bench.db.pool)
        .await?;
        if waiting == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{waiting} payments not recorded and published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

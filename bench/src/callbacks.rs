//! `callbacks`: the payment callback, as WeChat delivers it, with 10 % duplicates. Its
//! throughput at concurrency 1, 16 and 64 and its latency at a fixed 500 callbacks/s,
//! with the confirming `queryorder` on and off; then pgbench sending the callback's own
//! statements at the same concurrency against the same database, for the ratio.
//!
//! In cloud mode (Cloud Hosting's callbacks) and in direct mode (WeChat Pay APIv3's
//! `TRANSACTION.SUCCESS`, signed and encrypted by the benchmark playing WeChat Pay, each
//! delivery with fresh nonces), at the same rates; direct mode also times payment-api's
//! verification and decryption of one notification on its own.

use std::time::Instant;

use crate::cpu::CpuSnapshot;
use crate::drive::{closed_loop, open_loop, since};
use crate::measure::{ms, us, Samples, Table};
use crate::pgbench::{Pgbench, PgbenchRun};
use crate::system::{mib, Bench, Delivery, Memory, Mode, Paid};
use crate::wechat_pay;

pub struct CallbackOptions {
    /// Callbacks per throughput run (a fifth of them at concurrency 1).
    pub callbacks: usize,
    pub concurrencies: Vec<usize>,
    /// Runs with the confirming `queryorder` (true), without (false), or both.
    pub confirm: Vec<bool>,
    pub fixed_rate: u32,
    pub fixed_seconds: u32,
    /// Cloud Hosting's callbacks, WeChat Pay APIv3's notifications, or both.
    pub modes: Vec<Mode>,
    /// Distinct notifications verified in process for the cost of verification (direct).
    pub verify_notifications: usize,
}

impl Default for CallbackOptions {
    fn default() -> Self {
        CallbackOptions {
            callbacks: 10_000,
            concurrencies: vec![1, 16, 64],
            confirm: vec![true, false],
            fixed_rate: 500,
            fixed_seconds: 10,
            modes: vec![Mode::Cloud, Mode::Direct],
            verify_notifications: 2000,
        }
    }
}

pub struct ThroughputRow {
    pub mode: Mode,
    pub confirm: bool,
    pub concurrency: usize,
    pub callbacks: usize,
    pub per_second: f64,
    pub samples: Samples,
    /// CPU seconds per callback by program, largest first.
    pub cpu_per_callback: Vec<(String, f64)>,
    /// pgbench on the callback's statements at this concurrency (confirmation off only).
    pub pgbench: Option<PgbenchRun>,
}

pub struct FixedRateRow {
    pub mode: Mode,
    pub confirm: bool,
    pub samples: Samples,
}

pub struct CallbackResult {
    pub throughput: Vec<ThroughputRow>,
    pub fixed_rate: Vec<FixedRateRow>,
    /// Direct mode: `NotificationVerifier::verify` per notification, in process.
    pub verify: Option<Samples>,
    pub memory: Memory,
}

pub async fn run(options: &CallbackOptions) -> anyhow::Result<CallbackResult> {
    let mut result = CallbackResult {
        throughput: Vec::new(),
        fixed_rate: Vec::new(),
        verify: None,
        memory: Memory::default(),
    };
    let runs = options
        .modes
        .iter()
        .flat_map(|&mode| options.confirm.iter().map(move |&confirm| (mode, confirm)));
    for (mode, confirm) in runs {
        let setting = if confirm { "true" } else { "false" };
        // No worker: recharges would compete for the two cores; the OrderPaid messages
        // wait in the queue, which is deleted afterwards.
        let mut bench = Bench::start_in(mode, 0, &[("WECHAT_CONFIRM_CALLBACKS", setting)]).await?;
        let mut next_order = 0;
        for &concurrency in &options.concurrencies {
            let count = if concurrency == 1 {
                options.callbacks / 5
            } else {
                options.callbacks
            };
            let orders = bench
                .orders_paid_quietly(first_deliveries(count), next_order)
                .await?;
            next_order += orders.len();
            let deliveries = bench.prepare(with_duplicates(&orders))?;
            let cpu_before = CpuSnapshot::take();
            let started = Instant::now();
            let samples = deliver(&bench, &deliveries, concurrency).await?;
            let elapsed = started.elapsed();
            let cpu = CpuSnapshot::take().since(&cpu_before);
            check_paid_once(&bench, &orders).await?;
            let row = ThroughputRow {
                mode,
                confirm,
                concurrency,
                callbacks: samples.len(),
                per_second: samples.len() as f64 / elapsed.as_secs_f64(),
                cpu_per_callback: cpu
                    .into_iter()
                    .map(|(program, seconds)| (program, seconds / samples.len() as f64))
                    .collect(),
                samples,
                pgbench: None,
            };
            eprintln!(
                "callbacks: {} mode, queryorder {}, concurrency {concurrency}: {:.0}/s",
                mode.as_str(),
                on_off(confirm),
                row.per_second
            );
            result.throughput.push(row);
        }

        let count = (options.fixed_rate * options.fixed_seconds) as usize;
        let orders = bench
            .orders_paid_quietly(first_deliveries(count), next_order)
            .await?;
        let deliveries = bench.prepare(with_duplicates(&orders))?;
        let samples = open_loop(
            &deliveries,
            f64::from(options.fixed_rate),
            |delivery, due| {
                let bench = &bench;
                async move {
                    bench.deliver(delivery).await?;
                    Ok(since(due))
                }
            },
        )
        .await?
        .into_iter()
        .collect::<Samples>();
        check_paid_once(&bench, &orders).await?;
        result.fixed_rate.push(FixedRateRow {
            mode,
            confirm,
            samples,
        });
        result.memory = result.memory.max(bench.sample_memory());
        let db = bench.stop_keeping_database().await;
        // pgbench sends a Cloud Hosting callback's statements; direct mode adds the
        // nonce taken once, which its script does not have.
        if !confirm && mode == Mode::Cloud {
            // The service is stopped: its outbox relay would otherwise publish pgbench's
            // messages and take CPU from it. Same database, same rows, same triggers.
            let mut pgbench = Pgbench::prepare(&db.pool, &db.url).await?;
            for row in result
                .throughput
                .iter_mut()
                .filter(|r| !r.confirm && r.mode == Mode::Cloud)
            {
                let run = pgbench
                    .run(&db.pool, row.concurrency, row.callbacks)
                    .await?;
                eprintln!(
                    "pgbench: concurrency {}: {:.0} tps",
                    row.concurrency, run.per_second
                );
                row.pgbench = Some(run);
            }
        }
    }

    if options.modes.contains(&Mode::Direct) {
        let samples = wechat_pay::verify_cost(options.verify_notifications)?;
        eprintln!(
            "verify: {} notifications, mean {} µs",
            samples.len(),
            us(samples.mean())
        );
        result.verify = Some(samples);
    }

    let table = Table::start(
        "Callbacks: throughput with 10 % duplicates (closed loop)",
        &[
            "mode",
            "queryorder",
            "concurrency",
            "callbacks",
            "callbacks/s",
            "p50 ms",
            "p99 ms",
            "pgbench tps",
            "ratio",
        ],
    );
    for row in &result.throughput {
        table.row(&throughput_cells(row));
    }

    let fixed = Table::start(
        &format!(
            "Callbacks: latency at a fixed {} callbacks/s for {} s (open loop; target p99 < 20 ms)",
            options.fixed_rate, options.fixed_seconds
        ),
        &[
            "mode",
            "queryorder",
            "callbacks",
            "p50 ms",
            "p99 ms",
            "max ms",
        ],
    );
    for row in &result.fixed_rate {
        fixed.row(&[
            row.mode.as_str().into(),
            on_off(row.confirm).into(),
            row.samples.len().to_string(),
            ms(row.samples.percentile(50.0)),
            ms(row.samples.percentile(99.0)),
            ms(row.samples.max()),
        ]);
    }
    let cpu = Table::start(
        "Callbacks: CPU time per callback by program, in µs (both cores; top 5)",
        &["mode", "queryorder", "concurrency", "programs"],
    );
    for row in &result.throughput {
        cpu.row(&[
            row.mode.as_str().into(),
            on_off(row.confirm).into(),
            row.concurrency.to_string(),
            row.cpu_per_callback
                .iter()
                .take(5)
                .map(|(program, seconds)| format!("{program} {:.0}", seconds * 1e6))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    if let Some(samples) = &result.verify {
        let verify = Table::start(
            "Direct mode: NotificationVerifier::verify per notification, in process, µs \
             (signature over the raw body, AES-256-GCM, JSON; one core)",
            &["notifications", "p50 µs", "p99 µs", "mean µs", "max µs"],
        );
        verify.row(&[
            samples.len().to_string(),
            us(samples.percentile(50.0)),
            us(samples.percentile(99.0)),
            us(samples.mean()),
            us(samples.max()),
        ]);
    }
    println!(
        "\npayment-api peak RSS during the callback runs: {} MiB",
        mib(result.memory.api)
    );
    Ok(result)
}

fn on_off(confirm: bool) -> &'static str {
    if confirm {
        "on"
    } else {
        "off"
    }
}

fn throughput_cells(row: &ThroughputRow) -> Vec<String> {
    let (tps, ratio) = match &row.pgbench {
        Some(p) => (
            format!("{:.0}", p.per_second),
            format!("{:.0} %", 100.0 * row.per_second / p.per_second),
        ),
        None => ("".into(), "".into()),
    };
    vec![
        row.mode.as_str().into(),
        on_off(row.confirm).into(),
        row.concurrency.to_string(),
        row.callbacks.to_string(),
        format!("{:.0}", row.per_second),
        ms(row.samples.percentile(50.0)),
        ms(row.samples.percentile(99.0)),
        tps,
        ratio,
    ]
}

/// Orders needed for `deliveries` callbacks when one in ten is a duplicate.
fn first_deliveries(deliveries: usize) -> usize {
    deliveries - deliveries / 10
}

/// Every order once, and after every ninth a second delivery of one a few places back,
/// which may still be in flight: the platform's duplicates arrive both ways.
pub fn with_duplicates(orders: &[Paid]) -> Vec<&Paid> {
    let mut deliveries = Vec::with_capacity(orders.len() + orders.len() / 9 + 1);
    for (index, order) in orders.iter().enumerate() {
        deliveries.push(order);
        if index % 9 == 8 {
            deliveries.push(&orders[index - 4]);
        }
    }
    deliveries
}

async fn deliver(
    bench: &Bench,
    deliveries: &[Delivery<'_>],
    concurrency: usize,
) -> anyhow::Result<Samples> {
    Ok(closed_loop(deliveries, concurrency, |delivery| async move {
        let started = Instant::now();
        bench.deliver(delivery).await?;
        Ok(started.elapsed())
    })
    .await?
    .into_iter()
    .collect())
}

/// Each order paid, with one `paid` event and one OrderPaid message, however many times
/// it was reported: a fast callback that lost or doubled a payment would be worthless.
async fn check_paid_once(bench: &Bench, orders: &[Paid]) -> anyhow::Result<()> {
    let numbers: Vec<&str> = orders.iter().map(|o| o.order_number.as_str()).collect();
    let (paid, events, messages): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM orders WHERE order_number = ANY($1) AND payment_status = 'paid'),
                (SELECT count(*) FROM order_events WHERE order_number = ANY($1) AND event = 'paid'),
                (SELECT count(*) FROM outbox WHERE order_number = ANY($1))",
    )
    .bind(&numbers)
    .fetch_one(&bench.db.pool)
    .await?;
    let expected = orders.len() as i64;
    anyhow::ensure!(
        (paid, events, messages) == (expected, expected, expected),
        "{expected} orders: {paid} paid, {events} paid events, {messages} messages"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_delivery_in_ten_is_a_duplicate_of_an_earlier_order() {
        let orders: Vec<Paid> = (0..900)
            .map(|n| Paid {
                order_number: n.to_string(),
                transaction_id: String::new(),
                total_fee: 1,
                transaction: None,
            })
            .collect();
        let deliveries = with_duplicates(&orders);
        assert_eq!(deliveries.len(), 1000);
        assert_eq!(first_deliveries(1000), 900);
        let mut seen = std::collections::HashSet::new();
        let mut duplicates = 0;
        for delivery in deliveries {
            if !seen.insert(&delivery.order_number) {
                duplicates += 1;
            }
        }
        assert_eq!(duplicates, 100);
        assert_eq!(seen.len(), 900);
    }
}

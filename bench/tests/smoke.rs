//! Each benchmark scenario run small, so that the shipped benchmark cannot rot. Figures
//! are not asserted here (a test is no place for timing); what a scenario checks is.

use bench::callbacks::{self, CallbackOptions};
use bench::credit::{self, CreditOptions};
use bench::orders::{self, OrderOptions};
use bench::stats::{self, StatsOptions};
use bench::system::Mode;
use bench::workers::{self, WorkerOptions};

#[tokio::test]
async fn the_statistics_benchmark_runs_and_its_answer_matches_the_orders() {
    let result = stats::run(&StatsOptions {
        orders: 3_000,
        days: 60,
        requests: 2,
        changes_between: 5,
    })
    .await
    .expect("the stats scenario runs");
    assert!(result.matches_count_of_orders);
    assert_eq!(result.ranges.len(), 3);
    for range in &result.ranges {
        assert_eq!(range.samples.len(), 2, "{}", range.label);
    }
    let year = result.ranges.last().unwrap();
    assert_eq!(
        year.orders_in_range, 3_000,
        "every seeded order is in the year"
    );
}

#[tokio::test]
async fn the_callback_benchmark_runs_and_compares_with_pgbench() {
    let result = callbacks::run(&CallbackOptions {
        callbacks: 100,
        concurrencies: vec![1, 4],
        confirm: vec![true, false],
        fixed_rate: 50,
        fixed_seconds: 1,
        modes: vec![Mode::Cloud],
        verify_notifications: 10,
    })
    .await
    .expect("the callbacks scenario runs");
    assert!(result.verify.is_none(), "no notification in cloud mode");
    assert_eq!(result.throughput.len(), 4);
    for row in &result.throughput {
        let expected = if row.concurrency == 1 { 20 } else { 100 };
        assert_eq!(row.samples.len(), expected, "every delivery answered");
        assert!(row.per_second > 0.0);
        // pgbench only where the service ran the same statements: confirmation off.
        assert_eq!(row.pgbench.is_some(), !row.confirm);
        if let Some(pgbench) = &row.pgbench {
            assert_eq!(pgbench.transactions, row.callbacks);
            assert!(pgbench.per_second > 0.0);
        }
        assert!(
            row.cpu_per_callback.iter().any(|(p, _)| p == "payment-api"),
            "{:?}",
            row.cpu_per_callback
        );
    }
    assert_eq!(result.fixed_rate.len(), 2);
    assert!(result.fixed_rate.iter().all(|r| r.samples.len() == 50));
    assert!(result.memory.api > 0);
}

/// Direct mode: each order paid once however many signed notifications reported it
/// (`callbacks::run` checks every order's payment, `paid` event and OrderPaid message, and
/// fails on any answer but 204), with the query confirming it and without.
#[tokio::test]
async fn the_callback_benchmark_runs_in_direct_mode_with_signed_notifications() {
    let result = callbacks::run(&CallbackOptions {
        callbacks: 100,
        concurrencies: vec![1, 4],
        confirm: vec![true, false],
        fixed_rate: 50,
        fixed_seconds: 1,
        modes: vec![Mode::Direct],
        verify_notifications: 20,
    })
    .await
    .expect("the callbacks scenario runs in direct mode");
    assert_eq!(result.throughput.len(), 4);
    for row in &result.throughput {
        assert_eq!(row.mode, Mode::Direct);
        let expected = if row.concurrency == 1 { 20 } else { 100 };
        assert_eq!(row.samples.len(), expected, "every notification answered");
        assert!(
            row.pgbench.is_none(),
            "pgbench runs a cloud callback's statements"
        );
    }
    assert_eq!(result.fixed_rate.len(), 2);
    assert!(result.fixed_rate.iter().all(|r| r.samples.len() == 50));
    let verify = result.verify.expect("verification measured");
    assert_eq!(verify.len(), 20, "every notification verified");
}

#[tokio::test]
async fn the_order_benchmark_times_both_requests_of_every_order() {
    let result = orders::run(&OrderOptions {
        rate: 20,
        seconds: 1,
    })
    .await
    .expect("the orders scenario runs");
    assert_eq!(result.create_order.len(), 20);
    assert_eq!(result.create_payment.len(), 20);
}

#[tokio::test]
async fn paid_to_credited_includes_unitels_latency() {
    let result = credit::run(&CreditOptions {
        rate: 20,
        seconds: 1,
        unitel_latencies_ms: vec![0, 150],
        workers: 1,
        concurrency: 4,
    })
    .await
    .expect("the credit scenario runs");
    assert_eq!(result.rows.len(), 2);
    for row in &result.rows {
        assert_eq!(row.samples.len(), 20);
        assert_eq!(row.stages.to_record.len(), 20);
    }
    let slow = &result.rows[1];
    assert!(
        slow.samples.percentile(50.0) >= slow.unitel_latency,
        "no top-up can be credited faster than Unitel answers"
    );
    assert!(slow.stages.to_record.percentile(1.0) >= slow.unitel_latency);
    assert!(result.memory.worker > 0);
}

#[tokio::test]
async fn worker_throughput_stays_within_what_unitel_allows() {
    let result = workers::run(&WorkerOptions {
        processes: vec![1, 2],
        orders_per_worker: 20,
        unitel_latency_ms: 100,
        concurrency: 2,
    })
    .await
    .expect("the workers scenario runs");
    assert_eq!(result.rows.len(), 2);
    for row in &result.rows {
        assert_eq!(row.orders, row.processes * 20);
        assert!(row.per_second > 0.0);
        // Unitel's latency bounds the rate; a figure above it would be a measuring error.
        assert!(
            row.per_second <= row.bound * 1.1,
            "{} > {}",
            row.per_second,
            row.bound
        );
    }
}

#[tokio::test]
async fn the_reconciliation_benchmark_runs_and_its_day_balances() {
    let result = bench::reconcile::run(&bench::reconcile::ReconcileOptions {
        orders: 300,
        runs: 2,
    })
    .await
    .expect("the reconcile scenario runs");
    assert_eq!(result.status, "balanced");
    assert_eq!(result.lines_matched, 300, "every line of the bill matched");
    assert_eq!(result.seconds.len(), 2);
}

//! `stats`: `GET /admin/stats` over a year of orders (1,000,000 by default), with the
//! business going on between requests, and the answer checked against a count of every
//! order.

use std::time::{Duration, Instant};

use chrono::Days;
use reqwest::StatusCode;
use testkit::{expected_stats, first_difference, seed_orders, Seed, System, SystemOptions};

use crate::measure::{ms, Samples, Table};

pub struct StatsOptions {
    pub orders: i64,
    pub days: i64,
    /// Requests timed per range.
    pub requests: usize,
    /// Orders paid (and one unknown top-up settled) before each request, so that every
    /// request also folds in fresh changes, as it would in service.
    pub changes_between: i64,
}

impl Default for StatsOptions {
    fn default() -> Self {
        StatsOptions {
            orders: 1_000_000,
            days: 365,
            requests: 50,
            changes_between: 20,
        }
    }
}

pub struct RangeResult {
    pub label: &'static str,
    pub orders_in_range: i64,
    pub samples: Samples,
}

pub struct StatsResult {
    pub ranges: Vec<RangeResult>,
    pub matches_count_of_orders: bool,
}

pub async fn run(options: &StatsOptions) -> anyhow::Result<StatsResult> {
    // No worker and a payment window longer than the history: nothing but this benchmark
    // changes the seeded orders.
    let system = System::start(SystemOptions {
        workers: 0,
        overrides: vec![("PAYMENT_WINDOW_MS", (400u64 * 24 * 3600 * 1000).to_string())],
        ..Default::default()
    })
    .await;
    let db = system.db.pool.clone();

    let started = Instant::now();
    seed_orders(
        &system.db.url,
        &Seed {
            tag: "bn",
            orders: options.orders,
            users: (options.orders / 4).max(1),
            days: options.days,
            seed: 0.17,
        },
    )
    .await?;
    let seeded = started.elapsed();
    let started = Instant::now();
    let built = payment_api::stats::refresh(&db).await?;
    let rolled_up = started.elapsed();
    // What autovacuum would have done by the time anyone asks: the first build deleted a
    // marker per order.
    sqlx::query("VACUUM ANALYZE").execute(&db).await?;
    let roll_up_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM stats_hourly")
        .fetch_one(&db)
        .await?;
    let direct = direct_aggregation(&db).await?;

    let setup = Table::start(
        &format!(
            "Statistics: setup, {} orders over {} days",
            options.orders, options.days
        ),
        &["step", "ms", "note"],
    );
    setup.row(&[
        "seed orders".into(),
        ms(seeded),
        "one transaction, triggers on".into(),
    ]);
    setup.row(&[
        "first roll-up".into(),
        ms(rolled_up),
        format!(
            "{} hours, {} customers, {roll_up_rows} hourly rows",
            built.hours, built.customers
        ),
    ]);
    setup.row(&[
        "same figures without roll-ups".into(),
        ms(direct),
        "one GROUPING SETS query over orders, best of 3".into(),
    ]);

    let today = payment_api::stats::today();
    let ranges = [
        ("1 day", today, today),
        ("30 days", today - Days::new(29), today),
        ("366 days", today - Days::new(365), today),
    ];
    let table = Table::start(
        "Statistics: GET /admin/stats latency (target < 200 ms)",
        &[
            "range",
            "orders in range",
            "requests",
            "p50 ms",
            "p99 ms",
            "max ms",
        ],
    );
    let mut results = Vec::new();
    for (label, from, to) in ranges {
        let path = format!("/admin/stats?from={from}&to={to}");
        let mut samples = Samples::default();
        let mut orders_in_range = 0;
        for _ in 0..options.requests {
            business_goes_on(&db, options.changes_between).await?;
            let started = Instant::now();
            let (status, body) = system.admin_get(&path).await;
            samples.push(started.elapsed());
            anyhow::ensure!(status == StatusCode::OK, "stats answered {status}: {body}");
            orders_in_range = body["data"]["totals"]["ordersCreated"]
                .as_i64()
                .unwrap_or(0);
        }
        table.row(&[
            label.into(),
            orders_in_range.to_string(),
            samples.len().to_string(),
            ms(samples.percentile(50.0)),
            ms(samples.percentile(99.0)),
            ms(samples.max()),
        ]);
        results.push(RangeResult {
            label,
            orders_in_range,
            samples,
        });
    }

    let (from, to) = (today - Days::new(365), today);
    let (_, body) = system
        .admin_get(&format!("/admin/stats?from={from}&to={to}"))
        .await;
    let expected = expected_stats(&db, from, to).await;
    let difference = first_difference("data", &expected, &body["data"]);
    println!(
        "\nChecked against a count of every order ({} days): {}",
        (to - from).num_days() + 1,
        difference.as_deref().unwrap_or("identical")
    );
    system.shutdown().await;
    Ok(StatsResult {
        ranges: results,
        matches_count_of_orders: difference.is_none(),
    })
}

/// The newest unpaid orders get paid and an old unknown top-up is settled, as in service.
async fn business_goes_on(db: &sqlx::PgPool, payments: i64) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE orders SET payment_status = 'paid', transaction_id = 'TB' || id, paid_at = now(),
                payment_recorded_at = now()
          WHERE id IN (SELECT id FROM orders WHERE payment_status = 'unpaid'
                        ORDER BY created_at DESC LIMIT $1)",
    )
    .bind(payments)
    .execute(db)
    .await?;
    sqlx::query(
        "UPDATE orders SET recharge_status = 'success', recharged_at = now()
          WHERE id = (SELECT id FROM orders WHERE recharge_status = 'unknown' ORDER BY id LIMIT 1)",
    )
    .execute(db)
    .await?;
    Ok(())
}

/// What answering from the orders table itself costs, for comparison.
async fn direct_aggregation(db: &sqlx::PgPool) -> anyhow::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        sqlx::query(
            "SELECT GROUPING(d, h, product_code, recharge_type), d, h, product_code, recharge_type,
                    count(*), count(*) FILTER (WHERE o.payment_status = 'paid'),
                    sum(o.amount_fen) FILTER (WHERE o.payment_status = 'paid'),
                    count(*) FILTER (WHERE o.recharge_status = 'success'),
                    count(*) FILTER (WHERE o.recharge_status = 'failed'),
                    count(*) FILTER (WHERE o.recharge_status = 'unknown'),
                    count(r.*) FILTER (WHERE r.status = 'success')
               FROM (SELECT *, (created_at AT TIME ZONE 'Asia/Shanghai')::date AS d,
                            extract(hour FROM created_at AT TIME ZONE 'Asia/Shanghai') AS h
                       FROM orders WHERE created_at > now() - interval '366 days') o
               LEFT JOIN refunds r ON r.order_number = o.order_number
              GROUP BY GROUPING SETS ((), (d), (h), (product_code, recharge_type), (recharge_type))",
        )
        .fetch_all(db)
        .await?;
        best = best.min(started.elapsed());
    }
    Ok(best)
}

//! `reconcile`: one day of WeChat Pay's bill (100,000 payments by default) matched against
//! our books: how long `POST /admin/reconciliation/run` takes, and payment-api's peak
//! memory before and after. The day's orders are written straight into the database and
//! into the simulated WeChat (its bulk seed), so that only the reconciliation is measured;
//! the run is checked: every line matched, the day balanced.

use std::time::Instant;

use anyhow::Context;
use chrono::{Days, FixedOffset, NaiveTime, TimeZone, Utc};
use serde_json::{json, Value};
use testkit::ADMIN_TOKEN;

use crate::measure::Table;
use crate::system::{mib, Bench};

pub struct ReconcileOptions {
    pub orders: i64,
    /// Runs of the same day: the first reconciles, the rest show a re-run's cost.
    pub runs: usize,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions {
            orders: 100_000,
            runs: 2,
        }
    }
}

pub struct ReconcileResult {
    pub orders: i64,
    pub seconds: Vec<f64>,
    pub lines_matched: i64,
    pub status: String,
    pub api_peak_before: u64,
    pub api_peak_after: u64,
}

const SEED_BATCH: i64 = 20_000;

pub async fn run(options: &ReconcileOptions) -> anyhow::Result<ReconcileResult> {
    // No worker: the seeded orders are credited already; WeChat's simulator serves any
    // day's bill at once.
    let mut bench = Bench::start(
        0,
        &[
            ("ADMIN_TOKEN", ADMIN_TOKEN),
            ("SANDBOX_BILLS_READY", "immediately"),
            // The job's own rounds would reconcile the seeded day too; the run measured
            // here is the operator's.
            ("RECONCILIATION_SINCE", "2100-01-01"),
        ],
    )
    .await?;
    let china = FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    let today = Utc::now().with_timezone(&china).date_naive();
    let day = today - Days::new(1);
    let day_start = china
        .from_local_datetime(&day.and_time(NaiveTime::MIN))
        .single()
        .context("a China day starts once")?;

    seed_our_books(&bench, options.orders, day_start.with_timezone(&Utc)).await?;
    for first in (0..options.orders).step_by(SEED_BATCH as usize) {
        let last = (first + SEED_BATCH).min(options.orders);
        let orders: Vec<Value> = (first..last)
            .map(|g| {
                let paid = day_start
                    + chrono::Duration::milliseconds(g * 86_000_000 / options.orders.max(1));
                json!({"outTradeNo": order_number(g), "totalFee": amount(g),
                       "transactionId": format!("42000{g:015}"),
                       "timeEnd": paid.format("%Y%m%d%H%M%S").to_string(),
                       "openid": "o-bench-reconcile"})
            })
            .collect();
        bench
            .control_post("/sandbox/wechat/orders/bulk", &Value::Array(orders))
            .await?;
    }

    let api_peak_before = bench.sample_memory().api;
    let mut seconds = Vec::new();
    let mut report = Value::Null;
    for _ in 0..options.runs.max(1) {
        let started = Instant::now();
        report = bench
            .admin_post(&format!("/admin/reconciliation/run?date={day}"))
            .await?;
        seconds.push(started.elapsed().as_secs_f64());
    }
    let api_peak_after = bench.sample_memory().api;
    bench.stop().await;

    let data = &report["data"];
    let result = ReconcileResult {
        orders: options.orders,
        seconds,
        lines_matched: data["linesMatched"].as_i64().unwrap_or(-1),
        status: data["status"].as_str().unwrap_or("").to_owned(),
        api_peak_before,
        api_peak_after,
    };
    let table = Table::start(
        "Reconciliation of one day with WeChat Pay's bill",
        &["Measure", "Value"],
    );
    table.row(&[
        "Payments in the day's bill".into(),
        result.orders.to_string(),
    ]);
    for (i, s) in result.seconds.iter().enumerate() {
        let label = if i == 0 {
            "First run".to_owned()
        } else {
            format!("Re-run {i}")
        };
        table.row(&[format!("{label} (s)"), format!("{s:.2}")]);
    }
    table.row(&["Lines matched".into(), result.lines_matched.to_string()]);
    table.row(&["Day status".into(), result.status.clone()]);
    table.row(&[
        "payment-api peak RSS before / after (MiB)".into(),
        format!(
            "{} / {}",
            mib(result.api_peak_before),
            mib(result.api_peak_after)
        ),
    ]);
    Ok(result)
}

fn order_number(g: i64) -> String {
    format!("RC{g:012}")
}

/// Amounts from 1.00 to 99.99 yuan, so that a fen out of place would show.
fn amount(g: i64) -> i64 {
    100 + (g * 7919) % 9900
}

/// The day's paid and credited orders, written in one statement.
async fn seed_our_books(
    bench: &Bench,
    orders: i64,
    day_start: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    let db = &bench.db.pool;
    let user: i64 =
        sqlx::query_scalar("INSERT INTO users (openid) VALUES ('o-bench-reconcile') RETURNING id")
            .fetch_one(db)
            .await?;
    sqlx::query(
        "INSERT INTO orders (order_number, user_id, openid, phone_number, product_operator,
                             recharge_type, product_code, product_name, price_mnt,
                             exchange_rate, amount_fen, payment_status, transaction_id,
                             paid_at, payment_recorded_at, recharge_status, recharged_at,
                             created_at, updated_at)
         SELECT 'RC' || lpad(g::text, 12, '0'), $1, 'o-bench-reconcile', '88616600', 'unitel',
                'voice', 'SD5000', 'Smart data 5000', 5000, 440,
                100 + (g * 7919) % 9900, 'paid', '42000' || lpad(g::text, 15, '0'),
                $2::timestamptz + (g * 86000000 / $3) * interval '1 millisecond',
                $2::timestamptz + (g * 86000000 / $3) * interval '1 millisecond',
                'success', $2::timestamptz + (g * 86000000 / $3) * interval '1 millisecond',
                $2::timestamptz - interval '1 minute', $2::timestamptz
           FROM generate_series(0, $3 - 1) g",
    )
    .bind(user)
    .bind(day_start)
    .bind(orders)
    .execute(db)
    .await?;
    Ok(())
}

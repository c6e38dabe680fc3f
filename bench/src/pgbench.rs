//! The machine's limit for a callback's database work: pgbench sending the statements a
//! callback without confirmation sends, prepared as sqlx prepares them, at the same
//! concurrency, against the same database, triggers and all. A first payment is
//! `lifecycle::record_payment`'s transition; a duplicate (one transaction in ten) is the
//! same statement changing nothing, then the statement that says why.
//!
//! The service builds a payment's outbox key in Rust and binds it; pgbench has no
//! counter of its own, so a first payment first takes its order number from a sequence
//! (one more round trip than the service makes, which only makes pgbench's figure lower).

use std::process::Command;

use anyhow::Context;
use shared::amqp::ORDER_PAID_ROUTING_KEY;
use shared::history::{Actor, OrderEvent};
use shared::lifecycle;
use sqlx::PgPool;

/// Orders pgbench pays are its own (`PGB<n>`), copied from one the service created;
/// duplicates are reported for `PGBD<n>`, paid before the run.
pub struct Pgbench {
    url: String,
    script: std::path::PathBuf,
    amount_fen: i64,
    seeded: i64,
}

pub struct PgbenchRun {
    pub clients: usize,
    pub transactions: usize,
    pub per_second: f64,
    pub mean_latency_ms: f64,
}

const PAID_BEFORE: i64 = 1000;

impl Pgbench {
    pub async fn prepare(db: &PgPool, url: &str) -> anyhow::Result<Pgbench> {
        which_pgbench()?;
        sqlx::query("CREATE SEQUENCE IF NOT EXISTS bench_pgbench_orders")
            .execute(db)
            .await?;
        let amount_fen: i64 = sqlx::query_scalar("SELECT amount_fen FROM orders LIMIT 1")
            .fetch_optional(db)
            .await?
            .context("pgbench copies an order the service created: create one first")?;
        let script =
            std::env::temp_dir().join(format!("elife-callback-{}.pgbench", std::process::id()));
        std::fs::write(&script, script_text())?;
        sqlx::query(
            "INSERT INTO orders (order_number, user_id, openid, phone_number, product_operator,
                                 recharge_type, product_code, product_name, price_mnt,
                                 exchange_rate, amount_fen, payment_status, transaction_id,
                                 paid_at, payment_recorded_at)
             SELECT 'PGBD' || to_char(g, 'FM0000000000'), user_id, openid, phone_number,
                    product_operator, recharge_type, product_code, product_name, price_mnt,
                    exchange_rate, amount_fen, 'paid', '42' || to_char(g, 'FM00000000000000000000000000'),
                    now(), now()
               FROM (SELECT * FROM orders WHERE amount_fen = $2 LIMIT 1) template,
                    generate_series(1, $1) g",
        )
        .bind(PAID_BEFORE)
        .bind(amount_fen)
        .execute(db)
        .await?;
        Ok(Pgbench {
            url: url.to_owned(),
            script,
            amount_fen,
            seeded: 0,
        })
    }

    /// Unpaid orders for `count` more transactions to pay.
    async fn seed(&mut self, db: &PgPool, count: i64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO orders (order_number, user_id, openid, phone_number, product_operator,
                                 recharge_type, product_code, product_name, price_mnt,
                                 exchange_rate, amount_fen)
             SELECT 'PGB' || to_char(g, 'FM0000000000'), user_id, openid, phone_number,
                    product_operator, recharge_type,
                    product_code, product_name, price_mnt, exchange_rate, amount_fen
               FROM (SELECT * FROM orders WHERE amount_fen = $3 LIMIT 1) template,
                    generate_series($1, $2) g",
        )
        .bind(self.seeded + 1)
        .bind(self.seeded + count)
        .bind(self.amount_fen)
        .execute(db)
        .await?;
        self.seeded += count;
        sqlx::query("ANALYZE orders").execute(db).await?;
        Ok(())
    }

    pub async fn run(
        &mut self,
        db: &PgPool,
        clients: usize,
        transactions: usize,
    ) -> anyhow::Result<PgbenchRun> {
        let per_client = transactions.div_ceil(clients);
        self.seed(db, (per_client * clients) as i64).await?;
        let payload = serde_json::json!({
            "version": 1, "orderNumber": "PGB0000000000000000", "amountFen": self.amount_fen,
            "transactionId": "4200000000000000000000000000", "paidAt": "2026-11-25T00:00:00Z",
        });
        let output = Command::new("pgbench")
            .args(["--no-vacuum", "--protocol=prepared"])
            .arg(format!("--client={clients}"))
            .arg(format!("--jobs={}", clients.min(2)))
            .arg(format!("--transactions={per_client}"))
            .arg(format!("--file={}", self.script.display()))
            .arg(format!("--define=paid_before={PAID_BEFORE}"))
            .arg(format!("--define=amount={}", self.amount_fen))
            .arg(format!("--define=event={}", OrderEvent::Paid))
            .arg(format!("--define=reported_by={}", Actor::WechatCallback))
            .arg(format!("--define=routing_key={ORDER_PAID_ROUTING_KEY}"))
            .arg(format!("--define=payload={payload}"))
            .arg(&self.url)
            .output()
            .context("running pgbench")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        anyhow::ensure!(
            output.status.success(),
            "pgbench failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(PgbenchRun {
            clients,
            transactions: per_client * clients,
            per_second: figure(&stdout, "tps = ")?,
            mean_latency_ms: figure(&stdout, "latency average = ")?,
        })
    }
}

impl Drop for Pgbench {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.script);
    }
}

fn which_pgbench() -> anyhow::Result<()> {
    Command::new("pgbench")
        .arg("--version")
        .output()
        .map(drop)
        .context("pgbench is not installed (Debian: postgresql-client)")
}

/// A first payment takes its order number, and its message's key, from a sequence
/// (`\gset`); a duplicate re-reports one of the orders paid before the run.
fn script_text() -> String {
    let (transition, explanation) = lifecycle::record_payment_statements();
    let record = |order_number: &str, transaction_id: &str, key: &str| {
        one_line(
            &transition
                .replace("$1", order_number)
                .replace("$2", transaction_id)
                .replace("$3", "now()")
                .replace("$4", ":amount")
                .replace("$5", ":event")
                .replace("$6", ":reported_by")
                .replace("$7", key)
                .replace("$8", ":routing_key")
                .replace("$9", ":payload::jsonb"),
        )
    };
    let duplicate = "'PGBD' || to_char(:n::int8, 'FM0000000000')";
    // Each order is paid by a transaction of its own: a transaction id pays one order.
    let duplicate_transaction = "'42' || to_char(:n::int8, 'FM00000000000000000000000000')";
    format!(
        "\\set duplicate random(1, 10)
\\if :duplicate = 1
\\set n random(1, :paid_before)
{};
{};
\\else
SELECT 'PGB' || to_char(n, 'FM0000000000') AS order_number,
       'order-paid' || chr(58) || 'PGB' || to_char(n, 'FM0000000000') AS outbox_key,
       '43' || to_char(n, 'FM00000000000000000000000000') AS transaction_id
  FROM nextval('bench_pgbench_orders') n \\gset
{};
\\endif
",
        // chr(58) is ':': pgbench would read a colon in the text as a variable.
        record(
            duplicate,
            duplicate_transaction,
            &format!("'order-paid' || chr(58) || {duplicate}")
        ),
        one_line(
            &explanation
                .replace("$1", duplicate)
                .replace("$2", duplicate_transaction)
        ),
        record(":order_number", ":transaction_id", ":outbox_key"),
    )
}

fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn figure(output: &str, label: &str) -> anyhow::Result<f64> {
    output
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .with_context(|| format!("no `{label}` in pgbench's output: {output}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_sends_the_services_statements_with_every_parameter_bound() {
        let script = script_text();
        assert!(!script.contains('$'), "{script}");
        assert!(script.contains("UPDATE orders SET payment_status = 'paid'"));
        assert!(script.contains("\\gset"));
        assert!(script.contains("INSERT INTO outbox"));
        assert!(script.contains("INSERT INTO order_events"));
        assert_eq!(script.matches("UPDATE orders").count(), 2, "{script}");
        assert!(script.contains("SELECT payment_status AS"));
    }

    #[test]
    fn figures_are_read_from_pgbench_output() {
        let output = "latency average = 0.354 ms\ninitial connection time = 2.1 ms\n\
                      tps = 2822.101 (without initial connection time)\n";
        assert_eq!(figure(output, "tps = ").unwrap(), 2822.101);
        assert_eq!(figure(output, "latency average = ").unwrap(), 0.354);
        assert!(figure("nothing", "tps = ").is_err());
    }
}

//! After the storm: forged callbacks, waiting for the system to settle, and the checks.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use serde_json::Value;
use sqlx::PgPool;

use crate::load::{callback_body, Client};
use crate::recovery::{Fault, Healed, KilledWorker};

/// The slowest a SIGKILLed worker's orders may take to be settled or taken over.
const WORKER_RECOVERY_TARGET: Duration = Duration::from_secs(15);
use testkit::processes::MERCHANT;

/// The run's admin token (production refuses one shorter than 32 characters).
pub const ADMIN_TOKEN: &str = "fault-run-admin-token-0123456789abcdef";

pub struct Forged {
    /// Orders that were never paid and received only forged callbacks.
    pub bait: Vec<String>,
    pub sent: usize,
    pub acknowledged: usize,
}

/// For a few unpaid orders: a callback with the wrong amount, one from another merchant,
/// one for an order WeChat calls unpaid, one without the gateway's X-WX-SOURCE; and one for
/// an order that does not exist.
pub async fn forge(client: &Client) -> anyhow::Result<Forged> {
    if client.direct {
        return forge_notifications(client).await;
    }
    let mut forged = Forged {
        bait: Vec::new(),
        sent: 0,
        acknowledged: 0,
    };
    for n in 0..5 {
        let order = client.place_order(1_000_000 + n).await?;
        let at_wechat = client
            .control_get(&format!("/sandbox/wechat/orders/{order}"))
            .await?;
        let amount = at_wechat["totalFee"].as_i64().unwrap_or(0);
        let attempts = [
            (callback_body(&order, amount + 1, MERCHANT), true),
            (callback_body(&order, amount, "9999999999"), true),
            (callback_body(&order, amount, MERCHANT), true),
            (callback_body(&order, amount, MERCHANT), false),
        ];
        for (body, with_source) in attempts {
            forged.sent += 1;
            if client.forge(&order, body, with_source).await? == 0 {
                forged.acknowledged += 1;
            }
        }
        forged.bait.push(order);
    }
    let ghost = "ORD1700000000000FORGED01";
    forged.sent += 1;
    if client
        .forge(ghost, callback_body(ghost, 1136, MERCHANT), true)
        .await?
        == 0
    {
        forged.acknowledged += 1;
    }
    Ok(forged)
}

/// Direct mode: for a few unpaid orders, APIv3 notifications signed by a forger under
/// WeChat Pay's key id, under an unknown id, and five minutes too old, each answered 400;
/// and a Cloud Hosting callback with the gateway's mark, which nothing vouches for outside
/// Cloud Hosting, recorded and answered errcode 0. None may pay anything.
async fn forge_notifications(client: &Client) -> anyhow::Result<Forged> {
    let mut forged = Forged {
        bait: Vec::new(),
        sent: 0,
        acknowledged: 0,
    };
    let serial = client.wechatpay_serial().await?;
    for n in 0..5 {
        let order = client.place_order(1_000_000 + n).await?;
        let at_wechat = client
            .control_get(&format!("/sandbox/wechat/orders/{order}"))
            .await?;
        let amount = at_wechat["totalFee"].as_i64().unwrap_or(0);
        for (serial, age) in [
            (serial.as_str(), 0),
            ("PUB_KEY_ID_0000000000FORGED", 0),
            (serial.as_str(), 400),
        ] {
            forged.sent += 1;
            if client.forge_notification(&order, serial, age).await? == 400 {
                forged.acknowledged += 1;
            }
        }
        forged.sent += 1;
        if client
            .forge(&order, callback_body(&order, amount, MERCHANT), true)
            .await?
            == 0
        {
            forged.acknowledged += 1;
        }
        forged.bait.push(order);
    }
    forged.sent += 1;
    if client
        .forge_notification("ORD1700000000000FORGED01", &serial, 0)
        .await?
        == 400
    {
        forged.acknowledged += 1;
    }
    Ok(forged)
}

async fn queue_sizes(prefix: &str) -> anyhow::Result<(u32, u32)> {
    let connection = shared::amqp::connect(&testkit::amqp_url(), "fault run").await?;
    let channel = connection.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let main = channel
        .queue_declare(
            format!("{prefix}.recharge").as_str().into(),
            passive,
            Default::default(),
        )
        .await?
        .message_count();
    let dead = channel
        .queue_declare(
            format!("{prefix}.recharge.dead").as_str().into(),
            passive,
            Default::default(),
        )
        .await?
        .message_count();
    let _ = connection.close(200, "".into()).await;
    Ok((main, dead))
}

/// Waits until no paid order is left without an outcome, nothing waits in the outbox and
/// the queue is empty, and two rounds of the payment watch (which finds payments whose
/// callback was lost) have finished since, on the payment-api instances whose `/metrics`
/// are `operations`: the second began after the system looked settled.
pub async fn settle(
    database_url: &str,
    prefix: &str,
    within: Duration,
    operations: &[testkit::Metrics],
) -> anyhow::Result<()> {
    let db = PgPool::connect(database_url).await?;
    let deadline = Instant::now() + within;
    // Payment-watch rounds when the system was first seen settled, this time round.
    let mut settled_at_round: Option<u64> = None;
    loop {
        // Read before the books, so that what a counted round found is in them.
        let rounds = payment_watch_rounds(operations).await;
        let open: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM orders WHERE payment_status = 'paid'
                       AND recharge_status IN ('pending', 'processing'))
                  + (SELECT count(*) FROM outbox WHERE published_at IS NULL)
                  + (SELECT count(*) FROM refunds WHERE status IN ('requested', 'accepted'))
                  + (SELECT count(*) FROM orders o WHERE o.recharge_status = 'failed'
                       AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.order_number = o.order_number))",
        )
        .fetch_one(&db)
        .await
        .unwrap_or(i64::MAX);
        let (queued, _) = queue_sizes(prefix).await.unwrap_or((u32::MAX, 0));
        if open == 0 && queued == 0 {
            let from = *settled_at_round.get_or_insert(rounds);
            if rounds >= from + 2 {
                return Ok(());
            }
        } else {
            settled_at_round = None;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "not settled after {within:?}: {open} open orders or outbox rows, {queued} queued, {rounds} payment-watch rounds (settled at {settled_at_round:?})"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Payment-watch rounds finished, summed over the instances that answer (a SIGKILLed one
/// counts no more).
async fn payment_watch_rounds(operations: &[testkit::Metrics]) -> u64 {
    let mut rounds = 0;
    for instance in operations {
        rounds += instance
            .try_counter(
                "job_rounds_total",
                &[("job", "payment_watch"), ("outcome", "done")],
            )
            .await
            .unwrap_or(0);
    }
    rounds
}

pub struct Check {
    name: &'static str,
    passed: bool,
    detail: String,
}

pub struct Report {
    figures: Vec<(String, String)>,
    checks: Vec<Check>,
    /// The history of the order the slowest worker-kill recovery waited for.
    slowest_recovery: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    pub fn print(&self) {
        println!("\n| figure | value |\n|---|---|");
        for (name, value) in &self.figures {
            println!("| {name} | {value} |");
        }
        println!("\n| check | result | detail |\n|---|---|---|");
        for check in &self.checks {
            println!(
                "| {} | {} | {} |",
                check.name,
                if check.passed { "PASS" } else { "FAIL" },
                check.detail
            );
        }
        if !self.slowest_recovery.is_empty() {
            println!("\nthe slowest worker-kill recovery, from its last order's history:");
            for line in &self.slowest_recovery {
                println!("  {line}");
            }
        }
        let failed = self.checks.iter().filter(|c| !c.passed).count();
        println!(
            "\nfault run: {} passed, {} failed",
            self.checks.len() - failed,
            failed
        );
    }
}

pub async fn check(
    client: &Client,
    database_url: &str,
    prefix: &str,
    placed: &[String],
    forged: &Forged,
    load_errors: usize,
    healed: &[Healed],
) -> anyhow::Result<Report> {
    let db = PgPool::connect(database_url).await?;
    let wechat: Vec<Value> =
        serde_json::from_value(client.control_get("/sandbox/wechat/orders").await?)?;
    let ledger: Vec<Value> =
        serde_json::from_value(client.control_get("/sandbox/unitel/ledger").await?)?;
    let callbacks: Vec<Value> =
        serde_json::from_value(client.control_get("/sandbox/wechat/callbacks").await?)?;
    let rows: Vec<(String, String, String, bool)> = sqlx::query_as(
        "SELECT order_number, payment_status, recharge_status, recharge_sent_at IS NOT NULL FROM orders",
    )
    .fetch_all(&db)
    .await?;
    let anomalies: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, count(*) FROM payment_anomalies GROUP BY kind ORDER BY kind")
            .fetch_all(&db)
            .await?;
    let unpublished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&db)
            .await?;
    let (queued, dead) = queue_sizes(prefix).await?;

    let paid_at_wechat: HashSet<&str> = wechat
        .iter()
        .filter(|o| matches!(o["tradeState"].as_str(), Some("SUCCESS" | "REFUND")))
        .filter_map(|o| o["outTradeNo"].as_str())
        .collect();
    let paid_here: HashSet<&str> = rows
        .iter()
        .filter(|r| r.1 == "paid")
        .map(|r| r.0.as_str())
        .collect();
    let mut credits: HashMap<&str, Vec<&str>> = HashMap::new();
    for credit in &ledger {
        credits
            .entry(credit["journalId"].as_str().unwrap_or(""))
            .or_default()
            .push(credit["answer"].as_str().unwrap_or(""));
    }
    let with_status = |status: &str| {
        rows.iter()
            .filter(|r| r.1 == "paid" && r.2 == status)
            .collect::<Vec<_>>()
    };
    let (success, failed, unknown) = (
        with_status("success"),
        with_status("failed"),
        with_status("unknown"),
    );
    let open = rows
        .iter()
        .filter(|r| r.1 == "paid" && (r.2 == "pending" || r.2 == "processing"))
        .count();
    let twice = credits.values().filter(|c| c.len() > 1).count();
    let success_not_once = success
        .iter()
        .filter(|r| credits.get(r.0.as_str()).map_or(0, Vec::len) != 1)
        .count();
    let failed_credited = failed
        .iter()
        .filter(|r| credits.contains_key(r.0.as_str()))
        .count();
    let unknown_unsent = unknown.iter().filter(|r| !r.3).count();
    let unknown_by_answer = |answer: Option<&str>| {
        unknown
            .iter()
            .filter(|r| credits.get(r.0.as_str()).and_then(|c| c.first().copied()) == answer)
            .count()
    };
    let bait_paid = forged
        .bait
        .iter()
        .filter(|o| paid_here.contains(o.as_str()))
        .count();
    // Refunds, as WeChat saw them: every failed order refunded once in full, nothing else.
    let failed_orders: HashSet<&str> = failed.iter().map(|r| r.0.as_str()).collect();
    let mut refunded_once_in_full = 0;
    let mut wrongly_refunded = 0;
    for order in &wechat {
        let refunds = order["refunds"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if refunds.is_empty() {
            continue;
        }
        let number = order["outTradeNo"].as_str().unwrap_or("");
        let in_full = refunds.len() == 1
            && refunds[0]["refundFee"] == order["totalFee"]
            && refunds[0]["status"] == "SUCCESS";
        if failed_orders.contains(number) && in_full {
            refunded_once_in_full += 1;
        } else {
            wrongly_refunded += 1;
        }
    }
    let refunds_confirmed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM refunds WHERE status = 'success'")
            .fetch_one(&db)
            .await?;
    let deliveries = callbacks.iter().filter(|c| c["kind"] == "payment").count();
    let accepted = callbacks
        .iter()
        .filter(|c| c["kind"] == "payment" && c["accepted"] == true)
        .count();

    // The books against WeChat's bill: every China day the run touched, reconciled as an
    // operator would. The storm's faults never change what WeChat took; one more is made
    // for the books alone: a credited order partly refunded by hand at WeChat. So every
    // day must balance but for exactly that refund, found as a difference of its own.
    let by_hand = match success.first() {
        Some(order) => Some(client.refund_by_hand(&order.0, 1).await?),
        None => None,
    };
    let days: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT to_char(d AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD')
           FROM (SELECT created_at AS d FROM orders UNION ALL SELECT now()) t ORDER BY 1",
    )
    .fetch_all(&db)
    .await?;
    let mut reconciled = Vec::new();
    for day in &days {
        let report = client
            .admin_post(&format!("/admin/reconciliation/run?date={day}"))
            .await?;
        reconciled.push((day.clone(), report));
    }
    let mut unexplained = Vec::new();
    let mut explained = 0;
    for (day, report) in &reconciled {
        for difference in report["differences"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let injected = difference["kind"] == "refund_at_wechat_only"
                && by_hand.as_deref() == difference["subject"].as_str();
            if injected {
                explained += 1;
            } else {
                unexplained.push(format!(
                    "{day} {} {}",
                    difference["kind"], difference["subject"]
                ));
            }
        }
        let whole = report["status"] == "balanced" || report["status"] == "differences";
        if !whole {
            unexplained.push(format!("{day} {}", report["status"]));
        }
    }
    let bill_lines: i64 = reconciled
        .iter()
        .map(|(_, r)| r["billLines"].as_i64().unwrap_or(0))
        .sum();
    let lines_matched: i64 = reconciled
        .iter()
        .map(|(_, r)| r["linesMatched"].as_i64().unwrap_or(0))
        .sum();

    let recovery_figures = recovery_figures(healed);
    let worker_kills: Vec<&Healed> = healed
        .iter()
        .filter(|h| h.fault == Fault::WorkerKill && h.orders > 0)
        .collect();
    let slowest_worker_recovery = worker_kills.iter().map(|h| h.took).max().flatten();
    let unhealed = healed.iter().filter(|h| h.took.is_none()).count();
    let mut figures = vec![
        ("orders placed and paid by customers".to_owned(), placed.len().to_string()),
        ("paid at WeChat / recorded paid here".into(), format!("{} / {}", paid_at_wechat.len(), paid_here.len())),
        ("recharge success / failed / unknown".into(), format!("{} / {} / {}", success.len(), failed.len(), unknown.len())),
        ("unknown: hung after credit / dropped after credit / answered (worker killed) / no credit".into(),
            format!("{} / {} / {} / {}", unknown_by_answer(Some("hung")), unknown_by_answer(Some("dropped")), unknown_by_answer(Some("answered")), unknown_by_answer(None))),
        ("Unitel credits in the ledger".into(), ledger.len().to_string()),
        ("refunds at WeChat / confirmed here".into(), format!("{refunded_once_in_full} / {refunds_confirmed}")),
        ("payment callback deliveries (accepted / refused for retry)".into(), format!("{deliveries} ({accepted} / {})", deliveries - accepted)),
        ("forged callbacks sent (answered as refused: errcode 0, or 400 for APIv3)".into(), format!("{} ({})", forged.sent, forged.acknowledged)),
        ("anomalies recorded".into(), anomalies.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")),
        ("dead-lettered messages".into(), dead.to_string()),
        ("reconciled with WeChat's bill: days / bill lines / matched".into(),
            format!("{} / {bill_lines} / {lines_matched}", reconciled.len())),
        ("load errors".into(), load_errors.to_string()),
    ];
    figures.extend(recovery_figures);
    let check = |name, passed, detail: String| Check {
        name,
        passed,
        detail,
    };
    let checks = vec![
        check(
            "every customer's order was placed and paid",
            load_errors == 0 && !placed.is_empty(),
            format!("{} orders, {load_errors} errors", placed.len()),
        ),
        check(
            "every payment WeChat took is recorded here",
            paid_at_wechat.iter().all(|o| paid_here.contains(o)),
            format!(
                "{} missing",
                paid_at_wechat
                    .iter()
                    .filter(|o| !paid_here.contains(*o))
                    .count()
            ),
        ),
        check(
            "nothing is paid here that WeChat did not take",
            paid_here.iter().all(|o| paid_at_wechat.contains(o)),
            format!(
                "{} extra",
                paid_here
                    .iter()
                    .filter(|o| !paid_at_wechat.contains(*o))
                    .count()
            ),
        ),
        check(
            "every paid order ended success, failed or unknown",
            open == 0,
            format!("{open} still pending or processing"),
        ),
        check(
            "no number was credited twice",
            twice == 0,
            format!("{twice} orders credited more than once"),
        ),
        check(
            "every success was credited exactly once",
            success_not_once == 0,
            format!("{success_not_once} of {}", success.len()),
        ),
        check(
            "no failed order was credited",
            failed_credited == 0,
            format!("{failed_credited} of {}", failed.len()),
        ),
        check(
            "every unknown order's request may have reached Unitel",
            unknown_unsent == 0,
            format!("{unknown_unsent} unknown without a sent request"),
        ),
        check(
            "no forged callback fulfilled anything",
            bait_paid == 0 && forged.acknowledged == forged.sent,
            format!(
                "{bait_paid} forged orders paid; {} of {} answered as refused",
                forged.acknowledged, forged.sent
            ),
        ),
        check(
            "every failed order was refunded once, in full, and nothing else",
            refunded_once_in_full == failed.len()
                && wrongly_refunded == 0
                && refunds_confirmed as usize == failed.len(),
            format!(
                "{refunded_once_in_full} of {} failed orders refunded; {wrongly_refunded} wrong refunds; {refunds_confirmed} confirmed here",
                failed.len()
            ),
        ),
        check(
            "a killed worker's orders were settled or taken over within 15 s",
            unhealed == 0
                && worker_kills.iter().all(|h| h.took.is_some_and(|t| t <= WORKER_RECOVERY_TARGET)),
            format!(
                "slowest {} over {} kills that held orders; {unhealed} faults never healed",
                slowest_worker_recovery.map_or("-".into(), |t| format!("{:.1} s", t.as_secs_f64())),
                worker_kills.len()
            ),
        ),
        check(
            "every day of the run reconciles with WeChat's bill, the refund made by hand its one difference",
            unexplained.is_empty()
                && explained == usize::from(by_hand.is_some())
                && bill_lines == lines_matched + explained as i64
                && bill_lines > 0,
            if unexplained.is_empty() {
                format!(
                    "{} days, {lines_matched} of {bill_lines} lines matched, {explained} difference: the refund made by hand",
                    reconciled.len()
                )
            } else {
                unexplained.join("; ")
            },
        ),
        check(
            "the outbox is empty",
            unpublished == 0,
            format!("{unpublished} unpublished"),
        ),
        check(
            "no message is stuck in the queue",
            queued == 0,
            format!("{queued} in {prefix}.recharge"),
        ),
    ];
    let slowest = worker_kills.iter().max_by_key(|h| h.took);
    let slowest_recovery = match slowest.and_then(|h| h.kill.as_ref()) {
        Some(kill) => slowest_story(&db, kill).await?,
        None => Vec::new(),
    };
    Ok(Report {
        figures: figures.into_iter().collect(),
        checks,
        slowest_recovery,
    })
}

/// What happened to the order a worker-kill recovery waited for last, in seconds from the
/// kill: enough to tell a lease wait from a Unitel retry or a restart.
async fn slowest_story(db: &PgPool, kill: &KilledWorker) -> anyhow::Result<Vec<String>> {
    let Some(order) = &kill.last_settled else {
        return Ok(Vec::new());
    };
    let events: Vec<(f64, String, String, Option<Value>)> = sqlx::query_as(
        "SELECT extract(epoch FROM created_at - $2)::float8, event, actor, detail
           FROM order_events WHERE order_number = $1 ORDER BY id",
    )
    .bind(order)
    .bind(kill.at)
    .fetch_all(db)
    .await?;
    let mut story = vec![format!("{} SIGKILLed; {order}:", kill.worker)];
    story.extend(events.into_iter().map(|(seconds, event, actor, detail)| {
        let detail = detail.map(|d| d.to_string()).unwrap_or_default();
        format!("{seconds:+7.1} s  {event} by {actor} {detail}")
    }));
    Ok(story)
}

/// p50 and max recovery per kind of fault, as figures.
fn recovery_figures(healed: &[Healed]) -> Vec<(String, String)> {
    let mut faults: Vec<Fault> = healed.iter().map(|h| h.fault).collect();
    faults.sort();
    faults.dedup();
    faults
        .into_iter()
        .map(|fault| {
            let of_kind: Vec<&Healed> = healed
                .iter()
                .filter(|h| h.fault == fault && (fault != Fault::WorkerKill || h.orders > 0))
                .collect();
            let mut times: Vec<Duration> = of_kind.iter().filter_map(|h| h.took).collect();
            times.sort();
            let seconds = |t: Option<&Duration>| {
                t.map_or("-".into(), |t| format!("{:.1} s", t.as_secs_f64()))
            };
            let orders: usize = of_kind.iter().map(|h| h.orders).sum();
            (
                format!("recovery: {}", fault.name()),
                format!(
                    "p50 {} / max {} over {} ({} orders; {} never)",
                    seconds(times.get(times.len().saturating_sub(1) / 2)),
                    seconds(times.last()),
                    of_kind.len(),
                    orders,
                    of_kind.len() - times.len()
                ),
            )
        })
        .collect()
}

//! Workers as ops run them: separate `recharge-worker` processes sharing one queue.

use std::process::Command;
use std::time::Duration;

use futures::future::join_all;
use testkit::processes::WorkerProcess;
use testkit::{System, SystemOptions};

fn spawn_worker(system: &System, id: &str) -> WorkerProcess {
    system.spawn_worker_process(id, &[])
}

fn spawn_worker_with(system: &System, id: &str, extra: &[(&str, String)]) -> WorkerProcess {
    let changes: Vec<(&str, Option<&str>)> = extra
        .iter()
        .map(|(name, value)| (*name, Some(value.as_str())))
        .collect();
    system.spawn_worker_process(id, &changes)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of one sample line of the Prometheus text format (0 when absent).
fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(sample)
                .map(|v| v.trim().parse().unwrap_or(0.0))
        })
        .unwrap_or(0.0)
}

fn terminate(worker: WorkerProcess) -> std::process::ExitStatus {
    worker.terminate()
}

#[tokio::test]
async fn two_worker_processes_credit_two_hundred_orders_exactly_once_each() {
    let system = System::start(SystemOptions {
        workers: 0,
        concurrency: 16,
        ..Default::default()
    })
    .await;
    let ports = [free_port(), free_port()];
    let first = spawn_worker_with(
        &system,
        "process-a",
        &[("METRICS_ADDR", format!("127.0.0.1:{}", ports[0]))],
    );
    let second = spawn_worker_with(
        &system,
        "process-b",
        &[("METRICS_ADDR", format!("127.0.0.1:{}", ports[1]))],
    );

    let mut orders = Vec::new();
    for batch in 0..10 {
        let created = join_all((0..20).map(|i| {
            let system = &system;
            async move {
                let msisdn = format!("8861{:03}{}", batch * 20 + i, [0, 3, 6][i % 3]);
                system
                    .order_and_pay(&format!("o-load-{batch}-{i}"), &msisdn, "voice", "SD5000")
                    .await
            }
        }))
        .await;
        orders.extend(created);
    }
    assert_eq!(orders.len(), 200);

    system
        .wait_for_count(
            "SELECT count(*) FROM orders WHERE recharge_status = 'success'",
            200,
            Duration::from_secs(60),
        )
        .await;
    let ledger = system.sandbox.ledger();
    assert_eq!(ledger.len(), 200, "exactly 200 credits");
    let mut credited: Vec<&str> = ledger.iter().map(|c| c.journal_id.as_str()).collect();
    credited.sort_unstable();
    credited.dedup();
    assert_eq!(credited.len(), 200, "no order credited twice");
    for order in &orders {
        assert!(
            credited.binary_search(&order.as_str()).is_ok(),
            "{order} credited"
        );
    }
    let workers: Vec<(String, i64)> = sqlx::query_as(
        "SELECT recharge_worker, count(*) FROM orders GROUP BY recharge_worker ORDER BY 1",
    )
    .fetch_all(&system.db.pool)
    .await
    .unwrap();
    assert_eq!(workers.len(), 2, "both processes took orders: {workers:?}");

    // Each worker's /metrics counts its own top-ups: together, the 200.
    let mut credited = 0.0;
    for port in ports {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        credited += metric(&text, "recharges_total{outcome=\"success\"}");
        assert!(
            metric(&text, "unitel_calls_total{outcome=\"success\"}") > 0.0,
            "{text}"
        );
        assert!(
            text.contains("unitel_call_duration_seconds_bucket"),
            "latency histogram"
        );
    }
    assert_eq!(credited, 200.0);

    // SIGTERM: each worker drains and exits cleanly.
    assert!(terminate(first).success());
    assert!(terminate(second).success());
    system.shutdown().await;
}

#[test]
fn the_binary_refuses_to_start_without_its_configuration() {
    let output = Command::new(env!("CARGO_BIN_EXE_recharge-worker"))
        .env_clear()
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .env("AMQP_URL", testkit::amqp_url())
        .env("UNITEL_USERNAME", "u")
        .env("UNITEL_PASSWORD", "p")
        .env("RECHARGE_CONCURRENCY", "0")
        .output()
        .expect("recharge-worker runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("RECHARGE_CONCURRENCY"), "{stderr}");
    assert!(!stderr.contains("\"p\""), "no secret in the message");

    let output = Command::new(env!("CARGO_BIN_EXE_recharge-worker"))
        .env_clear()
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .env("AMQP_URL", testkit::amqp_url())
        .output()
        .expect("recharge-worker runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("UNITEL_USERNAME"));
}

#[tokio::test]
async fn sigterm_releases_an_order_waiting_to_retry_and_exits_promptly() {
    let system = System::start(SystemOptions {
        workers: 0,
        retry_for_ms: 120_000,
        ..Default::default()
    })
    .await;
    let order = system
        .order_awaiting_payment("o-sigterm", "88616600", "voice", "SD5000")
        .await;
    system.sandbox.set_faults(sandbox::Faults {
        unitel: sandbox::UnitelFaults {
            refuse_connections_for_ms: 600_000,
            ..Default::default()
        },
        ..Default::default()
    });
    let worker = spawn_worker(&system, "process-sigterm");
    system.sandbox.pay(&order).await.unwrap();
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{order}' AND recharge_status = 'processing'"),
            1,
            Duration::from_secs(20),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // inside the retry backoff

    let asked = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || terminate(worker))
        .await
        .unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "exited in {:?}",
        asked.elapsed()
    );
    assert_eq!(
        system.statuses(&order).await.1,
        "pending",
        "released for another worker"
    );
    let released: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM order_events WHERE order_number = $1 AND event = 'released'",
    )
    .bind(&order)
    .fetch_one(&system.db.pool)
    .await
    .unwrap();
    assert_eq!(released, 1);
    assert_eq!(
        system.queued_messages().await,
        1,
        "its message went back to the queue"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn sigterm_lets_a_top_up_in_flight_finish_within_the_default_grace() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let order = system
        .order_awaiting_payment("o-deploy", "88616600", "voice", "SD5000")
        .await;
    system.sandbox.set_faults(sandbox::Faults {
        unitel: sandbox::UnitelFaults {
            latency_ms: 1_500,
            ..Default::default()
        },
        ..Default::default()
    });
    // The grace and the Unitel timeout the binary ships with, not the harness's.
    let worker = system.spawn_worker_process(
        "process-deploy",
        &[
            ("WORKER_SHUTDOWN_GRACE_MS", None),
            ("UNITEL_TIMEOUT_MS", None),
            ("UNITEL_RETRY_FOR_MS", None),
        ],
    );
    system.sandbox.pay(&order).await.unwrap();
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{order}' AND recharge_sent_at IS NOT NULL"),
            1,
            Duration::from_secs(20),
        )
        .await;
    let status = tokio::task::spawn_blocking(move || worker.terminate())
        .await
        .unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    assert_eq!(
        system.statuses(&order).await.1,
        "success",
        "finished, not unknown"
    );
    assert_eq!(system.credits_for(&order), 1);
    system.shutdown().await;
}

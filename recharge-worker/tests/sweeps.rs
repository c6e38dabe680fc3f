//! The sweep: whatever crashed, every paid order ends credited once, failed, or `unknown`
//! for a person — and nothing that may have reached Unitel is sent again.

use std::time::Duration;

use lapin::options::QueuePurgeOptions;
use testkit::{System, SystemOptions};

fn sweeping(workers: usize) -> SystemOptions {
    SystemOptions {
        workers,
        unitel_timeout_ms: 150,
        overrides: vec![
            ("RECHARGE_SWEEP_INTERVAL_MS", "100".into()),
            ("RECHARGE_REQUEUE_AFTER_MS", "300".into()),
        ],
        ..Default::default()
    }
}

/// Pays an order with no worker running and throws its message away, as if it had been
/// lost; returns once the payment is recorded.
async fn paid_without_a_message(system: &System, openid: &str) -> String {
    let order = system
        .order_and_pay(openid, "88616600", "voice", "SD5000")
        .await;
    system
        .wait_for_count(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND order_number IS NOT NULL",
            0,
            Duration::from_secs(10),
        )
        .await;
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM outbox WHERE order_number = '{order}' AND published_at IS NOT NULL"),
            1,
            Duration::from_secs(10),
        )
        .await;
    let connection = shared::amqp::connect(&testkit::amqp_url(), "test")
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_purge(
            system.topology.queue.as_str().into(),
            QueuePurgeOptions::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "".into()).await;
    order
}

async fn set(system: &System, order: &str, assignments: &str) {
    sqlx::query(&format!(
        "UPDATE orders SET {assignments} WHERE order_number = $1"
    ))
    .bind(order)
    .execute(&system.db.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_paid_order_whose_message_was_lost_is_requeued_and_credited_once() {
    let mut system = System::start(sweeping(0)).await;
    let order = paid_without_a_message(&system, "o-lost-message").await;
    system.start_worker().await;
    assert_eq!(
        system
            .wait_for_outcome(&order, Duration::from_secs(20))
            .await,
        "success"
    );
    assert_eq!(system.credits_for(&order), 1);
    assert!(system.events(&order).await.contains(&"requeued".to_owned()));
    system.shutdown().await;
}

#[tokio::test]
async fn a_claim_abandoned_before_sending_is_released_and_completed() {
    let mut system = System::start(sweeping(0)).await;
    let order = paid_without_a_message(&system, "o-dead-claim").await;
    // A worker claimed it and died before sending anything.
    set(&system, &order, "recharge_status = 'processing', recharge_at = now() - interval '1 hour', recharge_worker = 'dead'").await;
    system.start_worker().await;
    assert_eq!(
        system
            .wait_for_outcome(&order, Duration::from_secs(20))
            .await,
        "success"
    );
    assert_eq!(system.credits_for(&order), 1);
    let history = system.events(&order).await;
    assert!(history.contains(&"released".to_owned()), "{history:?}");
    system.shutdown().await;
}

#[tokio::test]
async fn on_shipped_settings_a_released_claim_whose_message_is_gone_is_sent_within_seconds() {
    // Its message dead-lettered after dead workers used up its deliveries: nothing but the
    // sweep knows the order, and the shipped requeue period is minutes.
    let mut system = System::start(SystemOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let order = paid_without_a_message(&system, "o-dead-letter").await;
    set(
        &system,
        &order,
        "recharge_status = 'processing', recharge_at = now(), recharge_worker = 'dead'",
    )
    .await;
    system.start_worker().await;
    assert_eq!(
        system
            .wait_for_outcome(&order, Duration::from_secs(12))
            .await,
        "success",
        "one sweep period (5 s) and a top-up"
    );
    assert_eq!(system.credits_for(&order), 1);
    let history = system.events(&order).await;
    let released = history.iter().position(|e| e == "released");
    let requeued = history.iter().position(|e| e == "requeued");
    assert!(
        released.is_some() && requeued > released,
        "released, then requeued at once: {history:?}"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_claim_abandoned_after_sending_becomes_unknown_and_is_never_resent() {
    let system = System::start(sweeping(0)).await;
    let order = paid_without_a_message(&system, "o-dead-sender").await;
    // A worker claimed it, wrote "sent", and died: Unitel may have credited it.
    set(
        &system,
        &order,
        "recharge_status = 'processing', recharge_at = now() - interval '1 hour', recharge_worker = 'dead', recharge_sent_at = now() - interval '1 hour'",
    )
    .await;
    // A process of its own: its sweep rounds are counted for this test alone.
    let worker = system.spawn_worker_process("sweeper", &[]);
    assert_eq!(
        system
            .wait_for_outcome(&order, Duration::from_secs(20))
            .await,
        "unknown"
    );
    // Two more sweep rounds, the second begun after it became unknown: whatever a round
    // does to it is done.
    worker.metrics().wait_for_rounds("recharge_sweep", 2).await;
    assert_eq!(system.statuses(&order).await.1, "unknown");
    let history = system.events(&order).await;
    assert_eq!(
        history.last().map(String::as_str),
        Some("unknown"),
        "nothing since: {history:?}"
    );
    assert_eq!(system.credits_for(&order), 0, "not sent again");
    worker.kill();
    system.shutdown().await;
}

#[tokio::test]
async fn unknown_orders_with_a_seq_are_settled_with_unitel() {
    let system = System::start(sweeping(1)).await;
    let credited = system
        .order_and_pay("o-seq", "88616600", "voice", "SD5000")
        .await;
    let missing = system
        .order_and_pay("o-seq", "88616600", "voice", "SD5000")
        .await;
    for order in [&credited, &missing] {
        assert_eq!(
            system
                .wait_for_outcome(order, Duration::from_secs(20))
                .await,
            "success"
        );
    }
    // As if Unitel had answered "pending" with these seqs.
    set(&system, &credited, "recharge_status = 'unknown'").await;
    set(
        &system,
        &missing,
        "recharge_status = 'unknown', seq_id = '9999999999999'",
    )
    .await;
    system
        .wait_for_count(
            "SELECT count(*) FROM orders WHERE recharge_status = 'unknown'",
            0,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(system.statuses(&credited).await.1, "success");
    assert_eq!(system.statuses(&missing).await.1, "failed");
    assert_eq!(
        system.sandbox.ledger().len(),
        2,
        "reconciling sends no top-up"
    );
    system.shutdown().await;
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct Settled {
    recharge_status: String,
    recharged_at: String,
    recharge_error_code: Option<String>,
    recharge_error_message: Option<String>,
    unknown_settled_by: Option<String>,
}

async fn settled(system: &System, order: &str) -> Settled {
    sqlx::query_as(
        "SELECT recharge_status, to_char(recharged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS recharged_at,
                recharge_error_code, recharge_error_message, unknown_settled_by
           FROM orders WHERE order_number = $1",
    )
    .bind(order)
    .fetch_one(&system.db.pool)
    .await
    .unwrap()
}

async fn resolve(system: &System, order: &str, outcome: &str, note: &str) {
    let body = serde_json::json!({"outcome": outcome, "note": note, "resolvedBy": "ops"});
    let path = format!("/admin/orders/{order}/resolve");
    let (status, body) = system
        .admin_request(
            reqwest::Method::POST,
            &path,
            Some(testkit::ADMIN_TOKEN),
            Some(body),
        )
        .await;
    assert!(status.is_success(), "{body}");
}

#[tokio::test]
async fn an_unknown_top_up_settles_to_one_result_whether_unitel_or_a_person_decides() {
    let system = System::start(sweeping(1)).await;
    let mut orders = Vec::new();
    for _ in 0..4 {
        let (order, outcome) = system.top_up("o-settle").await;
        assert_eq!(outcome, "success");
        orders.push(order);
    }
    // As a worker leaves an unknown top-up: the time and the reason it was recorded. The
    // first two keep the seq Unitel gave (the sweep asks Unitel about them; the first was
    // credited, the second's seq Unitel does not know: failed); the last two have none
    // (a person decides).
    for (i, order) in orders.iter().enumerate() {
        let seq = match i {
            0 => "seq_id",
            1 => "'9999999999999'",
            _ => "NULL",
        };
        set(
            &system,
            order,
            &format!(
                "recharge_status = 'unknown', recharged_at = '2026-01-02T03:04:00Z', unknown_at = now(),
                 recharge_error_message = 'timed out after sending', seq_id = {seq},
                 recharge_in_flight_until = '2026-01-02T03:04:00Z'"
            ),
        )
        .await;
    }
    resolve(
        &system,
        &orders[2],
        "success",
        "Unitel confirmed the credit",
    )
    .await;
    resolve(
        &system,
        &orders[3],
        "failed",
        "Unitel has no such journal id",
    )
    .await;
    system
        .wait_for_count(
            "SELECT count(*) FROM orders WHERE recharge_status = 'unknown'",
            0,
            Duration::from_secs(10),
        )
        .await;

    let credited = |by: &str| Settled {
        recharge_status: "success".into(),
        recharged_at: "2026-01-02 03:04".into(),
        recharge_error_code: None,
        recharge_error_message: None,
        unknown_settled_by: Some(by.into()),
    };
    let not_credited = |code: &str, reason: &str, by: &str| Settled {
        recharge_status: "failed".into(),
        recharged_at: "2026-01-02 03:04".into(),
        recharge_error_code: Some(code.into()),
        recharge_error_message: Some(reason.into()),
        unknown_settled_by: Some(by.into()),
    };
    assert_eq!(
        settled(&system, &orders[0]).await,
        credited("reconciliation")
    );
    let unitel_says = settled(&system, &orders[1]).await;
    assert_eq!(
        unitel_says,
        not_credited(
            "CHECK_FAILED",
            unitel_says.recharge_error_message.as_deref().unwrap_or("-"),
            "reconciliation"
        )
    );
    assert_ne!(
        unitel_says.recharge_error_message.as_deref(),
        Some("timed out after sending"),
        "Unitel's reason replaces the unknown's"
    );
    assert_eq!(settled(&system, &orders[2]).await, credited("person"));
    assert_eq!(
        settled(&system, &orders[3]).await,
        not_credited("RESOLVED_FAILED", "Unitel has no such journal id", "person")
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_message_that_keeps_failing_is_dead_lettered_then_requeued_by_the_sweep() {
    let mut system = System::start(SystemOptions {
        workers: 0,
        retry_for_ms: 50,
        // Long enough that the sweep stays out of the way until the order is made old.
        overrides: vec![
            ("RECHARGE_SWEEP_INTERVAL_MS", "100".into()),
            ("RECHARGE_REQUEUE_AFTER_MS", "600000".into()),
        ],
        ..Default::default()
    })
    .await;
    let order = system
        .order_awaiting_payment("o-unreachable", "88616600", "voice", "SD5000")
        .await;
    system.sandbox.set_faults(sandbox::Faults {
        unitel: sandbox::UnitelFaults {
            refuse_connections_for_ms: 600_000,
            ..Default::default()
        },
        ..Default::default()
    });
    system.sandbox.pay(&order).await.unwrap();
    system.start_worker().await;
    // Released and requeued on every delivery until the queue's delivery limit.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let connection = shared::amqp::connect(&testkit::amqp_url(), "test")
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let dead = channel
            .queue_declare(
                system.topology.dead_letter_queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap()
            .message_count();
        let _ = connection.close(200, "".into()).await;
        if dead == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        system.statuses(&order).await.1,
        "pending",
        "released, nothing sent"
    );
    assert_eq!(system.credits_for(&order), 0);

    // Unitel comes back; once the order has waited past RECHARGE_REQUEUE_AFTER_MS (here:
    // made to look an hour old), the sweep puts it back on the queue.
    system.sandbox.reset(false);
    set(
        &system,
        &order,
        "payment_recorded_at = now() - interval '1 hour'",
    )
    .await;
    assert_eq!(
        system
            .wait_for_outcome(&order, Duration::from_secs(30))
            .await,
        "success"
    );
    assert_eq!(system.credits_for(&order), 1);
    system.shutdown().await;
}

#[tokio::test]
async fn a_database_failure_before_sending_gives_the_order_back_instead_of_stranding_it() {
    let mut system = System::start(SystemOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    // The first attempt to mark an order sent fails, as when PostgreSQL restarts under
    // it (a sequence: the count survives the failed statement's rollback).
    sqlx::raw_sql(
        "CREATE SEQUENCE mark_sent_attempts;
         CREATE FUNCTION fail_first_mark_sent() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.recharge_sent_at IS NOT NULL AND OLD.recharge_sent_at IS NULL
                AND nextval('mark_sent_attempts') = 1 THEN
                 RAISE EXCEPTION 'injected: the database went away';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER fail_first_mark_sent BEFORE UPDATE ON orders
             FOR EACH ROW EXECUTE FUNCTION fail_first_mark_sent();",
    )
    .execute(&system.db.pool)
    .await
    .unwrap();
    system.start_worker().await;
    let (order, outcome) = system.top_up("o-db-blip").await;
    // Before, the claim stayed under the worker's live lease with nobody working on it,
    // until the process ended.
    assert_eq!(outcome, "success");
    assert_eq!(system.credits_for(&order), 1);
    let history = system.events(&order).await;
    assert!(history.contains(&"released".to_owned()), "{history:?}");
    system.shutdown().await;
}

#[tokio::test]
async fn a_claim_stuck_under_a_live_lease_is_taken_over_and_a_person_told() {
    // Shipped settings: the lease, the Unitel timeout, the sweep interval.
    let mut system = System::start(SystemOptions {
        workers: 0,
        unitel_timeout_ms: 30_000,
        ..Default::default()
    })
    .await;
    let unsent = paid_without_a_message(&system, "o-stuck").await;
    let sent = paid_without_a_message(&system, "o-stuck").await;
    system.start_worker().await;
    system
        .wait_for_count(
            "SELECT count(*) FROM worker_leases WHERE expires_at > now()",
            1,
            Duration::from_secs(10),
        )
        .await;
    // Claimed an hour ago under the live worker's lease, and forgotten by it (as the path
    // that gave no claim back did): one with nothing sent, one marked sent.
    let claimed = "recharge_status = 'processing', recharge_at = now() - interval '1 hour',
                   recharge_worker = 'forgetful',
                   recharge_lease = (SELECT id FROM worker_leases WHERE expires_at > now())";
    set(&system, &unsent, claimed).await;
    set(
        &system,
        &sent,
        &format!("{claimed}, recharge_sent_at = now() - interval '1 hour'"),
    )
    .await;
    // Before, a live lease kept both `processing` for as long as the worker lived.
    assert_eq!(
        system
            .wait_for_outcome(&unsent, Duration::from_secs(20))
            .await,
        "success",
        "nothing was sent: released and sent now"
    );
    assert_eq!(
        system
            .wait_for_outcome(&sent, Duration::from_secs(20))
            .await,
        "unknown",
        "it may have reached Unitel: never sent again"
    );
    assert_eq!(system.credits_for(&unsent), 1);
    assert_eq!(system.credits_for(&sent), 0);
    for (order, kind, says) in [
        (&unsent, "recharge_stuck", "stuck in processing"),
        (&sent, "recharge_unknown", "processing for longer than"),
    ] {
        system
            .wait_for_count(
                &format!("SELECT count(*) FROM alerts WHERE order_number = '{order}' AND kind = '{kind}' AND message LIKE '%{says}%'"),
                1,
                Duration::from_secs(20),
            )
            .await;
    }
    system.shutdown().await;
}

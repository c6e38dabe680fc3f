//! Worker liveness by lease, on the shipped lease settings: a killed worker's orders are
//! taken over within the lease, a stalled worker sends nothing once its lease is gone (and
//! a person cannot declare its top-up failed while it still could), nothing between
//! marking an order sent and sending it waits on Unitel's `/auth`, an order it cannot send
//! in time is given back, and an answer it can no longer record reaches a person.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use shared::config::{Settings, UnitelConfig};
use shared::money::Mnt;
use shared::order::{Msisdn, OrderNumber};
use shared::unitel::{TopUp, UnitelClient, UnitelError};
use testkit::proxy::Relay;
use testkit::{System, SystemOptions};

/// The lease a worker ships with (`WORKER_LEASE_MS`' default).
const LEASE: Duration = Duration::from_secs(5);

async fn recharge_status(system: &System, order: &str) -> String {
    system.statuses(order).await.1
}

/// Waits until `order` is `status`; returns when.
async fn when_status(system: &System, order: &str, status: &str, within: Duration) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        let now = recharge_status(system, order).await;
        if now == status {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{order} is {now}, not {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `order`'s history holds `event`; returns when.
async fn when_event(system: &System, order: &str, event: &str, within: Duration) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        let (seen,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM order_events WHERE order_number = $1 AND event = $2",
        )
        .bind(order)
        .bind(event)
        .fetch_one(&system.db.pool)
        .await
        .unwrap();
        if seen > 0 {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{order} was never {event}: {:?}",
            system.events(order).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_killed_workers_orders_are_taken_over_within_the_lease_and_a_second() {
    let mut system = System::start(SystemOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let sent = system
        .order_awaiting_payment("o-kill", "88616600", "voice", "SD5000")
        .await;
    let unsent = system
        .order_awaiting_payment("o-kill", "88616630", "voice", "SD5000")
        .await;
    // Shipped lease and Unitel timeout: the hung call outlives the kill.
    let doomed = system.spawn_worker_process(
        "doomed",
        &[("WORKER_LEASE_MS", None), ("UNITEL_TIMEOUT_MS", None)],
    );

    // The first order reaches Unitel, which credits it and never answers.
    system.sandbox.set_faults(sandbox::Faults {
        unitel: sandbox::UnitelFaults {
            timeout_after_credit: 1,
            ..Default::default()
        },
        ..Default::default()
    });
    system.sandbox.pay(&sent).await.unwrap();
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{sent}' AND recharge_sent_at IS NOT NULL"),
            1,
            Duration::from_secs(20),
        )
        .await;
    // The second is claimed while its token is slow to come: nothing is sent yet.
    system.sandbox.revoke_unitel_tokens();
    system.sandbox.set_faults(sandbox::Faults {
        unitel: sandbox::UnitelFaults {
            auth_latency_ms: 600_000,
            ..Default::default()
        },
        ..Default::default()
    });
    let auth_calls = || {
        system
            .sandbox
            .api_calls()
            .iter()
            .filter(|c| c.path.ends_with("/auth"))
            .count()
    };
    let asked_before = auth_calls();
    system.sandbox.pay(&unsent).await.unwrap();
    // Its worker tries the revoked token first (marked sent, refused, unmarked), then waits
    // for a new one: only then is nothing sent.
    let deadline = Instant::now() + Duration::from_secs(20);
    while auth_calls() == asked_before {
        assert!(
            Instant::now() < deadline,
            "the worker never asked for a new token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{unsent}' AND recharge_status = 'processing' AND recharge_sent_at IS NULL"),
            1,
            Duration::from_secs(20),
        )
        .await;
    system.sandbox.set_faults(sandbox::Faults::default());
    system.start_worker().await; // the survivor, consuming before the kill

    let killed = Instant::now();
    doomed.kill();
    let credited = when_status(&system, &unsent, "success", Duration::from_secs(30)).await;
    // The sweep that makes it unknown asks Unitel about it straight after, so it may be
    // `success` already when looked at: its history keeps the step.
    let unknown = when_event(&system, &sent, "unknown", Duration::from_secs(30)).await;
    for (order, at) in [(&unsent, credited), (&sent, unknown)] {
        let took = at - killed;
        assert!(
            took <= LEASE + Duration::from_secs(1),
            "{order} settled {took:?} after the kill"
        );
    }
    assert_eq!(
        system.credits_for(&unsent),
        1,
        "credited once, by the survivor"
    );
    assert_eq!(
        system.credits_for(&sent),
        1,
        "the one Unitel got, never sent again"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_worker_that_stalls_past_its_lease_sends_nothing_when_it_wakes() {
    let mut system = System::start(SystemOptions {
        workers: 0,
        overrides: vec![
            // The survivor's sweep takes the stalled claim back quickly; the requeue sends
            // it round again (functional timings: the lease itself is the shipped one).
            ("RECHARGE_SWEEP_INTERVAL_MS", "300".into()),
            ("RECHARGE_REQUEUE_AFTER_MS", "300".into()),
        ],
        ..Default::default()
    })
    .await;
    let order = system
        .order_awaiting_payment("o-stall", "88616600", "voice", "SD5000")
        .await;
    let stalled = system.spawn_worker_process("stalled", &[("WORKER_LEASE_MS", None)]);
    system.sandbox.revoke_unitel_tokens();
    system.sandbox.set_faults(sandbox::Faults {
        unitel: sandbox::UnitelFaults {
            auth_latency_ms: 3_000,
            ..Default::default()
        },
        ..Default::default()
    });
    system.sandbox.pay(&order).await.unwrap();
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{order}' AND recharge_status = 'processing'"),
            1,
            Duration::from_secs(20),
        )
        .await;
    // Frozen while it waits for its token, past its lease.
    stalled.signal("STOP");
    tokio::time::sleep(LEASE + Duration::from_secs(1)).await;
    system.sandbox.set_faults(sandbox::Faults::default());
    system.start_worker().await;
    assert_eq!(
        system
            .wait_for_outcome(&order, Duration::from_secs(30))
            .await,
        "success"
    );
    // It wakes with its token in hand: the fence refuses the send. Its message is settled
    // once it has given up on the order.
    stalled.signal("CONT");
    stalled.metrics().wait_until_settled(1).await;
    assert_eq!(
        system.credits_for(&order),
        1,
        "credited once: the stalled worker sent nothing"
    );
    let stalled_sent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM order_events WHERE order_number = $1 AND event = 'claimed' AND actor = 'worker:stalled'",
    )
    .bind(&order)
    .fetch_one(&system.db.pool)
    .await
    .unwrap();
    assert_eq!(stalled_sent, 1, "it did claim the order first");
    system.shutdown().await;
}

#[tokio::test]
async fn a_top_up_is_sent_with_the_token_in_hand_and_never_waits_on_auth_after() {
    let sandbox = sandbox::Sandbox::start(sandbox::SandboxConfig::for_tests("http://127.0.0.1:1"))
        .await
        .unwrap();
    let unitel_url = sandbox.unitel_url();
    let settings = Settings::from_pairs([
        ("UNITEL_API_URL", unitel_url.as_str()),
        ("UNITEL_USERNAME", "elife"),
        ("UNITEL_PASSWORD", "elife-secret"),
    ]);
    let client = UnitelClient::new(&UnitelConfig::from_settings(&settings).unwrap()).unwrap();
    let token = client.token().await.unwrap();
    // Between taking the token and sending (the order is marked sent there), Unitel
    // stops accepting it.
    sandbox.revoke_unitel_tokens();
    let auth_calls_before = sandbox
        .api_calls()
        .iter()
        .filter(|c| c.path.ends_with("/auth"))
        .count();
    let sent = client
        .top_up(
            &token,
            &TopUp::Card {
                code: "SD5000".into(),
            },
            &Msisdn::parse("88616600").unwrap(),
            &OrderNumber::parse("ORD1700000000000TOKEN001").unwrap(),
            Mnt::new(5000).unwrap(),
            Instant::now() + LEASE,
        )
        .await;
    assert!(matches!(sent, Err(UnitelError::NotSent(_))), "{sent:?}");
    let auth_calls_after = sandbox
        .api_calls()
        .iter()
        .filter(|c| c.path.ends_with("/auth"))
        .count();
    assert_eq!(
        auth_calls_after, auth_calls_before,
        "no /auth after the send began"
    );
    assert!(
        sandbox.ledger().is_empty(),
        "nothing credited: the caller marks it again first"
    );
    sandbox.shutdown().await;
}

/// Waits until the worker process serving `/metrics` on `port` has settled `at_least`
/// messages (acked, requeued or dead-lettered).
async fn wait_for_settled_messages(port: u16, at_least: f64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let settled: f64 = match reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
            Ok(response) => response
                .text()
                .await
                .unwrap_or_default()
                .lines()
                .filter(|line| line.starts_with("messages_settled_total{"))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
            Err(_) => 0.0,
        };
        if settled >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "{settled} messages settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn resolve(system: &System, order: &str, outcome: &str) -> (reqwest::StatusCode, Value) {
    system
        .admin_request(
            reqwest::Method::POST,
            &format!("/admin/orders/{order}/resolve"),
            Some(testkit::ADMIN_TOKEN),
            Some(json!({"outcome": outcome, "note": "Unitel support checked the journal id", "resolvedBy": "ops"})),
        )
        .await
}

/// PostgreSQL's clock, which leases are counted on.
async fn db_now(system: &System) -> DateTime<Utc> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(&system.db.pool)
        .await
        .unwrap()
}

async fn until(system: &System, at: DateTime<Utc>) {
    let wait = (at - db_now(system).await).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
}

#[tokio::test]
async fn an_order_marked_sent_with_too_little_lease_left_is_given_back_not_stranded() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let order = system
        .order_awaiting_payment("o-slow-db", "88616600", "voice", "SD5000")
        .await;
    // The worker reaches PostgreSQL through a relay that can hold its statements, on the
    // shipped lease. Its start-up token is refused, so that its first top-up asks for one.
    let relay = Relay::in_front_of(&system.db.url).await.unwrap();
    let auth_calls = || {
        system
            .sandbox
            .api_calls()
            .iter()
            .filter(|c| c.path.ends_with("/auth"))
            .count()
    };
    let asked_before = auth_calls();
    system.sandbox.set_faults(sandbox::Faults {
        unitel: sandbox::UnitelFaults {
            auth_fail_next: 1,
            ..Default::default()
        },
        ..Default::default()
    });
    let database_url = relay.url_for(&system.db.url);
    let _slow = system.spawn_worker_process(
        "slow-db",
        &[
            ("WORKER_LEASE_MS", None),
            ("DATABASE_URL", Some(database_url.as_str())),
        ],
    );
    system
        .wait_for_count(
            "SELECT count(*) FROM worker_leases WHERE worker_id = 'slow-db'",
            1,
            Duration::from_secs(20),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while auth_calls() == asked_before {
        assert!(
            Instant::now() < deadline,
            "the worker never asked for a token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The token the top-up waits for comes in 1.5 s: time to hold the relay after the claim.
    system.sandbox.set_faults(sandbox::Faults {
        unitel: sandbox::UnitelFaults {
            auth_latency_ms: 1_500,
            ..Default::default()
        },
        ..Default::default()
    });

    // Renewals stall (a lock on the lease row, as a slow database has them), and the lease
    // runs towards its end.
    let mut stall = system.db.pool.begin().await.unwrap();
    let lease_ends: DateTime<Utc> = sqlx::query_scalar(
        "SELECT expires_at FROM worker_leases WHERE worker_id = 'slow-db' FOR UPDATE",
    )
    .fetch_one(&mut *stall)
    .await
    .unwrap();
    system.sandbox.pay(&order).await.unwrap();
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{order}' AND recharge_status = 'processing'"),
            1,
            Duration::from_secs(3),
        )
        .await;
    // Claimed; marking it sent waits in the relay until the lease has 0.6 s left.
    relay.hold();
    let left = (lease_ends - db_now(&system).await)
        .to_std()
        .unwrap_or_default();
    assert!(
        left > Duration::from_millis(2_200),
        "claimed too late: {left:?} of lease left"
    );
    until(&system, lease_ends - chrono::Duration::milliseconds(600)).await;
    assert!(
        relay.waiting_bytes() > 0,
        "the worker has asked to mark the order sent"
    );
    relay.release();
    system.sandbox.set_faults(sandbox::Faults::default());
    // Renewals go through again before the lease ends: the worker is alive throughout.
    until(&system, lease_ends - chrono::Duration::milliseconds(300)).await;
    stall.rollback().await.unwrap();

    // Before, the order stayed `processing` under the live lease, the requeued message was
    // acked as "held by a live worker", and nobody sent it until the worker restarted.
    assert_eq!(
        system
            .wait_for_outcome(&order, Duration::from_secs(20))
            .await,
        "success"
    );
    assert_eq!(system.credits_for(&order), 1);
    let released: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM order_events WHERE order_number = $1 AND event = 'released'
            AND detail->>'reason' = 'too little lease left to send'",
    )
    .bind(&order)
    .fetch_one(&system.db.pool)
    .await
    .unwrap();
    assert_eq!(released, 1, "{:?}", system.events(&order).await);
    let leases: i64 =
        sqlx::query_scalar("SELECT count(*) FROM worker_leases WHERE worker_id = 'slow-db'")
            .fetch_one(&system.db.pool)
            .await
            .unwrap();
    assert_eq!(
        leases, 1,
        "the lease never expired: the worker held it all along"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_worker_paused_after_marking_an_order_sent_sends_nothing_and_failed_waits_for_it() {
    let mut system = System::start(SystemOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    // PostgreSQL is slow to mark the order sent: the moment to freeze its worker. The
    // sequence shows the mark has begun (it is seen before the statement ends).
    sqlx::raw_sql(
        "CREATE SEQUENCE marks_begun;
         CREATE FUNCTION slow_mark() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.recharge_sent_at IS NOT NULL AND OLD.recharge_sent_at IS NULL THEN
                 PERFORM nextval('marks_begun');
                 PERFORM pg_sleep(1);
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER slow_mark BEFORE UPDATE ON orders
             FOR EACH ROW EXECUTE FUNCTION slow_mark();",
    )
    .execute(&system.db.pool)
    .await
    .unwrap();
    let order = system
        .order_awaiting_payment("o-paused", "88616600", "voice", "SD5000")
        .await;
    let metrics = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics}");
    // The shipped lease and Unitel timeout.
    let paused = system.spawn_worker_process(
        "paused",
        &[
            ("WORKER_LEASE_MS", None),
            ("UNITEL_TIMEOUT_MS", None),
            ("METRICS_ADDR", Some(metrics_addr.as_str())),
        ],
    );
    system.sandbox.pay(&order).await.unwrap();
    system
        .wait_for_count(
            "SELECT count(*) FROM marks_begun WHERE is_called",
            1,
            Duration::from_secs(20),
        )
        .await;
    paused.signal("STOP");
    // The mark is written while the worker sleeps, its answer unread.
    sqlx::raw_sql("DROP TRIGGER slow_mark ON orders")
        .execute(&system.db.pool)
        .await
        .unwrap();
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{order}' AND recharge_sent_at IS NOT NULL"),
            1,
            Duration::from_secs(10),
        )
        .await;
    // Its lease expires; another worker's sweep declares the top-up unknown.
    system.start_worker().await;
    assert_eq!(
        system
            .wait_for_outcome(&order, Duration::from_secs(30))
            .await,
        "unknown"
    );
    // Unitel has no trace of it, and a person would resolve it failed (then refunded): not
    // while the request can still be written.
    let (status, body) = resolve(&system, &order, "failed").await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "{body}");
    let message = body.to_string();
    assert!(
        message.contains("can be resolved as failed from"),
        "{message}"
    );
    assert_eq!(system.statuses(&order).await.1, "unknown");

    // It wakes with the mark in hand and a lease long over: it writes nothing.
    paused.signal("CONT");
    wait_for_settled_messages(metrics, 1.0, Duration::from_secs(30)).await;
    assert_eq!(system.credits_for(&order), 0, "nothing credited");
    let sent = system
        .sandbox
        .api_calls()
        .iter()
        .filter(|c| c.path.ends_with("/service/recharge"))
        .count();
    assert_eq!(sent, 0, "no request reached Unitel");

    // Once the request can no longer reach Unitel, the person's verdict stands.
    let from: DateTime<Utc> = sqlx::query_scalar(
        "SELECT recharge_in_flight_until + interval '10 seconds' FROM orders WHERE order_number = $1",
    )
    .bind(&order)
    .fetch_one(&system.db.pool)
    .await
    .unwrap();
    assert!(
        message.contains(&from.format("%Y-%m-%d %H:%M:%S").to_string()),
        "{message}"
    );
    until(&system, from + chrono::Duration::milliseconds(100)).await;
    let (status, body) = resolve(&system, &order, "failed").await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(system.statuses(&order).await.1, "failed");
    system.shutdown().await;
}

#[tokio::test]
async fn a_late_answer_for_an_order_settled_meanwhile_is_an_anomaly_and_an_alert() {
    let mut system = System::start(SystemOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let order = system
        .order_awaiting_payment("o-late", "88616600", "voice", "SD5000")
        .await;
    let late = system.spawn_worker_process(
        "late",
        &[("WORKER_LEASE_MS", None), ("UNITEL_TIMEOUT_MS", None)],
    );
    // Unitel takes 3 s to answer; the worker is frozen while it waits.
    system.sandbox.set_faults(sandbox::Faults {
        unitel: sandbox::UnitelFaults {
            latency_ms: 3_000,
            ..Default::default()
        },
        ..Default::default()
    });
    system.sandbox.pay(&order).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !system.sandbox.api_calls().iter().any(|c| {
        c.path.ends_with("/service/recharge")
            && c.body["transactions"][0]["journal_id"] == order.as_str()
    }) {
        assert!(Instant::now() < deadline, "the top-up was never sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    late.signal("STOP");
    // Its lease expires; another worker declares the top-up unknown, and a person, having
    // checked with Unitel, resolves it credited.
    system.start_worker().await;
    assert_eq!(
        system
            .wait_for_outcome(&order, Duration::from_secs(30))
            .await,
        "unknown"
    );
    let (status, body) = resolve(&system, &order, "success").await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    // It wakes to Unitel's answer, which is no longer its to record.
    late.signal("CONT");
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM payment_anomalies WHERE order_number = '{order}' AND kind = 'late_top_up_outcome' AND detail->>'outcome' = 'success' AND detail->>'seq' IS NOT NULL"),
            1,
            Duration::from_secs(20),
        )
        .await;
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM alerts WHERE order_number = '{order}' AND kind = 'late_top_up_outcome' AND message LIKE '%outcome success, seq %'"),
            1,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(system.statuses(&order).await.1, "success");
    assert_eq!(system.credits_for(&order), 1);
    system.shutdown().await;
}

#[tokio::test]
async fn a_top_up_is_not_written_once_the_lease_it_was_marked_under_is_over() {
    let sandbox = sandbox::Sandbox::start(sandbox::SandboxConfig::for_tests("http://127.0.0.1:1"))
        .await
        .unwrap();
    let unitel_url = sandbox.unitel_url();
    let settings = Settings::from_pairs([
        ("UNITEL_API_URL", unitel_url.as_str()),
        ("UNITEL_USERNAME", "elife"),
        ("UNITEL_PASSWORD", "elife-secret"),
    ]);
    let client = UnitelClient::new(&UnitelConfig::from_settings(&settings).unwrap()).unwrap();
    let token = client.token().await.unwrap();
    // A worker that woke after its lease ended, the order marked sent in hand.
    let lease_ended = Instant::now();
    let sent = client
        .top_up(
            &token,
            &TopUp::Card {
                code: "SD5000".into(),
            },
            &Msisdn::parse("88616600").unwrap(),
            &OrderNumber::parse("ORD1700000000000LATE0001").unwrap(),
            Mnt::new(5000).unwrap(),
            lease_ended,
        )
        .await;
    assert!(matches!(sent, Err(UnitelError::NotSent(_))), "{sent:?}");
    let top_ups = sandbox
        .api_calls()
        .iter()
        .filter(|c| c.path.ends_with("/service/recharge"))
        .count();
    assert_eq!(top_ups, 0, "nothing reached Unitel");
    assert!(sandbox.ledger().is_empty());
    sandbox.shutdown().await;
}

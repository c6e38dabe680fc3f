//! Worker liveness by lease, on the shipped lease settings: a killed worker's orders are
//! taken over within the lease, a stalled worker sends nothing once its lease is gone, and
//! nothing between marking an order sent and sending it waits on Unitel's `/auth`.

use std::time::{Duration, Instant};

use shared::config::{Settings, UnitelConfig};
use shared::money::Mnt;
use shared::order::{Msisdn, OrderNumber};
use shared::unitel::{TopUp, UnitelClient, UnitelError};
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
    system.sandbox.pay(&unsent).await.unwrap();
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{unsent}' AND recharge_status = 'processing'"),
            1,
            Duration::from_secs(20),
        )
        .await;
    system.sandbox.set_faults(sandbox::Faults::default());
    system.start_worker().await; // the survivor, consuming before the kill

    let killed = Instant::now();
    doomed.kill();
    let credited = when_status(&system, &unsent, "success", Duration::from_secs(30)).await;
    let unknown = when_status(&system, &sent, "unknown", Duration::from_secs(30)).await;
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

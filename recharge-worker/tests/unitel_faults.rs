//! What the worker does when Unitel misbehaves. The rule under test: a request is sent
//! again only when it provably never reached Unitel.

use std::time::{Duration, Instant};

use sandbox::{Faults, UnitelFaults};
use testkit::{System, SystemOptions};

fn unitel(faults: UnitelFaults) -> Faults {
    Faults {
        unitel: faults,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_timeout_after_crediting_leaves_the_order_unknown_and_never_credits_twice() {
    let system = System::start(SystemOptions {
        workers: 0,
        unitel_timeout_ms: 500,
        ..Default::default()
    })
    .await;
    // A process of its own: the messages it settles are counted for this test alone.
    let worker = system.spawn_worker_process("timeout", &[]);
    system.sandbox.set_faults(unitel(UnitelFaults {
        timeout_after_credit: 1,
        ..Default::default()
    }));
    let (order, outcome) = system.top_up("o-timeout").await;
    assert_eq!(outcome, "unknown");
    assert_eq!(system.credits_for(&order), 1, "the sandbox did credit");

    // The message comes again (a redelivery, a sweep): nothing is re-sent.
    system.redeliver(&order).await;
    // Both messages acked: the first once the outcome was recorded, this one unsent.
    worker.metrics().wait_for_settled("ack", 2).await;
    assert_eq!(system.credits_for(&order), 1, "no second credit");
    assert_eq!(system.statuses(&order).await.1, "unknown");
    let attempts = system.recharge_attempts(&order).await;
    assert_eq!(attempts, 1);
    worker.kill();
    system.shutdown().await;
}

#[tokio::test]
async fn a_connection_dropped_after_crediting_is_unknown_too() {
    let system = System::start(SystemOptions::default()).await;
    system.sandbox.set_faults(unitel(UnitelFaults {
        drop_after_credit: 1,
        ..Default::default()
    }));
    let (order, outcome) = system.top_up("o-drop").await;
    assert_eq!(outcome, "unknown");
    assert_eq!(system.credits_for(&order), 1);
    system.shutdown().await;
}

#[tokio::test]
async fn a_server_error_is_not_taken_for_a_refusal() {
    let system = System::start(SystemOptions::default()).await;
    system.sandbox.set_faults(unitel(UnitelFaults {
        http_error_next: 1,
        ..Default::default()
    }));
    let (_, outcome) = system.top_up("o-500").await;
    // An HTTP 500 may come after processing: unknown, not failed, and not re-sent.
    assert_eq!(outcome, "unknown");
    system.shutdown().await;
}

#[tokio::test]
async fn a_refused_connection_is_retried_and_succeeds() {
    let system = System::start(SystemOptions::default()).await;
    // A first top-up leaves the worker with a token, so that the refusal below hits the
    // top-up request itself rather than /auth.
    let (_, outcome) = system.top_up("o-refused").await;
    assert_eq!(outcome, "success");
    let order = system
        .order_awaiting_payment("o-refused", "88616600", "voice", "SD5000")
        .await;
    // Refuse from before the payment until well after the worker's first attempt.
    let refused_until = Instant::now() + Duration::from_millis(1500);
    system.sandbox.set_faults(unitel(UnitelFaults {
        refuse_connections_for_ms: 1500,
        ..Default::default()
    }));
    system.sandbox.pay(&order).await.unwrap();

    assert_eq!(
        system
            .wait_for_outcome(&order, Duration::from_secs(20))
            .await,
        "success"
    );
    assert!(
        Instant::now() >= refused_until,
        "succeeded only once Unitel listened again"
    );
    assert_eq!(system.credits_for(&order), 1);
    let attempts = system.recharge_attempts(&order).await;
    assert!(
        attempts > 1,
        "refused attempts were retried ({attempts} attempts)"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_refused_authentication_is_retried_without_losing_the_top_up() {
    let system = System::start(SystemOptions::default()).await;
    let order = system
        .order_awaiting_payment("o-auth", "88616600", "voice", "SD5000")
        .await;
    // The worker's own client has no token yet; its first /auth is refused.
    system.sandbox.set_faults(unitel(UnitelFaults {
        auth_fail_next: 1,
        ..Default::default()
    }));
    system.sandbox.pay(&order).await.unwrap();
    assert_eq!(
        system
            .wait_for_outcome(&order, Duration::from_secs(20))
            .await,
        "success"
    );
    assert_eq!(system.credits_for(&order), 1);
    system.shutdown().await;
}

#[tokio::test]
async fn a_token_refused_by_unitel_is_renewed_before_the_order_is_marked_sent_again() {
    let system = System::start(SystemOptions::default()).await;
    let (_, outcome) = system.top_up("o-token").await;
    assert_eq!(outcome, "success");

    // The worker's cached token is now refused (401): the top-up was not processed, so it
    // is sent again — with a fresh token fetched before the order is marked sent again, so
    // that nothing after the mark waits on /auth.
    let second = system
        .order_awaiting_payment("o-token", "88616600", "voice", "SD5000")
        .await;
    system.sandbox.revoke_unitel_tokens();
    system.sandbox.pay(&second).await.unwrap();
    assert_eq!(
        system
            .wait_for_outcome(&second, Duration::from_secs(20))
            .await,
        "success"
    );
    assert_eq!(system.credits_for(&second), 1);
    let attempts = system.recharge_attempts(&second).await;
    assert_eq!(
        attempts, 2,
        "the refused attempt, then one with a fresh token"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn nul_characters_in_unitels_answers_are_stored_as_said() {
    let system = System::start(SystemOptions::default()).await;
    // Credited, with NULs in the service id and the VAT receipt.
    let (credited, outcome) = system
        .top_up_under(
            "o-nul",
            UnitelFaults {
                nul_in_answer_next: 1,
                ..Default::default()
            },
        )
        .await;
    // Before, recording it failed on every retry and the order stayed `processing`.
    assert_eq!(outcome, "success");
    let (sv_id, bill_id, product): (String, String, String) = sqlx::query_as(
        "SELECT sv_id, vat_receipt->>'billId', vat_receipt->'stocks'->0->>'name'
           FROM orders WHERE order_number = $1",
    )
    .bind(&credited)
    .fetch_one(&system.db.pool)
    .await
    .unwrap();
    assert!(
        sv_id.starts_with("P_ETOPUP_") && sv_id.ends_with("\\u0000"),
        "{sv_id}"
    );
    assert!(bill_id.ends_with("\\u0000"), "{bill_id}");
    assert_eq!(product, "Tulult\\u0000");
    assert_eq!(system.credits_for(&credited), 1);

    // Refused, with NULs in the code and the message: not a code known to mean "nothing
    // was done", so unknown, with what Unitel said kept for a person.
    let (refused, outcome) = system
        .top_up_under(
            "o-nul",
            UnitelFaults {
                fail_next: 1,
                nul_in_answer_next: 1,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(outcome, "unknown");
    let message: String =
        sqlx::query_scalar("SELECT recharge_error_message FROM orders WHERE order_number = $1")
            .bind(&refused)
            .fetch_one(&system.db.pool)
            .await
            .unwrap();
    assert!(
        message.contains("105\\u0000") && message.contains("Insufficient balance\\u0000"),
        "{message}"
    );
    system.shutdown().await;
}

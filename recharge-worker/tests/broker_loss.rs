//! Losing the broker connection: the worker and the outbox relay reconnect by themselves.

use std::time::Duration;

use testkit::{System, SystemOptions};

#[tokio::test]
async fn worker_and_relay_reconnect_after_the_broker_drops_them() {
    let system = System::start(SystemOptions::default()).await;
    let (_, outcome) = system.top_up("o-broker").await;
    assert_eq!(outcome, "success");

    let prefix = system.setting("AMQP_PREFIX").to_owned();
    assert_eq!(
        system.close_broker_connections(&format!("recharge-worker {prefix}")),
        1
    );
    assert_eq!(
        system.close_broker_connections(&format!("outbox relay ({prefix}")),
        1
    );

    let second = system
        .order_and_pay("o-broker", "88616600", "voice", "SD5000")
        .await;
    assert_eq!(
        system
            .wait_for_outcome(&second, Duration::from_secs(30))
            .await,
        "success"
    );
    assert_eq!(system.sandbox.ledger().len(), 2);
    system.shutdown().await;
}

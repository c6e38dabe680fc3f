//! The outbox: a payment recorded while RabbitMQ is unreachable waits in PostgreSQL and is
//! published once the relay can reach the broker, after a restart included.

use std::time::Duration;

use reqwest::StatusCode;
use testkit::{System, SystemOptions};

#[tokio::test]
async fn a_payment_recorded_without_a_broker_is_published_after_a_restart() {
    let mut system = System::start(SystemOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let amqp_url = system.setting("AMQP_URL").to_owned();
    system
        .restart_api(&[("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")])
        .await;

    let order = system
        .order_and_pay("o-outage", "88616600", "voice", "SD5000")
        .await;
    system
        .wait_for_count(
            &format!("SELECT count(*) FROM orders WHERE order_number = '{order}' AND payment_status = 'paid'"),
            1,
            Duration::from_secs(10),
        )
        .await;
    let accepted = system
        .sandbox
        .callback_log()
        .iter()
        .any(|d| d.out_trade_no == order && d.accepted);
    assert!(
        accepted,
        "the callback is answered errcode 0: the payment is durably recorded"
    );

    let (status, health) = system.anonymous().get("/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health["data"]["rabbitmq"], "down");
    assert_eq!(
        health["data"]["outboxBacklog"], 1,
        "the waiting message is visible"
    );

    system.restart_api(&[("AMQP_URL", amqp_url.as_str())]).await;
    system
        .wait_for_count(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL",
            0,
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(system.queued_messages().await, 1, "published exactly once");

    system.start_worker().await;
    assert_eq!(
        system
            .wait_for_outcome(&order, Duration::from_secs(20))
            .await,
        "success"
    );
    system.shutdown().await;
}

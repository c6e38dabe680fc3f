//! Messages that can never be processed go to the dead-letter queue, not round and round.

use std::time::Duration;

use lapin::options::BasicGetOptions;
use shared::message::OrderPaid;
use shared::money::Fen;
use shared::order::OrderNumber;
use testkit::{System, SystemOptions};

async fn dead_letters(system: &System, within: Duration) -> Vec<Vec<u8>> {
    let connection = shared::amqp::connect(&testkit::amqp_url(), "test")
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let deadline = std::time::Instant::now() + within;
    let mut found = Vec::new();
    while std::time::Instant::now() < deadline && found.len() < 2 {
        match channel
            .basic_get(
                system.topology.dead_letter_queue.as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            Some(message) => found.push(message.delivery.data.clone()),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let _ = connection.close(200, "".into()).await;
    found
}

#[tokio::test]
async fn unreadable_messages_and_unknown_orders_are_dead_lettered() {
    let system = System::start(SystemOptions::default()).await;
    system
        .publish_order_paid(b"{\"not\": \"an OrderPaid\"}")
        .await;
    let unknown = OrderPaid::new(
        OrderNumber::parse("ORD1700000000000NOSUCH01").unwrap(),
        Fen::new(1136).unwrap(),
        "4200000000000000000000000000".into(),
        chrono::Utc::now(),
    );
    system.publish_order_paid(&unknown.encode()).await;

    let dead = dead_letters(&system, Duration::from_secs(10)).await;
    assert_eq!(dead.len(), 2, "both dead-lettered");
    assert!(dead.iter().any(|m| m.starts_with(b"{\"not\"")));
    assert!(dead
        .iter()
        .any(|m| OrderPaid::decode(m).is_ok_and(|p| p == unknown)));
    assert!(system.sandbox.ledger().is_empty());
    system.shutdown().await;
}

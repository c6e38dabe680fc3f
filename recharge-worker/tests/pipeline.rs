//! End to end: order → WeChat payment → callback → outbox → RabbitMQ → worker → Unitel,
//! on the machine's real PostgreSQL and RabbitMQ with the sandbox standing in for WeChat
//! and Unitel.

use std::time::Duration;

use reqwest::StatusCode;
use testkit::{System, SystemOptions};

const OUTCOME_WITHIN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_voice_card_is_credited_once_with_its_receipt() {
    let system = System::start(SystemOptions::default()).await;
    // Last digit 0: the sandbox gives this number the Smart-data tariff (SD5000 = 5000 MNT).
    let (order, outcome) = system.top_up("o-voice-user").await;
    assert_eq!(outcome, "success");
    let credits: Vec<_> = system
        .sandbox
        .ledger()
        .into_iter()
        .filter(|c| c.journal_id == order)
        .collect();
    assert_eq!(credits.len(), 1, "exactly one credit: {credits:?}");
    assert_eq!(credits[0].msisdn, "88616600");
    assert_eq!(credits[0].product.as_deref(), Some("SD5000"));
    assert_eq!(credits[0].amount, 5000);

    let (status, body) = system
        .client("o-voice-user")
        .get(&format!("/orders/{order}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let data = &body["data"];
    assert_eq!(data["paymentStatus"], "paid");
    assert_eq!(data["rechargeStatus"], "success");
    assert_eq!(data["seqId"], credits[0].seq.as_str());
    assert_eq!(
        data["vatReceipt"]["amount"], "5000.00",
        "receipt shown: {data}"
    );
    assert!(data["vatReceipt"]["lottery"]
        .as_str()
        .is_some_and(|l| !l.is_empty()));
    assert!(data["transactionId"]
        .as_str()
        .is_some_and(|t| t.len() == 28));

    let history: Vec<String> =
        sqlx::query_scalar("SELECT event FROM order_events WHERE order_number = $1 ORDER BY id")
            .bind(&order)
            .fetch_all(&system.db.pool)
            .await
            .unwrap();
    assert_eq!(history, ["created", "paid", "claimed", "success"]);
    system.shutdown().await;
}

#[tokio::test]
async fn a_data_package_is_activated() {
    let system = System::start(SystemOptions::default()).await;
    let order = system
        .order_and_pay("o-data-user", "88616603", "data", "data3gb2d")
        .await;

    assert_eq!(
        system.wait_for_outcome(&order, OUTCOME_WITHIN).await,
        "success"
    );
    let credits: Vec<_> = system
        .sandbox
        .ledger()
        .into_iter()
        .filter(|c| c.journal_id == order)
        .collect();
    assert_eq!(credits.len(), 1);
    assert_eq!(credits[0].kind.as_str(), "datapackage");
    assert_eq!(credits[0].product.as_deref(), Some("data3gb2d"));
    assert_eq!(credits[0].amount, 3500);
    system.shutdown().await;
}

#[tokio::test]
async fn a_postpaid_bill_is_paid_in_full() {
    let system = System::start(SystemOptions::default()).await;
    // Last digit 9: postpaid; not ending in 09: the recorded bill with 74220 MNT unpaid.
    let order = system
        .order_and_pay("o-postpaid-user", "88616619", "postpaid", "")
        .await;
    let amount: i64 = sqlx::query_scalar("SELECT amount_fen FROM orders WHERE order_number = $1")
        .bind(&order)
        .fetch_one(&system.db.pool)
        .await
        .unwrap();
    assert_eq!(amount, 16868, "74220 MNT at 440 = 168.68 yuan");

    assert_eq!(
        system.wait_for_outcome(&order, OUTCOME_WITHIN).await,
        "success"
    );
    let credits: Vec<_> = system
        .sandbox
        .ledger()
        .into_iter()
        .filter(|c| c.journal_id == order)
        .collect();
    assert_eq!(credits.len(), 1);
    assert_eq!(credits[0].kind.as_str(), "payment");
    assert_eq!(credits[0].amount, 74220);
    system.shutdown().await;
}

#[tokio::test]
async fn unitel_refusing_a_top_up_fails_the_order_with_its_reason() {
    let system = System::start(SystemOptions::default()).await;
    system.sandbox.set_faults(sandbox::Faults {
        unitel: sandbox::UnitelFaults {
            fail_next: 1,
            ..Default::default()
        },
        ..Default::default()
    });
    let (order, outcome) = system.top_up("o-fail-user").await;
    assert_eq!(outcome, "failed");
    assert!(system
        .sandbox
        .ledger()
        .iter()
        .all(|c| c.journal_id != order));
    let (status, body) = system
        .client("o-fail-user")
        .get(&format!("/orders/{order}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["data"]["rechargeNote"]
            .as_str()
            .is_some_and(|n| !n.is_empty()),
        "the customer is told, in their words: {body}"
    );
    let (_, history) = system.admin_get(&format!("/admin/orders/{order}")).await;
    assert_eq!(
        history["data"]["rechargeError"]["code"],
        sandbox::REFUSAL_CODE,
        "the operator reads Unitel's: {history}"
    );
    system.shutdown().await;
}

//! Each transition of `shared::lifecycle`, called directly on a fresh database: from the
//! state it starts from it changes the row and writes its history row; from any other
//! state, or under another lease, it changes nothing (the order, its history, its refund
//! and its outbox rows are as they were).
//!
//! Here rather than in `shared`: the harness (`testkit`) depends on `shared`, through
//! payment-api's migrations.

use std::time::Duration;

use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use shared::history::{Actor, AnomalyKind};
use shared::lifecycle::{
    self, ImportedOrder, ImportedPayment, ImportedRecharge, LeaseId, NewOrder, PaymentOutcome,
    RechargeOutcome, RefundChange, ReportedPayment, Settlement, Settler, Verdict, WorkerId,
};
use shared::money::{Fen, Mnt, MntPerYuan};
use shared::order::{
    Msisdn, OpenId, Operator, OrderNumber, PayChannel, RechargeType, RefundStatus,
};
use shared::unitel::TopUpReceipt;
use sqlx::PgPool;
use testkit::TestDb;

const AMOUNT: i64 = 1000;
const LEASE: Duration = Duration::from_secs(30);
const IN_FLIGHT: Duration = Duration::from_secs(5);

fn openid() -> OpenId {
    OpenId::parse("o-transitions").unwrap()
}

fn msisdn() -> Msisdn {
    Msisdn::parse("88616609").unwrap()
}

/// The customer every order here belongs to.
async fn user(db: &PgPool) -> i64 {
    let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE openid = $1")
        .bind(openid().as_str())
        .fetch_optional(db)
        .await
        .unwrap();
    match existing {
        Some(id) => id,
        None => sqlx::query_scalar("INSERT INTO users (openid) VALUES ($1) RETURNING id")
            .bind(openid().as_str())
            .fetch_one(db)
            .await
            .unwrap(),
    }
}

fn new_order(order_number: &OrderNumber, user_id: i64) -> NewOrder<'_> {
    // Leaked once per test: `NewOrder` borrows, and these live as long as the test.
    let openid: &'static OpenId = Box::leak(Box::new(openid()));
    let msisdn: &'static Msisdn = Box::leak(Box::new(msisdn()));
    NewOrder {
        order_number,
        user_id,
        openid,
        msisdn,
        operator: Operator::Unitel,
        recharge_type: RechargeType::Voice,
        product_code: "SD5000",
        product_name: "Нэгж 5000",
        product_eng_name: Some("Unit 5000"),
        product_unit: Some(5000),
        product_data: None,
        product_days: Some(30),
        price: Mnt::new(5000).unwrap(),
        rate: MntPerYuan::new(Decimal::new(500, 0)).unwrap(),
        amount: Fen::new(AMOUNT).unwrap(),
        channel: PayChannel::Cloud,
    }
}

/// The order, its history, its refund and its outbox rows, as they are now.
async fn snapshot(db: &PgPool, order: &OrderNumber) -> Value {
    sqlx::query_scalar(
        "SELECT jsonb_build_object(
            'order', (SELECT to_jsonb(o) FROM orders o WHERE o.order_number = $1),
            'events', (SELECT jsonb_agg(to_jsonb(e) ORDER BY e.id) FROM order_events e
                        WHERE e.order_number = $1),
            'refund', (SELECT to_jsonb(r) FROM refunds r WHERE r.order_number = $1),
            'outbox', (SELECT jsonb_agg(x.idempotency_key ORDER BY x.idempotency_key)
                         FROM outbox x WHERE x.order_number = $1))",
    )
    .bind(order.as_str())
    .fetch_one(db)
    .await
    .unwrap()
}

/// The order's history, oldest first, as `(event, actor)`.
async fn events(db: &PgPool, order: &OrderNumber) -> Vec<(String, String)> {
    sqlx::query_as("SELECT event, actor FROM order_events WHERE order_number = $1 ORDER BY id")
        .bind(order.as_str())
        .fetch_all(db)
        .await
        .unwrap()
}

async fn last_event(db: &PgPool, order: &OrderNumber) -> String {
    events(db, order).await.pop().expect("a history row").0
}

async fn column<T>(db: &PgPool, order: &OrderNumber, column: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(&format!(
        "SELECT {column} FROM orders WHERE order_number = $1"
    ))
    .bind(order.as_str())
    .fetch_one(db)
    .await
    .unwrap()
}

async fn unpaid(db: &PgPool) -> OrderNumber {
    let order = OrderNumber::generate();
    let user = user(db).await;
    lifecycle::create_order(db, &new_order(&order, user))
        .await
        .unwrap();
    order
}

fn payment<'a>(order: &'a OrderNumber, transaction_id: &'a str) -> ReportedPayment<'a> {
    ReportedPayment {
        order_number: order,
        transaction_id,
        amount: Fen::new(AMOUNT).unwrap(),
        paid_at: Utc::now(),
        reported_by: Actor::WechatCallback,
    }
}

fn transaction_for(order: &OrderNumber) -> String {
    format!("42{}", &order.as_str()[3..])
}

async fn paid(db: &PgPool) -> OrderNumber {
    let order = unpaid(db).await;
    let transaction = transaction_for(&order);
    let outcome = lifecycle::record_payment(db, &payment(&order, &transaction))
        .await
        .unwrap();
    assert_eq!(outcome, PaymentOutcome::Recorded);
    order
}

async fn lease(db: &PgPool, worker: &WorkerId) -> LeaseId {
    lifecycle::register_lease(db, worker, LEASE).await.unwrap()
}

fn worker(name: &str) -> WorkerId {
    WorkerId::new(name)
}

/// A paid order claimed by `w1` under a lease of its own.
async fn claimed(db: &PgPool) -> (OrderNumber, WorkerId, LeaseId) {
    let order = paid(db).await;
    let w1 = worker("w1");
    let lease = lease(db, &w1).await;
    assert!(lifecycle::claim(db, &order, &w1, lease)
        .await
        .unwrap()
        .is_some());
    (order, w1, lease)
}

/// A claimed order marked sent.
async fn sent(db: &PgPool) -> (OrderNumber, WorkerId, LeaseId) {
    let (order, w1, lease) = claimed(db).await;
    assert!(lifecycle::mark_sent(db, &order, lease, IN_FLIGHT)
        .await
        .unwrap()
        .is_some());
    (order, w1, lease)
}

async fn with_outcome(db: &PgPool, outcome: &RechargeOutcome<'_>) -> OrderNumber {
    let (order, w1, lease) = sent(db).await;
    assert!(lifecycle::record_outcome(db, &order, &w1, lease, outcome)
        .await
        .unwrap());
    order
}

async fn unknown(db: &PgPool) -> OrderNumber {
    with_outcome(
        db,
        &RechargeOutcome::Unknown {
            reason: "timed out",
            seq: Some("SEQ1"),
        },
    )
    .await
}

async fn failed(db: &PgPool) -> OrderNumber {
    with_outcome(
        db,
        &RechargeOutcome::Failed {
            code: "E1",
            message: "refused",
        },
    )
    .await
}

// ───────────────────────────── orders and payments ─────────────────────────────

#[tokio::test]
async fn create_order_writes_an_unpaid_order_and_its_created_row() {
    let db = TestDb::create().await;
    let order = unpaid(&db.pool).await;
    assert_eq!(
        column::<String>(&db.pool, &order, "payment_status").await,
        "unpaid"
    );
    assert_eq!(
        events(&db.pool, &order).await,
        vec![("created".into(), "user:o-transitions".into())]
    );

    let before = snapshot(&db.pool, &order).await;
    let user = user(&db.pool).await;
    assert!(lifecycle::create_order(&db.pool, &new_order(&order, user))
        .await
        .is_err());
    assert_eq!(snapshot(&db.pool, &order).await, before);
}

#[tokio::test]
async fn record_prepay_only_on_an_unpaid_order() {
    let db = TestDb::create().await;
    let order = unpaid(&db.pool).await;
    assert!(lifecycle::record_prepay(&db.pool, &order, "wx1")
        .await
        .unwrap());
    assert_eq!(
        column::<Option<String>>(&db.pool, &order, "prepay_id").await,
        Some("wx1".into())
    );

    let closed = unpaid(&db.pool).await;
    assert!(
        lifecycle::close_unpaid(&db.pool, &closed, &Actor::PaymentWatch, "expired", false)
            .await
            .unwrap()
    );
    let before = snapshot(&db.pool, &closed).await;
    assert!(!lifecycle::record_prepay(&db.pool, &closed, "wx2")
        .await
        .unwrap());
    assert_eq!(snapshot(&db.pool, &closed).await, before);
}

#[tokio::test]
async fn record_payment_pays_an_unpaid_order_once() {
    let db = TestDb::create().await;
    let order = unpaid(&db.pool).await;
    let transaction = transaction_for(&order);
    assert_eq!(
        lifecycle::record_payment(&db.pool, &payment(&order, &transaction))
            .await
            .unwrap(),
        PaymentOutcome::Recorded
    );
    assert_eq!(
        column::<String>(&db.pool, &order, "payment_status").await,
        "paid"
    );
    assert_eq!(last_event(&db.pool, &order).await, "paid");
    assert_eq!(
        snapshot(&db.pool, &order).await["outbox"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Paid already: the duplicate changes nothing.
    let before = snapshot(&db.pool, &order).await;
    assert_eq!(
        lifecycle::record_payment(&db.pool, &payment(&order, &transaction))
            .await
            .unwrap(),
        PaymentOutcome::AlreadyRecorded
    );
    assert_eq!(snapshot(&db.pool, &order).await, before);
}

#[tokio::test]
async fn record_payment_changes_nothing_on_a_closed_order_or_a_wrong_amount() {
    let db = TestDb::create().await;
    let closed = unpaid(&db.pool).await;
    lifecycle::close_unpaid(&db.pool, &closed, &Actor::PaymentWatch, "expired", false)
        .await
        .unwrap();
    let before = snapshot(&db.pool, &closed).await;
    let transaction = transaction_for(&closed);
    assert_eq!(
        lifecycle::record_payment(&db.pool, &payment(&closed, &transaction))
            .await
            .unwrap(),
        PaymentOutcome::Closed
    );
    assert_eq!(snapshot(&db.pool, &closed).await, before);

    let order = unpaid(&db.pool).await;
    let before = snapshot(&db.pool, &order).await;
    let transaction = transaction_for(&order);
    let mut wrong = payment(&order, &transaction);
    wrong.amount = Fen::new(AMOUNT + 1).unwrap();
    assert!(matches!(
        lifecycle::record_payment(&db.pool, &wrong).await.unwrap(),
        PaymentOutcome::AmountMismatch { .. }
    ));
    assert_eq!(snapshot(&db.pool, &order).await, before);
}

#[tokio::test]
async fn record_payment_after_close_keeps_the_transaction_of_a_closed_order_only() {
    let db = TestDb::create().await;
    let order = unpaid(&db.pool).await;
    let transaction = transaction_for(&order);
    let before = snapshot(&db.pool, &order).await;
    assert!(
        !lifecycle::record_payment_after_close(&db.pool, &payment(&order, &transaction))
            .await
            .unwrap()
    );
    assert_eq!(snapshot(&db.pool, &order).await, before);

    lifecycle::close_unpaid(&db.pool, &order, &Actor::PaymentWatch, "expired", false)
        .await
        .unwrap();
    assert!(
        lifecycle::record_payment_after_close(&db.pool, &payment(&order, &transaction))
            .await
            .unwrap()
    );
    assert_eq!(
        column::<Option<String>>(&db.pool, &order, "transaction_id").await,
        Some(transaction.clone())
    );
    assert_eq!(
        column::<String>(&db.pool, &order, "payment_status").await,
        "closed"
    );
    assert_eq!(last_event(&db.pool, &order).await, "paid_after_close");
}

#[tokio::test]
async fn close_unpaid_closes_an_unpaid_order_only() {
    let db = TestDb::create().await;
    let order = unpaid(&db.pool).await;
    assert!(
        lifecycle::close_unpaid(&db.pool, &order, &Actor::PaymentWatch, "expired", false)
            .await
            .unwrap()
    );
    assert_eq!(
        column::<String>(&db.pool, &order, "payment_status").await,
        "closed"
    );
    assert_eq!(last_event(&db.pool, &order).await, "closed");

    let paid = paid(&db.pool).await;
    let before = snapshot(&db.pool, &paid).await;
    assert!(
        !lifecycle::close_unpaid(&db.pool, &paid, &Actor::PaymentWatch, "expired", false)
            .await
            .unwrap()
    );
    assert_eq!(snapshot(&db.pool, &paid).await, before);

    // Its payment started meanwhile: left alone when asked to.
    let started = unpaid(&db.pool).await;
    lifecycle::record_prepay(&db.pool, &started, "wx1")
        .await
        .unwrap();
    let before = snapshot(&db.pool, &started).await;
    assert!(
        !lifecycle::close_unpaid(&db.pool, &started, &Actor::PaymentWatch, "expired", true)
            .await
            .unwrap()
    );
    assert_eq!(snapshot(&db.pool, &started).await, before);
}

#[tokio::test]
async fn record_anomaly_flags_the_order_only_when_verified() {
    let db = TestDb::create().await;
    let order = unpaid(&db.pool).await;
    let before = snapshot(&db.pool, &order).await;
    lifecycle::record_anomaly(
        &db.pool,
        Some(order.as_str()),
        AnomalyKind::AmountMismatch,
        &Actor::WechatCallback,
        json!({"forged": true}),
    )
    .await
    .unwrap();
    assert_eq!(snapshot(&db.pool, &order).await, before);

    lifecycle::record_anomaly(
        &db.pool,
        Some(order.as_str()),
        AnomalyKind::QueryAmountMismatch,
        &Actor::WechatQuery,
        json!({"amount": 1}),
    )
    .await
    .unwrap();
    assert_eq!(
        column::<Option<String>>(&db.pool, &order, "anomaly").await,
        Some(AnomalyKind::QueryAmountMismatch.as_str().into())
    );
    assert_eq!(last_event(&db.pool, &order).await, "anomaly");
}

// ───────────────────────────── orders brought over ─────────────────────────────

#[tokio::test]
async fn import_order_creates_once() {
    let db = TestDb::create().await;
    let order = OrderNumber::generate();
    let user = user(&db.pool).await;
    let imported = ImportedOrder {
        order: new_order(&order, user),
        created_at: Utc::now(),
        payment: ImportedPayment::Paid {
            transaction_id: transaction_for(&order),
            paid_at: Utc::now(),
            recharge: ImportedRecharge::MaybeSent {
                claimed_at: None,
                seq_id: None,
                reason: "sent, no answer".into(),
            },
        },
        source: json!({"legacy": true}),
    };
    assert!(lifecycle::import_order(&db.pool, &imported).await.unwrap());
    assert_eq!(
        column::<String>(&db.pool, &order, "recharge_status").await,
        "unknown"
    );
    assert_eq!(
        events(&db.pool, &order).await,
        vec![
            ("imported".into(), "import".into()),
            ("unknown".into(), "import".into())
        ]
    );

    let before = snapshot(&db.pool, &order).await;
    assert!(!lifecycle::import_order(&db.pool, &imported).await.unwrap());
    assert_eq!(snapshot(&db.pool, &order).await, before);
}

// ───────────────────────────── leases ─────────────────────────────

#[tokio::test]
async fn an_ended_lease_cannot_be_renewed() {
    let db = TestDb::create().await;
    let w1 = worker("w1");
    let lease = lease(&db.pool, &w1).await;
    assert!(lifecycle::renew_lease(&db.pool, lease, LEASE)
        .await
        .unwrap());
    let owner: WorkerId = sqlx::query_scalar("SELECT worker_id FROM worker_leases WHERE id = $1")
        .bind(lease)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(owner, w1);

    lifecycle::end_lease(&db.pool, lease).await.unwrap();
    assert!(!lifecycle::renew_lease(&db.pool, lease, LEASE)
        .await
        .unwrap());
}

// ───────────────────────────── top-ups ─────────────────────────────

#[tokio::test]
async fn claim_takes_a_paid_pending_order_under_a_live_lease() {
    let db = TestDb::create().await;
    let (order, w1, lease) = claimed(&db.pool).await;
    assert_eq!(
        column::<String>(&db.pool, &order, "recharge_status").await,
        "processing"
    );
    assert_eq!(
        column::<Option<i64>>(&db.pool, &order, "recharge_lease").await,
        Some(lease.get())
    );
    assert_eq!(
        events(&db.pool, &order).await.pop(),
        Some(("claimed".into(), format!("worker:{w1}")))
    );
    let state = lifecycle::claim_state(&db.pool, &order)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.recharge_worker, Some(w1));
}

#[tokio::test]
async fn claim_changes_nothing_unpaid_held_by_a_live_lease_or_under_an_ended_one() {
    let db = TestDb::create().await;
    let w2 = worker("w2");
    let other = lease(&db.pool, &w2).await;

    let order = unpaid(&db.pool).await;
    let before = snapshot(&db.pool, &order).await;
    assert!(lifecycle::claim(&db.pool, &order, &w2, other)
        .await
        .unwrap()
        .is_none());
    assert_eq!(snapshot(&db.pool, &order).await, before);

    let (held, _, _) = claimed(&db.pool).await;
    let before = snapshot(&db.pool, &held).await;
    assert!(lifecycle::claim(&db.pool, &held, &w2, other)
        .await
        .unwrap()
        .is_none());
    assert_eq!(snapshot(&db.pool, &held).await, before);

    let order = paid(&db.pool).await;
    lifecycle::end_lease(&db.pool, other).await.unwrap();
    let before = snapshot(&db.pool, &order).await;
    assert!(lifecycle::claim(&db.pool, &order, &w2, other)
        .await
        .unwrap()
        .is_none());
    assert_eq!(snapshot(&db.pool, &order).await, before);
}

#[tokio::test]
async fn mark_sent_and_unmark_sent_only_under_the_claims_lease() {
    let db = TestDb::create().await;
    let (order, _, lease) = claimed(&db.pool).await;
    let other = self::lease(&db.pool, &worker("w2")).await;

    let before = snapshot(&db.pool, &order).await;
    assert!(lifecycle::mark_sent(&db.pool, &order, other, IN_FLIGHT)
        .await
        .unwrap()
        .is_none());
    assert_eq!(snapshot(&db.pool, &order).await, before);

    let left = lifecycle::mark_sent(&db.pool, &order, lease, IN_FLIGHT)
        .await
        .unwrap();
    assert!(left.is_some_and(|left| left <= LEASE));
    assert!(
        column::<Option<chrono::DateTime<Utc>>>(&db.pool, &order, "recharge_sent_at")
            .await
            .is_some()
    );

    let before = snapshot(&db.pool, &order).await;
    lifecycle::unmark_sent(&db.pool, &order, other)
        .await
        .unwrap();
    assert_eq!(snapshot(&db.pool, &order).await, before);

    lifecycle::unmark_sent(&db.pool, &order, lease)
        .await
        .unwrap();
    assert!(
        column::<Option<chrono::DateTime<Utc>>>(&db.pool, &order, "recharge_sent_at")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn release_gives_back_an_unsent_claim_of_its_own_lease_only() {
    let db = TestDb::create().await;
    let (order, w1, lease) = claimed(&db.pool).await;
    let w2 = worker("w2");
    let other = self::lease(&db.pool, &w2).await;
    let before = snapshot(&db.pool, &order).await;
    lifecycle::release(&db.pool, &order, &w2, other, "not mine")
        .await
        .unwrap();
    assert_eq!(snapshot(&db.pool, &order).await, before);

    lifecycle::release(&db.pool, &order, &w1, lease, "stopping")
        .await
        .unwrap();
    assert_eq!(
        column::<String>(&db.pool, &order, "recharge_status").await,
        "pending"
    );
    assert_eq!(last_event(&db.pool, &order).await, "released");

    let (sent, w1, lease) = sent(&db.pool).await;
    let before = snapshot(&db.pool, &sent).await;
    lifecycle::release(&db.pool, &sent, &w1, lease, "sent already")
        .await
        .unwrap();
    assert_eq!(snapshot(&db.pool, &sent).await, before);
}

#[tokio::test]
async fn record_outcome_finishes_a_claim_of_its_own_lease_only() {
    let db = TestDb::create().await;
    let (order, w1, lease) = sent(&db.pool).await;
    let w2 = worker("w2");
    let other = self::lease(&db.pool, &w2).await;
    let receipt = TopUpReceipt {
        seq: Some("SEQ1".into()),
        sv_id: None,
        method: None,
        vat: None,
    };
    let success = RechargeOutcome::Success(&receipt);

    let before = snapshot(&db.pool, &order).await;
    assert!(
        !lifecycle::record_outcome(&db.pool, &order, &w2, other, &success)
            .await
            .unwrap()
    );
    assert_eq!(snapshot(&db.pool, &order).await, before);

    assert!(
        lifecycle::record_outcome(&db.pool, &order, &w1, lease, &success)
            .await
            .unwrap()
    );
    assert_eq!(
        column::<String>(&db.pool, &order, "recharge_status").await,
        "success"
    );
    assert_eq!(last_event(&db.pool, &order).await, "success");

    // Finished: the same claim cannot finish it again.
    let before = snapshot(&db.pool, &order).await;
    assert!(
        !lifecycle::record_outcome(&db.pool, &order, &w1, lease, &success)
            .await
            .unwrap()
    );
    assert_eq!(snapshot(&db.pool, &order).await, before);

    // Never claimed: nothing to finish.
    let pending = paid(&db.pool).await;
    let before = snapshot(&db.pool, &pending).await;
    assert!(
        !lifecycle::record_outcome(&db.pool, &pending, &w1, lease, &success)
            .await
            .unwrap()
    );
    assert_eq!(snapshot(&db.pool, &pending).await, before);
}

#[tokio::test]
async fn release_abandoned_claims_takes_back_unsent_claims_of_ended_leases_only() {
    let db = TestDb::create().await;
    let sweeper = Actor::RechargeSweep("w9".into());
    let (live, _, _) = claimed(&db.pool).await;
    let (abandoned, _, lease) = claimed(&db.pool).await;
    // The second order's worker is gone.
    lifecycle::end_lease(&db.pool, lease).await.unwrap();
    let before = snapshot(&db.pool, &live).await;

    let released = lifecycle::release_abandoned_claims(&db.pool, &sweeper, None)
        .await
        .unwrap();
    assert_eq!(released, vec![abandoned.clone()]);
    assert_eq!(
        column::<String>(&db.pool, &abandoned, "recharge_status").await,
        "pending"
    );
    assert_eq!(last_event(&db.pool, &abandoned).await, "released");
    assert_eq!(snapshot(&db.pool, &live).await, before);
}

#[tokio::test]
async fn abandon_sent_claims_makes_sent_claims_of_ended_leases_unknown_only() {
    let db = TestDb::create().await;
    let sweeper = Actor::RechargeSweep("w9".into());
    let (live, _, _) = sent(&db.pool).await;
    let (abandoned, _, lease) = sent(&db.pool).await;
    lifecycle::end_lease(&db.pool, lease).await.unwrap();
    let before = snapshot(&db.pool, &live).await;

    let lost = lifecycle::abandon_sent_claims(&db.pool, None, &sweeper, None)
        .await
        .unwrap();
    assert_eq!(lost, vec![abandoned.clone()]);
    assert_eq!(
        column::<String>(&db.pool, &abandoned, "recharge_status").await,
        "unknown"
    );
    assert_eq!(last_event(&db.pool, &abandoned).await, "unknown");
    assert_eq!(snapshot(&db.pool, &live).await, before);
}

#[tokio::test]
async fn requeue_pending_puts_a_pending_order_back_but_not_a_claimed_one() {
    let db = TestDb::create().await;
    let sweeper = Actor::RechargeSweep("w9".into());
    let pending = paid(&db.pool).await;
    let (claimed, _, _) = claimed(&db.pool).await;
    let before = snapshot(&db.pool, &claimed).await;

    let requeued = lifecycle::requeue_pending(
        &db.pool,
        Duration::from_secs(3600),
        10,
        &[pending.clone(), claimed.clone()],
        &sweeper,
    )
    .await
    .unwrap();
    assert_eq!(requeued, 1);
    assert_eq!(column::<i32>(&db.pool, &pending, "requeue_count").await, 1);
    assert_eq!(last_event(&db.pool, &pending).await, "requeued");
    assert_eq!(
        snapshot(&db.pool, &pending).await["outbox"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(snapshot(&db.pool, &claimed).await, before);
}

#[tokio::test]
async fn take_unknown_for_check_takes_an_unknown_order_once_per_period() {
    let db = TestDb::create().await;
    let unknown = unknown(&db.pool).await;
    let failed = failed(&db.pool).await;
    let before = snapshot(&db.pool, &failed).await;

    let taken = lifecycle::take_unknown_for_check(&db.pool, Duration::from_secs(3600), 10)
        .await
        .unwrap();
    assert_eq!(taken, vec![(unknown.clone(), "SEQ1".to_owned())]);
    assert!(
        column::<Option<chrono::DateTime<Utc>>>(&db.pool, &unknown, "reconciled_at")
            .await
            .is_some()
    );
    assert_eq!(snapshot(&db.pool, &failed).await, before);

    let before = snapshot(&db.pool, &unknown).await;
    let again = lifecycle::take_unknown_for_check(&db.pool, Duration::from_secs(3600), 10)
        .await
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(snapshot(&db.pool, &unknown).await, before);
}

#[tokio::test]
async fn settle_unknown_settles_an_unknown_order_only() {
    let db = TestDb::create().await;
    let order = unknown(&db.pool).await;
    let reconciliation = Settler::Reconciliation {
        sweeper: Actor::RechargeSweep("w9".into()),
        seq: "SEQ1".into(),
    };
    assert_eq!(
        lifecycle::settle_unknown(&db.pool, &order, &Verdict::Credited, &reconciliation, LEASE)
            .await
            .unwrap(),
        Settlement::Settled
    );
    assert_eq!(
        column::<String>(&db.pool, &order, "recharge_status").await,
        "success"
    );
    assert_eq!(last_event(&db.pool, &order).await, "success");

    let before = snapshot(&db.pool, &order).await;
    assert_eq!(
        lifecycle::settle_unknown(&db.pool, &order, &Verdict::Credited, &reconciliation, LEASE)
            .await
            .unwrap(),
        Settlement::NotUnknown
    );
    assert_eq!(snapshot(&db.pool, &order).await, before);
}

#[tokio::test]
async fn a_person_cannot_call_an_unknown_top_up_not_credited_while_it_may_be_in_flight() {
    let db = TestDb::create().await;
    let order = unknown(&db.pool).await;
    let before = snapshot(&db.pool, &order).await;
    let person = Settler::Person {
        name: "ops".into(),
        note: "Unitel says no".into(),
    };
    let verdict = Verdict::NotCredited {
        reason: "Unitel says no".into(),
    };
    assert!(matches!(
        lifecycle::settle_unknown(&db.pool, &order, &verdict, &person, LEASE)
            .await
            .unwrap(),
        Settlement::TooEarly { .. }
    ));
    assert_eq!(snapshot(&db.pool, &order).await, before);
}

// ───────────────────────────── refunds ─────────────────────────────

#[tokio::test]
async fn request_refund_only_for_a_failed_top_up_unless_credited_ones_are_asked_for() {
    let db = TestDb::create().await;
    let order = failed(&db.pool).await;
    assert!(
        lifecycle::request_refund(&db.pool, &order, "failed", &Actor::AutoRefund, false)
            .await
            .unwrap()
    );
    assert_eq!(last_event(&db.pool, &order).await, "refund_requested");
    let status: String = sqlx::query_scalar("SELECT status FROM refunds WHERE order_number = $1")
        .bind(order.as_str())
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, "requested");

    // A refund exists already.
    let before = snapshot(&db.pool, &order).await;
    assert!(
        !lifecycle::request_refund(&db.pool, &order, "again", &Actor::AutoRefund, false)
            .await
            .unwrap()
    );
    assert_eq!(snapshot(&db.pool, &order).await, before);

    // Pending: not refundable.
    let pending = paid(&db.pool).await;
    let before = snapshot(&db.pool, &pending).await;
    assert!(!lifecycle::request_refund(
        &db.pool,
        &pending,
        "why",
        &Actor::Admin("ops".into()),
        true
    )
    .await
    .unwrap());
    assert_eq!(snapshot(&db.pool, &pending).await, before);
}

async fn refund_requested(db: &PgPool) -> OrderNumber {
    let order = failed(db).await;
    assert!(
        lifecycle::request_refund(db, &order, "failed", &Actor::AutoRefund, false)
            .await
            .unwrap()
    );
    order
}

async fn refund_status(db: &PgPool, order: &OrderNumber) -> String {
    sqlx::query_scalar("SELECT status FROM refunds WHERE order_number = $1")
        .bind(order.as_str())
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn change_refund_moves_a_refund_from_the_state_it_starts_from_only() {
    let db = TestDb::create().await;
    let order = refund_requested(&db.pool).await;

    // `accepted → success` does not start from `requested`.
    let before = snapshot(&db.pool, &order).await;
    let succeeded = RefundChange::Succeeded {
        refund_id: Some("R1"),
    };
    assert!(!lifecycle::change_refund(&db.pool, &order, succeeded)
        .await
        .unwrap());
    assert_eq!(snapshot(&db.pool, &order).await, before);

    let accepted = RefundChange::Accepted {
        refund_id: Some("R1"),
    };
    assert!(lifecycle::change_refund(&db.pool, &order, accepted)
        .await
        .unwrap());
    assert_eq!(refund_status(&db.pool, &order).await, "accepted");
    assert_eq!(last_event(&db.pool, &order).await, "refund_accepted");

    let failed_from_requested = RefundChange::Failed {
        from: RefundStatus::Requested,
        error: "closed",
    };
    let before = snapshot(&db.pool, &order).await;
    assert!(
        !lifecycle::change_refund(&db.pool, &order, failed_from_requested)
            .await
            .unwrap()
    );
    assert_eq!(snapshot(&db.pool, &order).await, before);

    assert!(lifecycle::change_refund(&db.pool, &order, succeeded)
        .await
        .unwrap());
    assert_eq!(refund_status(&db.pool, &order).await, "success");
    assert_eq!(last_event(&db.pool, &order).await, "refund_success");
}

#[tokio::test]
async fn retry_refund_sends_a_failed_refund_again_only() {
    let db = TestDb::create().await;
    let order = refund_requested(&db.pool).await;
    let ops = Actor::Admin("ops".into());

    let before = snapshot(&db.pool, &order).await;
    assert!(!lifecycle::retry_refund(&db.pool, &order, &ops, "again")
        .await
        .unwrap());
    assert_eq!(snapshot(&db.pool, &order).await, before);

    let refused = RefundChange::Failed {
        from: RefundStatus::Requested,
        error: "refused",
    };
    assert!(lifecycle::change_refund(&db.pool, &order, refused)
        .await
        .unwrap());
    assert_eq!(refund_status(&db.pool, &order).await, "failed");
    assert_eq!(last_event(&db.pool, &order).await, "refund_failed");

    assert!(lifecycle::retry_refund(&db.pool, &order, &ops, "again")
        .await
        .unwrap());
    assert_eq!(refund_status(&db.pool, &order).await, "requested");
    assert_eq!(last_event(&db.pool, &order).await, "refund_retried");
}

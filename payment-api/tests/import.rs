//! Bringing the replaced system over: its MySQL schema (Prisma's migrations, applied to
//! this machine's MariaDB), rows in every state it could leave an order in, the WeChat Pay
//! side of each (the sandbox), then `payment-api import-legacy` as an operator runs it —
//! twice. And a payment the replaced system started, completed after the switch.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::mysql::MySqlPool;
use sqlx::{Connection, MySqlConnection, PgPool};
use testkit::{System, SystemOptions};

const MARIADB: &str = "mysql://root@127.0.0.1:3306";
const MERCHANT: &str = "1712734762";

/// What WeChat Pay knows of a legacy order before the import.
#[derive(Clone, Copy)]
enum AtWechat {
    Nothing,
    Started,
    Closed,
    /// Paid, for this many fen.
    Paid(i64),
}

/// What the import must make of it.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// (payment_status, recharge_status) here.
    Imported(&'static str, &'static str),
    /// Not imported; the report's reason contains this.
    NotImported(&'static str),
}

struct Case {
    number: &'static str,
    phone: &'static str,
    operator: &'static str,
    kind: &'static str,
    code: &'static str,
    data: Option<&'static str>,
    price_tg: &'static str,
    price_rmb: &'static str,
    payment: &'static str,
    recharge: Option<&'static str>,
    claimed: bool,
    seq: Option<&'static str>,
    /// Created just now (still within its payment window), not in October 2025.
    recent: bool,
    wechat: AtWechat,
    expect: Expect,
}

const fn case(
    number: &'static str,
    payment: &'static str,
    recharge: Option<&'static str>,
    claimed: bool,
    wechat: AtWechat,
    expect: Expect,
) -> Case {
    Case {
        number,
        phone: "88616609",
        operator: "Unitel",
        kind: "voice",
        code: "SD5000",
        data: None,
        price_tg: "5000.00",
        price_rmb: "11.36",
        payment,
        recharge,
        claimed,
        seq: None,
        recent: false,
        wechat,
        expect,
    }
}

fn cases() -> Vec<Case> {
    use AtWechat::*;
    use Expect::*;
    vec![
        case(
            "ORD1760781234567UnpaidNone01",
            "unpaid",
            None,
            false,
            Nothing,
            Imported("unpaid", "pending"),
        ),
        case(
            "ORD1760781234567UnpaidStart1",
            "unpaid",
            None,
            false,
            Started,
            Imported("unpaid", "pending"),
        ),
        Case {
            recent: true,
            ..case(
                "ORD1760781234567UnpaidStart2",
                "unpaid",
                None,
                false,
                Started,
                Imported("unpaid", "pending"),
            )
        },
        case(
            "ORD1760781234567UnpaidClosed",
            "unpaid",
            None,
            false,
            Closed,
            Imported("closed", "pending"),
        ),
        // Its callback never got through (the replaced system answered 400 to every one).
        case(
            "ORD1760781234567UnpaidPaid01",
            "unpaid",
            None,
            false,
            Paid(1136),
            Imported("paid", "pending"),
        ),
        case(
            "ORD1760781234567PaidPending1",
            "paid",
            Some("pending"),
            false,
            Paid(1136),
            Imported("paid", "pending"),
        ),
        case(
            "ORD1760781234567PaidClaimed1",
            "paid",
            Some("pending"),
            true,
            Paid(1136),
            Imported("paid", "unknown"),
        ),
        Case {
            seq: Some("1760754386127"),
            ..case(
                "ORD1760781234567PaidSuccess",
                "paid",
                Some("success"),
                true,
                Paid(1136),
                Imported("paid", "success"),
            )
        },
        case(
            "ORD1760781234567PaidFailed01",
            "paid",
            Some("failed"),
            true,
            Paid(1136),
            Imported("paid", "unknown"),
        ),
        case(
            "ORD1760781234567PaidTimeout1",
            "paid",
            Some("timeout"),
            true,
            Paid(1136),
            Imported("paid", "unknown"),
        ),
        case(
            "ORD1760781234567PaidUnknown1",
            "paid",
            Some("unknown"),
            true,
            Paid(1136),
            Imported("paid", "unknown"),
        ),
        Case {
            seq: Some("1760754386999"),
            ..case(
                "ORD1760781234567PaidSeqOnly1",
                "paid",
                Some("pending"),
                false,
                Paid(1136),
                Imported("paid", "unknown"),
            )
        },
        case(
            "ORD1760781234567PaidNotAtWx1",
            "paid",
            Some("pending"),
            false,
            Nothing,
            NotImported("no payment"),
        ),
        case(
            "ORD1760781234567PaidOtherFee",
            "paid",
            Some("pending"),
            false,
            Paid(1000),
            NotImported("took 1000 fen"),
        ),
        Case {
            phone: "12345",
            ..case(
                "ORD1760781234567BadPhone001",
                "unpaid",
                None,
                false,
                Nothing,
                NotImported("phone number"),
            )
        },
        // Paid at WeChat, but not for a number this project can top up: left behind, and
        // the money taken is said, for a person.
        Case {
            phone: "12345",
            ..case(
                "ORD1760781234567BadPhonePd1",
                "paid",
                Some("pending"),
                false,
                Paid(1136),
                NotImported("WeChat Pay took 1136 fen"),
            )
        },
        Case {
            operator: "Mobicom",
            ..case(
                "ORD1760781234567Mobicom0001",
                "unpaid",
                None,
                false,
                Nothing,
                NotImported("operator"),
            )
        },
        // Before October 2025: a postpaid bill recorded as POSTPAID_BILL with its details.
        Case {
            kind: "postpaid",
            code: "POSTPAID_BILL",
            data: Some(
                r#"{"invoice_amount":74220,"invoice_date":"2025.09.01-2025.09.30","invoice_status":"unpaid"}"#,
            ),
            price_tg: "74220.00",
            price_rmb: "168.68",
            ..case(
                "ORD1760781234567OldPostpaid",
                "paid",
                Some("success"),
                true,
                Paid(16868),
                Imported("paid", "success"),
            )
        },
        Case {
            kind: "postpaid",
            code: "2025.09.01-2025.09.30",
            price_tg: "74220.50",
            price_rmb: "168.68",
            ..case(
                "ORD1760781234567HalfTugrik1",
                "unpaid",
                None,
                false,
                Nothing,
                NotImported("whole number of tugrik"),
            )
        },
        // The 24-character numbers of its first weeks.
        case(
            "ORD1760000000000Ab3_-xyz",
            "unpaid",
            None,
            false,
            Nothing,
            Imported("unpaid", "pending"),
        ),
    ]
}

async fn legacy_database(name: &str) -> (String, MySqlPool) {
    let mut admin = MySqlConnection::connect(MARIADB)
        .await
        .expect("MariaDB must be running on this machine (see README)");
    sqlx::raw_sql(&format!(
        "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.ok();
    let url = format!("{MARIADB}/{name}");
    let pool = MySqlPool::connect(&url).await.unwrap();
    sqlx::raw_sql(include_str!("fixtures/legacy-schema.sql"))
        .execute(&pool)
        .await
        .expect("the replaced system's migrations apply");
    (url, pool)
}

/// The rows, as the replaced system wrote them, and each order's WeChat side.
async fn fill(system: &System, legacy: &MySqlPool) {
    for (openid, unionid, appid) in [
        ("o_legacy_one", Some("u_one"), Some("wx_app")),
        ("o_legacy_two", None, None),
    ] {
        sqlx::query(
            "INSERT INTO users (openid, unionid, appid, created_at, updated_at)
             VALUES (?, ?, ?, '2025-10-10 01:02:03.456', '2025-10-10 01:02:03.456')",
        )
        .bind(openid)
        .bind(unionid)
        .bind(appid)
        .execute(legacy)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO exchange_rates (currency, rate, is_active, updated_at)
         VALUES ('MNT_TO_CNY', 440.1408, 1, '2025-10-13 00:00:00.000')",
    )
    .execute(legacy)
    .await
    .unwrap();
    let http = reqwest::Client::new();
    for case in cases() {
        sqlx::query(
            "INSERT INTO orders (order_number, openid, phone_number, product_operator,
                product_recharge_type, product_name, product_eng_name, product_code,
                product_price_tg, product_price_rmb, product_unit, product_data, product_days,
                seq_id, payment_status, recharge_status, created_at, paid_at, recharge_at)
             VALUES (?, 'o_legacy_one', ?, ?, ?, '5000 нэгж', '5000 unit', ?, ?, ?, 5000, ?, 30,
                     ?, ?, ?, IF(?, UTC_TIMESTAMP(3), '2025-10-18 03:04:05.678'),
                     IF(? = 'paid', '2025-10-18 03:05:00.000', NULL),
                     IF(?, '2025-10-18 03:05:01.000', NULL))",
        )
        .bind(case.number)
        .bind(case.phone)
        .bind(case.operator)
        .bind(case.kind)
        .bind(case.code)
        .bind(case.price_tg)
        .bind(case.price_rmb)
        .bind(case.data)
        .bind(case.seq)
        .bind(case.payment)
        .bind(case.recharge)
        .bind(case.recent)
        .bind(case.payment)
        .bind(case.claimed)
        .execute(legacy)
        .await
        .unwrap();
        let fee = match case.wechat {
            AtWechat::Nothing => continue,
            AtWechat::Paid(fee) => fee,
            _ => 1136,
        };
        // unifiedOrder exactly as the replaced system sent it.
        let body = json!({
            "openid": "o_legacy_one",
            "body": "境外话费充值 - 5000 нэгж",
            "out_trade_no": case.number,
            "total_fee": fee,
            "spbill_create_ip": "127.0.0.1",
            "sub_mch_id": MERCHANT,
            "env_id": "test-env",
            "callback_type": 2,
            "trade_type": "JSAPI",
            "attach": legacy_attach(case.number, case.phone),
            "container": {"service": "elife-backend", "path": "/payment/callback"},
        });
        let answer: Value = http
            .post(format!(
                "{}/_/pay/unifiedOrder",
                system.sandbox.wechat_url()
            ))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["respdata"]["result_code"], "SUCCESS", "{answer}");
        match case.wechat {
            AtWechat::Closed => {
                let closed: Value = http
                    .post(format!("{}/_/pay/closeorder", system.sandbox.wechat_url()))
                    .json(&json!({"out_trade_no": case.number, "sub_mch_id": MERCHANT}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(closed["errcode"], 0, "{closed}");
            }
            AtWechat::Paid(_) => {
                // Its callback went to the replaced system.
                system
                    .sandbox
                    .pay_without_callback(case.number)
                    .await
                    .unwrap();
            }
            _ => {}
        }
    }
}

/// `{"orderNumber":…,"phoneNumber":…}`, as JSON.stringify wrote it.
fn legacy_attach(order_number: &str, phone: &str) -> String {
    format!(r#"{{"orderNumber":"{order_number}","phoneNumber":"{phone}"}}"#)
}

/// `payment-api import-legacy`, as an operator runs it, with the service's settings.
async fn import(system: &System, from: &str, dry_run: bool) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_payment-api"));
    command
        .arg("import-legacy")
        .arg("--from")
        .arg(from)
        .envs(system.worker_env())
        .env("RUST_LOG", "error");
    if dry_run {
        command.arg("--dry-run");
    }
    // Off this test's runtime, which serves the sandbox the command asks.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("payment-api runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.code().is_some(),
        "import-legacy crashed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap(), stdout)
}

/// Everything the import writes, in a stable order, for comparing two runs.
async fn snapshot(db: &PgPool) -> Value {
    let mut tables = serde_json::Map::new();
    for (name, rows) in [
        ("orders", "SELECT to_jsonb(o) - 'updated_at' - 'id' - 'imported_at' FROM orders o ORDER BY order_number"),
        ("events", "SELECT jsonb_build_array(order_number, event, actor, detail) FROM order_events ORDER BY id"),
        ("users", "SELECT jsonb_build_array(openid, unionid, appid, created_at) FROM users ORDER BY openid"),
        ("rates", "SELECT jsonb_build_array(rate, set_by) FROM exchange_rates ORDER BY id"),
        ("messages", "SELECT to_jsonb(idempotency_key) FROM outbox ORDER BY id"),
    ] {
        let rows: Vec<Value> = sqlx::query_scalar(rows).fetch_all(db).await.unwrap();
        tables.insert(name.to_owned(), Value::Array(rows));
    }
    Value::Object(tables)
}

/// The system, and a legacy database holding every case. No worker: what the import
/// decided stays as it decided, to be compared.
async fn system_and_legacy_data() -> (System, String, MySqlPool) {
    let system = System::start(SystemOptions {
        workers: 0,
        ..SystemOptions::default()
    })
    .await;
    let (url, legacy) = legacy_database(&format!("legacy_{}", system.db.name)).await;
    fill(&system, &legacy).await;
    (system, url, legacy)
}

#[tokio::test]
async fn the_replaced_systems_data_is_imported_once_and_safely() {
    let (system, url, legacy) = system_and_legacy_data().await;
    let db = &system.db.pool;

    // A dry run says what it would do and writes nothing.
    let before = snapshot(db).await;
    let (status, report) = import(&system, &url, true).await;
    assert_eq!(status, 3, "{report}");
    assert!(report.contains("dry run"), "{report}");
    assert!(
        report.contains("ORD1760781234567PaidClaimed1  paid/pending -> paid, unknown"),
        "{report}"
    );
    assert_eq!(snapshot(db).await, before, "a dry run changed something");

    let (status, first_report) = import(&system, &url, false).await;
    assert_eq!(
        status, 3,
        "rows were not imported, and the exit status says so: {first_report}"
    );
    for case in cases() {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT payment_status, recharge_status FROM orders WHERE order_number = $1",
        )
        .bind(case.number)
        .fetch_optional(db)
        .await
        .unwrap();
        match case.expect {
            Expect::Imported(payment, recharge) => {
                assert_eq!(
                    row,
                    Some((payment.to_owned(), recharge.to_owned())),
                    "{}: {first_report}",
                    case.number
                );
            }
            Expect::NotImported(why) => {
                assert_eq!(row, None, "{} should not be imported", case.number);
                let line = first_report
                    .lines()
                    .find(|l| l.contains(case.number))
                    .unwrap_or_else(|| panic!("{} not in the report: {first_report}", case.number));
                assert!(line.contains(why), "{line}");
            }
        }
    }

    // Paid means WeChat's transaction; only the never-sent order goes to the workers.
    let (transaction, paid_at): (Option<String>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT transaction_id, paid_at FROM orders WHERE order_number = 'ORD1760781234567PaidPending1'")
            .fetch_one(db)
            .await
            .unwrap();
    let at_wechat = system
        .sandbox
        .wechat_order("ORD1760781234567PaidPending1")
        .unwrap();
    assert_eq!(transaction, at_wechat.transaction_id);
    assert!(paid_at.is_some());
    let queued: Vec<String> =
        sqlx::query_scalar("SELECT order_number FROM outbox ORDER BY order_number")
            .fetch_all(db)
            .await
            .unwrap();
    assert_eq!(
        queued,
        [
            "ORD1760781234567PaidPending1",
            "ORD1760781234567UnpaidPaid01"
        ]
    );
    // Nothing is refunded: no imported order is failed.
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE recharge_status = 'failed'")
            .fetch_one(db)
            .await
            .unwrap();
    assert_eq!(failed, 0);
    // An uncertain top-up keeps Unitel's seq for reconciliation, and its history says why.
    let seq: Option<String> = sqlx::query_scalar(
        "SELECT seq_id FROM orders WHERE order_number = 'ORD1760781234567PaidSeqOnly1'",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(seq.as_deref(), Some("1760754386999"));
    let events = system.events("ORD1760781234567PaidFailed01").await;
    assert_eq!(events, ["imported", "unknown"]);
    // The order object reads as the mini-program knew it.
    let (status, body) = system
        .client("o_legacy_one")
        .get("/orders/ORD1760781234567PaidSuccess")
        .await;
    assert_eq!(status, 200, "{body}");
    let order = &body["data"];
    assert_eq!(order["productPriceTg"], "5000");
    assert_eq!(order["productPriceRmb"], "11.36");
    assert_eq!(order["rechargeStatus"], "success");
    assert_eq!(order["seqId"], "1760754386127");
    assert_eq!(order["createdAt"], "2025-10-18T03:04:05.678Z");
    assert_eq!(order["user"]["appid"], "wx_app");
    // The rate it priced with is the current one.
    let (_, rate) = system.anonymous().get("/exchange-rate/current").await;
    assert_eq!(rate["data"]["rate"], json!(440.1408));

    // A second run changes nothing and asks WeChat nothing.
    let after_first = snapshot(db).await;
    let queries_before = system.sandbox.api_calls().len();
    let (status, second_report) = import(&system, &url, false).await;
    assert_eq!(status, 3);
    assert!(
        second_report.contains("orders: 0 created"),
        "{second_report}"
    );
    assert!(
        second_report.contains("users: 0 created, 2 already here"),
        "{second_report}"
    );
    assert_eq!(
        snapshot(db).await,
        after_first,
        "the second run changed something"
    );
    let wechat_calls = system.sandbox.api_calls()[queries_before..]
        .iter()
        .filter(|c| c.api == "wechat")
        .count();
    // Only the rows it could not import are asked about again (whether WeChat took money
    // for them is in every report).
    let left_behind = cases()
        .iter()
        .filter(|c| matches!(c.expect, Expect::NotImported(_)))
        .count();
    assert!(
        wechat_calls <= left_behind,
        "{wechat_calls} WeChat calls on the second run, {left_behind} rows left behind"
    );

    legacy.close().await;
    system.shutdown().await;
}

#[tokio::test]
async fn a_payment_the_replaced_system_started_is_paid_once_after_the_switch() {
    let (system, url, legacy) = system_and_legacy_data().await;
    let (_, report) = import(&system, &url, false).await;
    let db = &system.db.pool;

    // The customer still has the payment sheet the replaced system gave them, and pays;
    // the platform posts to the replaced system's path, with its attach, three times.
    let mut faults = system.sandbox.faults();
    faults.wechat.callback_duplicates = 2;
    system.sandbox.set_faults(faults);
    system
        .sandbox
        .pay("ORD1760781234567UnpaidStart1")
        .await
        .unwrap();
    system
        .wait_for_count(
            "SELECT count(*) FROM orders WHERE order_number = 'ORD1760781234567UnpaidStart1' AND payment_status = 'paid'",
            1,
            Duration::from_secs(10),
        )
        .await;
    // Every copy answered before its effects are counted.
    system.wait_for_callbacks_delivered().await;
    let deliveries: Vec<_> = system
        .sandbox
        .callback_log()
        .into_iter()
        .filter(|d| d.out_trade_no == "ORD1760781234567UnpaidStart1")
        .collect();
    assert!(deliveries.len() >= 3, "{deliveries:?}");
    assert!(deliveries
        .iter()
        .all(|d| d.url.ends_with("/payment/callback") && d.accepted));
    let paid_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM order_events WHERE order_number = 'ORD1760781234567UnpaidStart1' AND event = 'paid'",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(paid_events, 1, "paid once: {report}");
    let anomalies: i64 = sqlx::query_scalar("SELECT count(*) FROM payment_anomalies")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(
        anomalies, 0,
        "the replaced system's attach is genuine, not a mismatch"
    );

    // The same attach naming another number is not.
    let forged = json!({
        "returnCode": "SUCCESS", "resultCode": "SUCCESS", "subMchId": MERCHANT,
        "outTradeNo": "ORD1760781234567UnpaidStart2", "totalFee": 1136,
        "transactionId": "4200000000000000000000000001", "timeEnd": "20251018110500",
        "attach": legacy_attach("ORD1760781234567UnpaidStart2", "99119911"),
    });
    let response = reqwest::Client::new()
        .post(format!("{}/payment/callback", system.api_url))
        .header("X-WX-SOURCE", "wx_pay")
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let kind: String = sqlx::query_scalar(
        "SELECT kind FROM payment_anomalies WHERE order_number = 'ORD1760781234567UnpaidStart2'",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(kind, "attach_mismatch");

    // Paying it from the mini-program now goes on with the replaced system's parameters,
    // which WeChat requires for a second unifiedOrder of the same order.
    let (status, body) = system
        .client("o_legacy_one")
        .post(
            "/payment/create",
            json!({"orderNumber": "ORD1760781234567UnpaidStart2"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let call = system
        .sandbox
        .api_calls()
        .into_iter()
        .rev()
        .find(|c| c.path.ends_with("unifiedOrder"))
        .unwrap();
    assert_eq!(
        call.body["attach"],
        legacy_attach("ORD1760781234567UnpaidStart2", "88616609")
    );

    legacy.close().await;
    system.shutdown().await;
}

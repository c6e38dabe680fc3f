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
    let mut args = vec!["--from", from];
    if dry_run {
        args.push("--dry-run");
    }
    let (status, stdout, _) = import_with(system, &args, &[]).await;
    (status, stdout)
}

/// `payment-api import-legacy ARGS` with the service's settings and `env`: (exit status,
/// stdout, stderr).
async fn import_with(
    system: &System,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_payment-api"));
    command
        .arg("import-legacy")
        .args(args)
        .envs(system.worker_env())
        .env_remove("LEGACY_DATABASE_URL")
        .envs(env.iter().copied())
        .env("RUST_LOG", "error");
    // Off this test's runtime, which serves the sandbox the command asks.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("payment-api runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.code().is_some(),
        "import-legacy crashed: {stderr}"
    );
    (output.status.code().unwrap(), stdout, stderr)
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

/// One pass of the replaced system's compensation cron, with its clock at `now`: its query
/// (paid, pending, paid over a minute ago, never claimed or claimed over ten minutes ago
/// without a `seq_id`), then for each row its own conditional claim, as Prisma sends them.
/// Returns the orders it claimed, each of which it would then send to Unitel.
async fn legacy_cron_pass(
    legacy: &MySqlPool,
    now: chrono::DateTime<chrono::Utc>,
    pause: Duration,
) -> Vec<String> {
    let (now, minute_ago, ten_minutes_ago) = (
        now.naive_utc(),
        (now - chrono::Duration::minutes(1)).naive_utc(),
        (now - chrono::Duration::minutes(10)).naive_utc(),
    );
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT order_number FROM orders
          WHERE payment_status = 'paid' AND recharge_status = 'pending' AND paid_at < ?
            AND (recharge_at IS NULL OR (recharge_at < ? AND seq_id IS NULL))
          ORDER BY paid_at ASC LIMIT 10",
    )
    .bind(minute_ago)
    .bind(ten_minutes_ago)
    .fetch_all(legacy)
    .await
    .unwrap();
    let mut claimed = Vec::new();
    for order_number in due {
        let taken = sqlx::query(
            "UPDATE orders SET recharge_at = ?
              WHERE order_number = ?
                AND (recharge_at IS NULL OR (recharge_at < ? AND seq_id IS NULL))",
        )
        .bind(now)
        .bind(&order_number)
        .bind(ten_minutes_ago)
        .execute(legacy)
        .await
        .unwrap()
        .rows_affected();
        if taken == 1 {
            // Its call to Unitel is under way: no outcome recorded yet.
            claimed.push(order_number);
        }
        tokio::time::sleep(pause).await;
    }
    claimed
}

/// A still-running instance of the replaced system sends never-sent top-ups every minute.
/// The import claims each one there before importing it as never sent; a row the cron
/// claimed first is imported `unknown`. No row is both sent by the cron and queued here,
/// and the cron takes back none of the claims, its own included, once the import is over.
#[tokio::test]
async fn the_replaced_systems_cron_and_the_import_never_both_take_a_top_up() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..SystemOptions::default()
    })
    .await;
    let (url, legacy) = legacy_database(&format!("legacy_cron_{}", system.db.name)).await;
    sqlx::query(
        "INSERT INTO users (openid, created_at, updated_at)
         VALUES ('o_legacy_one', '2025-10-10 01:02:03.456', '2025-10-10 01:02:03.456')",
    )
    .execute(&legacy)
    .await
    .unwrap();
    let http = reqwest::Client::new();
    // 100 never claimed; 5 it claimed long ago and never got a seq_id for (its cron takes
    // those back), paid last so that the cron reaches them late.
    let numbers: Vec<String> = (0..100)
        .map(|n| format!("ORD1760781234567CronRace{n:04}"))
        .collect();
    let stale: Vec<String> = (0..5)
        .map(|n| format!("ORD1760781234567CronStale{n:03}"))
        .collect();
    let all: Vec<(usize, &String, bool)> = numbers
        .iter()
        .map(|n| (n, false))
        .chain(stale.iter().map(|n| (n, true)))
        .enumerate()
        .map(|(i, (n, stale))| (i, n, stale))
        .collect();
    for &(n, number, claimed_long_ago) in &all {
        sqlx::query(
            "INSERT INTO orders (order_number, openid, phone_number, product_operator,
                product_recharge_type, product_name, product_code, product_price_tg,
                product_price_rmb, payment_status, recharge_status, created_at, paid_at,
                recharge_at)
             VALUES (?, 'o_legacy_one', '88616609', 'Unitel', 'voice', '5000 нэгж', 'SD5000',
                     5000.00, 11.36, 'paid', 'pending',
                     '2025-10-18 03:04:05.678' + INTERVAL ? SECOND,
                     '2025-10-18 03:05:00.000' + INTERVAL ? SECOND,
                     IF(?, '2025-10-18 03:10:00.000', NULL))",
        )
        .bind(number)
        .bind(n as i64)
        .bind(n as i64)
        .bind(claimed_long_ago)
        .execute(&legacy)
        .await
        .unwrap();
        let answer: Value = http
            .post(format!(
                "{}/_/pay/unifiedOrder",
                system.sandbox.wechat_url()
            ))
            .json(&json!({
                "openid": "o_legacy_one", "body": "境外话费充值 - 5000 нэгж",
                "out_trade_no": number, "total_fee": 1136, "spbill_create_ip": "127.0.0.1",
                "sub_mch_id": MERCHANT, "env_id": "test-env", "callback_type": 2,
                "trade_type": "JSAPI", "attach": legacy_attach(number, "88616609"),
                "container": {"service": "elife-backend", "path": "/payment/callback"},
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["respdata"]["result_code"], "SUCCESS", "{answer}");
        system.sandbox.pay_without_callback(number).await.unwrap();
    }

    // The cron runs over and over while the import runs.
    let stop = tokio_util::sync::CancellationToken::new();
    let cron = tokio::spawn({
        let (legacy, stop) = (legacy.clone(), stop.clone());
        async move {
            let mut sent = Vec::new();
            while !stop.is_cancelled() {
                let claimed =
                    legacy_cron_pass(&legacy, chrono::Utc::now(), Duration::from_millis(20)).await;
                if claimed.is_empty() {
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
                sent.extend(claimed);
            }
            sent
        }
    });
    let (status, report) = import(&system, &url, false).await;
    stop.cancel();
    let mut sent_by_cron = cron.await.unwrap();
    assert_eq!(status, 0, "{report}");

    // Later runs of the cron, now and a year from now (every claim of its own is stale by
    // then), take none of these rows back; they do take an abandoned claim of another order.
    sqlx::query(
        "INSERT INTO orders (order_number, openid, phone_number, product_operator,
            product_recharge_type, product_name, product_code, product_price_tg,
            product_price_rmb, payment_status, recharge_status, created_at, paid_at, recharge_at)
         VALUES ('ORD1760781234567NotImported1', 'o_legacy_one', '88616609', 'Unitel', 'voice',
                 '5000 нэгж', 'SD5000', 5000.00, 11.36, 'paid', 'pending',
                 '2025-10-18 03:04:05.678', '2025-10-18 03:05:00.000', '2025-10-18 03:10:00.000')",
    )
    .execute(&legacy)
    .await
    .unwrap();
    let year_ahead = chrono::Utc::now() + chrono::Duration::days(365);
    let mut later = Vec::new();
    for now in [chrono::Utc::now(), year_ahead, year_ahead] {
        later.extend(legacy_cron_pass(&legacy, now, Duration::ZERO).await);
    }
    assert!(
        later.iter().any(|n| n == "ORD1760781234567NotImported1"),
        "the later passes claim what they can: {later:?}"
    );
    assert!(
        later
            .iter()
            .all(|n| !numbers.contains(n) && !stale.contains(n)),
        "the cron took back an imported order: {later:?}"
    );

    let db = &system.db.pool;
    let mut queued_here = Vec::new();
    for number in &numbers {
        let (payment, recharge): (String, String) = sqlx::query_as(
            "SELECT payment_status, recharge_status FROM orders WHERE order_number = $1",
        )
        .bind(number)
        .fetch_one(db)
        .await
        .unwrap_or_else(|e| panic!("{number} not imported ({e}): {report}"));
        assert_eq!(payment, "paid", "{number}");
        let by_cron = sent_by_cron.contains(number);
        match recharge.as_str() {
            "pending" => {
                assert!(
                    !by_cron,
                    "{number} was sent by the cron and queued here: {report}"
                );
                queued_here.push(number.clone());
            }
            "unknown" => assert!(by_cron, "{number} is unknown, yet the cron never sent it"),
            other => panic!("{number} imported {other}"),
        }
    }
    for number in &stale {
        let (recharge,): (String,) =
            sqlx::query_as("SELECT recharge_status FROM orders WHERE order_number = $1")
                .bind(number)
                .fetch_one(db)
                .await
                .unwrap();
        assert_eq!(recharge, "unknown", "{number}");
    }
    sent_by_cron.retain(|n| numbers.contains(n));
    sent_by_cron.sort();
    assert_eq!(
        sent_by_cron.len() + queued_here.len(),
        numbers.len(),
        "every row is either sent there or queued here"
    );
    assert!(
        !queued_here.is_empty() && !sent_by_cron.is_empty(),
        "both raced: {} queued here, {} sent by the cron",
        queued_here.len(),
        sent_by_cron.len()
    );
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(queued as usize, queued_here.len());
    // Each order queued here carries the import's claim there; each unknown one, its own
    // claim frozen.
    for number in numbers.iter().chain(&stale) {
        let claim: Option<chrono::NaiveDateTime> =
            sqlx::query_scalar("SELECT recharge_at FROM orders WHERE order_number = ?")
                .bind(number)
                .fetch_one(&legacy)
                .await
                .unwrap();
        let expected = if queued_here.contains(number) {
            "9999-12-31 23:59:59"
        } else {
            "9999-12-31 23:59:58"
        };
        assert_eq!(
            claim.map(|at| at.to_string()).as_deref(),
            Some(expected),
            "{number}"
        );
    }

    legacy.close().await;
    system.shutdown().await;
}

/// The replaced system's database password never goes on the command line: `--from`
/// takes the URL without it, and the password comes from `LEGACY_DATABASE_PASSWORD` or a
/// file (`--password-file`). A password inside `--from` is refused.
#[tokio::test]
async fn the_legacy_database_password_stays_off_the_command_line() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..SystemOptions::default()
    })
    .await;
    let name = format!("legacy_pw_{}", system.db.name);
    let (_, legacy) = legacy_database(&name).await;
    let user = format!("imp{}", &system.db.name[system.db.name.len() - 12..]);
    let password = "s3cret-Pa55word";
    sqlx::raw_sql(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY '{password}';
         GRANT SELECT, UPDATE ON {name}.* TO '{user}'@'%';"
    ))
    .execute(&legacy)
    .await
    .unwrap();
    let without_password = format!("mysql://{user}@127.0.0.1:3306/{name}");

    let with_password = format!("mysql://{user}:{password}@127.0.0.1:3306/{name}");
    let (status, stdout, stderr) = import_with(&system, &["--from", &with_password], &[]).await;
    assert_ne!(status, 0, "{stdout}");
    assert_ne!(status, 3, "refused before reading anything: {stdout}");
    assert!(stderr.contains("LEGACY_DATABASE_PASSWORD"), "{stderr}");
    assert!(
        !stderr.contains(password) && !stdout.contains(password),
        "{stderr}"
    );

    // Without the password, the database refuses: the next two runs did use it.
    let (status, _, stderr) = import_with(&system, &["--from", &without_password], &[]).await;
    assert_ne!(status, 0, "{stderr}");

    let (status, stdout, stderr) = import_with(
        &system,
        &["--from", &without_password],
        &[("LEGACY_DATABASE_PASSWORD", password)],
    )
    .await;
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert!(stdout.contains("orders: 0 created"), "{stdout}");

    let file = std::env::temp_dir().join(format!("{user}.password"));
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let (status, stdout, stderr) = import_with(
        &system,
        &[
            "--from",
            &without_password,
            "--password-file",
            file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    std::fs::remove_file(&file).ok();
    assert_eq!(status, 0, "{stdout}{stderr}");

    sqlx::raw_sql(&format!("DROP USER '{user}'@'%'"))
        .execute(&legacy)
        .await
        .ok();
    legacy.close().await;
    system.shutdown().await;
}

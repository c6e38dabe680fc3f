//! WeChat Pay's daily trade bill through `WechatPay::download_bill`, against the sandbox:
//! what the system took and gave back today, line by line; and the answers without a bill.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use payment_api::config::WechatConfig;
use payment_api::wechat::{
    BillDownload, BillLineKind, CloudPay, TradeBill, WechatError, WechatPay,
};
use sandbox::{BillsReady, Faults, Sandbox, SandboxConfig, WechatFaults};
use shared::money::Fen;
use testkit::{System, SystemOptions};

const MERCHANT: &str = "1712734762";

fn config(api_base: String) -> WechatConfig {
    WechatConfig {
        api_base,
        mch_id: MERCHANT.into(),
        env_id: "test-env".into(),
        callback_service: "elife-backend".into(),
        callback_path: "/payment/callback".into(),
        refund_callback_path: "/payment/refund-callback".into(),
        server_ip: "127.0.0.1".into(),
        timeout: Duration::from_secs(10),
    }
}

fn wechat_pay(api_base: String) -> WechatPay {
    WechatPay::cloud(CloudPay::new(config(api_base)).unwrap())
}

fn china_today() -> NaiveDate {
    (Utc::now() + chrono::Duration::hours(8)).date_naive()
}

/// The China date WeChat gave the order's payment.
fn paid_day(sandbox: &Sandbox, order: &str) -> NaiveDate {
    let time_end = sandbox.wechat_order(order).unwrap().time_end.unwrap();
    NaiveDate::parse_from_str(&time_end[..8], "%Y%m%d").unwrap()
}

async fn ready(wechat: &WechatPay, day: NaiveDate) -> TradeBill {
    match wechat.download_bill(day).await.unwrap() {
        BillDownload::Ready(bill) => bill,
        other => panic!("no bill for {day}: {other:?}"),
    }
}

async fn paid(system: &System, order: &str) -> (String, i64, DateTime<Utc>) {
    sqlx::query_as("SELECT transaction_id, amount_fen, paid_at FROM orders WHERE order_number = $1")
        .bind(order)
        .fetch_one(&system.db.pool)
        .await
        .unwrap()
}

async fn wait_for_refund(system: &System, order: &str) -> (String, i64, Option<String>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let refund: Option<(String, i64, Option<String>, String)> = sqlx::query_as(
            "SELECT out_refund_no, amount_fen, refund_id, status FROM refunds WHERE order_number = $1",
        )
        .bind(order)
        .fetch_optional(&system.db.pool)
        .await
        .unwrap();
        if let Some((out_refund_no, amount, refund_id, status)) = &refund {
            if status == "success" {
                return (out_refund_no.clone(), *amount, refund_id.clone());
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refund of {order}: {refund:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn todays_bill_shows_what_the_system_took_and_gave_back() {
    let system = System::start(SystemOptions {
        overrides: vec![
            ("REFUND_SWEEP_INTERVAL_MS", "100".into()),
            ("AUTO_REFUND_FAILED", "true".into()),
        ],
        ..Default::default()
    })
    .await;
    let (kept, outcome) = system.top_up("o-bill-kept").await;
    assert_eq!(outcome, "success");
    let (refunded, outcome) = system
        .top_up_under(
            "o-bill-refunded",
            sandbox::UnitelFaults {
                fail_next: 1,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(outcome, "failed");
    let (out_refund_no, refund_fen, refund_id) = wait_for_refund(&system, &refunded).await;

    let day = paid_day(&system.sandbox, &kept);
    assert_eq!(paid_day(&system.sandbox, &refunded), day);
    let wechat = wechat_pay(system.setting("WECHAT_API_BASE").to_owned());
    let bill = ready(&wechat, day).await;

    assert_eq!(bill.malformed, vec![], "{}", bill.text);
    assert!(bill.balances(), "{}", bill.text);
    assert_eq!(bill.lines.len(), 3, "{}", bill.text);
    for order in [&kept, &refunded] {
        let (transaction_id, amount, paid_at) = paid(&system, order).await;
        let line = bill
            .lines
            .iter()
            .find(|l| &l.out_trade_no == order && l.kind == BillLineKind::Payment)
            .unwrap_or_else(|| panic!("no payment line for {order}"));
        assert_eq!(line.transaction_id, transaction_id);
        assert_eq!(line.settlement_fee, Fen::new(amount).unwrap());
        assert_eq!(line.order_fee, Fen::new(amount).unwrap());
        assert_eq!(line.traded_at, paid_at, "China time read as UTC");
        assert_eq!(line.merchant_id, MERCHANT);
        assert_eq!(line.trade_state, "SUCCESS");
        assert_eq!(line.refund_fee, Fen::ZERO);
    }
    let refund = bill
        .lines
        .iter()
        .find(|l| l.kind == BillLineKind::Refund)
        .unwrap();
    assert_eq!(refund.out_trade_no, refunded);
    assert_eq!(
        refund.out_refund_no.as_deref(),
        Some(out_refund_no.as_str())
    );
    assert_eq!(refund.refund_id, refund_id);
    assert_eq!(refund.refund_fee, Fen::new(refund_fen).unwrap());
    assert_eq!(refund.settlement_fee, Fen::ZERO);
    assert_eq!(refund.trade_state, "REFUND");
    assert_eq!(refund.refund_status.as_deref(), Some("SUCCESS"));
    let summary = bill.summary.unwrap();
    assert_eq!(summary.trades, 3);
    assert_eq!(summary.refund_total, Fen::new(refund_fen).unwrap());
}

#[tokio::test]
async fn a_day_without_trades_is_no_bill_and_an_ungenerated_one_is_not_ready() {
    let sandbox = Sandbox::start(SandboxConfig::for_tests("http://127.0.0.1:9"))
        .await
        .unwrap();
    let wechat = wechat_pay(sandbox.wechat_url());
    assert_eq!(
        wechat.download_bill(china_today()).await.unwrap(),
        BillDownload::NoBill
    );

    sandbox.set_faults(Faults {
        wechat: WechatFaults {
            bill_not_ready: 1,
            ..Default::default()
        },
        ..Default::default()
    });
    assert_eq!(
        wechat.download_bill(china_today()).await.unwrap(),
        BillDownload::NotReady
    );
    assert_eq!(
        wechat.download_bill(china_today()).await.unwrap(),
        BillDownload::NoBill,
        "the fault is used up"
    );

    // As WeChat times it: today's bill is generated tomorrow morning.
    let mut config = SandboxConfig::for_tests("http://127.0.0.1:9");
    config.bills_ready = BillsReady::Platform;
    let platform = Sandbox::start(config).await.unwrap();
    assert_eq!(
        wechat_pay(platform.wechat_url())
            .download_bill(china_today())
            .await
            .unwrap(),
        BillDownload::NotReady
    );
}

#[tokio::test]
async fn refusals_and_platform_failures_are_errors_not_empty_days() {
    let sandbox = Sandbox::start(SandboxConfig::for_tests("http://127.0.0.1:9"))
        .await
        .unwrap();
    let wechat = wechat_pay(sandbox.wechat_url());

    // A date WeChat no longer keeps is refused, never taken for a day without trades.
    let too_old = china_today() - chrono::Days::new(120);
    match wechat.download_bill(too_old).await {
        Err(WechatError::Business { code, description }) => {
            assert_eq!(
                (code.as_str(), description.as_str()),
                ("20001", "data format error")
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    sandbox.set_faults(Faults {
        wechat: WechatFaults {
            bill_errors: 1,
            ..Default::default()
        },
        ..Default::default()
    });
    assert!(matches!(
        wechat.download_bill(china_today()).await,
        Err(WechatError::Platform(_))
    ));

    let other_merchant = WechatPay::cloud(
        CloudPay::new(WechatConfig {
            mch_id: "1900000109".into(),
            ..config(sandbox.wechat_url())
        })
        .unwrap(),
    );
    assert!(matches!(
        other_merchant.download_bill(china_today()).await,
        Err(WechatError::Business { .. })
    ));
}

#[tokio::test]
async fn a_garbled_bill_is_read_but_does_not_balance() {
    let sandbox = Sandbox::start(SandboxConfig::for_tests("http://127.0.0.1:9"))
        .await
        .unwrap();
    let day = china_today() - chrono::Days::new(1);
    sandbox
        .seed_paid_orders(vec![
            sandbox::PaidOrder {
                out_trade_no: "ORDGARBLED01".into(),
                total_fee: 1136,
                transaction_id: "4200001234202612030000000001".into(),
                time_end: format!("{}235959", day.format("%Y%m%d")),
                openid: "o-garbled".into(),
            },
            sandbox::PaidOrder {
                out_trade_no: "ORDGARBLED02".into(),
                total_fee: 500,
                transaction_id: "4200001234202612030000000002".into(),
                time_end: format!("{}000000", day.format("%Y%m%d")),
                openid: "o-garbled".into(),
            },
        ])
        .unwrap();
    let wechat = wechat_pay(sandbox.wechat_url());
    let clean = ready(&wechat, day).await;
    assert!(clean.balances());
    assert_eq!(
        clean.lines[0].out_trade_no, "ORDGARBLED02",
        "sorted by time"
    );
    // 23:59:59 China time is 15:59:59 UTC the same day.
    assert_eq!(
        clean.lines[1].traded_at.to_rfc3339(),
        format!("{}T15:59:59+00:00", day.format("%Y-%m-%d"))
    );

    sandbox.set_faults(Faults {
        wechat: WechatFaults {
            bill_malformed_line: 1,
            bill_totals_off: 1,
            ..Default::default()
        },
        ..Default::default()
    });
    let garbled = ready(&wechat, day).await;
    assert_eq!(garbled.lines.len(), 1);
    assert_eq!(garbled.malformed.len(), 1);
    assert_eq!(garbled.malformed[0].line_no, 2);
    assert!(garbled.malformed[0].reason.contains("应结订单金额"));
    assert_eq!(
        garbled.summary.unwrap().settlement_total,
        Fen::new(1637).unwrap()
    );
    assert!(!garbled.balances());
}

#[tokio::test]
async fn a_bill_of_a_hundred_thousand_lines_is_read_whole() {
    let sandbox = Sandbox::start(SandboxConfig::for_tests("http://127.0.0.1:9"))
        .await
        .unwrap();
    let day = china_today() - chrono::Days::new(1);
    let orders: Vec<sandbox::PaidOrder> = (0..100_000)
        .map(|n| sandbox::PaidOrder {
            out_trade_no: format!("ORDBULK{n:08}"),
            total_fee: 1 + n % 9_999,
            transaction_id: format!("4200001234{}{n:010}", day.format("%Y%m%d")),
            time_end: format!(
                "{}{:02}{:02}{:02}",
                day.format("%Y%m%d"),
                n / 3600 % 24,
                n / 60 % 60,
                n % 60
            ),
            openid: "o-bulk".into(),
        })
        .collect();
    let total: i64 = orders.iter().map(|o| o.total_fee).sum();
    assert_eq!(sandbox.seed_paid_orders(orders).unwrap(), 100_000);

    let started = std::time::Instant::now();
    let bill = ready(&wechat_pay(sandbox.wechat_url()), day).await;
    eprintln!("downloaded and read in {:?}", started.elapsed());
    assert_eq!(bill.lines.len(), 100_000);
    assert!(bill.balances());
    assert_eq!(
        bill.summary.unwrap().settlement_total,
        Fen::new(total).unwrap()
    );
}

//! Alerts reach a person through WeCom and e-mail, deduplicated and rate-limited, and a
//! channel that is down never holds up the money path.

use std::time::Duration;

use payment_api::alerts::{AlertKind, Delivery};
use serde_json::json;
use testkit::{CapturedLog, SmtpSink, System, SystemOptions, TestDb};

/// payment-api runs as a process: its alert rounds are counted for this test alone.
fn alerting(max_per_minute: u32) -> SystemOptions {
    SystemOptions {
        unitel_timeout_ms: 500,
        overrides: vec![
            ("ALERT_INTERVAL_MS", "100".into()),
            ("ALERT_MAX_PER_MINUTE", max_per_minute.to_string()),
            ("AUTO_REFUND_FAILED", "false".into()),
        ],
        api_process: true,
        ..Default::default()
    }
}

async fn with_channels(system: &mut System, sink: &SmtpSink) {
    let wecom = format!(
        "{}/cgi-bin/webhook/send?key=ops-group",
        system.sandbox.wechat_url()
    );
    system
        .restart_api(&[
            ("ALERT_WECOM_WEBHOOK_URL", wecom.as_str()),
            ("ALERT_SMTP_URL", sink.url().as_str()),
            ("ALERT_EMAIL_TO", "ops@elife.test, oncall@elife.test"),
        ])
        .await;
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn unknown_and_failed_top_ups_and_forgeries_reach_wecom_and_email() {
    let mut system = System::start(alerting(100)).await;
    let sink = SmtpSink::start().await;
    with_channels(&mut system, &sink).await;

    let (unknown, outcome) = system
        .top_up_under(
            "o-alert",
            sandbox::UnitelFaults {
                timeout_after_credit: 1,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(outcome, "unknown");
    let (failed, outcome) = system
        .top_up_under(
            "o-alert",
            sandbox::UnitelFaults {
                fail_next: 1,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(outcome, "failed");
    // A forged callback, twice: one alert, two occurrences.
    let forged = json!({"returnCode": "SUCCESS", "resultCode": "SUCCESS", "subMchId": "9999999999",
                        "totalFee": 1136, "transactionId": "4200000000000000000000000000", "outTradeNo": unknown});
    for _ in 0..2 {
        system
            .anonymous()
            .post_raw(
                &format!("/payment/callback/{unknown}"),
                &[("content-type", "application/json")],
                forged.to_string(),
            )
            .await;
    }

    let wecom_has = |text: &str| {
        system
            .sandbox
            .wecom_messages()
            .iter()
            .any(|m| m.content.contains(text))
    };
    eventually("unknown top-up on WeCom", || {
        wecom_has(&format!("recharge_unknown {unknown}"))
    })
    .await;
    eventually("failed top-up on WeCom", || {
        wecom_has(&format!("recharge_failed {failed}"))
    })
    .await;
    eventually("forged callback on WeCom", || wecom_has("callback_anomaly")).await;
    eventually("e-mails", || sink.received().len() >= 3).await;
    let mail = sink
        .received()
        .into_iter()
        .find(|m| m.data.contains(&unknown))
        .expect("mail about the unknown order");
    assert!(
        mail.data
            .contains("Subject: [eLife top-up] recharge_unknown"),
        "{}",
        mail.data
    );
    assert_eq!(mail.to.len(), 2);
    assert!(system
        .sandbox
        .wecom_messages()
        .iter()
        .all(|m| m.key == "ops-group"));

    // The two forgeries may be read in different rounds (a round reads only below the
    // oldest transaction still running): the second is counted after the alert went out.
    system
        .wait_for_count(
            "SELECT count(*) FROM alerts WHERE kind = 'callback_anomaly' AND occurrences = 2",
            1,
            Duration::from_secs(20),
        )
        .await;
    let anomaly_alerts: Vec<(i32,)> =
        sqlx::query_as("SELECT occurrences FROM alerts WHERE kind = 'callback_anomaly'")
            .fetch_all(&system.db.pool)
            .await
            .unwrap();
    assert_eq!(anomaly_alerts, [(2,)], "deduplicated");
    system.shutdown().await;
}

#[tokio::test]
async fn a_dead_channel_delays_alerts_never_top_ups_and_the_rate_is_limited() {
    let mut system = System::start(alerting(2)).await;
    let sink = SmtpSink::start().await;
    with_channels(&mut system, &sink).await;
    system.sandbox.set_faults(sandbox::Faults {
        wecom: sandbox::WecomFaults { down: true },
        unitel: sandbox::UnitelFaults {
            fail_next: 3,
            ..Default::default()
        },
        ..Default::default()
    });
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(
            system
                .order_and_pay("o-dead-channel", "88616600", "voice", "SD5000")
                .await,
        );
    }
    for order in &orders {
        assert_eq!(
            system
                .wait_for_outcome(order, Duration::from_secs(20))
                .await,
            "failed"
        );
    }
    // Top-ups were not held up. E-mail went out for two alerts — the minute's budget —
    // and WeCom, being down, for none.
    eventually("two e-mails", || sink.received().len() == 2).await;
    // Rounds that found the third alert due and held it back.
    system.api_metrics().wait_for_rounds("alerts", 2).await;
    assert_eq!(
        sink.received().len(),
        2,
        "at most ALERT_MAX_PER_MINUTE alerts a minute"
    );
    assert!(system.sandbox.wecom_messages().is_empty());
    let errors: i64 =
        sqlx::query_scalar("SELECT count(*) FROM alerts WHERE last_error LIKE 'wecom:%'")
            .fetch_one(&system.db.pool)
            .await
            .unwrap();
    assert!(errors >= 1, "the failure is recorded for a person");

    // WeCom comes back. Each minute (made to pass here) delivers two more: nothing is lost.
    system.sandbox.set_faults(sandbox::Faults::default());
    let a_minute_passes = || async {
        sqlx::query("UPDATE alerts SET delivered_at = delivered_at - interval '2 minutes', next_attempt_at = now()")
            .execute(&system.db.pool)
            .await
            .unwrap();
    };
    a_minute_passes().await;
    eventually("two on WeCom", || {
        system.sandbox.wecom_messages().len() == 2
    })
    .await;
    system.api_metrics().wait_for_rounds("alerts", 2).await;
    assert_eq!(
        system.sandbox.wecom_messages().len(),
        2,
        "the limit holds after an outage too"
    );
    a_minute_passes().await;
    eventually("all three on WeCom", || {
        system.sandbox.wecom_messages().len() == 3
    })
    .await;
    eventually("all three by e-mail", || sink.received().len() == 3).await;
    for order in &orders {
        assert!(system
            .sandbox
            .wecom_messages()
            .iter()
            .any(|m| m.content.contains(order.as_str())));
    }
    system.shutdown().await;
}

#[tokio::test]
async fn the_webhook_key_and_the_smtp_password_reach_neither_the_alert_nor_the_log() {
    const KEY: &str = "wecom-key-5d41402abc4b2a76";
    const PASSWORD: &str = "smtp-password-7d793037a076";
    let log = CapturedLog::default();
    let _guard = log.install();
    // payment-api in this process, so that what it logs is captured here.
    let mut system = System::start(SystemOptions {
        api_process: false,
        ..alerting(100)
    })
    .await;
    // Nothing listens there any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("http://127.0.0.1:{closed}/cgi-bin/webhook/send?key={KEY}");
    let smtp = format!("smtp://alerts:{PASSWORD}@127.0.0.1:{closed}");
    system
        .restart_api(&[
            ("ALERT_WECOM_WEBHOOK_URL", unreachable.as_str()),
            ("ALERT_SMTP_URL", smtp.as_str()),
            ("ALERT_EMAIL_TO", "ops@elife.test"),
        ])
        .await;
    let forged = json!({"returnCode": "SUCCESS", "resultCode": "SUCCESS", "subMchId": "9999999999",
                        "totalFee": 1136, "transactionId": "4200000000000000000000000009",
                        "outTradeNo": "ORDNOSUCHORDER0003"});
    system
        .anonymous()
        .post_raw(
            "/payment/callback/ORDNOSUCHORDER0003",
            &[("content-type", "application/json")],
            forged.to_string(),
        )
        .await;
    let failed_delivery = "SELECT count(*) FROM alerts WHERE last_error LIKE 'wecom: %' AND last_error LIKE '%email: %'";
    system
        .wait_for_count(failed_delivery, 1, Duration::from_secs(20))
        .await;

    // A webhook that answers with a failure: the same.
    system.sandbox.set_faults(sandbox::Faults {
        wecom: sandbox::WecomFaults { down: true },
        ..Default::default()
    });
    let failing = format!(
        "{}/cgi-bin/webhook/send?key={KEY}",
        system.sandbox.wechat_url()
    );
    system
        .restart_api(&[
            ("ALERT_WECOM_WEBHOOK_URL", failing.as_str()),
            ("ALERT_SMTP_URL", smtp.as_str()),
            ("ALERT_EMAIL_TO", "ops@elife.test"),
        ])
        .await;
    sqlx::query("UPDATE alerts SET last_error = NULL, next_attempt_at = now()")
        .execute(&system.db.pool)
        .await
        .unwrap();
    system
        .wait_for_count(
            "SELECT count(*) FROM alerts WHERE last_error LIKE 'wecom: HTTP status server error%'",
            1,
            Duration::from_secs(20),
        )
        .await;
    eventually("the failure is logged", || {
        log.text().matches("alert not delivered yet").count() >= 2
    })
    .await;

    let errors: Vec<String> =
        sqlx::query_scalar("SELECT last_error FROM alerts WHERE last_error IS NOT NULL")
            .fetch_all(&system.db.pool)
            .await
            .unwrap();
    assert!(!errors.is_empty());
    let logged = log.text();
    let mut leaks = Vec::new();
    for secret in [KEY, PASSWORD] {
        for error in errors.iter().filter(|e| e.contains(secret)) {
            leaks.push(format!("{secret} in alerts.last_error: {error}"));
        }
        for line in logged.lines().filter(|l| l.contains(secret)) {
            leaks.push(format!("{secret} in the log: {line}"));
        }
    }
    assert!(leaks.is_empty(), "{leaks:#?}");
    system.shutdown().await;
}

#[tokio::test]
async fn the_table_takes_only_the_kinds_and_delivery_states_the_code_knows() {
    let db = TestDb::create().await;
    let insert = |kind: &str, status: &str| {
        sqlx::query(
            "INSERT INTO alerts (kind, dedupe_key, message, wecom_status) VALUES ($1, $2, 'm', $3)",
        )
        .bind(kind.to_owned())
        .bind(format!("{kind}:{status}"))
        .bind(status.to_owned())
        .execute(&db.pool)
    };
    for kind in AlertKind::ALL {
        for status in Delivery::ALL {
            insert(kind.as_str(), status.as_str())
                .await
                .unwrap_or_else(|e| panic!("{kind} {status}: {e}"));
        }
    }
    assert!(
        insert("recharge_lost", "pending").await.is_err(),
        "an unknown kind"
    );
    assert!(
        insert("recharge_unknown", "delivered").await.is_err(),
        "an unknown status"
    );
}

#[tokio::test]
async fn every_line_an_alert_round_logs_names_its_job() {
    let log = CapturedLog::default();
    let _guard = log.install();
    // In this process, where its log is captured.
    let mut system = System::start(SystemOptions {
        api_process: false,
        ..alerting(100)
    })
    .await;
    system.sandbox.set_faults(sandbox::Faults {
        wecom: sandbox::WecomFaults { down: true },
        ..Default::default()
    });
    let failing = format!(
        "{}/cgi-bin/webhook/send?key=ops-group",
        system.sandbox.wechat_url()
    );
    system
        .restart_api(&[("ALERT_WECOM_WEBHOOK_URL", failing.as_str())])
        .await;
    let forged = json!({"returnCode": "SUCCESS", "resultCode": "SUCCESS", "subMchId": "9999999999",
                        "totalFee": 1136, "transactionId": "4200000000000000000000000011",
                        "outTradeNo": "ORDNOSUCHORDER0011"});
    system
        .anonymous()
        .post_raw(
            "/payment/callback/ORDNOSUCHORDER0011",
            &[("content-type", "application/json")],
            forged.to_string(),
        )
        .await;
    eventually("a failed delivery is logged", || {
        log.text().contains("alert not delivered yet")
    })
    .await;
    let text = log.text();
    let unnamed: Vec<_> = text
        .lines()
        .filter(|line| line.contains("alert not delivered yet"))
        .filter(|line| !line.contains("round{job=\"alerts\"}"))
        .collect();
    assert!(unnamed.is_empty(), "{unnamed:#?}");
    system.shutdown().await;
}

//! The benchmark playing WeChat Pay for direct mode's notifications
//! ([`testkit::wechat_pay`]); the sandbox still answers payment-api's queries.
//!
//! Also the cost of checking one: `NotificationVerifier::verify` in process, over
//! notifications that all differ, so no cache or branch predictor sees the same one twice.

use std::time::Instant;

use chrono::Utc;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
pub use testkit::wechat_pay::{Notification, WechatPay, PUBLIC_KEY_ID};

use crate::measure::Samples;

/// A paid transaction as WeChat Pay describes it, the n-th of a run: every one different.
pub fn sample_transaction(n: usize) -> Value {
    json!({
        "mchid": testkit::MCH_ID, "appid": "wx0000000000000000",
        "out_trade_no": format!("ORD{:013}BENCH{:03}", 1_700_000_000_000u64 + n as u64, n % 1000),
        "transaction_id": format!("42000{:023}", n),
        "trade_type": "JSAPI", "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
        "bank_type": "OTHERS", "attach": format!("{:032x}", n),
        "success_time": "2026-12-04T10:34:56+08:00",
        "payer": {"openid": format!("bench-customer-{}", n % 500)},
        "amount": {"total": 5000, "payer_total": 5000, "currency": "CNY", "payer_currency": "CNY"},
    })
}

/// Any 32 characters: what verification costs does not depend on them.
const MEASURED_API_V3_KEY: &str = "Mz7qR2vK9pW4tY8nB3xC6fH1jL5dG0sA";

/// What verifying and decrypting one notification costs payment-api: `count` distinct
/// notifications, each verified once, timed one by one. Each must verify.
pub fn verify_cost(count: usize) -> anyhow::Result<Samples> {
    let wechat_pay = WechatPay::generate(MEASURED_API_V3_KEY)?;
    let verifier = wechat_pay.verifier()?;
    let notifications: Vec<(HeaderMap, Vec<u8>)> = (0..count)
        .map(|n| {
            let notification = wechat_pay.notification(&sample_transaction(n));
            (notification.header_map(), notification.body)
        })
        .collect();
    let now = Utc::now();
    // One untimed: the verifier's first call parses the key.
    if let Some((headers, body)) = notifications.first() {
        verifier.verify(headers, body, now)?;
    }
    let mut samples = Samples::default();
    for (headers, body) in &notifications {
        let started = Instant::now();
        let verified = verifier.verify(headers, body, now);
        samples.push(started.elapsed());
        anyhow::ensure!(
            verified?.event_type == "TRANSACTION.SUCCESS",
            "a notification decrypted to something else"
        );
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z";

    #[test]
    fn payment_apis_verifier_takes_the_notifications_and_reads_the_transaction_back() {
        let wechat_pay = WechatPay::generate(KEY).unwrap();
        let transaction = sample_transaction(7);
        let notification = wechat_pay.notification(&transaction);
        let verified = wechat_pay
            .verifier()
            .unwrap()
            .verify(&notification.header_map(), &notification.body, Utc::now())
            .unwrap();
        assert_eq!(verified.plaintext, transaction);
        assert_eq!(verified.serial, PUBLIC_KEY_ID);
    }

    #[test]
    fn each_notification_has_fresh_nonces_and_a_signature_over_its_own_bytes() {
        let wechat_pay = WechatPay::generate(KEY).unwrap();
        let transaction = sample_transaction(1);
        let (first, second) = (
            wechat_pay.notification(&transaction),
            wechat_pay.notification(&transaction),
        );
        assert_ne!(first.headers[1], second.headers[1], "signature nonce");
        assert_ne!(first.body, second.body, "resource nonce and ciphertext");
        let mut tampered = first.body.clone();
        let at = tampered.iter().position(|b| *b == b'T').unwrap();
        tampered[at] = b'X';
        let refused =
            wechat_pay
                .verifier()
                .unwrap()
                .verify(&first.header_map(), &tampered, Utc::now());
        assert!(refused.is_err());
    }

    #[test]
    fn the_verify_measurement_times_every_notification() {
        let samples = verify_cost(5).unwrap();
        assert_eq!(samples.len(), 5);
        assert!(samples.percentile(50.0) > std::time::Duration::ZERO);
    }
}

//! The benchmark playing WeChat Pay for direct mode's notifications: a WeChat Pay key pair
//! of its own (payment-api is given its public half as `WECHAT_PAY_PUBLIC_KEY_FILE`), each
//! notification encrypted under the merchant's APIv3 key and signed as WeChat Pay signs,
//! with fresh nonces every time. The sandbox still answers payment-api's queries.
//!
//! Also the cost of checking one: `NotificationVerifier::verify` in process, over
//! notifications that all differ, so no cache or branch predictor sees the same one twice.

use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{FixedOffset, Utc};
use payment_api::wechat::v3::{ApiV3Key, NotificationVerifier, PlatformKeys};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

use crate::measure::Samples;

/// Shaped as WeChat Pay's ids are (`PUB_KEY_ID_` and digits).
pub const PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0117127347622026120400118200000001";

/// A signed, encrypted `TRANSACTION.SUCCESS`: the headers and the exact bytes to post.
pub struct Notification {
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Notification {
    pub fn header_map(&self) -> HeaderMap {
        self.headers
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_str(value).expect("header values are ASCII"),
                )
            })
            .collect()
    }
}

pub struct WechatPay {
    pair: RsaKeyPair,
    api_v3_key: LessSafeKey,
    api_v3_key_text: String,
    random: SystemRandom,
}

impl WechatPay {
    /// A new WeChat Pay key pair; `api_v3_key` is the merchant's (32 ASCII characters).
    pub fn generate(api_v3_key: &str) -> anyhow::Result<WechatPay> {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|_| anyhow::anyhow!("generating an RSA key"))?;
        let key = UnboundKey::new(&AES_256_GCM, api_v3_key.as_bytes())
            .map_err(|_| anyhow::anyhow!("the APIv3 key is not 32 bytes"))?;
        Ok(WechatPay {
            pair,
            api_v3_key: LessSafeKey::new(key),
            api_v3_key_text: api_v3_key.to_owned(),
            random: SystemRandom::new(),
        })
    }

    pub fn public_key_pem(&self) -> anyhow::Result<String> {
        let der = AsDer::<PublicKeyX509Der>::as_der(self.pair.public_key())
            .map_err(|_| anyhow::anyhow!("encoding the public key"))?;
        let body = BASE64.encode(der.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        Ok(format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        ))
    }

    /// Letters and digits, as WeChat Pay's nonces are.
    fn nonce(&self, length: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut bytes = vec![0u8; length];
        self.random.fill(&mut bytes).expect("system randomness");
        bytes
            .iter()
            .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
            .collect()
    }

    /// `TRANSACTION.SUCCESS` for `transaction` (the plaintext, as WeChat Pay's query
    /// answers it), sent now: a fresh resource nonce and a fresh signature nonce.
    pub fn notification(&self, transaction: &Value) -> Notification {
        let resource_nonce = self.nonce(12);
        let mut sealed = transaction.to_string().into_bytes();
        self.api_v3_key
            .seal_in_place_append_tag(
                Nonce::try_assume_unique_for_key(resource_nonce.as_bytes())
                    .expect("a 12-byte nonce"),
                Aad::from(b"transaction"),
                &mut sealed,
            )
            .expect("AES-256-GCM sealing");
        let now = Utc::now();
        let china = now.with_timezone(&FixedOffset::east_opt(8 * 3600).expect("UTC+8"));
        let id = self.nonce(32).to_ascii_lowercase();
        let body = serde_json::to_vec(&json!({
            "id": format!("{}-{}-{}-{}-{}", &id[..8], &id[8..12], &id[12..16], &id[16..20], &id[20..]),
            "create_time": china.format("%Y-%m-%dT%H:%M:%S+08:00").to_string(),
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": {
                "original_type": "transaction",
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": BASE64.encode(&sealed),
                "associated_data": "transaction",
                "nonce": resource_nonce,
            },
        }))
        .expect("JSON");
        let timestamp = now.timestamp().to_string();
        let nonce = self.nonce(32);
        let mut message = format!("{timestamp}\n{nonce}\n").into_bytes();
        message.extend_from_slice(&body);
        message.push(b'\n');
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &self.random, &message, &mut signature)
            .expect("RSA signing with a generated key");
        Notification {
            headers: vec![
                ("wechatpay-timestamp", timestamp),
                ("wechatpay-nonce", nonce),
                ("wechatpay-signature", BASE64.encode(&signature)),
                ("wechatpay-serial", PUBLIC_KEY_ID.to_owned()),
                (
                    "wechatpay-signature-type",
                    "WECHATPAY2-SHA256-RSA2048".to_owned(),
                ),
            ],
            body,
        }
    }

    /// payment-api's verifier as direct mode configures it: this key under its id, and
    /// the APIv3 key.
    pub fn verifier(&self) -> anyhow::Result<NotificationVerifier> {
        let mut keys = PlatformKeys::default();
        keys.add_public_key(PUBLIC_KEY_ID, &self.public_key_pem()?)
            .map_err(|reason| anyhow::anyhow!("the public key: {reason}"))?;
        let api_v3_key = ApiV3Key::new(&self.api_v3_key_text)
            .map_err(|reason| anyhow::anyhow!("the APIv3 key: {reason}"))?;
        Ok(NotificationVerifier::new(
            Arc::new(keys),
            Arc::new(api_v3_key),
        ))
    }
}

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

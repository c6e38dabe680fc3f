//! WeChat Pay's side of direct mode's notifications, for tests and the benchmark: a
//! WeChat Pay key pair of its own (payment-api is given its public half as
//! `WECHAT_PAY_PUBLIC_KEY_FILE`, or not, for a forgery), each notification encrypted under
//! the merchant's APIv3 key and signed as WeChat Pay signs, with fresh nonces every time.

use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, FixedOffset, Utc};
use payment_api::wechat::v3::{ApiV3Key, NotificationVerifier, PlatformKeys};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

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
        self.notification_signed_at(transaction, Utc::now())
    }

    /// The same, signed with `now` as its `Wechatpay-Timestamp` (an old one, say).
    pub fn notification_signed_at(&self, transaction: &Value, now: DateTime<Utc>) -> Notification {
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

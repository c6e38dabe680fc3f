//! Checking that a message comes from WeChat Pay: the `Wechatpay-*` headers, a timestamp
//! within five minutes, a key chosen by serial, RSA-SHA256 over the raw bytes received.
//! Answers and notifications are checked alike; a notification is then decrypted.

use std::sync::Arc;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::keys::{ApiV3Key, PlatformKeys, SignatureRejected};
use super::resource::{
    self, DecryptFailed, EncryptedResource, RefundResource, TransactionResource,
};

/// How far WeChat's clock may be from ours (its documented 5 minutes).
pub const MAX_SKEW_SECONDS: i64 = 300;

pub const TIMESTAMP: &str = "wechatpay-timestamp";
pub const NONCE: &str = "wechatpay-nonce";
pub const SIGNATURE: &str = "wechatpay-signature";
pub const SERIAL: &str = "wechatpay-serial";

/// Why a notification (or an answer) was not accepted: each its own variant, for the
/// anomaly record. Display names what failed and never prints a key or a plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    #[error("header {0} missing")]
    MissingHeader(&'static str),
    #[error("Wechatpay-Timestamp is not a number of seconds")]
    BadTimestamp,
    #[error(
        "Wechatpay-Timestamp is {skew_seconds} s from our clock (at most {MAX_SKEW_SECONDS} s)"
    )]
    Stale { skew_seconds: i64 },
    #[error("Wechatpay-Serial {0:?} is not a key we hold")]
    UnknownSerial(String),
    #[error("a WECHATPAY/SIGNTEST/ probe signature")]
    SignatureProbe,
    #[error("the signature does not verify over the body received")]
    BadSignature,
    #[error("the body is not a notification: {0}")]
    Malformed(String),
    #[error("resource algorithm {0:?} is not AEAD_AES_256_GCM")]
    UnsupportedAlgorithm(String),
    #[error("the resource ciphertext is not base64 of ciphertext and tag")]
    BadCiphertext,
    #[error("the resource does not decrypt (wrong APIv3 key, or altered)")]
    Undecryptable,
    #[error("the decrypted resource is not what was expected: {0}")]
    BadResource(String),
}

/// The signed headers of a verified message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub serial: String,
    pub nonce: String,
    pub timestamp: DateTime<Utc>,
}

/// Verifies `body` (the raw bytes received) against its `Wechatpay-*` headers.
pub fn check_signature(
    keys: &PlatformKeys,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Signed, NoticeError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(NoticeError::MissingHeader(name))
    };
    let (timestamp, nonce, signature, serial) = (
        header(TIMESTAMP)?,
        header(NONCE)?,
        header(SIGNATURE)?,
        header(SERIAL)?,
    );
    let seconds: i64 = timestamp.parse().map_err(|_| NoticeError::BadTimestamp)?;
    let signed_at = DateTime::from_timestamp(seconds, 0).ok_or(NoticeError::BadTimestamp)?;
    let skew_seconds = (now - signed_at).num_seconds();
    if skew_seconds.abs() > MAX_SKEW_SECONDS {
        return Err(NoticeError::Stale { skew_seconds });
    }
    // Certificate serials are hex, compared upper-case; public key ids are upper-case.
    let serial = serial.to_ascii_uppercase();
    let mut message = format!("{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    keys.verify(&serial, &message, signature)
        .map_err(|rejected| match rejected {
            SignatureRejected::UnknownSerial(serial) => NoticeError::UnknownSerial(serial),
            SignatureRejected::Probe => NoticeError::SignatureProbe,
            SignatureRejected::Invalid => NoticeError::BadSignature,
        })?;
    Ok(Signed {
        serial,
        nonce: nonce.to_owned(),
        timestamp: signed_at,
    })
}

/// A notification that WeChat Pay signed and that decrypted under our APIv3 key. Replays
/// (a nonce seen before) are for the caller to refuse, against the database.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedNotice {
    pub id: String,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, `REFUND.ABNORMAL`, `REFUND.CLOSED`.
    pub event_type: String,
    /// `Wechatpay-Nonce` and `Wechatpay-Timestamp`, signed with the body.
    pub nonce: String,
    pub timestamp: DateTime<Utc>,
    /// The key that verified it (`PUB_KEY_ID_…` or a certificate serial).
    pub serial: String,
    pub plaintext: Value,
}

impl VerifiedNotice {
    pub fn transaction(&self) -> Result<TransactionResource, NoticeError> {
        serde_json::from_value(self.plaintext.clone())
            .map_err(|e| NoticeError::BadResource(e.to_string()))
    }

    pub fn refund(&self) -> Result<RefundResource, NoticeError> {
        serde_json::from_value(self.plaintext.clone())
            .map_err(|e| NoticeError::BadResource(e.to_string()))
    }
}

#[derive(Deserialize)]
struct Envelope {
    id: String,
    event_type: String,
    resource: EncryptedResource,
}

/// Checks notifications with the same keys as the client's answers.
#[derive(Debug, Clone)]
pub struct NotificationVerifier {
    keys: Arc<PlatformKeys>,
    api_v3_key: Arc<ApiV3Key>,
}

impl NotificationVerifier {
    pub fn new(keys: Arc<PlatformKeys>, api_v3_key: Arc<ApiV3Key>) -> Self {
        NotificationVerifier { keys, api_v3_key }
    }

    /// In order: headers, timestamp, key by serial, signature over the raw `body`, then
    /// the envelope and the AES-256-GCM resource. Nothing is read from a body before its
    /// signature verifies.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<VerifiedNotice, NoticeError> {
        let signed = check_signature(&self.keys, headers, body, now)?;
        // serde's message names the field or position, never a value of ours.
        let envelope: Envelope =
            serde_json::from_slice(body).map_err(|e| NoticeError::Malformed(e.to_string()))?;
        if envelope.resource.algorithm != resource::ALGORITHM {
            return Err(NoticeError::UnsupportedAlgorithm(
                envelope.resource.algorithm,
            ));
        }
        let plain =
            resource::decrypt(&self.api_v3_key, &envelope.resource).map_err(|e| match e {
                DecryptFailed::Encoding => NoticeError::BadCiphertext,
                DecryptFailed::Tag => NoticeError::Undecryptable,
            })?;
        let plaintext: Value = serde_json::from_slice(&plain).map_err(|e| {
            NoticeError::BadResource(format!(
                "not JSON ({:?} at column {})",
                e.classify(),
                e.column()
            ))
        })?;
        Ok(VerifiedNotice {
            id: envelope.id,
            event_type: envelope.event_type,
            nonce: signed.nonce,
            timestamp: signed.timestamp,
            serial: signed.serial,
            plaintext,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::v3::resource::encrypt;
    use crate::wechat::v3::test_keys::*;
    use axum::http::HeaderValue;
    use chrono::Duration;
    use serde_json::json;

    const API_V3_KEY: &str = "0123456789abcdefghijABCDEFGHIJkl";
    const PUB_KEY_ID: &str = "PUB_KEY_ID_0111111111112024121000182208000800";
    const CERT_SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";

    fn verifier() -> NotificationVerifier {
        let mut keys = PlatformKeys::default();
        keys.add_public_key(PUB_KEY_ID, &wechat().public_pem)
            .unwrap();
        NotificationVerifier::new(Arc::new(keys), Arc::new(ApiV3Key::new(API_V3_KEY).unwrap()))
    }

    fn transaction() -> Value {
        json!({
            "mchid": "1900000100", "appid": "wxd678efh567hg6787",
            "out_trade_no": "ORD1700000000000ABCDEFGH", "transaction_id": "4200000000000000",
            "trade_type": "JSAPI", "trade_state": "SUCCESS", "success_time": "2026-12-04T10:34:56+08:00",
            "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}, "attach": "a1",
            "amount": {"total": 2000, "payer_total": 2000, "currency": "CNY", "payer_currency": "CNY"}
        })
    }

    fn body_with(api_v3_key: &str, plain: &Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": "EV-2018022511223320873", "create_time": "2026-12-04T10:34:57+08:00",
            "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
            "resource": {
                "original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": encrypt(api_v3_key.as_bytes(), "pJzPEVj3TKtN", "transaction", plain.to_string().as_bytes()),
                "associated_data": "transaction", "nonce": "pJzPEVj3TKtN"
            }
        }))
        .unwrap()
    }

    fn headers(key: &TestKey, serial: &str, at: DateTime<Utc>, body: &[u8]) -> HeaderMap {
        let timestamp = at.timestamp().to_string();
        let mut message = format!("{timestamp}\nfdasfjihihihlkja484w\n").into_bytes();
        message.extend_from_slice(body);
        message.push(b'\n');
        let mut headers = HeaderMap::new();
        headers.insert(TIMESTAMP, HeaderValue::from_str(&timestamp).unwrap());
        headers.insert(NONCE, HeaderValue::from_static("fdasfjihihihlkja484w"));
        headers.insert(
            SIGNATURE,
            HeaderValue::from_str(&key.sign(&message)).unwrap(),
        );
        headers.insert(SERIAL, HeaderValue::from_str(serial).unwrap());
        headers.insert(
            "wechatpay-signature-type",
            HeaderValue::from_static("WECHATPAY2-SHA256-RSA2048"),
        );
        headers
    }

    #[test]
    fn a_genuine_notification_is_verified_and_decrypted() {
        let now = Utc::now();
        let body = body_with(API_V3_KEY, &transaction());
        let notice = verifier()
            .verify(&headers(wechat(), PUB_KEY_ID, now, &body), &body, now)
            .unwrap();
        assert_eq!(notice.event_type, "TRANSACTION.SUCCESS");
        assert_eq!(notice.id, "EV-2018022511223320873");
        assert_eq!(notice.nonce, "fdasfjihihihlkja484w");
        assert_eq!(notice.serial, PUB_KEY_ID);
        assert_eq!(notice.timestamp.timestamp(), now.timestamp());
        let t = notice.transaction().unwrap();
        assert_eq!(
            (t.out_trade_no.as_str(), t.amount.total),
            ("ORD1700000000000ABCDEFGH", 2000)
        );
        assert_eq!(t.payer_openid(), Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"));
        assert!(notice.refund().is_err());
    }

    #[test]
    fn any_one_byte_changed_fails_the_signature() {
        let now = Utc::now();
        let body = body_with(API_V3_KEY, &transaction());
        let headers = headers(wechat(), PUB_KEY_ID, now, &body);
        for i in (0..body.len()).step_by(7) {
            let mut altered = body.clone();
            altered[i] ^= 0x01;
            assert_eq!(
                verifier().verify(&headers, &altered, now),
                Err(NoticeError::BadSignature),
                "byte {i}"
            );
        }
        // Cut short in transit.
        assert_eq!(
            verifier().verify(&headers, &body[..body.len() - 1], now),
            Err(NoticeError::BadSignature)
        );
    }

    #[test]
    fn each_failure_has_its_own_error() {
        let now = Utc::now();
        let body = body_with(API_V3_KEY, &transaction());
        let v = verifier();

        let stale = now - Duration::minutes(6);
        assert_eq!(
            v.verify(&headers(wechat(), PUB_KEY_ID, stale, &body), &body, now),
            Err(NoticeError::Stale { skew_seconds: 360 })
        );
        let ahead = now + Duration::minutes(6);
        assert!(matches!(
            v.verify(&headers(wechat(), PUB_KEY_ID, ahead, &body), &body, now),
            Err(NoticeError::Stale { .. })
        ));
        // Within the window.
        v.verify(
            &headers(wechat(), PUB_KEY_ID, now - Duration::minutes(4), &body),
            &body,
            now,
        )
        .unwrap();

        assert_eq!(
            v.verify(
                &headers(wechat(), "PUB_KEY_ID_0999", now, &body),
                &body,
                now
            ),
            Err(NoticeError::UnknownSerial("PUB_KEY_ID_0999".into()))
        );

        let mut probe = headers(wechat(), PUB_KEY_ID, now, &body);
        let genuine = probe[SIGNATURE].to_str().unwrap().to_owned();
        probe.insert(
            SIGNATURE,
            HeaderValue::from_str(&format!("WECHATPAY/SIGNTEST/{genuine}")).unwrap(),
        );
        assert_eq!(
            v.verify(&probe, &body, now),
            Err(NoticeError::SignatureProbe)
        );

        // Signed by someone else under WeChat's serial.
        assert_eq!(
            v.verify(&headers(merchant(), PUB_KEY_ID, now, &body), &body, now),
            Err(NoticeError::BadSignature)
        );

        let wrong_key = body_with("0123456789abcdefghijABCDEFGHIJkL", &transaction());
        assert_eq!(
            v.verify(
                &headers(wechat(), PUB_KEY_ID, now, &wrong_key),
                &wrong_key,
                now
            ),
            Err(NoticeError::Undecryptable)
        );

        // Signed, but cut short before WeChat signed it: not a notification.
        let truncated = &body[..body.len() / 2];
        assert!(matches!(
            v.verify(
                &headers(wechat(), PUB_KEY_ID, now, truncated),
                truncated,
                now
            ),
            Err(NoticeError::Malformed(_))
        ));

        for name in [TIMESTAMP, NONCE, SIGNATURE, SERIAL] {
            let mut missing = headers(wechat(), PUB_KEY_ID, now, &body);
            missing.remove(name);
            assert_eq!(
                v.verify(&missing, &body, now),
                Err(NoticeError::MissingHeader(name))
            );
        }
        let mut bad_time = headers(wechat(), PUB_KEY_ID, now, &body);
        bad_time.insert(TIMESTAMP, HeaderValue::from_static("soon"));
        assert_eq!(
            v.verify(&bad_time, &body, now),
            Err(NoticeError::BadTimestamp)
        );

        let mut sm4: Value = serde_json::from_slice(&body).unwrap();
        sm4["resource"]["algorithm"] = json!("AEAD_SM4_GCM");
        let sm4 = serde_json::to_vec(&sm4).unwrap();
        assert_eq!(
            v.verify(&headers(wechat(), PUB_KEY_ID, now, &sm4), &sm4, now),
            Err(NoticeError::UnsupportedAlgorithm("AEAD_SM4_GCM".into()))
        );
    }

    #[test]
    fn public_key_and_certificates_are_both_accepted_chosen_by_serial() {
        let now = Utc::now();
        let old = generated();
        let mut keys = PlatformKeys::default();
        keys.add_public_key(PUB_KEY_ID, &wechat().public_pem)
            .unwrap();
        let serial = hex_bytes(CERT_SERIAL);
        keys.add_certificates(
            &certificate_pem(&old, &serial, now + Duration::days(365)),
            now,
        )
        .unwrap();
        let v =
            NotificationVerifier::new(Arc::new(keys), Arc::new(ApiV3Key::new(API_V3_KEY).unwrap()));
        let body = body_with(API_V3_KEY, &transaction());
        assert_eq!(
            v.verify(&headers(wechat(), PUB_KEY_ID, now, &body), &body, now)
                .unwrap()
                .serial,
            PUB_KEY_ID
        );
        assert_eq!(
            v.verify(&headers(&old, CERT_SERIAL, now, &body), &body, now)
                .unwrap()
                .serial,
            CERT_SERIAL
        );
        // A serial written in lower case is the same certificate.
        v.verify(
            &headers(&old, &CERT_SERIAL.to_lowercase(), now, &body),
            &body,
            now,
        )
        .unwrap();
        // Each serial its own key: the certificate's key under the public key's id fails.
        assert_eq!(
            v.verify(&headers(&old, PUB_KEY_ID, now, &body), &body, now),
            Err(NoticeError::BadSignature)
        );
        assert_eq!(
            v.verify(&headers(wechat(), CERT_SERIAL, now, &body), &body, now),
            Err(NoticeError::BadSignature)
        );
    }

    #[test]
    fn errors_print_no_secret() {
        let now = Utc::now();
        let body = body_with(API_V3_KEY, &transaction());
        let err = verifier()
            .verify(&headers(wechat(), PUB_KEY_ID, now, &body), &body[1..], now)
            .unwrap_err();
        let shown = format!("{err} {err:?} {:?}", verifier());
        assert!(
            !shown.contains(API_V3_KEY) && !shown.contains("oUpF8u"),
            "{shown}"
        );
    }

    fn hex_bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }
}

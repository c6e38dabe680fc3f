//! A notification's `resource`: AES-256-GCM under the APIv3 key, then the transaction or
//! refund it carries, read into our words.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use shared::order::{PaymentStatus, RefundStatus};

use super::keys::ApiV3Key;
use crate::wechat::states;

/// The one algorithm APIv3 uses for resources.
pub const ALGORITHM: &str = "AEAD_AES_256_GCM";

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EncryptedResource {
    pub algorithm: String,
    pub ciphertext: String,
    #[serde(default)]
    pub associated_data: String,
    pub nonce: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecryptFailed {
    /// Not base64, or shorter than the tag.
    Encoding,
    /// Tag mismatch: a wrong APIv3 key, an altered ciphertext, nonce or AAD.
    Tag,
}

/// Key, nonce and associated data are used as their text bytes, never base64-decoded;
/// the ciphertext is base64 with the 16-byte tag at its end.
pub(crate) fn decrypt(
    key: &ApiV3Key,
    resource: &EncryptedResource,
) -> Result<Vec<u8>, DecryptFailed> {
    let mut data = BASE64
        .decode(resource.ciphertext.trim())
        .map_err(|_| DecryptFailed::Encoding)?;
    if data.len() < AES_256_GCM.tag_len() {
        return Err(DecryptFailed::Encoding);
    }
    let nonce = Nonce::try_assume_unique_for_key(resource.nonce.as_bytes())
        .map_err(|_| DecryptFailed::Tag)?;
    let key = UnboundKey::new(&AES_256_GCM, key.bytes()).map_err(|_| DecryptFailed::Tag)?;
    let plain_len = LessSafeKey::new(key)
        .open_in_place(
            nonce,
            Aad::from(resource.associated_data.as_bytes()),
            &mut data,
        )
        .map_err(|_| DecryptFailed::Tag)?
        .len();
    data.truncate(plain_len);
    Ok(data)
}

/// The inverse of [`decrypt`], for tests that play WeChat.
#[cfg(test)]
pub(crate) fn encrypt(key: &[u8], nonce: &str, associated_data: &str, plain: &[u8]) -> String {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap());
    let mut data = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::try_assume_unique_for_key(nonce.as_bytes()).unwrap(),
        Aad::from(associated_data.as_bytes()),
        &mut data,
    )
    .unwrap();
    BASE64.encode(data)
}

/// A payment as the notification (and the order query) describes it. Merchant ids are
/// those of the form used: `mchid`/`appid` direct, `sp_*`/`sub_*` partner.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TransactionResource {
    pub out_trade_no: String,
    #[serde(default)]
    pub transaction_id: Option<String>,
    pub trade_state: String,
    #[serde(default, deserialize_with = "rfc3339")]
    pub success_time: Option<DateTime<Utc>>,
    pub amount: TransactionAmount,
    #[serde(default)]
    pub attach: Option<String>,
    #[serde(default)]
    pub mchid: Option<String>,
    #[serde(default)]
    pub appid: Option<String>,
    #[serde(default)]
    pub sp_mchid: Option<String>,
    #[serde(default)]
    pub sub_mchid: Option<String>,
    #[serde(default)]
    pub sp_appid: Option<String>,
    #[serde(default)]
    pub sub_appid: Option<String>,
    #[serde(default)]
    pub payer: Payer,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TransactionAmount {
    /// The order amount in fen.
    pub total: i64,
    /// What the customer paid, less than `total` when a coupon applied.
    #[serde(default)]
    pub payer_total: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Payer {
    #[serde(default)]
    pub openid: Option<String>,
    #[serde(default)]
    pub sub_openid: Option<String>,
    #[serde(default)]
    pub sp_openid: Option<String>,
}

impl TransactionResource {
    /// The trade state in our words (same vocabulary as v2's `queryorder`).
    pub fn status(&self) -> PaymentStatus {
        states::payment_status(&self.trade_state)
    }

    /// The customer's openid under the mini-program: `openid` direct, `sub_openid` partner.
    pub fn payer_openid(&self) -> Option<&str> {
        self.payer
            .openid
            .as_deref()
            .or(self.payer.sub_openid.as_deref())
    }
}

/// A refund as its notification (or query, which says `status`) describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RefundResource {
    pub out_trade_no: String,
    pub out_refund_no: String,
    #[serde(default)]
    pub refund_id: Option<String>,
    #[serde(alias = "status")]
    pub refund_status: String,
    #[serde(default, deserialize_with = "rfc3339")]
    pub success_time: Option<DateTime<Utc>>,
    pub amount: RefundAmount,
    #[serde(default)]
    pub mchid: Option<String>,
    #[serde(default)]
    pub sp_mchid: Option<String>,
    #[serde(default)]
    pub sub_mchid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RefundAmount {
    /// The order's amount in fen.
    pub total: i64,
    /// The refund's amount in fen.
    pub refund: i64,
}

impl RefundResource {
    pub fn status(&self) -> RefundStatus {
        refund_status(&self.refund_status)
    }
}

/// APIv3 refund `status`: `SUCCESS`; `CLOSED` (failed, a new refund number is needed) and
/// `ABNORMAL` (the money could not reach the account: v2's `CHANGE`, a person acts) are
/// failed; `PROCESSING` and anything unknown stay accepted and are asked about again.
pub(crate) fn refund_status(status: &str) -> RefundStatus {
    match status {
        "SUCCESS" => RefundStatus::Success,
        "CLOSED" | "ABNORMAL" => RefundStatus::Failed,
        _ => RefundStatus::Accepted,
    }
}

/// RFC 3339 (`2018-06-08T10:34:56+08:00`); an empty string is no time.
fn rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(text) if text.trim().is_empty() => Ok(None),
        Some(text) => DateTime::parse_from_rfc3339(text.trim())
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "0123456789abcdefghijABCDEFGHIJkl";

    fn resource(ciphertext: String, nonce: &str, aad: &str) -> EncryptedResource {
        EncryptedResource {
            algorithm: ALGORITHM.into(),
            ciphertext,
            associated_data: aad.into(),
            nonce: nonce.into(),
        }
    }

    #[test]
    fn decrypts_with_the_key_nonce_and_aad_as_text() {
        let key = ApiV3Key::new(KEY).unwrap();
        let sealed = encrypt(KEY.as_bytes(), "pJzPEVj3TKtN", "transaction", b"{\"a\":1}");
        assert_eq!(
            decrypt(
                &key,
                &resource(sealed.clone(), "pJzPEVj3TKtN", "transaction")
            )
            .unwrap(),
            b"{\"a\":1}"
        );
        assert_eq!(
            decrypt(
                &key,
                &resource(sealed.clone(), "pJzPEVj3TKtM", "transaction")
            ),
            Err(DecryptFailed::Tag)
        );
        assert_eq!(
            decrypt(&key, &resource(sealed.clone(), "pJzPEVj3TKtN", "refund")),
            Err(DecryptFailed::Tag)
        );
        let other = ApiV3Key::new("0123456789abcdefghijABCDEFGHIJkL").unwrap();
        assert_eq!(
            decrypt(&other, &resource(sealed, "pJzPEVj3TKtN", "transaction")),
            Err(DecryptFailed::Tag)
        );
        assert_eq!(
            decrypt(&key, &resource("AAAA".into(), "pJzPEVj3TKtN", "")),
            Err(DecryptFailed::Encoding)
        );
        assert_eq!(
            decrypt(&key, &resource("!!".into(), "pJzPEVj3TKtN", "")),
            Err(DecryptFailed::Encoding)
        );
    }

    #[test]
    fn a_partner_transaction_is_read() {
        let t: TransactionResource = serde_json::from_value(json!({
            "sp_appid": "wxsp", "sp_mchid": "1900000100", "sub_appid": "wxsub", "sub_mchid": "1900000109",
            "out_trade_no": "ORD1700000000000ABCDEFGH", "transaction_id": "4200000000000000",
            "trade_type": "JSAPI", "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
            "bank_type": "CMC", "attach": "a1", "success_time": "2018-06-08T10:34:56+08:00",
            "payer": {"sp_openid": "osp", "sub_openid": "osub"},
            "amount": {"total": 100, "payer_total": 90, "currency": "CNY", "payer_currency": "CNY"}
        }))
        .unwrap();
        assert_eq!(t.status(), PaymentStatus::Paid);
        assert_eq!(t.payer_openid(), Some("osub"));
        assert_eq!(t.amount.total, 100);
        assert_eq!(
            t.success_time.unwrap().to_rfc3339(),
            "2018-06-08T02:34:56+00:00"
        );
        assert_eq!(t.sub_mchid.as_deref(), Some("1900000109"));
    }

    #[test]
    fn a_refund_notice_and_a_refund_query_are_read_alike() {
        let notice: RefundResource = serde_json::from_value(json!({
            "mchid": "1900000100", "out_trade_no": "ORD1", "out_refund_no": "RFORD1",
            "refund_id": "50000000", "refund_status": "ABNORMAL",
            "amount": {"total": 999, "refund": 999, "payer_total": 999, "payer_refund": 999}
        }))
        .unwrap();
        assert_eq!(notice.status(), RefundStatus::Failed);
        let query: RefundResource = serde_json::from_value(json!({
            "out_trade_no": "ORD1", "out_refund_no": "RFORD1", "status": "PROCESSING",
            "success_time": "", "amount": {"total": 999, "refund": 500}
        }))
        .unwrap();
        assert_eq!(query.status(), RefundStatus::Accepted);
        assert_eq!(query.amount.refund, 500);
        assert_eq!(refund_status("SUCCESS"), RefundStatus::Success);
        assert_eq!(refund_status("CLOSED"), RefundStatus::Failed);
    }
}

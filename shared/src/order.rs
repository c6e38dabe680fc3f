//! Orders: their identifiers and the two state machines an order moves through.
//!
//! Payment: `unpaid → paid`, `unpaid → closed` (payment window over). Recharge, once paid:
//! `pending → processing` (claimed by a worker), then `success`, `failed` (Unitel answered
//! no) or `unknown` (the request may have reached Unitel and nobody knows what happened:
//! never re-sent automatically, resolved by reconciliation or a person).

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::text_enum::text_enum;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidValue {
    #[error("order number must be 6 to 32 characters of 0-9, A-Z, a-z, _ - | *")]
    OrderNumber,
    #[error("phone number must be 8 digits, not starting with 0")]
    Msisdn,
    #[error("openid must be 1 to 128 characters of letters, digits, _ and -")]
    OpenId,
    #[error("rechargeType must be one of voice, data, postpaid")]
    RechargeType,
    #[error("productOperator must be unitel")]
    Operator,
    #[error("unknown {kind} status {value:?}")]
    Status { kind: &'static str, value: String },
}

/// Our order number, also WeChat's `out_trade_no` and Unitel's `journal_id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrderNumber(String);

impl OrderNumber {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '|' | '*');
        if (6..=32).contains(&value.len()) && value.chars().all(valid_char) {
            Ok(OrderNumber(value.to_owned()))
        } else {
            Err(InvalidValue::OrderNumber)
        }
    }

    /// `ORD` + milliseconds since the epoch + 8 random characters: 24 characters, unique
    /// without coordination and sortable by creation time.
    pub fn generate() -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut rng = rand::rng();
        let suffix: String = (0..8)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        OrderNumber(format!(
            "ORD{}{}",
            chrono::Utc::now().timestamp_millis(),
            suffix
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrderNumber {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        OrderNumber::parse(&value)
    }
}

impl From<OrderNumber> for String {
    fn from(value: OrderNumber) -> Self {
        value.0
    }
}

impl fmt::Display for OrderNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Mongolian mobile number as Unitel wants it: 8 digits, no country code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Msisdn(String);

impl Msisdn {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let value = value.trim();
        if value.len() == 8 && value.bytes().all(|b| b.is_ascii_digit()) && !value.starts_with('0')
        {
            Ok(Msisdn(value.to_owned()))
        } else {
            Err(InvalidValue::Msisdn)
        }
    }

    /// A number as the replaced system accepted it (any text, kept as typed): spaces,
    /// dashes and a `+976` / `976` country code are dropped; what remains must be an
    /// 8-digit Unitel number.
    pub fn from_written(text: &str) -> Option<Self> {
        let digits: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        let national = digits
            .strip_prefix("+976")
            .or_else(|| digits.strip_prefix("976").filter(|rest| rest.len() == 8))
            .unwrap_or(&digits);
        Msisdn::parse(national).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Msisdn {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Msisdn::parse(&value)
    }
}

impl From<Msisdn> for String {
    fn from(value: Msisdn) -> Self {
        value.0
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A WeChat user's openid within our mini-program, as the cloud-hosting gateway injects it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpenId(String);

impl OpenId {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let valid = (1..=128).contains(&value.len())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if valid {
            Ok(OpenId(value.to_owned()))
        } else {
            Err(InvalidValue::OpenId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The operator whose numbers we top up. Only Unitel today; the field exists because the
/// mini-program sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    Unitel,
}

impl Operator {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        if value.eq_ignore_ascii_case("unitel") {
            Ok(Operator::Unitel)
        } else {
            Err(InvalidValue::Operator)
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Unitel => "unitel",
        }
    }
}

/// What a top-up buys, which decides the Unitel call that fulfils it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RechargeType {
    /// A voice/unit card (`/service/recharge`).
    Voice,
    /// A data package (`/service/datapackage`).
    Data,
    /// A postpaid bill payment (`/service/payment`).
    Postpaid,
}

impl RechargeType {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        match value.to_ascii_lowercase().as_str() {
            "voice" => Ok(RechargeType::Voice),
            "data" => Ok(RechargeType::Data),
            "postpaid" => Ok(RechargeType::Postpaid),
            _ => Err(InvalidValue::RechargeType),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RechargeType::Voice => "voice",
            RechargeType::Data => "data",
            RechargeType::Postpaid => "postpaid",
        }
    }
}

/// Columns that hold these values are read back through the same parsers as the edge.
macro_rules! parsed_column {
    ($($type:ty),+) => {$(
        impl $type {
            fn from_column(value: &str) -> Result<Self, InvalidValue> {
                <$type>::parse(value)
            }
        }
        crate::db::text_column!($type);
    )+};
}

parsed_column!(OrderNumber, Msisdn, OpenId, Operator, RechargeType);

text_enum!(
    /// Where the customer's money is.
    PaymentStatus, "payment" {
        Unpaid => "unpaid",
        Paid => "paid",
        Closed => "closed",
    }
);

text_enum!(
    /// Where the top-up is, once the order is paid.
    RechargeStatus, "recharge" {
        Pending => "pending",
        Processing => "processing",
        Success => "success",
        Failed => "failed",
        Unknown => "unknown",
    }
);

text_enum!(
    /// Where the money going back to the customer is: asked of WeChat (`requested`), taken
    /// by WeChat with the outcome pending (`accepted`), returned (`success`, confirmed by
    /// `queryrefund`), or refused or closed by WeChat (`failed`: a person must act).
    RefundStatus, "refund" {
        Requested => "requested",
        Accepted => "accepted",
        Success => "success",
        Failed => "failed",
    }
);

text_enum!(
    /// How WeChat Pay was reached for an order: through WeChat Cloud Hosting's open
    /// interface (`cloud`), or APIv3 with the merchant's own keys as a direct merchant
    /// (`direct`) or through a service provider (`partner`). Whether one channel can query
    /// or refund what another created is not documented, so every call about an order goes
    /// through the channel that created it.
    PayChannel, "pay channel" {
        Cloud => "cloud",
        Direct => "direct",
        Partner => "partner",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_order_numbers_are_valid_and_distinct() {
        let a = OrderNumber::generate();
        let b = OrderNumber::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 24);
        assert!(a.as_str().starts_with("ORD"));
        assert_eq!(OrderNumber::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn order_numbers_follow_wechat_out_trade_no_rules() {
        assert!(OrderNumber::parse("ORD1728546789123abcd").is_ok());
        assert!(OrderNumber::parse("a_b-c|d*").is_ok());
        assert!(OrderNumber::parse("short").is_err());
        assert!(OrderNumber::parse(&"x".repeat(33)).is_err());
        assert!(OrderNumber::parse("ORD12345 67").is_err());
        assert!(OrderNumber::parse("ORD123'; --").is_err());
        assert!(serde_json::from_str::<OrderNumber>("\"bad one\"").is_err());
    }

    #[test]
    fn msisdn_is_eight_digits_not_starting_with_zero() {
        assert_eq!(Msisdn::parse(" 88616609 ").unwrap().as_str(), "88616609");
        for bad in [
            "8861660",
            "886166090",
            "08616609",
            "8861660a",
            "",
            "+97688616609",
        ] {
            assert_eq!(Msisdn::parse(bad), Err(InvalidValue::Msisdn), "{bad}");
        }
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for s in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(s.as_str()).unwrap(), *s);
        }
        for s in RechargeStatus::ALL {
            assert_eq!(RechargeStatus::parse(s.as_str()).unwrap(), *s);
        }
        assert!(RechargeStatus::parse("timeout").is_err());
    }

    #[test]
    fn recharge_type_and_operator_parse_leniently_in_case_only() {
        assert_eq!(RechargeType::parse("Voice").unwrap(), RechargeType::Voice);
        assert!(RechargeType::parse("sms").is_err());
        assert_eq!(Operator::parse("Unitel").unwrap(), Operator::Unitel);
        assert!(Operator::parse("mobicom").is_err());
        assert!(OpenId::parse("oZp5-abc_123").is_ok());
        assert!(OpenId::parse("").is_err());
        assert!(OpenId::parse("o<script>").is_err());
    }
}

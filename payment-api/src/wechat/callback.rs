//! The payment-result notification the platform POSTs to our container path: WeChat Pay
//! v2's notify fields in camelCase. It is not signed, so every field we can check is
//! checked against our own records before anything is fulfilled.

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentNotification {
    #[serde(default)]
    pub return_code: Option<String>,
    #[serde(default)]
    pub result_code: Option<String>,
    #[serde(default)]
    pub sub_mch_id: Option<String>,
    #[serde(default)]
    pub out_trade_no: Option<String>,
    #[serde(default)]
    pub transaction_id: Option<String>,
    #[serde(default, deserialize_with = "fen_amount")]
    pub total_fee: Option<i64>,
    #[serde(default)]
    pub attach: Option<String>,
    #[serde(default)]
    pub time_end: Option<String>,
    #[serde(default)]
    pub err_code: Option<String>,
    #[serde(default)]
    pub err_code_des: Option<String>,
}

impl PaymentNotification {
    pub fn reports_success(&self) -> bool {
        self.return_code.as_deref() == Some("SUCCESS")
            && self.result_code.as_deref() == Some("SUCCESS")
    }
}

/// An amount in fen: a number in the documented examples; a string of digits is accepted
/// too, anything else (a fraction of a fen, a negative) is not an amount.
pub(super) fn fen_amount<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match value {
        Some(serde_json::Value::Number(n)) => n.as_i64().filter(|v| *v >= 0),
        Some(serde_json::Value::String(s)) => s.trim().parse::<i64>().ok().filter(|v| *v >= 0),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::QueryAnswer as QueriedOrder;

    #[test]
    fn amounts_are_read_as_numbers_or_digit_strings_and_nothing_else() {
        let read = |fee: serde_json::Value| {
            serde_json::from_value::<QueriedOrder>(
                serde_json::json!({"trade_state": "SUCCESS", "total_fee": fee}),
            )
            .unwrap()
            .total_fee
        };
        assert_eq!(read(1136.into()), Some(1136));
        assert_eq!(read("1136".into()), Some(1136));
        assert_eq!(read(serde_json::json!(11.36)), None);
        assert_eq!(read((-5).into()), None);
    }
}

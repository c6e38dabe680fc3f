//! The payment-result notification the platform POSTs to our container path: WeChat Pay
//! v2's notify fields in camelCase. It is not signed, so every field we can check is
//! checked against our own records before anything is fulfilled.

use serde::{Deserialize, Deserializer};
use serde_json::json;
use shared::order::{Msisdn, PayChannel};

use super::{china_time, MerchantIds, PaymentReport};

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

    pub fn attached(&self) -> Attach {
        Attach::read(self.attach.as_deref())
    }

    /// The result in the shape every channel's results share.
    pub fn report(&self) -> PaymentReport {
        PaymentReport {
            channel: PayChannel::Cloud,
            out_trade_no: self.out_trade_no.clone(),
            succeeded: self.reports_success(),
            merchant: MerchantIds {
                merchant: self.sub_mch_id.clone(),
                service_provider: None,
                app: None,
            },
            attach: self.attached(),
            transaction_id: self.transaction_id.clone(),
            total_fee: self.total_fee,
            paid_at: self.time_end.as_deref().and_then(china_time),
            detail: json!({
                "outTradeNo": self.out_trade_no,
                "subMchId": self.sub_mch_id,
                "totalFee": self.total_fee,
                "transactionId": self.transaction_id,
                "returnCode": self.return_code,
                "resultCode": self.result_code,
                "errCode": self.err_code,
                "errCodeDes": self.err_code_des,
            }),
        }
    }
}

/// What a payment's `attach` says it is for. Ours is the order number; the replaced
/// system's, still arriving for payments started there, is
/// `{"orderNumber":"…","phoneNumber":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    Absent,
    OrderNumber(String),
    Legacy {
        order_number: String,
        phone_number: Option<String>,
    },
    /// Neither form: a forgery, or someone else's payment.
    Unreadable,
}

impl Attach {
    pub fn read(attach: Option<&str>) -> Attach {
        let Some(attach) = attach.map(str::trim).filter(|a| !a.is_empty()) else {
            return Attach::Absent;
        };
        if !attach.starts_with('{') {
            return Attach::OrderNumber(attach.to_owned());
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Legacy {
            order_number: String,
            phone_number: Option<String>,
        }
        match serde_json::from_str::<Legacy>(attach) {
            Ok(legacy) => Attach::Legacy {
                order_number: legacy.order_number,
                phone_number: legacy.phone_number,
            },
            Err(_) => Attach::Unreadable,
        }
    }

    /// Whether the number it names, if any, is `msisdn`, however the replaced system had it
    /// written (`+976 8861 6609` is 88616609).
    pub fn names_number(&self, msisdn: &Msisdn) -> bool {
        match self {
            Attach::Legacy {
                phone_number: Some(phone),
                ..
            } => Msisdn::from_written(phone).as_ref() == Some(msisdn),
            _ => true,
        }
    }

    /// Whether it names this order (an absent attach names none and contradicts none).
    pub fn names(&self, order_number: &str) -> bool {
        match self {
            Attach::Absent => true,
            Attach::OrderNumber(attached)
            | Attach::Legacy {
                order_number: attached,
                ..
            } => attached == order_number,
            Attach::Unreadable => false,
        }
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
    fn both_forms_of_attach_are_read() {
        use super::Attach;
        let legacy = r#"{"orderNumber":"ORD1760781234567V1StGXR8_Z5j","phoneNumber":"88616609"}"#;
        assert_eq!(
            Attach::read(Some(legacy)),
            Attach::Legacy {
                order_number: "ORD1760781234567V1StGXR8_Z5j".into(),
                phone_number: Some("88616609".into())
            }
        );
        assert!(Attach::read(Some(legacy)).names("ORD1760781234567V1StGXR8_Z5j"));
        assert!(!Attach::read(Some(legacy)).names("ORD1760781234567V1StGXR8_Z5k"));
        assert_eq!(
            Attach::read(Some("ORD1")),
            Attach::OrderNumber("ORD1".into())
        );
        assert_eq!(Attach::read(Some("")), Attach::Absent);
        assert_eq!(Attach::read(Some(r#"{"order":"x"}"#)), Attach::Unreadable);
        assert!(!Attach::read(Some("{not json")).names("{not json"));
    }

    #[test]
    fn the_number_an_attach_names_is_read_as_the_replaced_system_kept_it() {
        use super::Attach;
        use shared::order::Msisdn;
        let number = Msisdn::parse("88616609").unwrap();
        let naming = |phone: &str| {
            Attach::read(Some(&format!(
                r#"{{"orderNumber":"ORD1760781234567V1StGXR8_Z5j","phoneNumber":"{phone}"}}"#
            )))
        };
        assert!(naming("88616609").names_number(&number));
        assert!(naming("+976 8861 6609").names_number(&number));
        assert!(naming("976-8861-6609").names_number(&number));
        assert!(!naming("99119911").names_number(&number));
        assert!(!naming("not a number").names_number(&number));
        assert!(Attach::read(Some("ORD1")).names_number(&number));
    }

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

//! The `OrderPaid` message: payment-api's promise to the workers that an order was paid.
//!
//! It carries only what identifies the event; the worker reads the order itself from
//! PostgreSQL, which stays the single source of truth.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Fen;
use crate::order::OrderNumber;

/// Bumped on any change a consumer of the previous version could misread.
pub const ORDER_PAID_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPaid {
    pub version: u32,
    pub order_number: OrderNumber,
    pub amount_fen: Fen,
    pub transaction_id: String,
    pub paid_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an OrderPaid message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("OrderPaid version {0} is not understood (this build reads {ORDER_PAID_VERSION})")]
    UnsupportedVersion(u32),
}

impl OrderPaid {
    pub fn new(
        order_number: OrderNumber,
        amount_fen: Fen,
        transaction_id: String,
        paid_at: DateTime<Utc>,
    ) -> Self {
        OrderPaid {
            version: ORDER_PAID_VERSION,
            order_number,
            amount_fen,
            transaction_id,
            paid_at,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("OrderPaid always serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let message: OrderPaid = serde_json::from_slice(bytes)?;
        if message.version != ORDER_PAID_VERSION {
            return Err(DecodeError::UnsupportedVersion(message.version));
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_other_versions_and_bad_fields() {
        let msg = OrderPaid::new(
            OrderNumber::parse("ORD1728546789123ABCD").unwrap(),
            Fen::new(1136).unwrap(),
            "4200004561202203217657282768".into(),
            Utc::now(),
        );
        assert_eq!(OrderPaid::decode(&msg.encode()).unwrap(), msg);

        let mut v: serde_json::Value = serde_json::from_slice(&msg.encode()).unwrap();
        v["version"] = 2.into();
        assert!(matches!(
            OrderPaid::decode(v.to_string().as_bytes()),
            Err(DecodeError::UnsupportedVersion(2))
        ));
        v["version"] = 1.into();
        v["orderNumber"] = "no spaces allowed".into();
        assert!(OrderPaid::decode(v.to_string().as_bytes()).is_err());
        assert!(OrderPaid::decode(b"not json").is_err());
    }
}

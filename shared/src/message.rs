//! The `OrderPaid` message: payment-api's promise to the workers that an order was paid.
//!
//! It carries only what identifies the event; the worker reads the order itself from
//! PostgreSQL, which stays the single source of truth. It reaches RabbitMQ through the
//! outbox ([`crate::outbox`]): written as an [`OutboxEntry`] in the same statement as the
//! state change it announces, published by the relay.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::amqp::ORDER_PAID_ROUTING_KEY;
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

/// A row of the `outbox` table: a message and where it goes. The idempotency key is
/// unique, so writing the same entry twice publishes it once.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub idempotency_key: String,
    pub routing_key: &'static str,
    pub payload: serde_json::Value,
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

    /// The payment's announcement: one per order (the key is the order's), however many
    /// times the payment is reported.
    pub fn outbox_entry(&self) -> OutboxEntry {
        self.entry(format!("order-paid:{}", self.order_number))
    }

    /// The same announcement again, for a paid order whose message was lost; `requeue`
    /// counts the order's requeues, so each gets its own row.
    pub fn requeue_entry(&self, requeue: i32) -> OutboxEntry {
        self.entry(format!(
            "order-paid:{}:requeue:{requeue}",
            self.order_number
        ))
    }

    fn entry(&self, idempotency_key: String) -> OutboxEntry {
        OutboxEntry {
            idempotency_key,
            routing_key: ORDER_PAID_ROUTING_KEY,
            payload: serde_json::to_value(self).expect("OrderPaid always serialises"),
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

    #[test]
    fn outbox_entries_carry_the_message_under_one_key_per_announcement() {
        let msg = OrderPaid::new(
            OrderNumber::parse("ORD1728546789123ABCD").unwrap(),
            Fen::new(1136).unwrap(),
            "4200004561202203217657282768".into(),
            Utc::now(),
        );
        let first = msg.outbox_entry();
        assert_eq!(first.idempotency_key, "order-paid:ORD1728546789123ABCD");
        assert_eq!(first.routing_key, ORDER_PAID_ROUTING_KEY);
        let decoded = OrderPaid::decode(first.payload.to_string().as_bytes()).unwrap();
        assert_eq!(decoded, msg);
        assert_eq!(
            msg.requeue_entry(3).idempotency_key,
            "order-paid:ORD1728546789123ABCD:requeue:3"
        );
        assert_eq!(msg.requeue_entry(3).payload, first.payload);
    }
}

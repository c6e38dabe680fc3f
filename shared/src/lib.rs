//! The domain every binary of the top-up backend shares: order numbers, phone numbers,
//! money, the order state machine, the `OrderPaid` message, configuration, telemetry,
//! the RabbitMQ topology and the Unitel client.
//!
//! Values are parsed at the edge into these types; inside the system an invalid order
//! number, phone number or amount cannot exist.

pub mod amqp;
pub mod config;
pub mod message;
pub mod metrics;
pub mod money;
pub mod order;
pub mod telemetry;
pub mod unitel;

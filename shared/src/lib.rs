//! The domain every binary of the top-up backend shares: order numbers, phone numbers,
//! money, the order lifecycle and every transition of it ([`lifecycle`]), the order
//! history's events and actors, the `OrderPaid` message and the outbox that carries it,
//! configuration, telemetry, PostgreSQL set-up and exclusive jobs, the RabbitMQ topology
//! and the Unitel client.
//!
//! Values are parsed at the edge into these types; inside the system an invalid order
//! number, phone number or amount cannot exist.

pub mod amqp;
pub mod config;
pub mod db;
pub mod history;
pub mod jobs;
pub mod lifecycle;
pub mod message;
pub mod metrics;
pub mod money;
pub mod order;
pub mod outbox;
pub mod storable;
pub mod telemetry;
mod text_enum;
pub mod unitel;

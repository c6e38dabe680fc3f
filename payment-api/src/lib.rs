//! payment-api: the mini-program's HTTP API, WeChat Pay, the payment callback and the
//! outbox relay that turns recorded payments into `OrderPaid` messages. Every change of an
//! order's or a refund's state goes through [`shared::lifecycle`].

pub mod alerts;
pub mod client_address;
pub mod config;
pub mod context;
pub mod http;
pub mod import;
pub mod lookups;
pub mod orders;
pub mod payment_watch;
pub mod payments;
pub mod rate_limit;
pub mod reconciliation;
pub mod retention;
pub mod startup;
pub mod stats;
pub mod store;
pub mod wechat;

pub use config::ApiConfig;
pub use startup::{Application, MIGRATOR};

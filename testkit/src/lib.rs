//! The test harness. Each test gets its own PostgreSQL database and its own RabbitMQ
//! names on the machine's real servers, the sandbox on random ports, and payment-api and
//! workers started in-process (or as processes) against them. Nothing of ours is mocked.

mod browser;
mod captured_log;
mod db;
mod merchant;
mod metrics;
mod seed;
mod smtp_sink;
mod stats_oracle;
mod system;

pub mod processes;
pub mod proxy;
pub mod wechat_pay;

pub use browser::Browser;
pub use captured_log::CapturedLog;
pub use db::TestDb;
pub use merchant::{merchant_settings, APP_ID, MCH_ID, NOTIFY_URL};
pub use metrics::Metrics;
pub use seed::{seed_orders, Seed};
pub use smtp_sink::{ReceivedMail, SmtpSink};
pub use stats_oracle::{expected_stats, first_difference};
pub use system::{ApiClient, System, SystemOptions, ADMIN_TOKEN, OUTCOME_WITHIN};

/// The broker tests use: `TEST_AMQP_URL`, else the machine's local RabbitMQ. The one
/// place the harness, the fault run and the benchmark read it from.
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Installs a log subscriber once, filtered by `RUST_LOG` (quiet by default).
pub fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

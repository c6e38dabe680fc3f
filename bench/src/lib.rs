//! Benchmarks of the real system: payment-api, workers and the sandbox against this
//! machine's PostgreSQL and RabbitMQ. Each scenario prints Markdown tables and returns its
//! figures, so that a smoke test can run it small. See docs/performance.md.

pub mod callbacks;
pub mod cpu;
pub mod credit;
pub mod drive;
pub mod measure;
pub mod orders;
pub mod pgbench;
pub mod reconcile;
pub mod stats;
pub mod system;
pub mod wechat_pay;
pub mod workers;

//! Telling a person. Alerts are derived from what the money path already records — order
//! events (`unknown`, `failed`, `refund_failed`, a payment found by query), payment
//! anomalies (forged or mismatched callbacks, money taken for an order that will not be
//! fulfilled), stuck refunds — and from health figures (outbox backlog, queue depths).
//! Nothing on the money path waits for them: a producer turns records into rows of the
//! `alerts` table (deduplicated by subject), and a dispatcher delivers those to WeCom and
//! e-mail, rate-limited and retried. A channel that is down delays alerts, nothing else.

mod channels;
mod kind;
mod produce;

use shared::jobs::{Hold, RoundReport, Rounds};
use shared::outbox::OutboxSignal;
use sqlx::PgPool;

pub use channels::Channels;
pub use kind::{AlertKind, Delivery};

use crate::config::AlertConfig;

/// What alerting needs, and nothing else.
pub struct Alerting {
    pub db: PgPool,
    pub channels: Channels,
    /// Queue depths, as the outbox relay last measured them.
    pub signal: OutboxSignal,
    pub config: AlertConfig,
}

#[derive(Debug, Default)]
pub struct AlertReport {
    pub raised: usize,
    pub delivered: usize,
}

impl RoundReport for AlertReport {
    fn is_quiet(&self) -> bool {
        self.raised + self.delivered == 0
    }
}

impl Alerting {
    /// One round: raise what is new, deliver what is due.
    pub async fn round(&self) -> Result<AlertReport, sqlx::Error> {
        let raised = self.produce().await?;
        let delivered = self.channels.deliver_due(&self.db).await?;
        Ok(AlertReport { raised, delivered })
    }
}

impl Rounds for Alerting {
    type Report = AlertReport;
    type Error = sqlx::Error;

    async fn round(&self, _hold: &Hold) -> Result<AlertReport, sqlx::Error> {
        Alerting::round(self).await
    }
}

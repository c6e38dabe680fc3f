//! The RabbitMQ topology, declared identically (and idempotently) by payment-api, which
//! publishes, and by every worker, which consumes, so either can start first.
//!
//! ```text
//! {prefix}.orders (direct) --order.paid--> {prefix}.recharge (quorum)
//!                                              | rejected, or delivered too often
//!                                              v
//! {prefix}.dead-letter (fanout) ------> {prefix}.recharge.dead (quorum)
//! ```

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

pub const ORDER_PAID_ROUTING_KEY: &str = "order.paid";

/// A message redelivered this many times (crashes mid-processing, nacks) goes to the
/// dead-letter queue instead of looping forever.
pub const DELIVERY_LIMIT: i64 = 10;

#[derive(Debug, Clone)]
pub struct Topology {
    pub exchange: String,
    pub queue: String,
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    /// Tests set this so that the queues of a finished test disappear by themselves.
    pub expire_unused_after_ms: Option<i64>,
}

impl Topology {
    pub fn new(prefix: &str) -> Self {
        Topology {
            exchange: format!("{prefix}.orders"),
            queue: format!("{prefix}.recharge"),
            dead_letter_exchange: format!("{prefix}.dead-letter"),
            dead_letter_queue: format!("{prefix}.recharge.dead"),
            expire_unused_after_ms: None,
        }
    }

    pub fn from_config(infra: &crate::config::InfraConfig) -> Self {
        Topology {
            expire_unused_after_ms: infra.amqp_queue_expires_ms,
            ..Topology::new(&infra.amqp_prefix)
        }
    }

    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.exchange.as_str().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                self.dead_letter_exchange.as_str().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;

        let mut dead_args = self.quorum_args();
        // The dead-letter queue keeps its messages for a person, unbounded.
        dead_args.insert("x-queue-type".into(), long_string("quorum"));
        channel
            .queue_declare(
                self.dead_letter_queue.as_str().into(),
                QueueDeclareOptions::durable(),
                dead_args,
            )
            .await?;
        channel
            .queue_bind(
                self.dead_letter_queue.as_str().into(),
                self.dead_letter_exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        let mut args = self.quorum_args();
        args.insert(
            "x-dead-letter-exchange".into(),
            long_string(&self.dead_letter_exchange),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions::durable(),
                args,
            )
            .await?;
        channel
            .queue_bind(
                self.queue.as_str().into(),
                self.exchange.as_str().into(),
                ORDER_PAID_ROUTING_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }

    fn quorum_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), long_string("quorum"));
        if let Some(ms) = self.expire_unused_after_ms {
            args.insert("x-expires".into(), AMQPValue::LongLongInt(ms));
        }
        args
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

/// Connects with a name that shows in the RabbitMQ management UI.
pub async fn connect(url: &str, connection_name: &str) -> lapin::Result<Connection> {
    Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name(connection_name.into()),
    )
    .await
}

/// Waiting between attempts to reach RabbitMQ again, for every long-lived connection (the
/// worker's consumer, the outbox relay): 200 ms doubling to 10 s, jittered so that a fleet
/// does not reconnect in step, and back to 200 ms once a connection was made.
pub struct Reconnect {
    delays: ExponentialBackoff,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            delays: Self::schedule(),
        }
    }
}

impl Reconnect {
    fn schedule() -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// A connection was made: the next loss starts the schedule again.
    pub fn connected(&mut self) {
        self.delays = Self::schedule();
    }

    /// The next delay; `false` if `stop` fired meanwhile.
    pub async fn wait(&mut self, stop: &tokio_util::sync::CancellationToken) -> bool {
        let delay = self.delays.next().unwrap_or(Duration::from_secs(10));
        tokio::select! {
            _ = stop.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

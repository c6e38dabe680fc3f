//! The outbox relay: publishes the messages that state changes wrote to the `outbox`
//! table ([`crate::message::OutboxEntry`]), with publisher confirms, persistent and
//! mandatory, and marks them published only once RabbitMQ has confirmed them. A crash or a
//! broker outage delays messages; it cannot lose them. Every process that writes outbox
//! rows runs a relay (payment-api for payments, each worker for its requeues), and any
//! relay publishes any row: they share the table (`FOR UPDATE SKIP LOCKED`). A message may
//! be published twice (crash between confirm and mark): consumers are idempotent by
//! design, through the claim on the order.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::amqp::{self, Reconnect, Topology};

const BATCH: i64 = 200;
/// Batches in flight at once in payment-api. A batch waits for RabbitMQ to confirm its messages (a disk
/// write at the broker, several milliseconds); with one lane, a payment recorded meanwhile
/// waits for that batch to finish before its own can start. Lanes lock disjoint rows
/// (`SKIP LOCKED`), so a message is still published by one lane only. Each lane holds one
/// pool connection while its confirms are awaited: size `DATABASE_POOL_SIZE` with that in
/// mind. A lane failing drops the others' open transactions (rolled back, published again
/// later: consumers are idempotent through the claim).
pub const PAYMENT_LANES: usize = 4;
/// Also polled on this period, in case a wake-up was missed or another instance wrote.
const POLL: Duration = Duration::from_secs(1);
const DEPTH_EVERY: Duration = Duration::from_secs(30);

/// Handlers use this to wake the relay right after committing a message, and `/health`
/// to tell whether the broker is reachable.
#[derive(Clone, Default)]
pub struct OutboxSignal {
    wake: Arc<Notify>,
    broker_up: Arc<AtomicBool>,
    /// Messages in the recharge queue and its dead-letter queue, as last seen (0 until
    /// measured once: `depths_known` tells).
    queued: Arc<AtomicU64>,
    dead: Arc<AtomicU64>,
    depths_known: Arc<AtomicBool>,
}

impl OutboxSignal {
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn broker_up(&self) -> bool {
        self.broker_up.load(Ordering::Relaxed)
    }

    /// (recharge queue, dead-letter queue) depths, when known.
    pub fn queue_depths(&self) -> (Option<u32>, Option<u32>) {
        if !self.depths_known.load(Ordering::Relaxed) {
            return (None, None);
        }
        let read = |v: &AtomicU64| u32::try_from(v.load(Ordering::Relaxed)).ok();
        (read(&self.queued), read(&self.dead))
    }

    fn record_depths(&self, queued: u32, dead: u32) {
        metrics::gauge!("rabbitmq_queue_messages", "queue" => "recharge").set(f64::from(queued));
        metrics::gauge!("rabbitmq_queue_messages", "queue" => "dead-letter").set(f64::from(dead));
        self.queued.store(u64::from(queued), Ordering::Relaxed);
        self.dead.store(u64::from(dead), Ordering::Relaxed);
        self.depths_known.store(true, Ordering::Relaxed);
    }
}

pub struct OutboxRelay {
    pub db: PgPool,
    pub amqp_url: String,
    pub topology: Topology,
    pub signal: OutboxSignal,
    /// Batches in flight at once (see [`PAYMENT_LANES`]).
    pub lanes: usize,
    /// Also reads the queue depths for `/health` and alerts (payment-api's relay does).
    pub measures_depths: bool,
    /// Names the connection in RabbitMQ's management UI.
    pub connection_name: String,
}

/// Messages written and not yet confirmed by RabbitMQ, and how old the oldest is.
pub async fn backlog(db: &PgPool) -> Result<(i64, Option<f64>), sqlx::Error> {
    let backlog = sqlx::query!(
        r#"SELECT count(*) AS "count!", extract(epoch FROM now() - min(created_at))::float8 AS oldest_secs
             FROM outbox WHERE published_at IS NULL"#
    )
    .fetch_one(db)
    .await?;
    metrics::gauge!("outbox_backlog").set(backlog.count as f64);
    Ok((backlog.count, backlog.oldest_secs))
}

impl OutboxRelay {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut reconnect = Reconnect::default();
        while !shutdown.is_cancelled() {
            match self.connect().await {
                Ok((connection, channel)) => {
                    reconnect.connected();
                    self.signal.broker_up.store(true, Ordering::Relaxed);
                    tracing::info!("outbox relay connected to RabbitMQ");
                    let lanes = (0..self.lanes.max(1)).map(|lane| {
                        self.relay(&channel, &shutdown, lane == 0 && self.measures_depths)
                    });
                    let error = futures::future::try_join_all(lanes).await.map(drop);
                    self.signal.broker_up.store(false, Ordering::Relaxed);
                    let _ = connection.close(200, "shutting down".into()).await;
                    if let Err(error) = error {
                        tracing::warn!(%error, "outbox relay lost RabbitMQ; reconnecting");
                    }
                }
                Err(error) => {
                    let waiting = backlog(&self.db).await.map_or(-1, |(count, _)| count);
                    tracing::warn!(%error, backlog = waiting, "outbox relay cannot reach RabbitMQ");
                }
            }
            if !reconnect.wait(&shutdown).await {
                break;
            }
        }
    }

    async fn connect(&self) -> Result<(Connection, Channel), lapin::Error> {
        let connection = amqp::connect(&self.amqp_url, &self.connection_name).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        self.topology.declare(&channel).await?;
        Ok((connection, channel))
    }

    /// One lane; the first also reads the queue depths.
    async fn relay(
        &self,
        channel: &Channel,
        shutdown: &CancellationToken,
        measures_depths: bool,
    ) -> Result<(), RelayError> {
        let mut depths_measured: Option<std::time::Instant> = None;
        loop {
            if measures_depths && depths_measured.is_none_or(|at| at.elapsed() >= DEPTH_EVERY) {
                self.measure_depths(channel).await;
                depths_measured = Some(std::time::Instant::now());
            }
            let published = self.publish_batch(channel).await?;
            if published as i64 == BATCH {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = self.signal.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Reads the queue depths (a passive declare changes nothing), for health alerts.
    async fn measure_depths(&self, channel: &Channel) {
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let mut depths = Vec::with_capacity(2);
        for name in [&self.topology.queue, &self.topology.dead_letter_queue] {
            let declared = tokio::time::timeout(
                Duration::from_secs(5),
                channel.queue_declare(name.as_str().into(), passive, FieldTable::default()),
            )
            .await;
            match declared {
                Ok(Ok(queue)) => depths.push(queue.message_count()),
                _ => return,
            }
        }
        self.signal.record_depths(depths[0], depths[1]);
    }

    /// Publishes up to a batch of unpublished rows, all confirms awaited together.
    async fn publish_batch(&self, channel: &Channel) -> Result<usize, RelayError> {
        let mut tx = self.db.begin().await?;
        let rows = sqlx::query!(
            "SELECT id, idempotency_key, routing_key, payload FROM outbox
             WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            BATCH
        )
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }

        let mut pending = Vec::with_capacity(rows.len());
        for row in &rows {
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(row.idempotency_key.as_str().into());
            let confirm = channel
                .basic_publish(
                    self.topology.exchange.as_str().into(),
                    row.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    row.payload.to_string().as_bytes(),
                    properties,
                )
                .await?;
            pending.push((row.id, confirm));
        }
        let (ids, confirms): (Vec<i64>, Vec<_>) = pending.into_iter().unzip();
        let mut confirmed = Vec::with_capacity(ids.len());
        let mut refused = Vec::new();
        for (id, confirmation) in ids.into_iter().zip(join_all(confirms).await) {
            match confirmation? {
                lapin::Confirmation::Ack(None) => confirmed.push(id),
                // Returned (unroutable) or nacked: it stays in the outbox for the next round.
                other => refused.push((id, format!("{other:?}"))),
            }
        }
        sqlx::query!(
            "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1)",
            &confirmed
        )
        .execute(&mut *tx)
        .await?;
        for (id, why) in &refused {
            sqlx::query!(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
                id,
                why
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if !refused.is_empty() {
            tracing::error!(
                count = refused.len(),
                "RabbitMQ refused outbox messages; will retry"
            );
            return Err(RelayError::Refused);
        }
        metrics::counter!("outbox_published_total").increment(confirmed.len() as u64);
        tracing::debug!(count = confirmed.len(), "outbox messages published");
        Ok(confirmed.len())
    }
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker refused or returned messages")]
    Refused,
}

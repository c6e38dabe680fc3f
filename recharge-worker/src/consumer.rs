//! The AMQP side: consume `OrderPaid` with a prefetch of `RECHARGE_CONCURRENCY` and manual
//! acks, one task per message, ack only once the outcome is in PostgreSQL. A lost broker
//! connection is re-established with backoff; unacked messages return to the queue and
//! the claim makes their second processing harmless.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use shared::amqp::{self, Reconnect, Topology};
use shared::message::OrderPaid;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::fulfil::{Disposition, Fulfiller};

/// How long a message is held while the database fails, before it goes back to the queue.
const HOLD_WHILE_DATABASE_FAILS: Duration = Duration::from_secs(60);

pub struct Consumer {
    pub amqp_url: String,
    pub topology: Topology,
    pub prefetch: u16,
    pub consumer_tag: String,
    pub shutdown_grace: Duration,
    pub fulfiller: Arc<Fulfiller>,
}

impl Consumer {
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut reconnect = Reconnect::default();
        while !shutdown.is_cancelled() {
            match self.consume(&shutdown, &mut reconnect).await {
                Ok(()) => break,
                Err(error) => tracing::warn!(%error, "lost RabbitMQ; reconnecting"),
            }
            if !reconnect.wait(&shutdown).await {
                break;
            }
        }
    }

    /// Consumes until shutdown (Ok) or until the connection fails (Err).
    async fn consume(
        &self,
        shutdown: &CancellationToken,
        reconnect: &mut Reconnect,
    ) -> Result<(), lapin::Error> {
        let connection = amqp::connect(
            &self.amqp_url,
            &format!("recharge-worker {}", self.consumer_tag),
        )
        .await?;
        let channel = connection.create_channel().await?;
        self.topology.declare(&channel).await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let mut deliveries = channel
            .basic_consume(
                self.topology.queue.as_str().into(),
                self.consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        reconnect.connected();
        tracing::info!(queue = %self.topology.queue, prefetch = self.prefetch, "consuming");

        let mut in_flight = JoinSet::new();
        let outcome = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => {
                        let fulfiller = self.fulfiller.clone();
                        in_flight.spawn(handle(fulfiller, delivery));
                    }
                    Some(Err(error)) => break Err(error),
                    None => break Err(lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
                        lapin::ConnectionState::Closed,
                    ))),
                },
            }
        };

        if outcome.is_err() {
            // The broker went away, not the work: orders in flight only need PostgreSQL to
            // record their outcome. Let them finish on their own; their messages come back
            // and are skipped as finished.
            tracing::warn!(
                left = in_flight.len(),
                "broker lost; in-flight orders finish detached"
            );
            in_flight.detach_all();
            return outcome;
        }
        // Shutdown: stop taking messages, let those in flight finish within the grace
        // period; any still unacked when the connection closes go back to the queue.
        let _ = channel
            .basic_cancel(
                self.consumer_tag.as_str().into(),
                BasicCancelOptions::default(),
            )
            .await;
        let drained = tokio::time::timeout(self.shutdown_grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = in_flight.len(),
                "shutdown grace over; abandoning in-flight orders"
            );
            in_flight.abort_all();
        }
        let _ = connection.close(200, "worker stopping".into()).await;
        outcome
    }
}

async fn handle(fulfiller: Arc<Fulfiller>, delivery: Delivery) {
    metrics::counter!("messages_consumed_total").increment(1);
    let message = match OrderPaid::decode(&delivery.data) {
        Ok(message) => message,
        Err(error) => {
            metrics::counter!("messages_settled_total", "disposition" => "dead_letter")
                .increment(1);
            tracing::error!(%error, "undecodable message; dead-lettering");
            let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
            return;
        }
    };
    let span = tracing::info_span!("message", order_number = %message.order_number, redelivered = delivery.redelivered);
    async move {
        // The database failing (a restart, a failover) is waited out with the message held:
        // each return to the queue counts towards its delivery limit.
        let disposition = (|| fulfiller.process(&message))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(250))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(usize::MAX)
                    .with_total_delay(Some(HOLD_WHILE_DATABASE_FAILS)),
            )
            .sleep(tokio::time::sleep)
            .notify(|error, after| {
                tracing::warn!(%error, retry_in = ?after, "database unavailable; holding the message");
            })
            .await
            .unwrap_or_else(|error| {
                tracing::error!(%error, "database still unavailable; the message goes back");
                Disposition::Requeue
            });
        let label = match disposition {
            Disposition::Ack => "ack",
            Disposition::Requeue => "requeue",
            Disposition::DeadLetter => "dead_letter",
        };
        metrics::counter!("messages_settled_total", "disposition" => label).increment(1);
        let acked = match disposition {
            Disposition::Ack => delivery.ack(BasicAckOptions::default()).await,
            Disposition::Requeue => {
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await
            }
            Disposition::DeadLetter => delivery.reject(BasicRejectOptions { requeue: false }).await,
        };
        if let Err(error) = acked {
            // Redelivered later; the claim makes that harmless.
            tracing::warn!(%error, ?disposition, "could not settle the message with RabbitMQ");
        }
    }
    .instrument(span)
    .await
}

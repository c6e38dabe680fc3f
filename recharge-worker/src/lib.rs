//! recharge-worker: consumes `OrderPaid`, claims each order once through `recharge_at`,
//! credits the number through Unitel and records the outcome. Run as many as you like.

pub mod config;
pub mod consumer;
pub mod fulfil;
pub mod store;
pub mod sweep;

use std::sync::Arc;

use anyhow::Context;
use shared::amqp::Topology;
use shared::unitel::UnitelClient;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

pub use config::WorkerConfig;

/// Runs until `shutdown` is cancelled, then drains in-flight orders and returns.
pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    shared::metrics::recorder();
    let metrics = config.metrics_addr.map(|addr| {
        tokio::spawn(async move {
            if let Err(error) = shared::metrics::serve(addr).await {
                tracing::error!(%error, "metrics endpoint failed");
            }
        })
    });
    let db = PgPoolOptions::new()
        .max_connections(config.db_pool_size)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(config.infra.database_url.expose())
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
    let unitel = Arc::new(UnitelClient::new(&config.unitel)?);
    let sweeper = sweep::Sweeper {
        db: db.clone(),
        unitel: unitel.clone(),
        worker_id: config.worker_id.clone(),
        every: config.sweep_every,
        claim_stale_after: config.claim_stale_after,
        requeue_after: config.requeue_after,
    };
    let sweeping = tokio::spawn(sweeper.run(shutdown.clone()));
    let fulfiller = fulfil::Fulfiller {
        shutdown: shutdown.clone(),
        db: db.clone(),
        unitel,
        worker_id: config.worker_id.clone(),
        claim_stale_after: config.claim_stale_after,
        retry_for: config.retry_for,
    };
    let consumer = consumer::Consumer {
        amqp_url: config.infra.amqp_url.expose().to_owned(),
        topology: Topology::from_config(&config.infra),
        prefetch: config.concurrency,
        consumer_tag: config.worker_id.clone(),
        shutdown_grace: config.shutdown_grace,
        fulfiller: Arc::new(fulfiller),
    };
    tracing::info!(worker = %config.worker_id, concurrency = config.concurrency, "recharge-worker starting");
    consumer.run(shutdown).await;
    let _ = sweeping.await;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    db.close().await;
    tracing::info!("recharge-worker stopped");
    Ok(())
}

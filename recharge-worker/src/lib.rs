//! recharge-worker: consumes `OrderPaid`, claims each order once under this process's
//! lease, credits the number through Unitel and records the outcome. Run as many as you
//! like. Every change of an order's state goes through [`shared::lifecycle`].

pub mod config;
pub mod consumer;
pub mod fulfil;
pub mod lease;
pub mod sweep;

use std::sync::Arc;

use shared::amqp::Topology;
use shared::jobs::ExclusiveJob;
use shared::outbox::{OutboxRelay, OutboxSignal};
use shared::unitel::UnitelClient;
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
    let db = shared::db::connect(
        &config.infra.database_url,
        config.db_pool_size,
        "recharge-worker",
    )
    .await?;
    let unitel = Arc::new(UnitelClient::new(&config.unitel)?);
    let topology = Topology::from_config(&config.infra);
    // Held until the orders in flight are finished or released, then ended, so that a
    // clean stop never makes anyone wait for it to expire.
    let Some(lease) = lease::Lease::register(
        db.clone(),
        config.worker_id.clone(),
        config.lease_lasts,
        &shutdown,
    )
    .await
    else {
        db.close().await;
        return Ok(());
    };
    let lease = Arc::new(lease);
    let leasing_stop = CancellationToken::new();
    let leasing = tokio::spawn({
        let lease = lease.clone();
        let stop = leasing_stop.clone();
        async move { lease.keep(stop).await }
    });
    // The sweep's requeues are outbox rows: this worker publishes them itself rather
    // than count on a payment-api being up.
    let outbox = OutboxSignal::default();
    let relay = OutboxRelay {
        db: db.clone(),
        amqp_url: config.infra.amqp_url.expose().to_owned(),
        connection_name: format!("outbox relay of worker {}", config.worker_id),
        topology: topology.clone(),
        signal: outbox.clone(),
        lanes: 1,
        measures_depths: false,
    };
    let relaying = tokio::spawn(relay.run(shutdown.clone()));
    let sweeper = Arc::new(sweep::Sweeper {
        db: db.clone(),
        unitel: unitel.clone(),
        worker_id: config.worker_id.clone(),
        every: config.sweep_every,
        requeue_after: config.requeue_after,
        outbox,
    });
    let sweeping = tokio::spawn(shared::jobs::run_every(
        db.clone(),
        ExclusiveJob::RechargeSweep,
        config.sweep_every,
        shutdown.clone(),
        sweeper,
    ));
    let fulfiller = fulfil::Fulfiller {
        shutdown: shutdown.clone(),
        db: db.clone(),
        unitel,
        worker_id: config.worker_id.clone(),
        lease,
        lease_lasts: config.lease_lasts,
        retry_for: config.retry_for,
    };
    let consumer = consumer::Consumer {
        amqp_url: config.infra.amqp_url.expose().to_owned(),
        topology,
        prefetch: config.concurrency,
        consumer_tag: config.worker_id.clone(),
        shutdown_grace: config.shutdown_grace,
        fulfiller: Arc::new(fulfiller),
    };
    tracing::info!(worker = %config.worker_id, concurrency = config.concurrency, "recharge-worker starting");
    consumer.run(shutdown).await;
    leasing_stop.cancel();
    let _ = leasing.await;
    let _ = sweeping.await;
    let _ = relaying.await;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    db.close().await;
    tracing::info!("recharge-worker stopped");
    Ok(())
}

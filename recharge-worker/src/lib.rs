//! recharge-worker: consumes `OrderPaid`, claims each order once under this process's
//! lease, credits the number through Unitel and records the outcome. Run as many as you
//! like. Every change of an order's state goes through [`shared::lifecycle`].

pub mod config;
pub mod consumer;
pub mod fulfil;
pub mod in_hand;
pub mod lease;
pub mod sweep;

use std::sync::Arc;

use shared::amqp::Topology;
use shared::jobs::ExclusiveJob;
use shared::lifecycle::WorkerId;
use shared::outbox::{OutboxRelay, OutboxSignal};
use shared::unitel::UnitelClient;
use tokio_util::sync::CancellationToken;

pub use config::WorkerConfig;

/// The longest start-up waits for Unitel's token before consuming anyway.
const TOKEN_WARM_UP: std::time::Duration = std::time::Duration::from_secs(5);

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
    let worker_id = WorkerId::new(config.worker_id.clone());
    let Some(lease) =
        lease::Lease::register(db.clone(), worker_id.clone(), config.lease_lasts, &shutdown).await
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
    let fulfiller = Arc::new(fulfil::Fulfiller {
        shutdown: shutdown.clone(),
        db: db.clone(),
        unitel: unitel.clone(),
        worker_id,
        lease,
        lease_lasts: config.lease_lasts,
        unitel_timeout: config.unitel.timeout,
        retry_for: config.retry_for,
        in_hand: Default::default(),
    });
    let takeovers = sweep::Takeovers {
        fulfiller: fulfiller.clone(),
        slots: Arc::new(tokio::sync::Semaphore::new(config.concurrency as usize)),
        tasks: tokio_util::task::TaskTracker::new(),
        requeue_after: config.requeue_after,
        outbox: outbox.clone(),
    };
    let sweeper = Arc::new(sweep::Sweeper {
        db: db.clone(),
        unitel: unitel.clone(),
        worker_id: config.worker_id.clone(),
        every: config.sweep_every,
        requeue_after: config.requeue_after,
        stuck_after: config.stuck_after(),
        outbox,
        takeovers: takeovers.clone(),
    });
    let sweeping = tokio::spawn(shared::jobs::run_every(
        db.clone(),
        ExclusiveJob::RechargeSweep,
        config.sweep_every,
        shutdown.clone(),
        sweeper,
    ));
    let consumer = consumer::Consumer {
        amqp_url: config.infra.amqp_url.expose().to_owned(),
        topology,
        prefetch: config.concurrency,
        consumer_tag: config.worker_id.clone(),
        shutdown_grace: config.shutdown_grace,
        fulfiller,
    };
    // With the token in hand before the first message, a claimed order is marked sent and
    // sent at once: a worker killed right after claiming leaves an order to release, not
    // one that waited on /auth. Unitel down at start-up delays nothing for long.
    match tokio::time::timeout(TOKEN_WARM_UP, unitel.token()).await {
        Ok(Ok(_)) => tracing::info!("Unitel token obtained"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "no Unitel token yet; the first top-up asks again")
        }
        Err(_) => tracing::warn!("Unitel /auth is slow; the first top-up asks again"),
    }
    tracing::info!(worker = %config.worker_id, concurrency = config.concurrency, "recharge-worker starting");
    // Released claims the sweep is fulfilling get the same grace as the messages in flight.
    // (Cancelled with `shutdown`, or when consuming ends for any other reason.)
    let stopping = shutdown.child_token();
    let consuming = async {
        consumer.run(shutdown.clone()).await;
        stopping.cancel();
    };
    let finishing_takeovers = async {
        stopping.cancelled().await;
        takeovers.tasks.close();
        if tokio::time::timeout(config.shutdown_grace, takeovers.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("released claims still being fulfilled at the end of the grace");
        }
    };
    tokio::join!(consuming, finishing_takeovers);
    let _ = sweeping.await;
    leasing_stop.cancel();
    let _ = leasing.await;
    let _ = relaying.await;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    db.close().await;
    tracing::info!("recharge-worker stopped");
    Ok(())
}

//! Builds the service from its configuration and returns it unstarted, so that tests can
//! start it on port 0 and read the port.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shared::amqp::Topology;
use shared::unitel::UnitelClient;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::alerts::Channels;
use crate::config::ApiConfig;
use crate::context::ApiContext;
use crate::http::RateLimiter;
use crate::outbox::{OutboxRelay, OutboxSignal};
use crate::wechat::WechatPay;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub struct Application {
    listener: TcpListener,
    ctx: ApiContext,
    relay: OutboxRelay,
    db: PgPool,
}

pub async fn connect_database(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")
}

impl Application {
    /// Connects to PostgreSQL, applies pending migrations and binds the port.
    pub async fn build(config: ApiConfig) -> anyhow::Result<Self> {
        // Installed before anything records a metric.
        shared::metrics::recorder();
        let db = connect_database(config.infra.database_url.expose(), config.db_pool_size).await?;
        MIGRATOR.run(&db).await.context("applying migrations")?;
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let signal = OutboxSignal::default();
        let relay = OutboxRelay {
            db: db.clone(),
            amqp_url: config.infra.amqp_url.expose().to_owned(),
            topology: Topology::from_config(&config.infra),
            signal: signal.clone(),
        };
        let alerts = Arc::new(Channels::new(&config.alerts).context("alert channels (ALERT_*)")?);
        let ctx = ApiContext {
            alerts,
            wechat: Arc::new(WechatPay::new(config.wechat.clone())?),
            unitel: Arc::new(UnitelClient::new(&config.unitel)?),
            config: Arc::new(config),
            db: db.clone(),
            outbox: signal,
            limiter: Arc::new(RateLimiter::default()),
        };
        Ok(Application {
            listener,
            ctx,
            relay,
            db,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` completes, then drains requests and stops the relay.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let relay = tokio::spawn(self.relay.run(stop.clone()));
        let sweeps = tokio::spawn(crate::reconcile::run_sweeps(self.ctx.clone(), stop.clone()));
        let refunds = tokio::spawn(crate::refunds::run_sweeps(self.ctx.clone(), stop.clone()));
        let alerting = tokio::spawn(crate::alerts::run(
            self.ctx.clone(),
            self.ctx.config.alerts.every,
            stop.clone(),
        ));
        let statistics = tokio::spawn(crate::stats::refresh::run(self.db.clone(), stop.clone()));
        let stop_server = stop.clone();
        let served = axum::serve(self.listener, crate::http::router(self.ctx))
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = shutdown => {}
                    _ = stop_server.cancelled() => {}
                }
            })
            .await;
        stop.cancel();
        let _ = relay.await;
        let _ = sweeps.await;
        let _ = refunds.await;
        let _ = alerting.await;
        let _ = statistics.await;
        self.db.close().await;
        served.context("HTTP server failed")
    }
}

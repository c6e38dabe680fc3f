//! Builds the service from its configuration and returns it unstarted, so that tests can
//! start it on port 0 and read the port.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shared::amqp::Topology;
use shared::jobs::{self, ExclusiveJob, Rounds};
use shared::outbox::{OutboxRelay, OutboxSignal, PAYMENT_LANES};
use shared::unitel::UnitelClient;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::alerts::{Alerting, Channels};
use crate::config::ApiConfig;
use crate::context::{ApiContext, ApiState};
use crate::lookups::Lookups;
use crate::payment_watch::PaymentWatch;
use crate::payments::refunds::Refunds;
use crate::payments::Payments;
use crate::rate_limit::{Expiry, RateLimiter};
use crate::reconciliation::Reconciliation;
use crate::retention::{self, AnomalyRetention};
use crate::sessions::Sessions;
use crate::stats::{self, Refresher};
use crate::wechat::login::WechatLogin;
use crate::wechat::WechatPay;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub struct Application {
    listener: TcpListener,
    /// `/metrics` and the OpenAPI document, apart from the public port (`METRICS_ADDR`).
    operations: Option<TcpListener>,
    ctx: ApiContext,
    relay: OutboxRelay,
    alerting: Arc<Alerting>,
    db: PgPool,
}

impl Application {
    /// Connects to PostgreSQL, applies pending migrations and binds the port.
    pub async fn build(config: ApiConfig) -> anyhow::Result<Self> {
        // Installed before anything records a metric.
        shared::metrics::recorder();
        let db = shared::db::connect(
            &config.infra.database_url,
            config.db_pool_size,
            "payment-api",
        )
        .await?;
        MIGRATOR.run(&db).await.context("applying migrations")?;
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let operations = match config.operations_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (METRICS_ADDR)"))?,
            ),
            None => None,
        };
        for warning in &config.warnings {
            tracing::warn!(%warning, "running with an unsafe setting");
        }
        let signal = OutboxSignal::default();
        let topology = Topology::from_config(&config.infra);
        let relay = OutboxRelay {
            db: db.clone(),
            amqp_url: config.infra.amqp_url.expose().to_owned(),
            connection_name: format!("payment-api outbox relay ({})", topology.exchange),
            topology,
            signal: signal.clone(),
            lanes: PAYMENT_LANES,
            measures_depths: true,
        };
        let alerting = Arc::new(Alerting {
            db: db.clone(),
            channels: Channels::new(&config.alerts).context("alert channels (ALERT_*)")?,
            signal: signal.clone(),
            config: config.alerts.clone(),
        });
        let wechat = Arc::new(WechatPay::from_settings(
            config.wechat.as_ref(),
            config.direct.as_ref(),
        )?);
        let watch = Arc::new(PaymentWatch {
            db: db.clone(),
            wechat: wechat.clone(),
            outbox: signal.clone(),
            policy: config.payments.clone(),
        });
        let refunds = Arc::new(Refunds {
            db: db.clone(),
            wechat: wechat.clone(),
            auto_refund_failed: config.payments.auto_refund_failed,
            every: config.payments.refund_sweep_every,
        });
        let reconciliation = Arc::new(Reconciliation {
            db: db.clone(),
            wechat: wechat.clone(),
            payments: watch.clone(),
            config: config.reconciliation.clone(),
        });
        let unitel = Arc::new(UnitelClient::new(&config.unitel)?);
        let limiter = RateLimiter::new(db.clone());
        let payments = Arc::new(Payments {
            db: db.clone(),
            wechat: wechat.clone(),
            outbox: signal.clone(),
            limiter: limiter.clone(),
            refunds,
            policy: config.payments.clone(),
            rejects_per_minute: config.limits.callback_rejects_per_minute,
        });
        let sessions = match &config.login {
            Some(login) => Some(Arc::new(Sessions {
                db: db.clone(),
                ttl: login.session_ttl,
                wechat: WechatLogin::new(login.clone())?,
            })),
            None => None,
        };
        let ctx = ApiContext::new(ApiState {
            lookups: Arc::new(Lookups::new(unitel.clone(), config.lookup_cache_for)),
            unitel,
            config: Arc::new(config),
            db: db.clone(),
            wechat,
            outbox: signal,
            limiter,
            watch,
            payments,
            reconciliation,
            sessions,
        });
        Ok(Application {
            listener,
            operations,
            ctx,
            relay,
            alerting,
            db,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The operations port (`/metrics`, `/api`), when it is apart from the public one.
    pub fn operations_port(&self) -> Option<u16> {
        self.operations
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    /// Serves until `shutdown` completes, then drains requests and stops the background
    /// jobs.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        fn every<J: Rounds>(
            db: &PgPool,
            job: ExclusiveJob,
            every: Duration,
            stop: &CancellationToken,
            rounds: Arc<J>,
        ) -> JoinHandle<()> {
            tokio::spawn(jobs::run_every(
                db.clone(),
                job,
                every,
                stop.clone(),
                rounds,
            ))
        }
        let (db, policy) = (&self.db, &self.ctx.config.payments);
        let jobs = [
            tokio::spawn(self.relay.run(stop.clone())),
            every(
                db,
                ExclusiveJob::PaymentWatch,
                policy.sweep_every,
                &stop,
                self.ctx.watch.clone(),
            ),
            every(
                db,
                ExclusiveJob::RefundSweep,
                policy.refund_sweep_every,
                &stop,
                self.ctx.payments.refunds.clone(),
            ),
            every(
                db,
                ExclusiveJob::Alerts,
                self.alerting.config.every,
                &stop,
                self.alerting.clone(),
            ),
            every(
                db,
                ExclusiveJob::StatsRefresh,
                stats::refresh::EVERY,
                &stop,
                Arc::new(Refresher(db.clone())),
            ),
            every(
                db,
                ExclusiveJob::Reconciliation,
                self.ctx.config.reconciliation.every,
                &stop,
                self.ctx.reconciliation.clone(),
            ),
            every(
                db,
                ExclusiveJob::AnomalyRetention,
                retention::EVERY,
                &stop,
                Arc::new(AnomalyRetention {
                    db: db.clone(),
                    keep_days: self.ctx.config.anomaly_retention_days,
                }),
            ),
            every(
                db,
                ExclusiveJob::RateLimitExpiry,
                Duration::from_secs(60),
                &stop,
                Arc::new(Expiry(db.clone())),
            ),
        ];
        let operations = self.operations.map(|listener| {
            let stop = stop.clone();
            let router = crate::http::operations_router(self.ctx.clone());
            tokio::spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "operations endpoint failed");
                }
            })
        });
        let public = crate::http::router(self.ctx, operations.is_none());
        let stop_server = stop.clone();
        let served = axum::serve(
            self.listener,
            public.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stop_server.cancelled() => {}
            }
        })
        .await;
        stop.cancel();
        for job in jobs.into_iter().chain(operations) {
            let _ = job.await;
        }
        self.db.close().await;
        served.context("HTTP server failed")
    }
}

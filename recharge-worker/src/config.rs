//! recharge-worker's configuration, read once from the environment (see the README's table).

use std::time::Duration;

use shared::config::{AppEnv, ConfigError, InfraConfig, Settings, UnitelConfig};

/// Time to record an outcome after Unitel answered, retries through a database hiccup
/// included.
const RECORDING_TIME: Duration = Duration::from_secs(10);

/// Beyond a lease and a Unitel timeout, how long a claim may stay `processing` before the
/// sweep takes it over whatever its lease: time to fetch a token, to retry a request that
/// never reached Unitel and to record the outcome.
const STUCK_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub app_env: AppEnv,
    pub infra: InfraConfig,
    pub unitel: UnitelConfig,
    /// Orders in flight at once in this process (the AMQP prefetch).
    pub concurrency: u16,
    /// Names this process in claims and in the order history.
    pub worker_id: String,
    /// How long this process's lease lasts unrenewed (`WORKER_LEASE_MS`): within this
    /// much of a worker dying, its orders are taken over. Renewed every fifth of it.
    pub lease_lasts: Duration,
    /// How long a top-up that provably never reached Unitel is retried before the order
    /// is released for a later attempt.
    pub retry_for: Duration,
    /// How often the sweep runs (one worker at a time).
    pub sweep_every: Duration,
    /// A paid order still pending this long after payment goes back on the queue.
    pub requeue_after: Duration,
    /// How long SIGTERM waits for in-flight orders.
    pub shutdown_grace: Duration,
    pub db_pool_size: u32,
    /// Where to serve Prometheus `/metrics` (`METRICS_ADDR`, e.g. `0.0.0.0:9100`); unset:
    /// not served (several workers on one host need one port each).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl WorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_settings(&Settings::from_env())
    }

    pub fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        let concurrency: u16 = s.parsed("RECHARGE_CONCURRENCY", 8)?;
        if concurrency == 0 {
            return Err(ConfigError::Invalid {
                name: "RECHARGE_CONCURRENCY",
                reason: "must be at least 1".into(),
            });
        }
        let unitel = UnitelConfig::from_settings(s)?;
        let lease_lasts = s.millis("WORKER_LEASE_MS", 5_000)?;
        // Renewed every fifth: under a second, renewals would load the database; over a
        // minute, a dead worker's customers would wait that long.
        if !(Duration::from_secs(1)..=shared::lifecycle::LONGEST_LEASE).contains(&lease_lasts) {
            return Err(ConfigError::Invalid {
                name: "WORKER_LEASE_MS",
                reason: "must be between 1000 and 60000".into(),
            });
        }
        // A stop (a deploy) lets a top-up in flight finish: one Unitel call, then recording
        // its outcome. Shorter, and a normal deploy leaves `unknown` orders behind.
        let shutdown_grace = s.millis(
            "WORKER_SHUTDOWN_GRACE_MS",
            (unitel.timeout + RECORDING_TIME).as_millis() as u64,
        )?;
        let app_env = AppEnv::from_settings(s)?;
        if app_env == AppEnv::Production && shutdown_grace < unitel.timeout + RECORDING_TIME {
            return Err(ConfigError::Invalid {
                name: "WORKER_SHUTDOWN_GRACE_MS",
                reason: format!(
                    "must cover UNITEL_TIMEOUT_MS plus {} s to record the outcome in production",
                    RECORDING_TIME.as_secs()
                ),
            });
        }
        Ok(WorkerConfig {
            app_env,
            infra: InfraConfig::from_settings(s)?,
            unitel,
            concurrency,
            worker_id: s.optional("WORKER_ID").unwrap_or_else(default_worker_id),
            lease_lasts,
            retry_for: s.millis("UNITEL_RETRY_FOR_MS", 30_000)?,
            shutdown_grace,
            // The backstop for claims whose message is gone: a lease expiry plus this is
            // how long such an order waits. Each round is a few indexed queries.
            sweep_every: s.millis("RECHARGE_SWEEP_INTERVAL_MS", 5_000)?,
            requeue_after: s.millis("RECHARGE_REQUEUE_AFTER_MS", 120_000)?,
            metrics_addr: match s.optional("METRICS_ADDR") {
                None => None,
                Some(_) => Some(s.parsed(
                    "METRICS_ADDR",
                    std::net::SocketAddr::from(([0, 0, 0, 0], 9100)),
                )?),
            },
            // One connection per order in flight, plus the sweep (its lock and its work) and the
            // outbox relay.
            db_pool_size: s.parsed("DATABASE_POOL_SIZE", u32::from(concurrency).max(2) + 3)?,
        })
    }
}

impl WorkerConfig {
    /// A claim `processing` this long has been lost track of by its worker, live or not
    /// (see [`crate::sweep`]): a lease, a Unitel timeout and [`STUCK_MARGIN`].
    pub fn stuck_after(&self) -> Duration {
        self.lease_lasts + self.unitel.timeout + STUCK_MARGIN
    }
}

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {

    use super::*;

    fn settings(extra: &[(&str, &str)]) -> Settings {
        let required = [
            ("DATABASE_URL", "postgres://db/elife"),
            ("AMQP_URL", "amqp://mq"),
            ("UNITEL_USERNAME", "elife"),
            ("UNITEL_PASSWORD", "secret"),
        ];
        Settings::from_pairs(required.into_iter().chain(extra.iter().copied()))
    }

    #[test]
    fn the_default_shutdown_grace_lets_a_unitel_call_finish_and_be_recorded() {
        let config = WorkerConfig::from_settings(&settings(&[])).unwrap();
        assert!(config.shutdown_grace >= config.unitel.timeout + RECORDING_TIME);
        let slow =
            WorkerConfig::from_settings(&settings(&[("UNITEL_TIMEOUT_MS", "45000")])).unwrap();
        assert_eq!(slow.shutdown_grace, Duration::from_secs(55));
    }

    #[test]
    fn production_refuses_a_grace_that_would_leave_unknown_orders_on_a_deploy() {
        let error =
            WorkerConfig::from_settings(&settings(&[("WORKER_SHUTDOWN_GRACE_MS", "30000")]))
                .unwrap_err()
                .to_string();
        assert!(error.contains("WORKER_SHUTDOWN_GRACE_MS"), "{error}");
        let development = settings(&[
            ("APP_ENV", "development"),
            ("WORKER_SHUTDOWN_GRACE_MS", "5000"),
        ]);
        assert!(WorkerConfig::from_settings(&development).is_ok());
    }
}

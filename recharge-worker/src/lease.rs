//! This process's lease. Every claim names the lease it was made under; a claim is the
//! worker's only while the lease is live (see [`shared::lifecycle::claim`]). The lease is
//! renewed every fifth of its length, whatever Unitel is doing, so a slow Unitel call never
//! makes a live worker look dead; a worker that dies, stalls or loses the database stops
//! renewing, and within `WORKER_LEASE_MS` its claims are taken over (nothing sent) or
//! declared `unknown` (sent).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use shared::lifecycle::{self, LeaseId, WorkerId};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The lease as this process knows it.
#[derive(Debug, Clone, Copy)]
struct Held {
    id: LeaseId,
    /// When the last successful renewal was *sent*: the database's expiry is at least
    /// this plus the lease's length, so judging by it errs on the safe side.
    renewed_at: Instant,
}

pub struct Lease {
    db: PgPool,
    worker_id: WorkerId,
    lasts: Duration,
    held: Mutex<Option<Held>>,
}

impl Lease {
    /// Registers a lease for this process, trying again every second while the database
    /// cannot take it (down, or payment-api still migrating it); `None` if `stop` came
    /// first.
    pub async fn register(
        db: PgPool,
        worker_id: WorkerId,
        lasts: Duration,
        stop: &CancellationToken,
    ) -> Option<Lease> {
        loop {
            let asked_at = Instant::now();
            match lifecycle::register_lease(&db, &worker_id, lasts).await {
                Ok(id) => {
                    tracing::info!(lease = id.get(), lasts = ?lasts, "lease registered");
                    return Some(Lease {
                        db,
                        worker_id,
                        lasts,
                        held: Mutex::new(Some(Held {
                            id,
                            renewed_at: asked_at,
                        })),
                    });
                }
                Err(error) => tracing::warn!(%error, "cannot register a lease yet; retrying"),
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// The lease's id while it is live by this process's own clock; `None` once it may
    /// have expired (renewals failing): then nothing may be claimed or sent.
    pub fn live(&self) -> Option<LeaseId> {
        let held = *self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.filter(|h| h.renewed_at.elapsed() < self.lasts)
            .map(|h| h.id)
    }

    /// Renews every fifth of the lease's length until `stop`, then ends the lease so that
    /// nobody waits for it to expire. A lease found expired (the process stalled, or lost
    /// the database for too long) is replaced by a new one: the old one's claims are
    /// others' to take over now.
    pub async fn keep(&self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.lasts / 5);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            self.renew().await;
        }
        if let Some(id) = self.live() {
            if let Err(error) = lifecycle::end_lease(&self.db, id).await {
                tracing::warn!(lease = id.get(), %error, "could not end the lease; it expires by itself");
            }
        }
    }

    async fn renew(&self) {
        let Some(held) = *self.held.lock().unwrap_or_else(|p| p.into_inner()) else {
            return self.register_again().await;
        };
        let asked_at = Instant::now();
        match lifecycle::renew_lease(&self.db, held.id, self.lasts).await {
            Ok(true) => self.set(Some(Held {
                id: held.id,
                renewed_at: asked_at,
            })),
            Ok(false) => {
                tracing::error!(
                    lease = held.id.get(),
                    alert = true,
                    "lease expired: this worker stalled or was cut off; its claims are others' now"
                );
                self.set(None);
                self.register_again().await;
            }
            Err(error) => {
                tracing::warn!(lease = held.id.get(), %error, "cannot renew the lease yet")
            }
        }
    }

    async fn register_again(&self) {
        let asked_at = Instant::now();
        match lifecycle::register_lease(&self.db, &self.worker_id, self.lasts).await {
            Ok(id) => {
                tracing::info!(lease = id.get(), "new lease registered");
                self.set(Some(Held {
                    id,
                    renewed_at: asked_at,
                }));
            }
            Err(error) => tracing::warn!(%error, "cannot register a lease yet"),
        }
    }

    fn set(&self, held: Option<Held>) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = held;
    }
}

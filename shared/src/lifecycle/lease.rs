//! Recharge-worker leases: every claim names one, and a claim is its worker's only while
//! the lease is live.

use std::fmt;
use std::time::Duration;

use sqlx::PgPool;

/// The longest lease a worker may hold (`WORKER_LEASE_MS`' upper bound).
pub const LONGEST_LEASE: Duration = Duration::from_secs(60);

/// A lease's number, as `worker_leases` gave it: only [`register_lease`] makes one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseId(i64);

impl LeaseId {
    pub fn get(self) -> i64 {
        self.0
    }

    // Any number the column holds is a lease's; the `Result` is what `bigint_column` reads.
    fn new(id: i64) -> Result<Self, std::convert::Infallible> {
        Ok(LeaseId(id))
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

// Logged as the bare number, as before there was a type.
impl fmt::Debug for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

crate::db::bigint_column!(LeaseId);

/// A recharge-worker process's name (`WORKER_ID`): who claimed an order, in its row and
/// its history.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WorkerId(String);

impl WorkerId {
    pub fn new(id: impl Into<String>) -> Self {
        WorkerId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn from_column(value: &str) -> Result<Self, std::convert::Infallible> {
        Ok(WorkerId::new(value))
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// Logged as the bare text, as before there was a type.
impl fmt::Debug for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

crate::db::text_column!(WorkerId);

/// A recharge-worker process's lease: every claim names one, and a claim is its worker's
/// only while the lease is live. The worker renews it every second or two; a lease that
/// expired belongs to a worker that died, stalled or lost the database.
pub async fn register_lease(
    db: &PgPool,
    worker_id: &WorkerId,
    lasts: Duration,
) -> Result<LeaseId, sqlx::Error> {
    let id = sqlx::query_scalar!(
        "INSERT INTO worker_leases (worker_id, expires_at)
         VALUES ($1, now() + make_interval(secs => $2)) RETURNING id",
        worker_id.as_str(),
        lasts.as_secs_f64(),
    )
    .fetch_one(db)
    .await?;
    Ok(LeaseId(id))
}

/// Extends a live lease; false if it had expired already (it stays expired: the worker
/// registers a new one).
pub async fn renew_lease(
    db: &PgPool,
    lease: LeaseId,
    lasts: Duration,
) -> Result<bool, sqlx::Error> {
    let renewed = sqlx::query!(
        "UPDATE worker_leases SET expires_at = now() + make_interval(secs => $2)
          WHERE id = $1 AND expires_at > now()",
        lease.get(),
        lasts.as_secs_f64(),
    )
    .execute(db)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Ends a lease at once (a worker stopping cleanly, its orders finished or released).
pub async fn end_lease(db: &PgPool, lease: LeaseId) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE worker_leases SET expires_at = LEAST(expires_at, now()) WHERE id = $1",
        lease.get(),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Forgets leases that ended a day ago and hold no claim.
pub async fn prune_leases(db: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "DELETE FROM worker_leases l
          WHERE l.expires_at < now() - interval '1 day'
            AND NOT EXISTS (SELECT 1 FROM orders o
                             WHERE o.recharge_status = 'processing' AND o.recharge_lease = l.id)"
    )
    .execute(db)
    .await?
    .rows_affected())
}

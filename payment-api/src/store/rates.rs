//! The MNT-per-yuan rate: the newest row is current; older rows stay so that every
//! order's price can be explained.

use chrono::{DateTime, Utc};
use shared::money::MntPerYuan;
use sqlx::PgPool;

pub struct CurrentRate {
    pub rate: MntPerYuan,
    pub set_at: DateTime<Utc>,
}

/// The current rate; none only if every rate row was deleted (a migration sets one).
pub async fn current(db: &PgPool) -> Result<Option<CurrentRate>, sqlx::Error> {
    sqlx::query_as!(
        CurrentRate,
        r#"SELECT rate AS "rate: MntPerYuan", created_at AS set_at FROM exchange_rates
            WHERE currency_pair = 'MNT_TO_CNY'
            ORDER BY created_at DESC, id DESC LIMIT 1"#
    )
    .fetch_optional(db)
    .await
}

/// Why there is no rate to price with.
#[derive(Debug, thiserror::Error)]
pub enum RateError {
    /// Every rate row was deleted.
    #[error("no exchange rate is set")]
    Missing,
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

/// The current rate, which pricing cannot do without.
pub async fn required(db: &PgPool) -> Result<CurrentRate, RateError> {
    current(db).await?.ok_or(RateError::Missing)
}

/// Makes `rate` the current rate; returns when it was set.
pub async fn set(
    db: &PgPool,
    rate: MntPerYuan,
    set_by: &str,
) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO exchange_rates (currency_pair, rate, set_by)
         VALUES ('MNT_TO_CNY', $1, $2) RETURNING created_at",
        rate.get(),
        set_by,
    )
    .fetch_one(db)
    .await
}

/// Whether a rate was ever set by `set_by` (the import names its rates uniquely).
pub async fn set_by_exists(db: &PgPool, set_by: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM exchange_rates WHERE set_by = $1) AS "exists!""#,
        set_by
    )
    .fetch_one(db)
    .await
}

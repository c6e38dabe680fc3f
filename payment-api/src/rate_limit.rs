//! Rate limits every payment-api instance shares: hits are counted in PostgreSQL
//! (`rate_limits`, one row per key and minute), so N instances do not give a caller N
//! times the limit. Each limited route counts per openid and per client address, as the
//! system we replace did per address (100 a minute by default, 10 orders and 20 payments a
//! minute per user). A refused request still counts, so hammering does not pay.

use std::net::IpAddr;

use shared::jobs::{RoundReport, Rounds};
use shared::order::OpenId;
use sqlx::PgPool;

use crate::http::ApiError;

/// Who is counted.
pub enum Caller<'a> {
    Openid(&'a OpenId),
    Address(IpAddr),
}

impl Caller<'_> {
    fn key(&self, route: &str) -> String {
        match self {
            Caller::Openid(openid) => format!("{route}:openid:{}", openid.as_str()),
            Caller::Address(address) => format!("{route}:address:{address}"),
        }
    }
}

#[derive(Clone)]
pub struct RateLimiter {
    db: PgPool,
}

impl RateLimiter {
    pub fn new(db: PgPool) -> Self {
        RateLimiter { db }
    }

    /// Counts one request of each caller on `route`; refuses it (429) if any of them went
    /// past its limit in this minute.
    pub async fn check(&self, route: &str, callers: &[(Caller<'_>, u32)]) -> Result<(), ApiError> {
        let keys: Vec<String> = callers
            .iter()
            .map(|(caller, _)| caller.key(route))
            .collect();
        let counted = self.count(&keys).await?;
        let over = callers.iter().zip(&keys).any(|((_, limit), key)| {
            counted
                .iter()
                .any(|(k, hits)| k == key && *hits > i64::from(*limit))
        });
        if over {
            metrics::counter!("rate_limited_total", "route" => route.to_owned()).increment(1);
            return Err(ApiError::TooManyRequests);
        }
        Ok(())
    }

    /// Whether `key` is past `limit` this minute already, without counting a hit.
    pub async fn over(&self, key: &str, limit: u32) -> Result<bool, sqlx::Error> {
        let hits = sqlx::query_scalar!(
            "SELECT hits FROM rate_limits WHERE key = $1 AND window_start = date_trunc('minute', now())",
            key,
        )
        .fetch_optional(&self.db)
        .await?;
        Ok(hits.is_some_and(|hits| hits >= i32::try_from(limit).unwrap_or(i32::MAX)))
    }

    /// Counts one hit on `key`; false once it is past `limit` this minute.
    pub async fn allow(&self, key: &str, limit: u32) -> Result<bool, sqlx::Error> {
        let counted = self.count(&[key.to_owned()]).await?;
        Ok(counted
            .first()
            .is_none_or(|(_, hits)| *hits <= i64::from(limit)))
    }

    async fn count(&self, keys: &[String]) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let rows = sqlx::query!(
            r#"INSERT INTO rate_limits (key, window_start, hits)
               SELECT key, date_trunc('minute', now()), 1 FROM unnest($1::text[]) AS key
               ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limits.hits + 1
               RETURNING key, hits::int8 AS "hits!""#,
            keys,
        )
        .fetch_all(&self.db)
        .await?;
        Ok(rows.into_iter().map(|r| (r.key, r.hits)).collect())
    }
}

/// Forgets minutes that are over, once a minute.
pub struct Expiry(pub PgPool);

/// Windows forgotten.
#[derive(Debug)]
pub struct Expired(pub u64);

impl RoundReport for Expired {
    fn is_quiet(&self) -> bool {
        // Routine: not worth a log line.
        true
    }
}

impl Rounds for Expiry {
    type Report = Expired;
    type Error = sqlx::Error;

    async fn round(&self, _hold: &shared::jobs::Hold) -> Result<Expired, sqlx::Error> {
        let deleted = sqlx::query!(
            "DELETE FROM rate_limits WHERE window_start < date_trunc('minute', now()) - interval '1 minute'"
        )
        .execute(&self.0)
        .await?
        .rows_affected();
        Ok(Expired(deleted))
    }
}

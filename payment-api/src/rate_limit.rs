//! Rate limits every payment-api instance shares: hits are counted in PostgreSQL
//! (`rate_limits`, one row per key and minute), so N instances do not give a caller N
//! times the limit. Each limited route counts per openid and per client address, as the
//! system we replace did per address (100 a minute by default, 10 orders and 20 payments a
//! minute per user); addresses are counted as [`client_address::bucket`] says.
//!
//! Only requests let through count. A refused one (429) adds to no bucket: an address is
//! often shared (one gateway address, one NAT), and if one user's refused requests counted
//! against it, that user could lock everyone else at the address out; nor may others'
//! traffic at a full address use up a user's own allowance. Hammering gains nothing all
//! the same: the window is a fixed minute, and a refused request costs one statement.
//! Requests without an identity (401) or with an unreadable body (400) are refused before
//! they reach a limit and count nowhere. One let through still counts if it turns out
//! invalid (400): it is within its user's allowance, so no user adds more to an address
//! than that allowance, whatever they send.

use std::net::IpAddr;

use shared::jobs::{RoundReport, Rounds};
use shared::order::OpenId;
use sqlx::{PgConnection, PgPool};

use crate::client_address;
use crate::config::Limits;

/// A route whose callers are counted; its name is part of every key it counts under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    CreateOrder,
    CancelOrder,
    CreatePayment,
    /// Product and bill lookups share one limit: each costs a Unitel call unless cached.
    UnitelLookups,
    /// Direct mode's `POST /auth/login`: counted per client address only (nobody is known
    /// yet); each costs a call to WeChat.
    Login,
}

impl Route {
    /// The name keys and metrics carry (unchanged from when handlers typed it).
    pub fn as_str(self) -> &'static str {
        match self {
            Route::CreateOrder => "POST /orders",
            Route::CancelOrder => "POST /orders/{orderNumber}/cancel",
            Route::CreatePayment => "POST /payment/create",
            Route::UnitelLookups => "Unitel lookups",
            Route::Login => "POST /auth/login",
        }
    }

    /// What one user may do on this route a minute.
    fn per_user(self, limits: &Limits) -> u32 {
        match self {
            Route::CreateOrder => limits.orders_per_minute,
            Route::CancelOrder => limits.cancels_per_minute,
            Route::CreatePayment => limits.payments_per_minute,
            Route::UnitelLookups => limits.lookups_per_minute,
            // Never counted per user (see `check_address`).
            Route::Login => limits.per_address_per_minute,
        }
    }
}

/// Why a request was not let through.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// A caller is at its limit this minute (429).
    #[error("too many requests")]
    TooMany,
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

/// Who is counted.
pub enum Caller<'a> {
    Openid(&'a OpenId),
    Address(IpAddr),
}

impl Caller<'_> {
    fn key(&self, route: Route) -> String {
        let route = route.as_str();
        match self {
            Caller::Openid(openid) => format!("{route}:openid:{}", openid.as_str()),
            Caller::Address(address) => {
                format!("{route}:address:{}", client_address::bucket(*address))
            }
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

    /// Lets the request through (counting one hit for each caller on `route`) unless one of
    /// them is at its limit this minute; then it is refused (429) and nothing is counted.
    pub async fn check(
        &self,
        route: Route,
        callers: &[(Caller<'_>, u32)],
    ) -> Result<(), LimitError> {
        let mut limits: Vec<(String, u32)> = callers
            .iter()
            .map(|(caller, limit)| (caller.key(route), *limit))
            .collect();
        // Every request locks its rows in the same order: two cannot deadlock.
        limits.sort();
        let keys: Vec<String> = limits.iter().map(|(key, _)| key.clone()).collect();
        // The hits are taken back unless all are within their limits; until then their rows
        // stay locked, so concurrent requests on one key are counted one after the other.
        let mut tx = self.db.begin().await?;
        let counted = count(&mut tx, &keys).await?;
        let over = limits.iter().any(|(key, limit)| {
            counted
                .iter()
                .any(|(k, hits)| k == key && *hits > i64::from(*limit))
        });
        if over {
            tx.rollback().await?;
            metrics::counter!("rate_limited_total", "route" => route.as_str()).increment(1);
            return Err(LimitError::TooMany);
        }
        tx.commit().await?;
        Ok(())
    }

    /// A user's request on `route`, counted against the route's limit for the user and the
    /// limit every route shares for the client's address.
    pub async fn check_user(
        &self,
        route: Route,
        limits: &Limits,
        openid: &OpenId,
        address: IpAddr,
    ) -> Result<(), LimitError> {
        self.check(
            route,
            &[
                (Caller::Openid(openid), route.per_user(limits)),
                (Caller::Address(address), limits.per_address_per_minute),
            ],
        )
        .await
    }

    /// A request from a caller not known yet, counted against the limit every route shares
    /// for the client's address.
    pub async fn check_address(
        &self,
        route: Route,
        limits: &Limits,
        address: IpAddr,
    ) -> Result<(), LimitError> {
        self.check(
            route,
            &[(Caller::Address(address), limits.per_address_per_minute)],
        )
        .await
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

    /// Counts one hit on `key`, whatever the answer; false once it is past `limit` this
    /// minute.
    pub async fn allow(&self, key: &str, limit: u32) -> Result<bool, sqlx::Error> {
        let mut connection = self.db.acquire().await?;
        let counted = count(&mut connection, &[key.to_owned()]).await?;
        Ok(counted
            .first()
            .is_none_or(|(_, hits)| *hits <= i64::from(limit)))
    }
}

/// Counts one hit on each of `keys`; their counts this minute.
async fn count(
    connection: &mut PgConnection,
    keys: &[String],
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"INSERT INTO rate_limits (key, window_start, hits)
               SELECT key, date_trunc('minute', now()), 1 FROM unnest($1::text[]) AS key
               ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limits.hits + 1
               RETURNING key, hits::int8 AS "hits!""#,
        keys,
    )
    .fetch_all(connection)
    .await?;
    Ok(rows.into_iter().map(|r| (r.key, r.hits)).collect())
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

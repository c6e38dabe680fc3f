//! Settling an `unknown` top-up once a person has checked with Unitel what happened.

use chrono::{DateTime, Utc};
use shared::lifecycle::{self, Settlement, Settler, Verdict};
use shared::order::{OrderNumber, RechargeStatus};

use crate::context::ApiContext;
use crate::store::orders;

/// Why the top-up was not settled.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("Order not found")]
    NotFound,
    #[error("Only an unknown top-up can be resolved; this one is {0}")]
    NotUnknown(RechargeStatus),
    /// The request marked sent could still reach Unitel until `from`.
    #[error("The top-up request may still reach Unitel: it can be resolved as failed from {} UTC, once checked with Unitel again (success can be recorded now)", from.format("%Y-%m-%d %H:%M:%S"))]
    TooEarly { from: DateTime<Utc> },
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

/// Settles an `unknown` top-up as `verdict` says. `failed` is refused while the request
/// marked sent could still reach Unitel.
pub async fn resolve_unknown(
    ctx: &ApiContext,
    order_number: &OrderNumber,
    verdict: &Verdict,
    settler: &Settler,
) -> Result<(), ResolveError> {
    // A worker paused after marking the request sent could still write it once awake: a
    // refund for a top-up that then credits the number pays the customer twice. When it
    // marked the order, the worker recorded the latest moment its request can reach Unitel
    // (its lease's end, after which it writes nothing, plus its own Unitel timeout), so
    // none of its settings is needed here. For an order marked by a worker that recorded
    // none (an older version, during a rolling deploy): the longest lease a worker may
    // hold plus this service's own UNITEL_TIMEOUT_MS, which deployments set alike.
    let unrecorded_in_flight = lifecycle::LONGEST_LEASE + ctx.config.unitel.timeout;
    match lifecycle::settle_unknown(
        &ctx.db,
        order_number,
        verdict,
        settler,
        unrecorded_in_flight,
    )
    .await?
    {
        Settlement::Settled => Ok(()),
        Settlement::TooEarly { from } => Err(ResolveError::TooEarly { from }),
        Settlement::NotUnknown => Err(match orders::find(&ctx.db, order_number, None).await? {
            None => ResolveError::NotFound,
            Some(row) => ResolveError::NotUnknown(row.recharge_status),
        }),
    }
}

//! How many rejected notifications a source may have recorded: the payment and the refund
//! callbacks share the allowance.

use std::net::IpAddr;

use shared::history::AnomalyKind;

use super::Payments;
use crate::client_address::bucket;

/// Whether a rejected callback from this source is recorded: at most
/// `CALLBACK_REJECTS_PER_MINUTE` a minute per source address, so that requests nobody
/// verified cannot fill the database. Past that they are only counted. A source that
/// fills its share (or one sharing its address) locks nobody out: every callback is still
/// checked and answered, only further rejections go unrecorded, and money taken for an
/// order that will not be fulfilled is recorded whatever the count.
pub async fn keep_rejection(
    payments: &Payments,
    source: IpAddr,
    kind: AnomalyKind,
) -> Result<bool, sqlx::Error> {
    let key = format!("callback-rejects:address:{}", bucket(source));
    if payments
        .limiter
        .allow(&key, payments.rejects_per_minute)
        .await?
    {
        return Ok(true);
    }
    metrics::counter!("payment_callbacks_total", "outcome" => "rejected_unrecorded").increment(1);
    tracing::debug!(%kind, %source, "rejected callback not recorded: too many from this source");
    Ok(false)
}

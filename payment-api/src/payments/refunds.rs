//! Money back. A refund is requested (by a person through the admin route, or
//! automatically for an order whose top-up failed definitively), pushed to WeChat under a
//! deterministic `out_refund_no` — so retrying can never refund twice — and settled only
//! when `queryrefund` confirms it, whether the refund callback arrived or not.
//!
//! The refund's states and their transitions are in [`shared::lifecycle`]; this module
//! decides when to take them, from what WeChat answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::history::Actor;
use shared::jobs::{ExclusiveJob, Hold, RoundReport, Rounds};
use shared::lifecycle::{self, RefundChange};
use shared::money::Fen;
use shared::order::{OrderNumber, PayChannel, PaymentStatus, RechargeStatus, RefundStatus};
use sqlx::PgPool;

use crate::wechat::{WechatError, WechatPay};

const BATCH: i64 = 100;
/// WeChat's answers that will not change by asking again.
const DEFINITIVE_REFUSALS: &[&str] = &[
    "ERROR",
    "REFUND_FEE_MISMATCH",
    "PARAM_ERROR",
    "ORDERNOTEXIST",
    "USER_ACCOUNT_ABNORMAL",
    "TRADE_OVERDUE",
];
/// A refund WeChat keeps refusing for passing reasons is handed to a person after this.
const MAX_ATTEMPTS: i32 = 20;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    #[schema(value_type = String)]
    pub order_number: OrderNumber,
    pub out_refund_no: String,
    #[schema(value_type = i64)]
    pub amount_fen: Fen,
    pub reason: String,
    /// `admin:<name>` or `auto`.
    #[schema(value_type = String)]
    pub requested_by: Actor,
    /// `requested`, `accepted`, `success` or `failed`.
    #[schema(value_type = String)]
    pub status: RefundStatus,
    pub refund_id: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The channel of the order: the refund goes through the one that took the money.
    #[serde(skip)]
    pub channel: PayChannel,
}

pub async fn find(db: &PgPool, order_number: &OrderNumber) -> Result<Option<Refund>, sqlx::Error> {
    sqlx::query_as!(
        Refund,
        r#"SELECT r.order_number AS "order_number: _", r.out_refund_no,
                  r.amount_fen AS "amount_fen: _", r.reason, r.requested_by AS "requested_by: _",
                  r.status AS "status: _", r.refund_id, r.attempts, r.last_error, r.created_at,
                  r.completed_at, o.pay_channel AS "channel: _"
             FROM refunds r JOIN orders o ON o.order_number = r.order_number
            WHERE r.order_number = $1"#,
        order_number.as_str(),
    )
    .fetch_optional(db)
    .await
}

/// The refunds of these orders, by order.
pub async fn find_many(
    db: &PgPool,
    order_numbers: &[OrderNumber],
) -> Result<HashMap<OrderNumber, Refund>, sqlx::Error> {
    let refunds = sqlx::query_as!(
        Refund,
        r#"SELECT r.order_number AS "order_number: _", r.out_refund_no,
                  r.amount_fen AS "amount_fen: _", r.reason, r.requested_by AS "requested_by: _",
                  r.status AS "status: _", r.refund_id, r.attempts, r.last_error, r.created_at,
                  r.completed_at, o.pay_channel AS "channel: _"
             FROM refunds r JOIN orders o ON o.order_number = r.order_number
            WHERE r.order_number = ANY($1)"#,
        order_numbers as &[OrderNumber],
    )
    .fetch_all(db)
    .await?;
    Ok(refunds
        .into_iter()
        .map(|r| (r.order_number.clone(), r))
        .collect())
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("Order not found")]
    NotFound,
    #[error("{0}")]
    NotRefundable(String),
    #[error("A refund for this order was already {0}")]
    AlreadyRequested(RefundStatus),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Why a failed refund was not sent again.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("No refund for this order")]
    NoRefund,
    #[error("Only a failed refund can be retried; this one is {0}")]
    NotFailed(RefundStatus),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Sends a failed refund to WeChat again, under the same refund number (so it can never
/// be paid twice); the refund sweep takes it from there.
pub async fn retry(
    db: &PgPool,
    order_number: &OrderNumber,
    retried_by: &Actor,
    note: &str,
) -> Result<Refund, RetryError> {
    let retried = lifecycle::retry_refund(db, order_number, retried_by, note).await?;
    let refund = find(db, order_number).await?.ok_or(RetryError::NoRefund)?;
    if !retried {
        return Err(RetryError::NotFailed(refund.status));
    }
    tracing::info!(order_number = %order_number, by = %retried_by, "failed refund sent again by a person");
    Ok(refund)
}

/// What the refund desk needs, and nothing else.
pub struct Refunds {
    pub db: PgPool,
    pub wechat: Arc<WechatPay>,
    /// Refund every definitively failed top-up without waiting for a person.
    pub auto_refund_failed: bool,
    pub every: Duration,
}

#[derive(Debug, Default)]
pub struct RefundReport {
    pub requested: usize,
    pub sent: usize,
    pub checked: usize,
}

impl RoundReport for RefundReport {
    fn is_quiet(&self) -> bool {
        self.requested + self.sent + self.checked == 0
    }
}

impl Refunds {
    /// Requests the refund of a paid order whose top-up failed — or was credited, only
    /// when `include_credited` says so; never a second one for the same order. An error
    /// says why not.
    pub async fn request(
        &self,
        order_number: &OrderNumber,
        reason: &str,
        requested_by: &Actor,
        include_credited: bool,
    ) -> Result<Refund, RequestError> {
        let requested = lifecycle::request_refund(
            &self.db,
            order_number,
            reason,
            requested_by,
            include_credited,
        )
        .await?;
        if let Some(refund) = find(&self.db, order_number).await? {
            return if requested {
                Ok(refund)
            } else {
                Err(RequestError::AlreadyRequested(refund.status))
            };
        }
        let state = sqlx::query!(
            r#"SELECT payment_status AS "payment_status: PaymentStatus",
                      recharge_status AS "recharge_status: RechargeStatus"
                 FROM orders WHERE order_number = $1"#,
            order_number.as_str(),
        )
        .fetch_optional(&self.db)
        .await?;
        Err(match state {
            None => RequestError::NotFound,
            Some(order) if order.payment_status != PaymentStatus::Paid => RequestError::NotRefundable(
                format!("The order is {}: there is nothing to refund", order.payment_status),
            ),
            Some(order) if order.recharge_status == RechargeStatus::Success => {
                RequestError::NotRefundable(
                    "The number was credited: refunding it needs includeCredited=true and a reason"
                        .into(),
                )
            }
            Some(order) => RequestError::NotRefundable(format!(
                "The top-up is {}: it must be settled (failed, or resolved by a person) before a refund",
                order.recharge_status
            )),
        })
    }

    /// A person's request: recorded, then sent to WeChat at once (the sweep sends it
    /// otherwise); the refund as it stands after that.
    pub async fn ask(
        &self,
        order_number: &OrderNumber,
        reason: &str,
        requested_by: &Actor,
        include_credited: bool,
    ) -> Result<Refund, RequestError> {
        let refund = self
            .request(order_number, reason, requested_by, include_credited)
            .await?;
        tracing::info!(order_number = %order_number, by = %requested_by, "refund requested");
        if let Err(error) = self.push(order_number).await {
            tracing::warn!(%error, "sending the refund now failed; the sweep will");
        }
        Ok(find(&self.db, order_number).await?.unwrap_or(refund))
    }

    /// Requests refunds for failed top-ups that may be refunded without a person.
    async fn request_for_failed_top_ups(&self) -> Result<usize, sqlx::Error> {
        let mut requested = 0;
        for failed in lifecycle::failed_top_ups_to_refund(&self.db, BATCH).await? {
            let reason = format!(
                "top-up failed: {} {}",
                failed.error_code.as_deref().unwrap_or(""),
                failed.error_message.as_deref().unwrap_or("")
            );
            if lifecycle::request_refund(
                &self.db,
                &failed.order_number,
                reason.trim_end(),
                &Actor::AutoRefund,
                false,
            )
            .await?
            {
                requested += 1;
            }
        }
        Ok(requested)
    }

    /// Pushes a requested refund to WeChat (the same `out_refund_no` every time).
    async fn send(&self, refund: &Refund) -> Result<(), sqlx::Error> {
        let order_number = &refund.order_number;
        let sent = self
            .wechat
            .refund(
                refund.channel,
                order_number,
                &refund.out_refund_no,
                refund.amount_fen,
                refund.amount_fen,
                &refund.reason,
            )
            .await;
        match sent {
            Ok(accepted) => {
                lifecycle::change_refund(
                    &self.db,
                    order_number,
                    RefundChange::Accepted {
                        refund_id: accepted.refund_id.as_deref(),
                    },
                )
                .await?;
                tracing::info!(order_number = %order_number, "refund accepted by WeChat");
            }
            Err(WechatError::Business { code, description })
                if DEFINITIVE_REFUSALS.contains(&code.as_str())
                    || refund.attempts + 1 >= MAX_ATTEMPTS =>
            {
                // `ERROR` is also what a concurrent or earlier request for the same refund can
                // earn: if WeChat knows our refund number, it was accepted after all.
                let Ok(known) = self
                    .wechat
                    .query_refund(refund.channel, order_number, &refund.out_refund_no)
                    .await
                else {
                    return Ok(()); // cannot tell now: the next round tries again
                };
                if let Some(ours) = known {
                    lifecycle::change_refund(
                        &self.db,
                        order_number,
                        RefundChange::Accepted {
                            refund_id: ours.refund_id.as_deref(),
                        },
                    )
                    .await?;
                    return Ok(());
                }
                let error = format!("{code}: {description}");
                lifecycle::change_refund(
                    &self.db,
                    order_number,
                    RefundChange::Failed {
                        from: RefundStatus::Requested,
                        error: &error,
                    },
                )
                .await?;
                tracing::error!(order_number = %order_number, %error, alert = true, "WeChat refused the refund");
            }
            Err(error) => {
                // Not refused for good (busy, balance, platform): try again later, same number.
                lifecycle::refund_deferred(&self.db, order_number, &error.to_string()).await?;
                tracing::warn!(order_number = %order_number, %error, "refund not sent yet; will retry");
            }
        }
        Ok(())
    }

    /// Sends a requested refund now rather than at the next round, unless a round is
    /// running (it sends it shortly).
    pub async fn push(&self, order_number: &OrderNumber) -> Result<(), sqlx::Error> {
        let Some(lock) = ExclusiveJob::RefundSweep.try_lock(&self.db).await? else {
            return Ok(());
        };
        if let Some(refund) = find(&self.db, order_number).await? {
            if refund.status == RefundStatus::Requested {
                self.send(&refund).await?;
            }
        }
        lock.release().await
    }

    /// Settles an accepted refund from `queryrefund`: the only source of truth for
    /// success. Returns the refund's status after the check, or `None` when it could not
    /// be checked (no such refund, or WeChat unreachable).
    pub async fn check(
        &self,
        order_number: &OrderNumber,
    ) -> Result<Option<RefundStatus>, sqlx::Error> {
        let Some(refund) = find(&self.db, order_number).await? else {
            return Ok(None);
        };
        if refund.status != RefundStatus::Accepted {
            return Ok(Some(refund.status));
        }
        let known = self
            .wechat
            .query_refund(refund.channel, order_number, &refund.out_refund_no)
            .await;
        let ours = match known {
            Ok(ours) => ours,
            Err(error) => {
                tracing::warn!(order_number = %order_number, %error, "queryrefund failed");
                return Ok(None);
            }
        };
        let ours = ours.as_ref();
        let status = ours.map_or(RefundStatus::Accepted, |s| s.status);
        match (status, ours) {
            (RefundStatus::Success, Some(ours)) => {
                lifecycle::change_refund(
                    &self.db,
                    order_number,
                    RefundChange::Succeeded {
                        refund_id: ours.refund_id.as_deref(),
                    },
                )
                .await?;
                tracing::info!(order_number = %order_number, "refund confirmed");
            }
            (RefundStatus::Failed, Some(ours)) => {
                let error = format!("WeChat reports the refund {}", ours.wechat_status);
                lifecycle::change_refund(
                    &self.db,
                    order_number,
                    RefundChange::Failed {
                        from: RefundStatus::Accepted,
                        error: &error,
                    },
                )
                .await?;
                tracing::error!(order_number = %order_number, %error, alert = true, "refund failed; a person must return the money");
            }
            _ => lifecycle::refund_check_later(&self.db, order_number).await?,
        }
        Ok(Some(status))
    }

    /// One round: request automatic refunds, send requested ones, check accepted ones;
    /// stopped before its next send once `hold` says the job's lock is lost (another
    /// instance may be sending the same refunds by then).
    pub async fn round(&self, hold: &Hold) -> Result<RefundReport, sqlx::Error> {
        let mut report = RefundReport::default();
        if self.auto_refund_failed {
            report.requested = self.request_for_failed_top_ups().await?;
        }
        let due = sqlx::query_scalar!(
            r#"SELECT order_number AS "order_number: OrderNumber" FROM refunds
                WHERE status IN ('requested', 'accepted') AND next_check_at <= now()
                ORDER BY next_check_at LIMIT $1"#,
            BATCH,
        )
        .fetch_all(&self.db)
        .await?;
        for order_number in due {
            if hold.is_lost() {
                break;
            }
            let Some(refund) = find(&self.db, &order_number).await? else {
                continue;
            };
            match refund.status {
                RefundStatus::Requested => {
                    self.send(&refund).await?;
                    report.sent += 1;
                }
                RefundStatus::Accepted => {
                    self.check(&order_number).await?;
                    report.checked += 1;
                }
                RefundStatus::Success | RefundStatus::Failed => {}
            }
        }
        Ok(report)
    }
}

impl Rounds for Refunds {
    type Report = RefundReport;
    type Error = sqlx::Error;

    async fn round(&self, hold: &Hold) -> Result<RefundReport, sqlx::Error> {
        Refunds::round(self, hold).await
    }
}

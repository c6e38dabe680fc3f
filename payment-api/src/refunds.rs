//! Money back. A refund is requested (by a person through the admin route, or
//! automatically for an order whose top-up failed definitively), pushed to WeChat under a
//! deterministic `out_refund_no` — so retrying can never refund twice — and settled only
//! when `queryrefund` confirms it, whether the refund callback arrived or not.
//!
//! States: `requested → accepted → success`, or `failed` when WeChat refuses or closes it
//! (a person must act: logged with `alert=true`).

use serde::Serialize;
use shared::money::Fen;
use shared::order::OrderNumber;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::context::ApiContext;
use crate::wechat::WechatError;

const SWEEP_LOCK: i64 = 0x656c_6966_6503;
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

/// Our refund number for an order: one refund per order, always the same number.
pub fn out_refund_no(order_number: &str) -> String {
    format!("RF{order_number}")
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    pub order_number: String,
    pub out_refund_no: String,
    pub amount_fen: i64,
    pub reason: String,
    pub requested_by: String,
    /// `requested`, `accepted`, `success` or `failed`.
    pub status: String,
    pub refund_id: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

const COLUMNS: &str =
    "order_number, out_refund_no, amount_fen, reason, requested_by, status, refund_id,
    attempts, last_error, created_at, completed_at";

pub async fn find(db: &PgPool, order_number: &str) -> Result<Option<Refund>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM refunds WHERE order_number = $1"
    ))
    .bind(order_number)
    .fetch_optional(db)
    .await
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("Order not found")]
    NotFound,
    #[error("{0}")]
    NotRefundable(String),
    #[error("A refund for this order was already {0}")]
    AlreadyRequested(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Requests the refund of a paid order whose top-up failed — or was credited, only when
/// `include_credited` says so — in one statement; never a second one for the same order.
pub async fn request(
    db: &PgPool,
    order_number: &OrderNumber,
    reason: &str,
    requested_by: &str,
    include_credited: bool,
) -> Result<Refund, RequestError> {
    let created: Option<Refund> = sqlx::query_as(&format!(
        "WITH created AS (
            INSERT INTO refunds (order_number, out_refund_no, amount_fen, reason, requested_by)
            SELECT order_number, $2, amount_fen, $3, $4 FROM orders
             WHERE order_number = $1 AND payment_status = 'paid'
               AND (recharge_status = 'failed' OR (recharge_status = 'success' AND $5))
            ON CONFLICT (order_number) DO NOTHING
            RETURNING {COLUMNS}
         ), event AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT order_number, 'refund_requested', $4, jsonb_build_object('reason', $3::text)
            FROM created
         )
         SELECT {COLUMNS} FROM created"
    ))
    .bind(order_number.as_str())
    .bind(out_refund_no(order_number.as_str()))
    .bind(reason)
    .bind(requested_by)
    .bind(include_credited)
    .fetch_optional(db)
    .await?;
    if let Some(refund) = created {
        return Ok(refund);
    }
    if let Some(existing) = find(db, order_number.as_str()).await? {
        return Err(RequestError::AlreadyRequested(existing.status));
    }
    let state: Option<(String, String)> = sqlx::query_as(
        "SELECT payment_status, recharge_status FROM orders WHERE order_number = $1",
    )
    .bind(order_number.as_str())
    .fetch_optional(db)
    .await?;
    Err(match state {
        None => RequestError::NotFound,
        Some((payment, _)) if payment != "paid" => {
            RequestError::NotRefundable(format!("The order is {payment}: there is nothing to refund"))
        }
        Some((_, recharge)) if recharge == "success" => RequestError::NotRefundable(
            "The number was credited: refunding it needs includeCredited=true and a reason".into(),
        ),
        Some((_, recharge)) => RequestError::NotRefundable(format!(
            "The top-up is {recharge}: it must be settled (failed, or resolved by a person) before a refund"
        )),
    })
}

/// Requests refunds for every paid order whose top-up failed and that has none yet.
async fn request_for_failed_orders(db: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "WITH created AS (
            INSERT INTO refunds (order_number, out_refund_no, amount_fen, reason, requested_by)
            SELECT o.order_number, 'RF' || o.order_number, o.amount_fen,
                   'top-up failed: ' || coalesce(o.recharge_error_code, '') || ' ' || coalesce(o.recharge_error_message, ''),
                   'auto'
              FROM orders o
             WHERE o.payment_status = 'paid' AND o.recharge_status = 'failed'
               AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.order_number = o.order_number)
               -- failures from before refunds existed may have been refunded by hand
               AND o.recharged_at >= (SELECT at FROM app_settings WHERE name = 'auto_refunds_since')
               -- once unknown, only a person's verdict counts
               AND (NOT EXISTS (SELECT 1 FROM order_events e
                                 WHERE e.order_number = o.order_number AND e.event = 'unknown')
                    OR EXISTS (SELECT 1 FROM order_events e
                                WHERE e.order_number = o.order_number AND e.event = 'failed'
                                  AND e.actor LIKE 'admin:%'))
             LIMIT $1
            ON CONFLICT (order_number) DO NOTHING
            RETURNING order_number, reason
         )
         INSERT INTO order_events (order_number, event, actor, detail)
         SELECT order_number, 'refund_requested', 'auto', jsonb_build_object('reason', reason)
         FROM created",
    )
    .bind(BATCH)
    .execute(db)
    .await?
    .rows_affected())
}

async fn transition(
    db: &PgPool,
    order_number: &str,
    from: &[&str],
    to: &str,
    refund_id: Option<&str>,
    error: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let from: Vec<String> = from.iter().map(|s| s.to_string()).collect();
    let changed: Option<String> = sqlx::query_scalar(
        "WITH changed AS (
            UPDATE refunds
               SET status = $3, refund_id = COALESCE($4, refund_id), last_error = $5,
                   attempts = attempts + CASE WHEN $3 = 'accepted' THEN 1 ELSE 0 END,
                   completed_at = CASE WHEN $3 IN ('success', 'failed') THEN now() END,
                   next_check_at = now() + interval '5 seconds', updated_at = now()
             WHERE order_number = $1 AND status = ANY($2)
            RETURNING order_number
         ), event AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT order_number, 'refund_' || $3, 'refund-sweep',
                   jsonb_strip_nulls(jsonb_build_object('refundId', $4::text, 'error', $5::text))
            FROM changed
         )
         SELECT order_number FROM changed",
    )
    .bind(order_number)
    .bind(&from)
    .bind(to)
    .bind(refund_id)
    .bind(error)
    .fetch_optional(db)
    .await?;
    if changed.is_some() {
        metrics::counter!("refunds_total", "status" => to.to_owned()).increment(1);
    }
    Ok(changed.is_some())
}

/// Pushes a requested refund to WeChat (the same `out_refund_no` every time).
async fn send(ctx: &ApiContext, refund: &Refund) -> Result<(), sqlx::Error> {
    let (Ok(order_number), Ok(amount)) = (
        OrderNumber::parse(&refund.order_number),
        Fen::new(refund.amount_fen),
    ) else {
        return Ok(());
    };
    match ctx
        .wechat
        .refund(
            &order_number,
            &refund.out_refund_no,
            amount,
            amount,
            &refund.reason,
        )
        .await
    {
        Ok(accepted) => {
            transition(
                &ctx.db,
                &refund.order_number,
                &["requested"],
                "accepted",
                accepted.refund_id.as_deref(),
                None,
            )
            .await?;
            tracing::info!(order_number = %refund.order_number, "refund accepted by WeChat");
        }
        Err(WechatError::Business { code, description })
            if DEFINITIVE_REFUSALS.contains(&code.as_str())
                || refund.attempts + 1 >= MAX_ATTEMPTS =>
        {
            // `ERROR` is also what a concurrent or earlier request for the same refund can
            // earn: if WeChat knows our refund number, it was accepted after all.
            let Ok(states) = ctx.wechat.query_refunds(&order_number).await else {
                return Ok(()); // cannot tell now: the next round tries again
            };
            if let Some(ours) = states
                .iter()
                .find(|s| s.out_refund_no == refund.out_refund_no)
            {
                transition(
                    &ctx.db,
                    &refund.order_number,
                    &["requested"],
                    "accepted",
                    ours.refund_id.as_deref(),
                    None,
                )
                .await?;
                return Ok(());
            }
            let error = format!("{code}: {description}");
            transition(
                &ctx.db,
                &refund.order_number,
                &["requested"],
                "failed",
                None,
                Some(&error),
            )
            .await?;
            tracing::error!(order_number = %refund.order_number, %error, alert = true, "WeChat refused the refund");
        }
        Err(error) => {
            // Not refused for good (busy, balance, platform): try again later, same number.
            sqlx::query(
                "UPDATE refunds SET attempts = attempts + 1, last_error = $2, updated_at = now(),
                        next_check_at = now() + make_interval(secs => LEAST(600, 5 * power(2, LEAST(attempts, 7))))
                  WHERE order_number = $1 AND status = 'requested'",
            )
            .bind(&refund.order_number)
            .bind(error.to_string())
            .execute(&ctx.db)
            .await?;
            tracing::warn!(order_number = %refund.order_number, %error, "refund not sent yet; will retry");
        }
    }
    Ok(())
}

/// Sends a requested refund now rather than at the next sweep.
pub async fn push(ctx: &ApiContext, order_number: &str) -> Result<(), sqlx::Error> {
    // The sweep's lock: one sender at a time, or the sweep sends it shortly.
    let mut lock = ctx.db.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(SWEEP_LOCK)
        .fetch_one(&mut *lock)
        .await?;
    if locked {
        if let Some(refund) = find(&ctx.db, order_number)
            .await?
            .filter(|r| r.status == "requested")
        {
            send(ctx, &refund).await?;
        }
    }
    lock.commit().await
}

/// Settles an accepted refund from `queryrefund`: the only source of truth for success.
/// Returns the refund's status after the check, or `None` when it could not be checked
/// (no such refund, or WeChat unreachable).
pub async fn check(
    ctx: &ApiContext,
    order_number: &OrderNumber,
) -> Result<Option<String>, sqlx::Error> {
    let Some(refund) = find(&ctx.db, order_number.as_str()).await? else {
        return Ok(None);
    };
    if refund.status != "accepted" {
        return Ok(Some(refund.status));
    }
    let states = match ctx.wechat.query_refunds(order_number).await {
        Ok(states) => states,
        Err(error) => {
            tracing::warn!(order_number = %order_number, %error, "queryrefund failed");
            return Ok(None);
        }
    };
    let ours = states
        .iter()
        .find(|s| s.out_refund_no == refund.out_refund_no);
    let status = match ours.map(|s| s.status.as_str()) {
        Some("SUCCESS") => {
            transition(
                &ctx.db,
                order_number.as_str(),
                &["accepted"],
                "success",
                ours.and_then(|s| s.refund_id.as_deref()),
                None,
            )
            .await?;
            tracing::info!(order_number = %order_number, "refund confirmed");
            "success"
        }
        Some(closed @ ("REFUNDCLOSE" | "CHANGE")) => {
            let error = format!("WeChat reports the refund {closed}");
            transition(
                &ctx.db,
                order_number.as_str(),
                &["accepted"],
                "failed",
                None,
                Some(&error),
            )
            .await?;
            tracing::error!(order_number = %order_number, %error, alert = true, "refund failed; a person must return the money");
            "failed"
        }
        _ => {
            sqlx::query("UPDATE refunds SET next_check_at = now() + interval '30 seconds' WHERE order_number = $1")
                .bind(order_number.as_str())
                .execute(&ctx.db)
                .await?;
            "accepted"
        }
    };
    Ok(Some(status.to_owned()))
}

#[derive(Debug, Default)]
pub struct RefundReport {
    pub requested: u64,
    pub sent: usize,
    pub checked: usize,
}

pub async fn sweep_once(ctx: &ApiContext) -> Result<RefundReport, sqlx::Error> {
    let mut report = RefundReport::default();
    let mut lock = ctx.db.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(SWEEP_LOCK)
        .fetch_one(&mut *lock)
        .await?;
    if !locked {
        return Ok(report);
    }
    if ctx.config.payments.auto_refund_failed {
        report.requested = request_for_failed_orders(&ctx.db).await?;
    }
    let due: Vec<Refund> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM refunds WHERE status IN ('requested', 'accepted') AND next_check_at <= now()
          ORDER BY next_check_at LIMIT $1"
    ))
    .bind(BATCH)
    .fetch_all(&ctx.db)
    .await?;
    for refund in due {
        if refund.status == "requested" {
            send(ctx, &refund).await?;
            report.sent += 1;
        } else if let Ok(order_number) = OrderNumber::parse(&refund.order_number) {
            check(ctx, &order_number).await?;
            report.checked += 1;
        }
    }
    lock.commit().await?;
    Ok(report)
}

pub async fn run_sweeps(ctx: ApiContext, stop: CancellationToken) {
    let mut every = tokio::time::interval(ctx.config.payments.refund_sweep_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        match sweep_once(&ctx).await {
            Ok(report) if report.requested + report.sent as u64 + report.checked as u64 > 0 => {
                tracing::info!(?report, "refund sweep");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "refund sweep failed"),
        }
    }
}

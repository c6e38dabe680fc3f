//! `GET /admin/attention`: the paid orders a person must look at.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use shared::order::{Msisdn, OrderNumber, RechargeStatus, RefundStatus};
use utoipa::ToSchema;

use super::envelope::Envelope;
use super::error::ApiError;
use super::extractor::Admin;
use crate::context::ApiContext;
use crate::store::attention;

/// The attention list shows this many, oldest first; `total` tells how many there are.
const ATTENTION_LIMIT: i64 = 200;

pub fn router() -> Router<ApiContext> {
    Router::new().route("/admin/attention", get(attention))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttentionOrder {
    #[schema(value_type = String)]
    order_number: OrderNumber,
    #[schema(value_type = String)]
    phone_number: Msisdn,
    product_name: String,
    #[schema(value_type = String, example = "11.36")]
    amount_yuan: Decimal,
    #[schema(value_type = String)]
    recharge_status: RechargeStatus,
    #[schema(value_type = Option<String>)]
    refund_status: Option<RefundStatus>,
    /// `unknown` (resolve it), `failed_not_refunded` (refund it) or `refund_failed`
    /// (retry the refund, or return the money by other means).
    needs: &'static str,
    /// Unitel's or WeChat's last word on it.
    detail: Option<String>,
    paid_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttentionList {
    total: i64,
    /// The oldest first, at most 200.
    orders: Vec<AttentionOrder>,
}

/// Paid orders a person must look at: top-ups whose outcome is unknown, failed top-ups
/// without a refund under way, and refunds that failed.
#[utoipa::path(get, path = "/admin/attention", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, body = AttentionList), (status = 401, description = "Missing or wrong admin token")))]
async fn attention(
    State(ctx): State<ApiContext>,
    _admin: Admin,
) -> Result<Envelope<AttentionList>, ApiError> {
    let (rows, total) = attention::oldest(&ctx.db, ATTENTION_LIMIT).await?;
    let orders = rows
        .into_iter()
        .map(|row| {
            let refund_failed = row.refund_status == Some(RefundStatus::Failed);
            AttentionOrder {
                needs: match row.recharge_status {
                    RechargeStatus::Unknown => "unknown",
                    _ if refund_failed => "refund_failed",
                    _ => "failed_not_refunded",
                },
                detail: if refund_failed {
                    row.refund_error
                } else {
                    row.recharge_error_message
                },
                order_number: row.order_number,
                phone_number: row.phone_number,
                product_name: row.product_name,
                amount_yuan: row.amount_fen.yuan(),
                recharge_status: row.recharge_status,
                refund_status: row.refund_status,
                paid_at: row.paid_at,
            }
        })
        .collect();
    Ok(Envelope(AttentionList { total, orders }))
}

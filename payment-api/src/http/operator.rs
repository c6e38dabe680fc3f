//! The operator's page (`GET /admin`, its script and style, all compiled into the binary:
//! no CDN, nothing fetched from elsewhere) and the admin routes only it needed: the orders
//! waiting for a person, retrying a failed refund, and setting the exchange rate.
//!
//! The page itself holds no data; everything it shows comes from admin routes with the
//! token the operator types.

use std::str::FromStr;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::Router;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::money::MntPerYuan;
use utoipa::ToSchema;

use super::admin::{person, required_text, Admin};
use super::envelope::Envelope;
use super::error::ApiError;
use super::json::ApiJson;
use super::orders::{parse_order_number, OrderNumberParam};
use crate::context::ApiContext;
use crate::refunds::{self, Refund};

const PAGE: &str = include_str!("../../assets/admin/index.html");
const SCRIPT: &str = include_str!("../../assets/admin/app.js");
const STYLE: &str = include_str!("../../assets/admin/app.css");
/// Only this origin's script and style, no framing: the page handles a bearer token.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'";
/// The attention list shows this many, oldest first; `total` tells how many there are.
const ATTENTION_LIMIT: i64 = 200;
/// A rate outside this range is a typo, not a market move.
const RATE_RANGE: (i64, i64) = (10, 10_000);

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/admin", get(page))
        .route("/admin/app.js", get(script))
        .route("/admin/app.css", get(style))
        .route("/admin/attention", get(attention))
        .route("/admin/refunds/{order_number}/retry", post(retry_refund))
        .route("/admin/exchange-rate", put(set_exchange_rate))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

async fn page() -> impl IntoResponse {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AttentionOrder {
    order_number: String,
    phone_number: String,
    product_name: String,
    #[schema(value_type = String, example = "11.36")]
    amount_yuan: Decimal,
    recharge_status: String,
    refund_status: Option<String>,
    /// `unknown` (resolve it), `failed_not_refunded` (refund it) or `refund_failed`
    /// (retry the refund, or return the money by other means).
    needs: String,
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
    const NEEDING: &str = "FROM orders o LEFT JOIN refunds r ON r.order_number = o.order_number
        WHERE o.payment_status = 'paid'
          AND (o.recharge_status = 'unknown'
               OR (o.recharge_status = 'failed' AND (r.status IS NULL OR r.status = 'failed'))
               OR r.status = 'failed')";
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) {NEEDING}"))
        .fetch_one(&ctx.db)
        .await?;
    let orders = sqlx::query_as(&format!(
        "SELECT o.order_number, o.phone_number, o.product_name,
                (o.amount_fen::numeric / 100)::numeric(12, 2) AS amount_yuan,
                o.recharge_status, r.status AS refund_status,
                CASE WHEN o.recharge_status = 'unknown' THEN 'unknown'
                     WHEN r.status = 'failed' THEN 'refund_failed'
                     ELSE 'failed_not_refunded' END AS needs,
                CASE WHEN r.status = 'failed' THEN r.last_error
                     ELSE o.recharge_error_message END AS detail,
                o.paid_at
         {NEEDING}
         ORDER BY o.paid_at, o.id LIMIT $1"
    ))
    .bind(ATTENTION_LIMIT)
    .fetch_all(&ctx.db)
    .await?;
    Ok(Envelope(AttentionList { total, orders }))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryRequest {
    /// Why it is worth sending again (what changed). Kept in the order's history.
    #[schema(
        example = "merchant account topped up",
        pattern = r"\S",
        max_length = 200
    )]
    note: String,
    /// Who decided (default `admin`).
    #[serde(default)]
    #[schema(max_length = 100)]
    retried_by: Option<String>,
}

/// Sends a failed refund to WeChat again, under the same refund number (so it can never
/// be paid twice); the refund sweep takes it from there.
#[utoipa::path(post, path = "/admin/refunds/{orderNumber}/retry", tag = "admin",
    params(OrderNumberParam), request_body = RetryRequest, security(("admin_token" = [])),
    responses((status = 200, body = Refund), (status = 400, description = "Invalid note"),
              (status = 401, description = "Missing or wrong admin token"),
              (status = 404, description = "No refund for this order"),
              (status = 409, description = "The refund has not failed")))]
async fn retry_refund(
    State(ctx): State<ApiContext>,
    _admin: Admin,
    Path(order_number): Path<String>,
    ApiJson(request): ApiJson<RetryRequest>,
) -> Result<Envelope<Refund>, ApiError> {
    let order_number = parse_order_number(&order_number)?;
    let note = required_text(&request.note, "note", 200)?;
    let who = person(request.retried_by.as_deref(), "retriedBy")?;
    let retried: Option<String> = sqlx::query_scalar(
        "WITH retried AS (
            UPDATE refunds
               SET status = 'requested', attempts = 0, last_error = NULL, completed_at = NULL,
                   next_check_at = now(), updated_at = now()
             WHERE order_number = $1 AND status = 'failed'
            RETURNING order_number
         ), event AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT order_number, 'refund_retried', 'admin:' || $2, jsonb_build_object('note', $3::text)
              FROM retried
         )
         SELECT order_number FROM retried",
    )
    .bind(order_number.as_str())
    .bind(who)
    .bind(note)
    .fetch_optional(&ctx.db)
    .await?;
    let refund = refunds::find(&ctx.db, order_number.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound("No refund for this order".into()))?;
    if retried.is_none() {
        return Err(ApiError::Conflict(format!(
            "Only a failed refund can be retried; this one is {}",
            refund.status
        )));
    }
    tracing::info!(order_number = %order_number, by = who, "failed refund sent again by a person");
    Ok(Envelope(refund))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetRateRequest {
    /// Tugrik per yuan, at most four decimals, between 10 and 10000: a string such as
    /// `"445.5"` (or a JSON number).
    #[schema(value_type = String, example = "445.5")]
    rate: Value,
    /// Who set it (default `admin`).
    #[serde(default)]
    #[schema(max_length = 100)]
    set_by: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateSet {
    #[schema(value_type = String, example = "445.5")]
    rate: Decimal,
    set_by: String,
    set_at: DateTime<Utc>,
}

/// The rate as sent, exactly: from a string, or from a JSON number's own digits.
fn parse_rate(value: &Value) -> Result<MntPerYuan, ApiError> {
    let invalid = || {
        ApiError::BadRequest(format!(
            "rate must be a number of tugrik per yuan between {} and {} with at most 4 decimals",
            RATE_RANGE.0, RATE_RANGE.1
        ))
    };
    let text = match value {
        Value::String(text) => text.trim().to_owned(),
        Value::Number(number) => number.to_string(),
        _ => return Err(invalid()),
    };
    let rate = Decimal::from_str(&text).map_err(|_| invalid())?;
    if rate.normalize().scale() > 4
        || rate < Decimal::from(RATE_RANGE.0)
        || rate > Decimal::from(RATE_RANGE.1)
    {
        return Err(invalid());
    }
    MntPerYuan::new(rate.normalize()).map_err(|_| invalid())
}

/// Sets the MNT per CNY rate that prices new orders; orders already created keep theirs.
#[utoipa::path(put, path = "/admin/exchange-rate", tag = "admin", request_body = SetRateRequest,
    security(("admin_token" = [])),
    responses((status = 200, body = RateSet), (status = 400, description = "Invalid rate"),
              (status = 401, description = "Missing or wrong admin token")))]
async fn set_exchange_rate(
    State(ctx): State<ApiContext>,
    _admin: Admin,
    ApiJson(request): ApiJson<SetRateRequest>,
) -> Result<Envelope<RateSet>, ApiError> {
    let rate = parse_rate(&request.rate)?;
    let who = format!("admin:{}", person(request.set_by.as_deref(), "setBy")?);
    let set_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO exchange_rates (currency_pair, rate, set_by)
         VALUES ('MNT_TO_CNY', $1, $2) RETURNING created_at",
    )
    .bind(rate.get())
    .bind(&who)
    .fetch_one(&ctx.db)
    .await?;
    tracing::info!(rate = %rate.get(), by = %who, "exchange rate set");
    Ok(Envelope(RateSet {
        rate: rate.get(),
        set_by: who,
        set_at,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::parse_rate;

    #[test]
    fn rates_are_taken_exactly_or_refused() {
        assert_eq!(
            parse_rate(&json!("445.5")).unwrap().get().to_string(),
            "445.5"
        );
        assert_eq!(
            parse_rate(&json!(445.1234)).unwrap().get().to_string(),
            "445.1234"
        );
        assert_eq!(parse_rate(&json!(440)).unwrap().get().to_string(), "440");
        for bad in [
            json!("445.12345"),
            json!("0"),
            json!("-440"),
            json!("9.99"),
            json!("10000.01"),
            json!("abc"),
            json!(null),
            json!(true),
            json!("1e5"),
        ] {
            assert!(parse_rate(&bad).is_err(), "{bad}");
        }
    }
}

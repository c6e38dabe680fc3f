//! Routes for a person operating the service, behind `Authorization: Bearer <ADMIN_TOKEN>`:
//! an order's full history, and settling an `unknown` top-up once someone has checked with
//! Unitel what really happened.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::envelope::Envelope;
use super::error::ApiError;
use super::json::ApiJson;
use super::orders::{parse_order_number, OrderNumberParam, OrderView};
use crate::context::ApiContext;
use crate::store::orders;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/admin/orders/{order_number}", get(order_history))
        .route("/admin/orders/{order_number}/resolve", post(resolve))
}

/// A request that carried the admin token.
pub struct Admin;

impl FromRequestParts<ApiContext> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match (&ctx.config.admin_token, presented) {
            (Some(expected), Some(given))
                if constant_time_eq(expected.expose().as_bytes(), given.as_bytes()) =>
            {
                Ok(Admin)
            }
            _ => Err(ApiError::Unauthorized("Admin token required".into())),
        }
    }
}

/// Who did it, as the admin says (default `admin`), for the order's history.
pub fn person<'a>(given: Option<&'a str>, field: &str) -> Result<&'a str, ApiError> {
    let who = given
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .unwrap_or("admin");
    if who.chars().count() > 100 {
        return Err(ApiError::BadRequest(format!(
            "{field} must be at most 100 characters"
        )));
    }
    Ok(who)
}

/// A required free-text field, trimmed, of at most `max_chars` characters.
pub fn required_text<'a>(
    text: &'a str,
    field: &str,
    max_chars: usize,
) -> Result<&'a str, ApiError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > max_chars {
        return Err(ApiError::BadRequest(format!(
            "{field} must be 1 to {max_chars} characters"
        )));
    }
    Ok(text)
}

/// Compares without returning early, so response time does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct OrderEventView {
    event: String,
    actor: String,
    #[schema(value_type = Option<Object>)]
    detail: Option<serde_json::Value>,
    created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AnomalyView {
    kind: String,
    #[schema(value_type = Object)]
    detail: serde_json::Value,
    created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderHistory {
    order: OrderView,
    openid: String,
    anomaly: Option<String>,
    events: Vec<OrderEventView>,
    anomalies: Vec<AnomalyView>,
}

async fn history(ctx: &ApiContext, order_number: &str) -> Result<OrderHistory, ApiError> {
    let order_number = parse_order_number(order_number)?;
    let row = orders::find(&ctx.db, &order_number)
        .await?
        .ok_or_else(|| ApiError::NotFound("Order not found".into()))?;
    let (openid, anomaly): (String, Option<String>) =
        sqlx::query_as("SELECT openid, anomaly FROM orders WHERE order_number = $1")
            .bind(order_number.as_str())
            .fetch_one(&ctx.db)
            .await?;
    let events = sqlx::query_as(
        "SELECT event, actor, detail, created_at FROM order_events WHERE order_number = $1 ORDER BY id",
    )
    .bind(order_number.as_str())
    .fetch_all(&ctx.db)
    .await?;
    let anomalies = sqlx::query_as(
        "SELECT kind, detail, created_at FROM payment_anomalies WHERE order_number = $1 ORDER BY id",
    )
    .bind(order_number.as_str())
    .fetch_all(&ctx.db)
    .await?;
    let mut order = OrderView::from(row);
    order.refund = crate::refunds::find(&ctx.db, order_number.as_str()).await?;
    Ok(OrderHistory {
        order,
        openid,
        anomaly,
        events,
        anomalies,
    })
}

/// An order with every transition (who, when, why) and every anomaly reported about it.
#[utoipa::path(get, path = "/admin/orders/{orderNumber}", tag = "admin",
    params(OrderNumberParam), security(("admin_token" = [])),
    responses((status = 200, body = OrderHistory), (status = 401, description = "Missing or wrong admin token"),
              (status = 404, description = "No such order")))]
async fn order_history(
    State(ctx): State<ApiContext>,
    _admin: Admin,
    Path(order_number): Path<String>,
) -> Result<Envelope<OrderHistory>, ApiError> {
    Ok(Envelope(history(&ctx, &order_number).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolveRequest {
    /// What Unitel confirmed: `success` (the number was credited) or `failed` (it was not).
    #[schema(example = "success", pattern = r"^(success|failed)$")]
    outcome: String,
    /// Why: what was checked, with whom. Kept in the order's history.
    #[schema(
        example = "Unitel support confirmed seq 1760754386127 on 2026-11-24",
        pattern = r"\S",
        max_length = 1000
    )]
    note: String,
    /// Who decided (default `admin`).
    #[serde(default)]
    #[schema(max_length = 100)]
    resolved_by: Option<String>,
}

/// Settles an `unknown` top-up as credited or failed, with a note.
#[utoipa::path(post, path = "/admin/orders/{orderNumber}/resolve", tag = "admin",
    params(OrderNumberParam), request_body = ResolveRequest, security(("admin_token" = [])),
    responses((status = 200, body = OrderHistory), (status = 400, description = "Invalid outcome or note"),
              (status = 401, description = "Missing or wrong admin token"), (status = 404, description = "No such order"),
              (status = 409, description = "The order is not unknown")))]
async fn resolve(
    State(ctx): State<ApiContext>,
    _admin: Admin,
    Path(order_number): Path<String>,
    ApiJson(request): ApiJson<ResolveRequest>,
) -> Result<Envelope<OrderHistory>, ApiError> {
    let parsed = parse_order_number(&order_number)?;
    if !matches!(request.outcome.as_str(), "success" | "failed") {
        return Err(ApiError::BadRequest(
            "outcome must be success or failed".into(),
        ));
    }
    let note = required_text(&request.note, "note", 1000)?;
    let who = person(request.resolved_by.as_deref(), "resolvedBy")?;
    let resolved: Option<String> = sqlx::query_scalar(
        "WITH resolved AS (
            UPDATE orders
               SET recharge_status = $2, recharged_at = COALESCE(recharged_at, now()),
                   recharge_error_message = CASE WHEN $2 = 'failed' THEN $3 ELSE recharge_error_message END,
                   updated_at = now()
             WHERE order_number = $1 AND recharge_status = 'unknown'
            RETURNING order_number
         ), event AS (
            INSERT INTO order_events (order_number, event, actor, detail)
            SELECT order_number, $2, 'admin:' || $4, jsonb_build_object('resolved', true, 'note', $3::text)
            FROM resolved
         )
         SELECT order_number FROM resolved",
    )
    .bind(parsed.as_str())
    .bind(&request.outcome)
    .bind(note)
    .bind(who)
    .fetch_optional(&ctx.db)
    .await?;
    if resolved.is_none() {
        let exists = orders::find(&ctx.db, &parsed).await?;
        return Err(match exists {
            None => ApiError::NotFound("Order not found".into()),
            Some(row) => ApiError::Conflict(format!(
                "Only an unknown top-up can be resolved; this one is {}",
                row.recharge_status
            )),
        });
    }
    tracing::info!(order_number = %parsed, outcome = %request.outcome, by = who, "unknown top-up resolved by a person");
    Ok(Envelope(history(&ctx, &order_number).await?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(super::constant_time_eq(b"secret", b"secret"));
        assert!(!super::constant_time_eq(b"secret", b"secreT"));
        assert!(!super::constant_time_eq(b"secret", b"secret2"));
    }
}

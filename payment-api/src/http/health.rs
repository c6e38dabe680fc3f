use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::envelope::timestamp;
use crate::context::ApiContext;

pub fn router() -> Router<ApiContext> {
    Router::new().route("/health", get(health))
}

/// `/health` on the operations address: the same, with the unsafe settings accepted.
pub fn operations_router() -> Router<ApiContext> {
    Router::new().route("/health", get(health_with_warnings))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok`, or `degraded` (503).
    status: &'static str,
    /// When this answer was made (ISO, milliseconds, UTC).
    timestamp: String,
    database: &'static str,
    rabbitmq: &'static str,
    /// OrderPaid messages written but not yet confirmed by RabbitMQ.
    outbox_backlog: Option<i64>,
    /// Unsafe settings this instance was explicitly told to accept: only on the operations
    /// address (`METRICS_ADDR`), never on the public port, which would tell anyone how
    /// to forge a payment here.
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<Vec<String>>,
}

/// Liveness and readiness: PostgreSQL answers a query and the outbox relay holds a
/// RabbitMQ connection. 503 when either is down.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn health(State(ctx): State<ApiContext>) -> Response {
    answer(&ctx, None).await
}

async fn health_with_warnings(State(ctx): State<ApiContext>) -> Response {
    let warnings = ctx.config.warnings.clone();
    answer(&ctx, Some(warnings)).await
}

async fn answer(ctx: &ApiContext, warnings: Option<Vec<String>>) -> Response {
    let backlog = shared::outbox::backlog(&ctx.db)
        .await
        .ok()
        .map(|(count, _)| count);
    let database_up = backlog.is_some();
    let broker_up = ctx.outbox.broker_up();
    let healthy = database_up && broker_up;
    let body = Health {
        status: if healthy { "ok" } else { "degraded" },
        timestamp: timestamp(),
        database: if database_up { "up" } else { "down" },
        rabbitmq: if broker_up { "up" } else { "down" },
        outbox_backlog: backlog,
        warnings,
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let envelope = serde_json::json!({
        "code": status.as_u16(),
        "data": body,
        "message": if healthy { "success" } else { "degraded" },
        "timestamp": timestamp(),
    });
    (status, Json(envelope)).into_response()
}

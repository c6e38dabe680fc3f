//! The HTTP surface: one module per resource, each exposing `router()`, merged here.

mod admin;
mod admin_input;
mod admin_page;
mod attention;
mod auth;
mod days;
mod envelope;
mod error;
mod exchange_rate;
mod extractor;
mod gateway_call;
mod health;
mod json;
mod legacy_input;
mod legacy_stats;
mod openapi;
mod order_view;
mod orders;
mod params;
mod payment;
mod payment_callback;
mod payment_notify;
mod products;
mod reconciliation;
mod refund;
mod stats;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderName;
use axum::Router;
use tower_http::cors::CorsLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::context::ApiContext;

pub use error::ApiError;

/// No route takes more than a few hundred bytes; this bounds what a client can make us read.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The public router; with `operations`, `/metrics` and `/api` are served on it too
/// (development: nothing is apart).
pub fn router(ctx: ApiContext, operations: bool) -> Router {
    // Direct mode's own sessions; in cloud mode the gateway names the caller.
    let auth = match ctx.sessions {
        Some(_) => auth::router(),
        None => Router::new(),
    };
    // APIv3's notifications reach us only where WeChat Pay is talked to directly.
    let notify = match ctx.wechat.notification_verifier() {
        Some(_) => payment_notify::router(),
        None => Router::new(),
    };
    let router = Router::new()
        .merge(health::router())
        .merge(exchange_rate::router())
        .merge(products::router())
        .merge(orders::router())
        .merge(payment::router())
        .merge(payment_callback::router())
        .merge(admin::router())
        .merge(refund::router())
        .merge(stats::router())
        .merge(legacy_stats::router())
        .merge(attention::router())
        .merge(reconciliation::router())
        .merge(admin_page::router())
        .merge(auth)
        .merge(notify)
        .with_state(ctx);
    let router = if operations {
        router.merge(operations_documents())
    } else {
        router
    };
    router
        .fallback(no_such_route)
        // A path served for other methods only is, to the caller, a route that does not
        // exist: the replaced system (Express) answered both alike.
        .method_not_allowed_fallback(no_such_route)
        .layer(axum::middleware::from_fn(error::envelope_errors))
        .layer(axum::middleware::from_fn(track_requests))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CorsLayer::permissive().max_age(Duration::from_secs(600)))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default();
                let request_id = request
                    .extensions()
                    .get::<RequestId>()
                    .and_then(|id| id.header_value().to_str().ok())
                    .unwrap_or_default();
                // order_number is filled in by the handlers that know it.
                tracing::info_span!(
                    "request",
                    request_id,
                    method = %request.method(),
                    route,
                    path = %request.uri().path(),
                    order_number = tracing::field::Empty,
                )
            }),
        )
        // Outermost: the id is set (or the caller's kept) before the span that logs it
        // opens, and it goes back on every response, errors included.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The header that names a request in the logs and in its response.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The replaced system's (Express's) words for a route it does not have.
async fn no_such_route(request: Request) -> ApiError {
    ApiError::NotFound(format!(
        "Cannot {} {}",
        request.method(),
        request.uri().path()
    ))
}

/// What operators read and the public must not, served on `METRICS_ADDR`: Prometheus
/// `/metrics`, the OpenAPI document (`/api`, `/api-json`) and `/health` with the unsafe
/// settings accepted.
pub fn operations_router(ctx: ApiContext) -> Router {
    operations_documents().merge(health::operations_router().with_state(ctx))
}

/// `/metrics` and the OpenAPI document; merged into the public router in development,
/// where nothing is apart (and no unsafe setting is accepted).
fn operations_documents() -> Router {
    openapi::router().route("/metrics", axum::routing::get(metrics_text))
}

/// Prometheus text format; no personal data, only counts and latencies.
async fn metrics_text() -> String {
    shared::metrics::recorder().render()
}

/// Requests and latencies by route (the route template, never the raw path, so order
/// numbers do not become label values).
async fn track_requests(
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    // Only standard methods become label values: a client cannot invent new series.
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

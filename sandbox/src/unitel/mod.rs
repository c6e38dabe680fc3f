//! Unitel's partner API as a working integration sees it: all POST + JSON, served both
//! under `/api/v1` and at the root.

pub(crate) mod auth;
mod credit;
pub(crate) mod ledger;
pub mod products;
mod receipt;
mod reply;
mod subscriber;

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::de::DeserializeOwned;

use crate::state::AppState;
use reply::UnitelError;

pub(crate) fn router(state: AppState) -> Router {
    let services = Router::new()
        .route("/service/servicetype", post(subscriber::service_type))
        .route("/service/unitel", post(subscriber::postpaid_bill_of))
        .route("/service/recharge", post(credit::recharge))
        .route("/service/datapackage", post(credit::data_package))
        .route("/service/payment", post(credit::bill_payment))
        .route(
            "/service/check_transaction_result",
            post(credit::check_transaction_result),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let api = Router::new()
        .route("/auth", post(auth::auth))
        .merge(services)
        .route_layer(middleware::from_fn_with_state(state.clone(), add_latency))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::calls::record_unitel,
        ))
        .with_state(state);
    Router::new().nest("/api/v1", api.clone()).merge(api)
}

async fn add_latency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let latency = state.faults().unitel.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    next.run(request).await
}

pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, UnitelError> {
    serde_json::from_slice(body)
        .map_err(|error| UnitelError::bad_request(format!("invalid JSON body: {error}")))
}

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

use super::envelope::Envelope;
use super::error::ApiError;
use crate::context::ApiContext;
use crate::store::rates;

pub fn router() -> Router<ApiContext> {
    Router::new().route("/exchange-rate/current", get(current))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeRateView {
    /// Always `MNT_TO_CNY`.
    currency_pair: &'static str,
    /// Tugrik per yuan.
    #[schema(value_type = String, example = "440")]
    rate: Decimal,
    updated_at: DateTime<Utc>,
}

/// The rate at which tugrik prices are converted to yuan.
#[utoipa::path(get, path = "/exchange-rate/current", tag = "products",
    responses((status = 200, body = ExchangeRateView)))]
async fn current(State(ctx): State<ApiContext>) -> Result<Envelope<ExchangeRateView>, ApiError> {
    let current = rates::current(&ctx.db).await?;
    Ok(Envelope(ExchangeRateView {
        currency_pair: "MNT_TO_CNY",
        rate: current.rate.get().normalize(),
        updated_at: current.set_at,
    }))
}

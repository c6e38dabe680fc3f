//! The MNT-per-yuan rate: read by anyone (`GET /exchange-rate/current`), set by an
//! operator for new orders (`PUT /admin/exchange-rate`).

use std::str::FromStr;

use axum::extract::State;
use axum::routing::{get, put};
use axum::Router;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::history::Actor;
use shared::money::MntPerYuan;
use utoipa::ToSchema;

use super::admin_input::person;
use super::envelope::{iso_millis, Envelope};
use super::error::ApiError;
use super::extractor::Admin;
use super::json::ApiJson;
use crate::context::ApiContext;
use crate::store::rates;

/// A rate outside this range is a typo, not a market move.
const RATE_RANGE: (i64, i64) = (10, 10_000);

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/exchange-rate/current", get(current))
        .route("/admin/exchange-rate", put(set_exchange_rate))
}

/// As the replaced system answered it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeRateView {
    /// Always `MNT_TO_CNY`.
    #[schema(example = "MNT_TO_CNY")]
    currency: &'static str,
    /// Tugrik per yuan, a JSON number.
    #[schema(value_type = f64, example = 440)]
    rate: Value,
    #[serde(serialize_with = "iso_millis")]
    updated_at: DateTime<Utc>,
}

/// The rate as a JSON number, as the replaced system's `GET /exchange-rate/current` gave it.
pub(super) fn rate_number(rate: MntPerYuan) -> Value {
    let text = rate.get().normalize().to_string();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The rate at which tugrik prices are converted to yuan.
#[utoipa::path(get, path = "/exchange-rate/current", tag = "products",
    responses((status = 200, body = ExchangeRateView), (status = 404, description = "No rate configured")))]
async fn current(State(ctx): State<ApiContext>) -> Result<Envelope<ExchangeRateView>, ApiError> {
    let current = rates::required(&ctx.db).await?;
    Ok(Envelope(ExchangeRateView {
        currency: "MNT_TO_CNY",
        rate: rate_number(current.rate),
        updated_at: current.set_at,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetRateRequest {
    /// Tugrik per yuan, at most four decimals, between 10 and 10000: a string such as
    /// `"445.5"` (or a JSON number).
    #[schema(value_type = String, example = "445.5",
        pattern = r"^([1-9][0-9]{1,3}(\.[0-9]{1,4})?|10000(\.0{1,4})?)$")]
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
    let who = Actor::Admin(person(request.set_by.as_deref(), "setBy")?).to_string();
    let set_at = rates::set(&ctx.db, rate, &who).await?;
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

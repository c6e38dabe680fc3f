//! Inputs and error mappings several routes share.

use shared::order::{Msisdn, OrderNumber};
use shared::unitel::UnitelError;
use utoipa::IntoParams;

use super::error::ApiError;

/// An order number in a path.
#[derive(IntoParams)]
#[into_params(names("orderNumber"), parameter_in = Path)]
#[allow(dead_code)]
pub struct OrderNumberParam(
    #[param(
        pattern = r"^[0-9A-Za-z_|*-]{6,32}$",
        example = "ORD1795562423906XQ68VSFX"
    )]
    String,
);

pub fn parse_order_number(value: &str) -> Result<OrderNumber, ApiError> {
    OrderNumber::parse(value).map_err(|e| ApiError::BadRequest(format!("orderNumber: {e}")))
}

pub fn parse_msisdn(value: &str, field: &str) -> Result<Msisdn, ApiError> {
    Msisdn::parse(value).map_err(|e| ApiError::BadRequest(format!("{field}: {e}")))
}

/// The name of the person acting through an admin route, as they give it (default
/// `admin`), for the order's history ([`shared::history::Actor::Admin`]).
pub fn person(given: Option<&str>, field: &str) -> Result<String, ApiError> {
    let who = given
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .unwrap_or("admin");
    if who.chars().count() > 100 {
        return Err(ApiError::BadRequest(format!(
            "{field} must be at most 100 characters"
        )));
    }
    Ok(who.to_owned())
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

/// Unitel's refusal to look a number up is the customer's to know, in our words: its
/// own message, like its being down, is the operator's (logged).
pub fn unitel_error(error: UnitelError) -> ApiError {
    match error {
        UnitelError::Rejected { code, message } => {
            tracing::info!(%code, %message, "Unitel refused a lookup");
            ApiError::BadRequest("该号码无法办理此业务，请核对号码".into())
        }
        other => {
            tracing::warn!(error = %other, "Unitel unavailable");
            ApiError::Upstream("Unitel 暂时不可用，请稍后再试".into())
        }
    }
}

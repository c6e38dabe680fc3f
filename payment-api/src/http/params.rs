//! What a path or a body names, parsed into the domain's types or refused with a 400.

use shared::order::{Msisdn, OrderNumber};
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

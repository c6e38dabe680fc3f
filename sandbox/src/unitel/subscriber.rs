//! `/service/servicetype` (what a number may buy) and `/service/unitel` (a postpaid bill).

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::unitel::parse_json;
use crate::unitel::products::{postpaid_bill, Tariff};
use crate::unitel::reply::UnitelError;

#[derive(Deserialize)]
struct ServiceTypeRequest {
    msisdn: Option<String>,
}

#[derive(Deserialize)]
struct BillRequest {
    owner: Option<String>,
    msisdn: Option<String>,
}

pub(crate) async fn service_type(body: Bytes) -> Result<Response, UnitelError> {
    let request: ServiceTypeRequest = parse_json(&body)?;
    let tariff = request
        .msisdn
        .as_deref()
        .and_then(Tariff::of)
        .ok_or_else(UnitelError::subscriber_not_found)?;
    Ok(Json(tariff.product_list()).into_response())
}

pub(crate) async fn postpaid_bill_of(body: Bytes) -> Result<Response, UnitelError> {
    let request: BillRequest = parse_json(&body)?;
    let msisdn = request.msisdn.or(request.owner).unwrap_or_default();
    let tariff = Tariff::of(&msisdn).ok_or_else(UnitelError::subscriber_not_found)?;
    if !tariff.is_postpaid() {
        return Err(UnitelError::not_postpaid());
    }
    let bill = postpaid_bill(&msisdn).ok_or_else(UnitelError::subscriber_not_found)?;
    Ok(Json(bill).into_response())
}

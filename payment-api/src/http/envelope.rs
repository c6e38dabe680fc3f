//! The response envelope the mini-program reads, identical to the system we replace:
//! `{"code": 200, "data": ..., "message": "success", "timestamp": "<ISO>"}`.
//! Errors get theirs in [`super::error`]. The payment callback is deliberately outside it.

use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{SecondsFormat, Utc};
use serde::Serialize;

pub struct Envelope<T>(pub T);

/// The envelope with HTTP 201, which the system we replace answered to every POST of the
/// mini-program's (its `code` stays 200, as there).
pub struct Created<T>(pub T);

#[derive(Serialize)]
struct Body<T> {
    code: u16,
    data: T,
    message: &'static str,
    timestamp: String,
}

pub fn timestamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        let mut response = Envelope(self.0).into_response();
        *response.status_mut() = axum::http::StatusCode::CREATED;
        response
    }
}

/// Times as the system we replace wrote them (JavaScript's `toISOString`): UTC with
/// exactly three decimals, `2025-10-18T03:04:05.678Z`.
pub fn iso_millis<S: serde::Serializer>(
    at: &chrono::DateTime<Utc>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

pub fn iso_millis_or_null<S: serde::Serializer>(
    at: &Option<chrono::DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => iso_millis(at, s),
        None => s.serialize_none(),
    }
}

impl<T: Serialize> IntoResponse for Envelope<T> {
    fn into_response(self) -> Response {
        Json(Body {
            code: 200,
            data: self.0,
            message: "success",
            timestamp: timestamp(),
        })
        .into_response()
    }
}

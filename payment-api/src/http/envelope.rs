//! The response envelope the mini-program reads, identical to the system we replace:
//! `{"code": 200, "data": ..., "message": "success", "timestamp": "<ISO>"}`.
//! Errors get theirs in [`super::error`]. The payment callback is deliberately outside it.

use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{SecondsFormat, Utc};
use serde::Serialize;

pub struct Envelope<T>(pub T);

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

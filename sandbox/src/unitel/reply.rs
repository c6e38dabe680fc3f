//! Unitel's error answers: some arrive as HTTP errors, some as HTTP 200 with a
//! non-success `result`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UnitelError {
    /// HTTP 401, from `/auth` and from `/service/*` without a live token.
    #[error("unauthorized")]
    Unauthorized,
    /// HTTP 200 with `result: failed`.
    #[error("failed with code {code}: {msg}")]
    Failed { code: &'static str, msg: String },
    /// HTTP 500.
    #[error("internal server error")]
    ServerError,
}

impl UnitelError {
    pub(crate) fn failed(code: &'static str, msg: impl Into<String>) -> Self {
        UnitelError::Failed {
            code,
            msg: msg.into(),
        }
    }

    pub(crate) fn subscriber_not_found() -> Self {
        UnitelError::failed("404", "Subscriber not found")
    }

    pub(crate) fn not_postpaid() -> Self {
        UnitelError::failed("404", "Not a postpaid subscriber")
    }

    pub(crate) fn bad_request(msg: impl Into<String>) -> Self {
        UnitelError::failed("400", msg)
    }
}

impl IntoResponse for UnitelError {
    fn into_response(self) -> Response {
        tracing::info!(error = %self, "Unitel call refused");
        match self {
            UnitelError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "result": "401", "code": "401", "msg": "Unauthorized" })),
            )
                .into_response(),
            UnitelError::Failed { code, msg } => {
                Json(json!({ "result": "failed", "code": code, "msg": msg })).into_response()
            }
            UnitelError::ServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "result": "500", "code": "500", "msg": "Internal Server Error" })),
            )
                .into_response(),
        }
    }
}

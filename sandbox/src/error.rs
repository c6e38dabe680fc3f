//! What the sandbox's own handle can refuse (the simulated APIs answer in their own
//! formats instead).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error("no WeChat order with out_trade_no {0}")]
    OrderNotFound(String),
    #[error("WeChat order {0} is closed and can no longer be paid")]
    OrderClosed(String),
    #[error("WeChat order {out_trade_no} is already paid (transaction {transaction_id})")]
    AlreadyPaid {
        out_trade_no: String,
        transaction_id: String,
    },
    #[error("WeChat order {0} exists already")]
    OrderExists(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("refund refused: {0}")]
    RefundRefused(String),
}

impl SandboxError {
    fn status(&self) -> StatusCode {
        match self {
            SandboxError::OrderNotFound(_) => StatusCode::NOT_FOUND,
            SandboxError::OrderClosed(_)
            | SandboxError::AlreadyPaid { .. }
            | SandboxError::OrderExists(_)
            | SandboxError::RefundRefused(_) => StatusCode::CONFLICT,
            SandboxError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for SandboxError {
    fn into_response(self) -> Response {
        (self.status(), Json(json!({ "error": self.to_string() }))).into_response()
    }
}

//! APIv3's error answers: an HTTP status and `{"code", "message"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V3Error {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl V3Error {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        V3Error {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn param(message: impl Into<String>) -> Self {
        V3Error::new(StatusCode::BAD_REQUEST, "PARAM_ERROR", message)
    }

    pub(crate) fn sign(message: impl Into<String>) -> Self {
        V3Error::new(StatusCode::UNAUTHORIZED, "SIGN_ERROR", message)
    }

    pub(crate) fn no_auth(message: impl Into<String>) -> Self {
        V3Error::new(StatusCode::FORBIDDEN, "NO_AUTH", message)
    }

    pub(crate) fn order_not_exist() -> Self {
        V3Error::new(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在")
    }

    pub(crate) fn invalid_request(message: impl Into<String>) -> Self {
        V3Error::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    pub(crate) fn system_error() -> Self {
        V3Error::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SYSTEM_ERROR",
            "系统错误 (injected by the sandbox)",
        )
    }

    /// An injected failure named in either spelling (`SYSTEMERROR` or `SYSTEM_ERROR`), with
    /// the status the contract gives that code.
    pub(crate) fn injected(code: &str, message: Option<String>) -> Self {
        let code = match code {
            "SYSTEMERROR" => "SYSTEM_ERROR",
            "ORDERNOTEXIST" => "ORDER_NOT_EXIST",
            "ORDERCLOSED" => "ORDER_CLOSED",
            other => other,
        };
        let status = match code {
            "SYSTEM_ERROR" | "BANKERROR" | "OPENID_MISMATCH" => StatusCode::INTERNAL_SERVER_ERROR,
            "FREQUENCY_LIMITED" => StatusCode::TOO_MANY_REQUESTS,
            "NO_AUTH" | "OUT_TRADE_NO_USED" | "RULE_LIMIT" | "TRADE_ERROR" | "NOT_ENOUGH" => {
                StatusCode::FORBIDDEN
            }
            "ORDER_NOT_EXIST" | "RESOURCE_NOT_EXISTS" => StatusCode::NOT_FOUND,
            "SIGN_ERROR" => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        V3Error::new(
            status,
            code,
            message.unwrap_or_else(|| "injected by the sandbox".into()),
        )
    }
}

impl IntoResponse for V3Error {
    fn into_response(self) -> Response {
        tracing::info!(status = %self.status, code = %self.code, message = %self.message, "APIv3 call refused");
        (
            self.status,
            Json(json!({ "code": self.code, "message": self.message })),
        )
            .into_response()
    }
}

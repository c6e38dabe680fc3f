//! One error type for every route, and the middleware that gives every error response,
//! ours or axum's (bad JSON, unknown route, body too large), the reference envelope:
//! `{"code": <status>, "message": "...", "data": null, "timestamp": "...", "path": "..."}`.

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::envelope::timestamp;
use crate::orders::cancel::CancelError;
use crate::orders::create::CreateError;
use crate::orders::resolve::ResolveError;
use crate::payments::refunds::{RequestError, RetryError};
use crate::payments::start::StartError;
use crate::rate_limit::LimitError;
use crate::sessions::LoginError;
use crate::store::rates::RateError;
use crate::wechat::WechatError;
use shared::unitel::UnitelError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("Request body too large")]
    PayloadTooLarge,
    /// The replaced system's words (NestJS's throttler), which the mini-program knows.
    #[error("ThrottlerException: Too Many Requests")]
    TooManyRequests,
    /// 429 for a limit someone else keeps (WeChat's), in the customer's words.
    #[error("{0}")]
    TooFrequent(String),
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::Internal(error.into())
    }
}

impl From<LimitError> for ApiError {
    fn from(error: LimitError) -> Self {
        match error {
            LimitError::TooMany => ApiError::TooManyRequests,
            LimitError::Storage(error) => error.into(),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::InvalidCode => {
                ApiError::BadRequest("登录凭证无效或已使用，请重新登录".into())
            }
            LoginError::TooFrequent => ApiError::TooFrequent("登录过于频繁，请稍后再试".into()),
            LoginError::Refused => {
                ApiError::Forbidden("微信判定该账号存在安全风险，暂时无法登录".into())
            }
            LoginError::Unavailable => ApiError::Unavailable("微信登录繁忙，请稍后再试".into()),
            LoginError::Upstream => ApiError::Upstream("微信登录暂时不可用，请稍后再试".into()),
            LoginError::Storage(error) => error.into(),
            LoginError::Random => ApiError::Internal(anyhow::anyhow!("no random bytes")),
        }
    }
}

impl From<RateError> for ApiError {
    fn from(error: RateError) -> Self {
        match error {
            // The replaced system's words.
            RateError::Missing => ApiError::NotFound("汇率配置不存在".into()),
            RateError::Storage(error) => error.into(),
        }
    }
}

impl From<StartError> for ApiError {
    fn from(error: StartError) -> Self {
        let already_paid = || ApiError::BadRequest("订单已支付".into());
        let closed = || ApiError::BadRequest("订单已关闭，请重新下单".into());
        match error {
            StartError::NotFound => ApiError::NotFound("订单不存在".into()),
            StartError::AlreadyPaid => already_paid(),
            StartError::Closed => closed(),
            StartError::WindowOver => ApiError::BadRequest("订单已超过支付时限，请重新下单".into()),
            // WeChat's refusals in the customer's words; its own text is for the operator.
            StartError::Wechat(WechatError::Business { code, description }) => {
                match code.as_str() {
                    "ORDERPAID" => already_paid(),
                    "ORDERCLOSED" => closed(),
                    "SYSTEMERROR" => ApiError::Unavailable("微信支付繁忙，请稍后再试".into()),
                    _ => {
                        tracing::error!(%code, %description, "WeChat Pay refused unifiedOrder");
                        ApiError::BadRequest("微信支付暂时无法受理此订单".into())
                    }
                }
            }
            StartError::Wechat(WechatError::Platform(message)) => {
                tracing::error!(%message, "WeChat Pay unreachable");
                ApiError::Upstream("微信支付暂时不可用，请稍后再试".into())
            }
            StartError::Storage(error) => error.into(),
            StartError::Internal(error) => ApiError::Internal(error),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::NotFound => ApiError::NotFound("Order not found".into()),
            RequestError::Database(error) => error.into(),
            other => ApiError::Conflict(other.to_string()),
        }
    }
}

impl From<RetryError> for ApiError {
    fn from(error: RetryError) -> Self {
        match error {
            RetryError::NoRefund => ApiError::NotFound(error.to_string()),
            RetryError::NotFailed(_) => ApiError::Conflict(error.to_string()),
            RetryError::Database(error) => error.into(),
        }
    }
}

impl From<CreateError> for ApiError {
    fn from(error: CreateError) -> Self {
        match error {
            CreateError::NoProductCode => ApiError::BadRequest("预付费订单必须提供商品代码".into()),
            CreateError::NotSold(code) => {
                ApiError::BadRequest(format!("商品代码 {code} 不存在或已下架"))
            }
            CreateError::BillPaid => ApiError::BadRequest("账单已结清，无需支付".into()),
            CreateError::NoBill => ApiError::BadRequest("无欠费账单".into()),
            CreateError::InvalidBill => ApiError::Upstream(error.to_string()),
            CreateError::Unitel(error) => unitel_error(error),
            CreateError::Rate(error) => error.into(),
            CreateError::Unpriceable => ApiError::BadRequest("该商品无法按当前汇率出售".into()),
            CreateError::Vanished => ApiError::NotFound("订单不存在".into()),
            CreateError::Storage(error) => error.into(),
        }
    }
}

impl From<CancelError> for ApiError {
    fn from(error: CancelError) -> Self {
        match error {
            CancelError::NotFound => ApiError::NotFound("订单不存在".into()),
            CancelError::WechatUnavailable => ApiError::Upstream(error.to_string()),
            CancelError::Storage(error) => error.into(),
            CancelError::Paid
            | CancelError::PaidAtWechat
            | CancelError::WechatRefused
            | CancelError::ChangedMeanwhile => ApiError::Conflict(error.to_string()),
        }
    }
}

/// Unitel's refusal to look a number up is the customer's to know, in our words: its
/// own message, like its being down, is the operator's (logged).
pub(super) fn unitel_error(error: UnitelError) -> ApiError {
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

impl From<ResolveError> for ApiError {
    fn from(error: ResolveError) -> Self {
        match error {
            ResolveError::NotFound => ApiError::NotFound(error.to_string()),
            ResolveError::Storage(error) => error.into(),
            ResolveError::NotUnknown(_) | ResolveError::TooEarly { .. } => {
                ApiError::Conflict(error.to_string())
            }
        }
    }
}

/// Marks a response whose body the envelope middleware must write, with this message.
#[derive(Clone)]
struct ErrorMessage(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests | ApiError::TooFrequent(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &self {
            // The cause goes to the log, never to the client.
            ApiError::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error");
                "Internal server error".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = status.into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            // Limits count per minute: by then the caller may try again.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        }
        response.extensions_mut().insert(ErrorMessage(message));
        response
    }
}

/// Longest body of a framework error we read to reuse as the message.
const MAX_FRAMEWORK_MESSAGE: usize = 4096;

pub async fn envelope_errors(request: Request, next: Next) -> Response {
    // As the replaced system reported it: the path with its query.
    let path = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let message = match parts.extensions.remove::<ErrorMessage>() {
        Some(ErrorMessage(message)) => message,
        None => {
            let is_json = parts
                .headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            if is_json {
                // Already a JSON answer of its own (the WeChat callback): leave it alone.
                return Response::from_parts(parts, body);
            }
            let bytes = to_bytes(body, MAX_FRAMEWORK_MESSAGE)
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).trim().to_owned();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("Error").to_owned()
            } else {
                text
            }
        }
    };
    let body = json!({
        "code": status.as_u16(),
        "message": message,
        "data": null,
        "timestamp": timestamp(),
        "path": path,
    });
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body.to_string()))
}

//! Direct mode's login and logout (`WECHAT_PAY_MODE=direct`); merged only in that mode, so
//! in cloud mode both answer 404 like any route that does not exist.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::envelope::Created;
use super::error::ApiError;
use super::extractor::{bearer, ClientAddress};
use super::json::ApiJson;
use super::legacy_input::LegacyBody;
use crate::context::ApiContext;
use crate::rate_limit::Route;
use crate::sessions::Sessions;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
}

/// `{code}`: no other field.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LoginRequest {
    /// What `wx.login` gave the mini-program: single-use, valid about five minutes.
    #[schema(example = "0a3Xk1000Ma2dU1YxP200hA8Xq4Xk10o")]
    code: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// Send as `Authorization: Bearer <token>` on every call.
    token: String,
    /// Seconds the session lives from now; log in again after.
    #[schema(example = 7200)]
    expires_in: u64,
}

#[derive(Serialize, ToSchema)]
pub struct LogoutView {
    /// Whether a live session was ended (false: it had expired or ended already).
    revoked: bool,
}

fn sessions(ctx: &ApiContext) -> Result<&Sessions, ApiError> {
    // The routes are merged only when sessions exist; this is a wiring mistake.
    ctx.sessions
        .as_deref()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("sessions are not configured")))
}

/// Direct mode only: exchanges a `wx.login` code for a session token.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 201, body = SessionView),
              (status = 400, description = "No code, or WeChat says it is invalid or used: call wx.login again"),
              (status = 403, description = "WeChat refuses to log this account in (high risk)"),
              (status = 404, description = "Cloud mode: not offered (the gateway names the caller)"),
              (status = 429, description = "Too many logins from this address, or WeChat says this user logs in too often"),
              (status = 502, description = "WeChat login failed"), (status = 503, description = "WeChat busy or unreachable")))]
async fn login(
    State(ctx): State<ApiContext>,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<Value>,
) -> Result<Created<SessionView>, ApiError> {
    let sessions = sessions(&ctx)?;
    ctx.limiter
        .check_address(Route::Login, &ctx.config.limits, address)
        .await?;
    let mut body = LegacyBody::new(body)?;
    let code = body.string("code", "登录凭证必须是字符串", "登录凭证不能为空");
    body.finish()?;
    let issued = sessions.log_in(&code.unwrap_or_default()).await?;
    Ok(Created(SessionView {
        token: issued.token.expose().to_owned(),
        expires_in: issued.expires_in.as_secs(),
    }))
}

/// Direct mode only: ends the session whose token is the bearer; idempotent.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("session_token" = [])),
    responses((status = 201, body = LogoutView), (status = 401, description = "No bearer token"),
              (status = 404, description = "Cloud mode: not offered")))]
async fn logout(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
) -> Result<Created<LogoutView>, ApiError> {
    let sessions = sessions(&ctx)?;
    let token = bearer(&headers)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("未登录".into()))?;
    let revoked = sessions.log_out(token).await?;
    Ok(Created(LogoutView { revoked }))
}

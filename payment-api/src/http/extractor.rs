//! Who is calling, as extractors the routes share.
//!
//! [`CurrentUser`]: in cloud mode the Cloud Hosting gateway injects the caller's openid
//! (`X-WX-OPENID`, or `X-WX-FROM-OPENID` when resources are shared between apps) and marks
//! calls from WeChat with `X-WX-SOURCE`; a call without both carries no identity we can
//! trust. `X-Mock-Openid` stands in for the gateway only when `APP_ENV=development`.
//! In direct mode no gateway stands in front, so anyone could send those headers: only
//! `Authorization: Bearer <session token>` from `/auth/login` names the caller.
//!
//! [`Admin`]: a request that carried `Authorization: Bearer <ADMIN_TOKEN>`.
//!
//! [`ClientAddress`]: where the request came from, for per-address limits, as
//! `CLIENT_ADDRESS_FROM` says ([`crate::client_address`]).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use shared::config::AppEnv;
use shared::order::OpenId;

use super::error::ApiError;
use crate::client_address;
use crate::config::PayMode;
use crate::context::ApiContext;
use crate::sessions;
use crate::store::users;

/// The client's address: the entry our trusted proxies wrote to the forwarding header
/// (by default the cloud-hosting gateway's `X-Original-Forwarded-For`), else the
/// connection's peer.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<ApiContext> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(ClientAddress(
            ctx.config
                .client_address
                .client(&parts.headers, peer)
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
        ))
    }
}

/// A request that carried the admin token. Wrong tokens are logged and, past
/// `ADMIN_FAILURES_PER_MINUTE` from one address in a minute, answered 429 without a log
/// line. The right token is always accepted: an address is often shared (one gateway, one
/// office), and others' wrong guesses must not lock the operator out. The throttle thus
/// tells guessers to slow down and keeps the log short; what defeats guessing is the
/// token's length (production requires at least 32 characters).
pub struct Admin;

impl FromRequestParts<ApiContext> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> Result<Self, ApiError> {
        let ClientAddress(address) = ClientAddress::from_request_parts(parts, ctx)
            .await
            .unwrap_or(ClientAddress(IpAddr::from([0, 0, 0, 0])));
        let presented = bearer(&parts.headers);
        let Some(expected) = &ctx.config.admin_token else {
            return Err(ApiError::Unauthorized("Admin token required".into()));
        };
        if presented.is_some_and(|given| same_secret(expected.expose(), given)) {
            return Ok(Admin);
        }
        let failures = format!("admin-failures:address:{}", client_address::bucket(address));
        let limit = ctx.config.limits.admin_failures_per_minute;
        if ctx.limiter.over(&failures, limit).await? {
            return Err(ApiError::TooManyRequests);
        }
        tracing::warn!(%address, presented = presented.is_some(), "admin token refused");
        ctx.limiter.allow(&failures, limit).await?;
        Err(ApiError::Unauthorized("Admin token required".into()))
    }
}

/// Compares the SHA-256 digests of the two, so that neither the time taken nor an early
/// length check tells anything about the expected value.
fn same_secret(expected: &str, given: &str) -> bool {
    let (a, b) = (Sha256::digest(expected), Sha256::digest(given));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The token of `Authorization: Bearer <token>`, if sent.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

pub struct CurrentUser {
    pub id: i64,
    pub openid: OpenId,
}

fn header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

impl FromRequestParts<ApiContext> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> Result<Self, ApiError> {
        match ctx.config.pay_mode {
            PayMode::Cloud => gateway_user(&parts.headers, ctx).await,
            PayMode::Direct => session_user(&parts.headers, ctx).await,
        }
    }
}

/// Direct mode: the live session the bearer token names, and nothing else.
async fn session_user(headers: &HeaderMap, ctx: &ApiContext) -> Result<CurrentUser, ApiError> {
    let token = bearer(headers)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("未登录".into()))?;
    match sessions::authenticate(&ctx.db, token).await? {
        Some(user) => Ok(CurrentUser {
            id: user.id,
            openid: user.openid,
        }),
        None => Err(ApiError::Unauthorized("登录已失效，请重新登录".into())),
    }
}

/// Cloud mode: who the gateway says is calling.
async fn gateway_user(headers: &HeaderMap, ctx: &ApiContext) -> Result<CurrentUser, ApiError> {
    let mock = match ctx.config.app_env {
        AppEnv::Development => header(headers, &["x-mock-openid"]),
        AppEnv::Production => None,
    };
    let raw_openid = match mock {
        Some(openid) => openid,
        None => {
            if header(headers, &["x-wx-source"]).is_none() {
                return Err(ApiError::Unauthorized("非微信环境访问".into()));
            }
            // Resource-sharing deployments set the FROM headers: they name the user of
            // the calling app, as in the system we replace.
            header(headers, &["x-wx-from-openid", "x-wx-openid"])
                .ok_or_else(|| ApiError::Unauthorized("未登录".into()))?
        }
    };
    // The replaced system's words, for an openid no gateway would send as well.
    let openid =
        OpenId::parse(raw_openid).map_err(|_| ApiError::Unauthorized("认证失败".into()))?;
    // Recorded as the gateway sends them; anything that is not a plausible id is dropped.
    let plausible = |v: &&str| v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic());
    let unionid = header(headers, &["x-wx-from-unionid", "x-wx-unionid"]).filter(plausible);
    let appid = header(headers, &["x-wx-from-appid", "x-wx-appid"]).filter(plausible);
    let id = users::upsert(&ctx.db, &openid, unionid, appid).await?;
    Ok(CurrentUser { id, openid })
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_compared_whole() {
        assert!(super::same_secret("secret", "secret"));
        assert!(!super::same_secret("secret", "secreT"));
        assert!(!super::same_secret("secret", "secret2"));
        assert!(!super::same_secret("secret", ""));
    }
}

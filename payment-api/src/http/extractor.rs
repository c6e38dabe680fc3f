//! Who is calling, as extractors the routes share.
//!
//! [`CurrentUser`]: inside WeChat Cloud Hosting the gateway injects the caller's openid
//! (`X-WX-OPENID`, or `X-WX-FROM-OPENID` when resources are shared between apps) and marks
//! calls from WeChat with `X-WX-SOURCE`; a call without both carries no identity we can
//! trust. `X-Mock-Openid` stands in for the gateway only when `APP_ENV=development`.
//!
//! [`Admin`]: a request that carried `Authorization: Bearer <ADMIN_TOKEN>`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use shared::config::AppEnv;
use shared::order::OpenId;

use super::error::ApiError;
use crate::context::ApiContext;
use crate::store::users;

/// A request that carried the admin token.
pub struct Admin;

impl FromRequestParts<ApiContext> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match (&ctx.config.admin_token, presented) {
            (Some(expected), Some(given))
                if constant_time_eq(expected.expose().as_bytes(), given.as_bytes()) =>
            {
                Ok(Admin)
            }
            _ => Err(ApiError::Unauthorized("Admin token required".into())),
        }
    }
}

/// Compares without returning early, so response time does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        let headers = &parts.headers;
        let mock = match ctx.config.app_env {
            AppEnv::Development => header(headers, &["x-mock-openid"]),
            AppEnv::Production => None,
        };
        let raw_openid = match mock {
            Some(openid) => openid,
            None => {
                if header(headers, &["x-wx-source"]).is_none() {
                    return Err(ApiError::Unauthorized(
                        "This API is only available through the WeChat mini-program".into(),
                    ));
                }
                header(headers, &["x-wx-openid", "x-wx-from-openid"]).ok_or_else(|| {
                    ApiError::Unauthorized("No WeChat openid in the request".into())
                })?
            }
        };
        let openid =
            OpenId::parse(raw_openid).map_err(|e| ApiError::Unauthorized(e.to_string()))?;
        // Recorded as the gateway sends them; anything that is not a plausible id is dropped.
        let plausible = |v: &&str| v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic());
        let unionid = header(headers, &["x-wx-unionid", "x-wx-from-unionid"]).filter(plausible);
        let appid = header(headers, &["x-wx-appid", "x-wx-from-appid"]).filter(plausible);
        let id = users::upsert(&ctx.db, &openid, unionid, appid).await?;
        Ok(CurrentUser { id, openid })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(super::constant_time_eq(b"secret", b"secret"));
        assert!(!super::constant_time_eq(b"secret", b"secreT"));
        assert!(!super::constant_time_eq(b"secret", b"secret2"));
    }
}

//! `/auth` (HTTP Basic) hands out bearer tokens that expire; every `/service/*` call needs
//! a live one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::json;

use crate::ids;
use crate::state::AppState;
use crate::sync::lock;
use crate::unitel::reply::UnitelError;

#[derive(Default)]
pub(crate) struct Tokens(Mutex<HashMap<String, Instant>>);

impl Tokens {
    fn issue(&self, expires_at: Instant) -> String {
        let token = ids::alphanumeric(48);
        let mut tokens = lock(&self.0);
        let now = Instant::now();
        tokens.retain(|_, expiry| *expiry > now);
        tokens.insert(token.clone(), expires_at);
        token
    }

    /// Every token issued so far stops working, as if Unitel had rotated its keys.
    pub(crate) fn revoke_all(&self) {
        lock(&self.0).clear();
    }

    fn is_live(&self, token: &str) -> bool {
        lock(&self.0)
            .get(token)
            .is_some_and(|expiry| *expiry > Instant::now())
    }
}

pub(crate) async fn auth(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, UnitelError> {
    let latency = state.faults().unitel.auth_latency_ms;
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    if state.with_faults(|faults| faults.unitel.take_auth_failure()) {
        tracing::info!("auth refused (injected)");
        return Err(UnitelError::Unauthorized);
    }
    let config = &state.config;
    if !has_credentials(&headers, &config.unitel_username, &config.unitel_password) {
        // The password itself is never logged.
        tracing::info!("auth refused: wrong or missing Basic credentials");
        return Err(UnitelError::Unauthorized);
    }
    let token = state.tokens.issue(Instant::now() + config.token_ttl);
    Ok(Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": config.token_ttl.as_secs(),
        "scope": "read write",
    }))
    .into_response())
}

/// Guards `/service/*`: a missing, unknown or expired bearer token is a 401.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let token = bearer_token(request.headers());
    if token.is_some_and(|token| state.tokens.is_live(token)) {
        next.run(request).await
    } else {
        tracing::info!(path = %request.uri().path(), "Unitel call without a live token");
        UnitelError::Unauthorized.into_response()
    }
}

fn has_credentials(headers: &HeaderMap, username: &str, password: &str) -> bool {
    let Some(encoded) = credential(headers, "Basic") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    decoded == format!("{username}:{password}").as_bytes()
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    credential(headers, "Bearer").map(str::trim)
}

/// The value after `scheme ` in the Authorization header; the scheme is case-insensitive.
fn credential<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn basic_credentials_must_match_exactly() {
        let good = base64::engine::general_purpose::STANDARD.encode("elife:elife-secret");
        assert!(has_credentials(
            &headers(&format!("Basic {good}")),
            "elife",
            "elife-secret"
        ));
        assert!(has_credentials(
            &headers(&format!("basic {good}")),
            "elife",
            "elife-secret"
        ));
        assert!(!has_credentials(
            &headers(&format!("Basic {good}")),
            "elife",
            "other"
        ));
        assert!(!has_credentials(
            &headers(&format!("Bearer {good}")),
            "elife",
            "elife-secret"
        ));
        assert!(!has_credentials(&HeaderMap::new(), "elife", "elife-secret"));
    }

    #[test]
    fn tokens_expire() {
        let tokens = Tokens::default();
        let live = tokens.issue(Instant::now() + std::time::Duration::from_secs(60));
        let dead = tokens.issue(Instant::now());
        assert!(tokens.is_live(&live));
        assert!(!tokens.is_live(&dead));
        assert!(!tokens.is_live("made-up"));
    }
}

//! Mini-program login as WeChat serves it:
//! `GET /sns/jscode2session?appid=&secret=&js_code=&grant_type=authorization_code` answers
//! `{"session_key", "openid", "unionid"?}` or `{"errcode", "errmsg"}`, with HTTP 200 and
//! `Content-Type: text/plain` either way (as the real one does).
//!
//! A test (or the demo's control API) plays `wx.login`: it mints a code for an openid
//! ([`crate::Sandbox::login_code`], `POST /sandbox/wechat/login-code`). A code is good for
//! one exchange within five minutes. Only the registered mini-program ([`LOGIN_APP_ID`],
//! [`LOGIN_APP_SECRET`]) may exchange codes. `wechat.loginErrors` in the faults makes the
//! next exchanges fail with the errcodes given.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::SandboxError;
use crate::ids;
use crate::state::AppState;
use crate::sync::lock;

/// The mini-program registered with the simulated WeChat.
pub const LOGIN_APP_ID: &str = "wx5e1f0c2b7a9d3e41";
/// Its app secret: a deployment against the sandbox sets `WECHAT_APP_SECRET` to this.
pub const LOGIN_APP_SECRET: &str = "sandbox-app-secret-7c1d9e2f4a6b8c0d";

/// How long a `wx.login` code can be exchanged.
const CODE_LIFETIME: Duration = Duration::from_secs(5 * 60);

struct Minted {
    openid: String,
    unionid: Option<String>,
    at: Instant,
}

/// Codes minted and not yet exchanged.
#[derive(Default)]
pub(crate) struct Logins(Mutex<HashMap<String, Minted>>);

impl Logins {
    pub(crate) fn mint(&self, openid: &str, unionid: Option<&str>) -> String {
        let code = ids::alphanumeric(32);
        let mut codes = lock(&self.0);
        codes.retain(|_, minted| minted.at.elapsed() < CODE_LIFETIME);
        codes.insert(
            code.clone(),
            Minted {
                openid: openid.to_owned(),
                unionid: unionid.map(str::to_owned),
                at: Instant::now(),
            },
        );
        code
    }

    /// Whom the code was minted for, once: it is gone after this.
    fn redeem(&self, code: &str) -> Option<Minted> {
        lock(&self.0)
            .remove(code)
            .filter(|minted| minted.at.elapsed() < CODE_LIFETIME)
    }
}

/// `GET /sns/jscode2session`.
pub(crate) async fn jscode2session(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let given = |name: &str| query.get(name).filter(|v| !v.is_empty());
    let refusal = match (given("appid"), given("secret"), given("js_code")) {
        (None, _, _) => Some((41002, "appid missing")),
        (Some(appid), _, _) if appid != LOGIN_APP_ID => Some((40013, "invalid appid")),
        (_, None, _) => Some((41004, "appsecret missing")),
        (_, Some(secret), _) if secret != LOGIN_APP_SECRET => Some((40125, "invalid appsecret")),
        (_, _, None) => Some((41008, "missing code")),
        _ if query.get("grant_type").map(String::as_str) != Some("authorization_code") => {
            Some((40002, "invalid grant_type"))
        }
        _ => None,
    };
    if let Some((errcode, errmsg)) = refusal {
        return answer(error(errcode, errmsg));
    }
    let fault = state.with_faults(|faults| {
        let errors = &mut faults.wechat.login_errors;
        (!errors.is_empty()).then(|| errors.remove(0))
    });
    if let Some(errcode) = fault {
        return answer(error(errcode, fault_message(errcode)));
    }
    let code = query.get("js_code").map(String::as_str).unwrap_or_default();
    let Some(minted) = state.logins.redeem(code) else {
        return answer(error(40029, "invalid code"));
    };
    let mut body = json!({
        "session_key": base64_of(&ids::alphanumeric(16)),
        "openid": minted.openid,
    });
    if let Some(unionid) = minted.unionid {
        body["unionid"] = json!(unionid);
    }
    answer(body)
}

fn fault_message(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system error",
        40029 => "invalid code",
        40163 => "code been used",
        40226 => "invalid user (high risk)",
        45011 => "api minute-quota reach limit  mustslower  retry next minute",
        _ => "error",
    }
}

/// WeChat's error body, with the request id its messages end with.
fn error(errcode: i64, errmsg: &str) -> Value {
    json!({
        "errcode": errcode,
        "errmsg": format!("{errmsg}, rid: {}-{}", ids::hex(8, false), ids::hex(8, false)),
    })
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn answer(body: Value) -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], body.to_string()).into_response()
}

#[derive(Deserialize)]
pub(crate) struct MintRequest {
    openid: String,
    #[serde(default)]
    unionid: Option<String>,
}

/// `POST /sandbox/wechat/login-code {"openid", "unionid"?}` → `{"code"}`: what `wx.login`
/// would give that user.
pub(crate) async fn mint(
    State(state): State<AppState>,
    Json(request): Json<MintRequest>,
) -> Result<Response, SandboxError> {
    if request.openid.is_empty() {
        return Err(SandboxError::InvalidRequest("openid is empty".into()));
    }
    let code = state
        .logins
        .mint(&request.openid, request.unionid.as_deref());
    Ok(Json(json!({ "code": code })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_good_once() {
        let logins = Logins::default();
        let code = logins.mint("o_one", None);
        assert_eq!(code.len(), 32);
        assert_eq!(logins.redeem(&code).unwrap().openid, "o_one");
        assert!(logins.redeem(&code).is_none());
        assert!(logins.redeem("never-minted").is_none());
    }
}

//! `wx.login` codes exchanged at WeChat (`GET /sns/jscode2session`), for direct mode's
//! sessions. WeChat answers `{openid, session_key, unionid?}` or `{errcode, errmsg}` (JSON,
//! though served as text/plain).
//!
//! `session_key` is never even read: nothing here holds it, so nothing can log, store or
//! return it. The request's URL carries the app secret and the code, so no error made here
//! carries the URL (reqwest's errors print it unless told not to), and redirects are not
//! followed (they would take the secret wherever they point).

use serde::Deserialize;
use shared::order::OpenId;

use super::settings::LoginConfig;

pub struct WechatLogin {
    http: reqwest::Client,
    config: LoginConfig,
}

/// Whom a code belongs to.
#[derive(Debug)]
pub struct WechatUser {
    pub openid: OpenId,
    pub unionid: Option<String>,
}

/// Why a code did not name a user.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// 40029 (invalid) or 40163 (already used): the mini-program must call `wx.login` again.
    #[error("the code is invalid or used (errcode {0})")]
    InvalidCode(i64),
    /// 45011: this user logs in too often.
    #[error("logins too frequent (errcode 45011)")]
    TooFrequent,
    /// 40226: WeChat refuses to log this user in (a high-risk account).
    #[error("WeChat refused a high-risk user (errcode 40226)")]
    HighRisk,
    /// -1 (busy), no answer, or an HTTP error: worth trying again later.
    #[error("WeChat busy or unreachable: {0}")]
    Unavailable(String),
    /// Any other errcode, e.g. 40013 / 40125 (our appid or secret is wrong): for the
    /// operator, never for the customer.
    #[error("WeChat refused the exchange (errcode {errcode}): {errmsg}")]
    Refused { errcode: i64, errmsg: String },
    /// An answer that names nobody we can accept.
    #[error("WeChat's answer is unreadable: {0}")]
    Unreadable(String),
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    #[serde(default)]
    openid: Option<String>,
    #[serde(default)]
    unionid: Option<String>,
}

impl WechatLogin {
    pub fn new(config: LoginConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(WechatLogin { http, config })
    }

    /// The mini-program whose users log in.
    pub fn app_id(&self) -> &str {
        &self.config.app_id
    }

    pub async fn code_to_session(&self, code: &str) -> Result<WechatUser, CodeError> {
        let unavailable =
            |error: reqwest::Error| CodeError::Unavailable(error.without_url().to_string());
        let mut url = reqwest::Url::parse(&format!("{}/sns/jscode2session", self.config.api_base))
            .map_err(|_| CodeError::Unavailable("WECHAT_LOGIN_API_BASE is not a URL".into()))?;
        url.query_pairs_mut()
            .append_pair("appid", &self.config.app_id)
            .append_pair("secret", self.config.app_secret.expose())
            .append_pair("js_code", code)
            .append_pair("grant_type", "authorization_code");
        let response = self.http.get(url).send().await.map_err(unavailable)?;
        let status = response.status();
        if !status.is_success() {
            return Err(CodeError::Unavailable(format!("HTTP {status}")));
        }
        let bytes = response.bytes().await.map_err(unavailable)?;
        // serde's message names a position, never the text (which holds the session_key).
        let answer: Answer = serde_json::from_slice(&bytes)
            .map_err(|error| CodeError::Unreadable(error.to_string()))?;
        read(answer)
    }
}

fn read(answer: Answer) -> Result<WechatUser, CodeError> {
    match answer.errcode {
        0 => {}
        40029 | 40163 => return Err(CodeError::InvalidCode(answer.errcode)),
        45011 => return Err(CodeError::TooFrequent),
        40226 => return Err(CodeError::HighRisk),
        -1 => {
            return Err(CodeError::Unavailable(format!(
                "errcode -1: {}",
                answer.errmsg
            )))
        }
        errcode => {
            return Err(CodeError::Refused {
                errcode,
                errmsg: answer.errmsg,
            })
        }
    }
    let openid = answer
        .openid
        .as_deref()
        .and_then(|openid| OpenId::parse(openid).ok())
        .ok_or_else(|| CodeError::Unreadable("no valid openid".into()))?;
    // Kept only in the form the gateway's header is (users.unionid), else dropped.
    let unionid = answer
        .unionid
        .filter(|u| !u.is_empty() && u.len() <= 128 && u.chars().all(|c| c.is_ascii_graphic()));
    Ok(WechatUser { openid, unionid })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Result<WechatUser, CodeError> {
        read(serde_json::from_str(text).unwrap())
    }

    #[test]
    fn wechats_answers_become_a_user_or_a_reason() {
        let user =
            answer(r#"{"openid":"o_abc","session_key":"c2VjcmV0","unionid":"u_1"}"#).unwrap();
        assert_eq!(user.openid.as_str(), "o_abc");
        assert_eq!(user.unionid.as_deref(), Some("u_1"));
        assert!(matches!(
            answer(r#"{"errcode":40029,"errmsg":"invalid code"}"#),
            Err(CodeError::InvalidCode(40029))
        ));
        assert!(matches!(
            answer(r#"{"errcode":40163,"errmsg":"code been used"}"#),
            Err(CodeError::InvalidCode(40163))
        ));
        assert!(matches!(
            answer(r#"{"errcode":45011,"errmsg":"freq"}"#),
            Err(CodeError::TooFrequent)
        ));
        assert!(matches!(
            answer(r#"{"errcode":40226,"errmsg":"risk"}"#),
            Err(CodeError::HighRisk)
        ));
        assert!(matches!(
            answer(r#"{"errcode":-1,"errmsg":"busy"}"#),
            Err(CodeError::Unavailable(_))
        ));
        assert!(matches!(
            answer(r#"{"errcode":40125,"errmsg":"invalid appsecret"}"#),
            Err(CodeError::Refused { errcode: 40125, .. })
        ));
        assert!(matches!(
            answer(r#"{"session_key":"c2VjcmV0"}"#),
            Err(CodeError::Unreadable(_))
        ));
        assert!(matches!(
            answer(r#"{"openid":"o b"}"#),
            Err(CodeError::Unreadable(_))
        ));
    }
}

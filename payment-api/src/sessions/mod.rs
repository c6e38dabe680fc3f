//! Direct mode's identity (`WECHAT_PAY_MODE=direct`): outside Cloud Hosting no gateway
//! vouches for the caller, so the mini-program sends its `wx.login` code, WeChat names the
//! user (`jscode2session`), and we issue a session token of our own, short-lived and
//! revocable, presented as `Authorization: Bearer` on every later call.
//!
//! Expired sessions are deleted on use: each login deletes up to a hundred expired rows
//! (`store::sessions::insert`), more than it adds, so the table stays as small as the
//! sessions alive without a background job. Revoked ones go the same way once expired.

pub mod token;

use std::time::Duration;

use shared::order::OpenId;
use sqlx::PgPool;

use crate::store::{sessions as stored, users};
use crate::wechat::login::{CodeError, WechatLogin};
pub use token::{SessionToken, TokenHash};

/// Logging in and out; held by the context in direct mode.
pub struct Sessions {
    pub db: PgPool,
    pub wechat: WechatLogin,
    pub ttl: Duration,
}

/// A session just opened: the token goes to the customer, once.
#[derive(Debug)]
pub struct IssuedSession {
    pub token: SessionToken,
    pub expires_in: Duration,
}

/// The customer a live session belongs to.
pub struct SessionUser {
    pub id: i64,
    pub openid: OpenId,
}

/// Why a login was refused. WeChat's own words stay in the log.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Not a code, or one WeChat calls invalid or used: call `wx.login` again.
    #[error("the login code is invalid or used")]
    InvalidCode,
    /// WeChat's 45011.
    #[error("logins too frequent")]
    TooFrequent,
    /// WeChat's 40226: a high-risk account.
    #[error("WeChat refuses this account")]
    Refused,
    /// WeChat busy (-1) or unreachable.
    #[error("WeChat login is busy or unreachable")]
    Unavailable,
    /// Anything else WeChat answered: our configuration, most likely.
    #[error("WeChat login failed")]
    Upstream,
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
    #[error("no random bytes for a session token")]
    Random,
}

/// Longest code we pass on; WeChat's are 32 characters.
const MAX_CODE_CHARS: usize = 128;

impl Sessions {
    /// Exchanges the code, records the user (created on first sight, as the gateway's users
    /// are) and opens a session.
    pub async fn log_in(&self, code: &str) -> Result<IssuedSession, LoginError> {
        let plausible = !code.is_empty()
            && code.len() <= MAX_CODE_CHARS
            && code.bytes().all(|b| b.is_ascii_graphic());
        if !plausible {
            return Err(LoginError::InvalidCode);
        }
        let user = self.wechat.code_to_session(code).await.map_err(refusal)?;
        let app_id = Some(self.wechat.app_id());
        let user_id =
            users::upsert(&self.db, &user.openid, user.unionid.as_deref(), app_id).await?;
        let token = SessionToken::generate().map_err(|_| LoginError::Random)?;
        stored::insert(&self.db, &token.hash().0, user_id, self.ttl).await?;
        tracing::info!(user_id, "session opened");
        Ok(IssuedSession {
            token,
            expires_in: self.ttl,
        })
    }

    /// Ends the session the token names; false if it was not live (unknown, expired or
    /// revoked already).
    pub async fn log_out(&self, presented: &str) -> Result<bool, sqlx::Error> {
        match TokenHash::of_presented(presented) {
            Some(hash) => stored::revoke(&self.db, &hash.0).await,
            None => Ok(false),
        }
    }
}

/// The customer whose live session `presented` is; `None` for anything else.
pub async fn authenticate(
    db: &PgPool,
    presented: &str,
) -> Result<Option<SessionUser>, sqlx::Error> {
    let Some(hash) = TokenHash::of_presented(presented) else {
        return Ok(None);
    };
    let Some((id, openid)) = stored::live_user(db, &hash.0).await? else {
        return Ok(None);
    };
    // Written by users::upsert, so always an openid; a row that is not is nobody.
    Ok(OpenId::parse(&openid)
        .ok()
        .map(|openid| SessionUser { id, openid }))
}

/// WeChat's refusal as ours, its words logged for the operator.
fn refusal(error: CodeError) -> LoginError {
    match error {
        CodeError::InvalidCode(errcode) => {
            tracing::info!(errcode, "login code refused by WeChat");
            LoginError::InvalidCode
        }
        CodeError::TooFrequent => {
            tracing::info!("WeChat says this user logs in too often");
            LoginError::TooFrequent
        }
        CodeError::HighRisk => {
            tracing::info!("WeChat refuses a high-risk user");
            LoginError::Refused
        }
        CodeError::Unavailable(reason) => {
            tracing::warn!(%reason, "WeChat login unavailable");
            LoginError::Unavailable
        }
        error @ (CodeError::Refused { .. } | CodeError::Unreadable(_)) => {
            tracing::error!(%error, "WeChat login failed");
            LoginError::Upstream
        }
    }
}

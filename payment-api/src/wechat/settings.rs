//! The settings of each way this service reaches WeChat: the Cloud Hosting open interface
//! ([`WechatConfig`]) and direct mode's logins ([`LoginConfig`]); APIv3's are in
//! [`super::v3::V3Config`]. Read by `crate::config`, used by the clients beside them.

use std::time::Duration;

use shared::config::{ConfigError, Secret, Settings};

/// WeChat's open interface service, as seen from inside a cloud-hosting container.
pub const WECHAT_OPEN_INTERFACE: &str = "http://api.weixin.qq.com";

/// WeChat's public API, where direct mode exchanges `wx.login` codes (`jscode2session`).
pub const WECHAT_LOGIN_API: &str = "https://api.weixin.qq.com";

/// The setting that lets production start with WeChat settings under which a forged
/// payment can be fulfilled, and the exact value it must have: nobody sets it by accident.
pub const UNSAFE_WECHAT_OVERRIDE: &str = "ALLOW_UNSAFE_WECHAT_SETTINGS";
pub const UNSAFE_WECHAT_CONSENT: &str = "payments-can-be-forged";

#[derive(Debug, Clone)]
pub struct WechatConfig {
    /// `http://api.weixin.qq.com` inside cloud hosting; the sandbox's URL elsewhere.
    pub api_base: String,
    /// Our sub-merchant id: sent with every pay call, and required of every callback.
    pub mch_id: String,
    pub env_id: String,
    /// The cloud-hosting service name and path the platform posts payment results to.
    pub callback_service: String,
    pub callback_path: String,
    /// Where the platform posts refund results (the order number is appended).
    pub refund_callback_path: String,
    pub server_ip: String,
    pub timeout: Duration,
}

/// How direct mode turns a `wx.login` code into our own session.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// The mini-program's appid (`WECHAT_APP_ID`), whose users log in.
    pub app_id: String,
    /// `WECHAT_APP_SECRET_FILE` or `WECHAT_APP_SECRET`: sent to `jscode2session` only.
    pub app_secret: Secret,
    /// `WECHAT_LOGIN_API_BASE`: `https://api.weixin.qq.com`; the sandbox's URL elsewhere.
    pub api_base: String,
    pub timeout: Duration,
    /// How long a session lives from login (`SESSION_TTL_SECS`).
    pub session_ttl: Duration,
}

/// A session lives at least five minutes (a payment takes longer than that) and at most a
/// week: a token that leaked must stop working by itself, logout or not.
const SESSION_TTL_SECS: std::ops::RangeInclusive<u64> = 300..=7 * 24 * 3600;

impl LoginConfig {
    pub fn from_settings(s: &Settings, timeout: Duration) -> Result<Self, ConfigError> {
        let app_id = s.required("WECHAT_APP_ID")?.trim().to_owned();
        if app_id.is_empty()
            || app_id.len() > 32
            || !app_id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(ConfigError::Invalid {
                name: "WECHAT_APP_ID",
                reason: "an appid is letters and digits (wx followed by 16 characters)".into(),
            });
        }
        let ttl = s.parsed("SESSION_TTL_SECS", 7200u64)?;
        if !SESSION_TTL_SECS.contains(&ttl) {
            return Err(ConfigError::Invalid {
                name: "SESSION_TTL_SECS",
                reason: format!(
                    "must be between {} and {} seconds",
                    SESSION_TTL_SECS.start(),
                    SESSION_TTL_SECS.end()
                ),
            });
        }
        Ok(LoginConfig {
            app_id,
            app_secret: secret_from_file_or_value(
                s,
                "WECHAT_APP_SECRET_FILE",
                "WECHAT_APP_SECRET",
            )?,
            api_base: s.url("WECHAT_LOGIN_API_BASE", Some(WECHAT_LOGIN_API))?,
            timeout,
            session_ttl: Duration::from_secs(ttl),
        })
    }
}

/// A secret read from the file `file` names (a mounted secret, kept out of the
/// environment), or else from `value` itself; never both, so that nobody wonders which won.
pub(crate) fn secret_from_file_or_value(
    s: &Settings,
    file: &'static str,
    value: &'static str,
) -> Result<Secret, ConfigError> {
    let text = match (s.optional(file), s.optional(value)) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid {
                name: file,
                reason: format!("set either {file} or {value}, not both"),
            })
        }
        (Some(path), None) => {
            std::fs::read_to_string(path.trim()).map_err(|error| ConfigError::Invalid {
                name: file,
                reason: format!("cannot read {path:?}: {}", error.kind()),
            })?
        }
        (None, Some(text)) => text,
        (None, None) => return Err(ConfigError::Missing(value)),
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(ConfigError::Invalid {
            name: value,
            reason: "is empty".into(),
        });
    }
    Ok(Secret::new(text))
}

impl WechatConfig {
    pub fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        let mch_id = s.required("WECHAT_MCH_ID")?;
        if mch_id.is_empty() || !mch_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::Invalid {
                name: "WECHAT_MCH_ID",
                reason: "a merchant id is digits only".into(),
            });
        }
        let callback_path = s.or("WECHAT_PAYMENT_CALLBACK_PATH", "/payment/callback");
        if !callback_path.starts_with('/') {
            return Err(ConfigError::Invalid {
                name: "WECHAT_PAYMENT_CALLBACK_PATH",
                reason: "must start with /".into(),
            });
        }
        Ok(WechatConfig {
            api_base: s.url("WECHAT_API_BASE", Some(WECHAT_OPEN_INTERFACE))?,
            mch_id,
            env_id: s.required("WECHAT_ENV_ID")?,
            callback_service: s.required("WECHAT_PAYMENT_CALLBACK_SERVICE")?,
            callback_path: callback_path.trim_end_matches('/').to_owned(),
            refund_callback_path: "/payment/refund-callback".to_owned(),
            server_ip: s.or("WECHAT_PAYMENT_SERVER_IP", "127.0.0.1"),
            timeout: s.millis("WECHAT_TIMEOUT_MS", 10_000)?,
        })
    }
}

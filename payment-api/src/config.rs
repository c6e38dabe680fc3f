//! payment-api's configuration, read once from the environment (see the README's table).

use std::time::Duration;

use shared::config::{AppEnv, ConfigError, InfraConfig, Secret, Settings, UnitelConfig};

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub app_env: AppEnv,
    pub host: std::net::IpAddr,
    pub port: u16,
    pub db_pool_size: u32,
    pub infra: InfraConfig,
    pub wechat: WechatConfig,
    pub unitel: UnitelConfig,
    /// Bearer token for the admin routes; without it they answer 401 to everyone.
    pub admin_token: Option<Secret>,
    pub payments: PaymentPolicy,
    pub alerts: AlertConfig,
}

/// Where alerts go and when health figures become alerts.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// WeCom group robot: `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...`.
    pub wecom_webhook_url: Option<Secret>,
    /// `smtps://user:pass@host:465` (or `smtp://...?tls=required`).
    pub smtp_url: Option<Secret>,
    pub email_from: String,
    pub email_to: Vec<String>,
    pub max_per_minute: u32,
    pub every: Duration,
    pub outbox_backlog: i64,
    pub queue_depth: u32,
}

/// How payment-api watches over payments that WeChat may not tell it about.
#[derive(Debug, Clone)]
pub struct PaymentPolicy {
    /// Confirm every callback with `queryorder` before fulfilling it (the callback is not
    /// signed; turning this off trusts a well-formed callback from the gateway).
    pub confirm_callbacks: bool,
    /// How long an order can be paid; after it the order is closed at WeChat and here.
    pub window: Duration,
    /// Closing waits this much past the window, so that a payment started at its very end
    /// is not closed while the user is paying.
    pub close_grace: Duration,
    /// How often the sweep looks for lost callbacks and expired orders.
    pub sweep_every: Duration,
    /// How long after starting a payment the sweep first asks WeChat about it, and how
    /// long it waits before asking again.
    pub query_after: Duration,
    /// Orders created per openid per minute (`POST /orders`).
    pub orders_per_minute: u32,
    /// Payments started per openid per minute (`POST /payment/create`).
    pub payments_per_minute: u32,
    /// Refund every order whose top-up failed definitively, without waiting for a person.
    pub auto_refund_failed: bool,
    /// How often requested and accepted refunds are pushed and checked.
    pub refund_sweep_every: Duration,
}

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

impl ApiConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_settings(&Settings::from_env())
    }

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
        Ok(ApiConfig {
            app_env: AppEnv::from_settings(s)?,
            host: s.parsed("HOST", std::net::IpAddr::from([0, 0, 0, 0]))?,
            port: s.parsed("PORT", 3000u16)?,
            db_pool_size: s.parsed("DATABASE_POOL_SIZE", 16u32)?,
            infra: InfraConfig::from_settings(s)?,
            wechat: WechatConfig {
                api_base: s.url("WECHAT_API_BASE", Some("http://api.weixin.qq.com"))?,
                mch_id,
                env_id: s.required("WECHAT_ENV_ID")?,
                callback_service: s.required("WECHAT_PAYMENT_CALLBACK_SERVICE")?,
                callback_path: callback_path.trim_end_matches('/').to_owned(),
                refund_callback_path: "/payment/refund-callback".to_owned(),
                server_ip: s.or("WECHAT_PAYMENT_SERVER_IP", "127.0.0.1"),
                timeout: s.millis("WECHAT_TIMEOUT_MS", 10_000)?,
            },
            unitel: UnitelConfig::from_settings(s)?,
            admin_token: s.optional("ADMIN_TOKEN").map(Secret::new),
            alerts: AlertConfig::from_settings(s)?,
            payments: PaymentPolicy {
                confirm_callbacks: s.parsed("WECHAT_CONFIRM_CALLBACKS", true)?,
                window: s.millis("PAYMENT_WINDOW_MS", 30 * 60 * 1000)?,
                close_grace: s.millis("PAYMENT_CLOSE_GRACE_MS", 60_000)?,
                sweep_every: s.millis("PAYMENT_SWEEP_INTERVAL_MS", 30_000)?,
                query_after: s.millis("PAYMENT_QUERY_AFTER_MS", 60_000)?,
                orders_per_minute: s.parsed("RATE_LIMIT_ORDERS_PER_MINUTE", 10)?,
                payments_per_minute: s.parsed("RATE_LIMIT_PAYMENTS_PER_MINUTE", 20)?,
                auto_refund_failed: s.parsed("AUTO_REFUND_FAILED", true)?,
                refund_sweep_every: s.millis("REFUND_SWEEP_INTERVAL_MS", 10_000)?,
            },
        })
    }
}

impl AlertConfig {
    fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        let smtp_url = s.optional("ALERT_SMTP_URL").map(Secret::new);
        let email_to: Vec<String> = s
            .optional("ALERT_EMAIL_TO")
            .map(|v| {
                v.split(',')
                    .map(|a| a.trim().to_owned())
                    .filter(|a| !a.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if smtp_url.is_some() && email_to.is_empty() {
            return Err(ConfigError::Missing("ALERT_EMAIL_TO"));
        }
        Ok(AlertConfig {
            wecom_webhook_url: s.optional("ALERT_WECOM_WEBHOOK_URL").map(Secret::new),
            smtp_url,
            email_from: s.or("ALERT_EMAIL_FROM", "eLife alerts <alerts@elife.invalid>"),
            email_to,
            max_per_minute: s.parsed("ALERT_MAX_PER_MINUTE", 20)?,
            every: s.millis("ALERT_INTERVAL_MS", 5_000)?,
            outbox_backlog: s.parsed("ALERT_OUTBOX_BACKLOG", 100)?,
            queue_depth: s.parsed("ALERT_QUEUE_DEPTH", 1_000)?,
        })
    }
}

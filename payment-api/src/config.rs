//! payment-api's configuration, read once from the environment (see the README's table).

use std::net::SocketAddr;
use std::time::Duration;

use shared::config::{AppEnv, ConfigError, InfraConfig, Secret, Settings, UnitelConfig};

use crate::client_address::{self, AddressSource};
pub use crate::wechat::settings::{
    LoginConfig, WechatConfig, UNSAFE_WECHAT_CONSENT, UNSAFE_WECHAT_OVERRIDE, WECHAT_LOGIN_API,
    WECHAT_OPEN_INTERFACE,
};
use crate::wechat::v3::V3Config;

/// Admin tokens this project ships in its examples: never accepted in production.
pub const PLACEHOLDER_ADMIN_TOKENS: &[&str] = &[
    "change-me-to-a-long-random-string",
    "replace-with-the-output-of-openssl-rand-hex-32",
];
const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// How this deployment reaches WeChat Pay and knows who its customers are
/// (`WECHAT_PAY_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayMode {
    /// Inside WeChat Cloud Hosting: pay calls go through its open interface service
    /// (unsigned; the platform vouches for us) and the gateway names the caller in
    /// `X-WX-OPENID`.
    Cloud,
    /// Anywhere else: WeChat Pay APIv3 with our own merchant keys, every answer and
    /// notification verified, and our own sessions from `wx.login`. The gateway's `X-WX-*`
    /// headers mean nothing here: anyone could send them.
    Direct,
}

impl PayMode {
    fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        match s.or("WECHAT_PAY_MODE", "cloud").trim() {
            "cloud" => Ok(PayMode::Cloud),
            "direct" => Ok(PayMode::Direct),
            _ => Err(ConfigError::Invalid {
                name: "WECHAT_PAY_MODE",
                reason: "must be cloud (WeChat Cloud Hosting) or direct (WeChat Pay APIv3)".into(),
            }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub app_env: AppEnv,
    pub pay_mode: PayMode,
    pub host: std::net::IpAddr,
    pub port: u16,
    /// Where `/metrics`, `/api` and `/api-json` are served, apart from the public port
    /// (`METRICS_ADDR`; in production `0.0.0.0:9100` unless set). `None`: on the public
    /// port (development only).
    pub operations_addr: Option<SocketAddr>,
    pub db_pool_size: u32,
    pub infra: InfraConfig,
    /// The Cloud Hosting open interface: always in cloud mode; in direct mode only when
    /// its settings are kept for the orders created through it.
    pub wechat: Option<WechatConfig>,
    pub unitel: UnitelConfig,
    /// Bearer token for the admin routes; without it they answer 401 to everyone.
    pub admin_token: Option<Secret>,
    pub payments: PaymentPolicy,
    /// Direct mode's logins and sessions; `None` in cloud mode, where the gateway names
    /// the caller and `/auth/login` is not offered.
    pub login: Option<LoginConfig>,
    /// WeChat Pay APIv3 with the merchant's own keys: direct mode's payments.
    pub direct: Option<V3Config>,
    pub limits: Limits,
    /// Where a request's client address is read, for the per-address limits
    /// (`CLIENT_ADDRESS_FROM`, `TRUSTED_PROXY_HOPS`).
    pub client_address: AddressSource,
    pub alerts: AlertConfig,
    pub reconciliation: ReconciliationConfig,
    /// How long a number's product list or postpaid bill is reused before Unitel is asked
    /// again (`UNITEL_LOOKUP_CACHE_MS`).
    pub lookup_cache_for: Duration,
    /// Settled payment anomalies older than this many days are summarised and removed
    /// (`ANOMALY_RETENTION_DAYS`).
    pub anomaly_retention_days: u32,
    /// Unsafe settings production was explicitly told to accept: logged at every start and
    /// shown on `/health` at the operations address (never on the public port).
    pub warnings: Vec<String>,
}

/// Anomalies are kept at least a month (a person reads them from the alert first), at
/// most a century.
const ANOMALY_RETENTION_DAYS: std::ops::RangeInclusive<u32> = 30..=36_500;

/// How much one caller may ask, per minute, counted across every instance.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `POST /orders` per openid (`RATE_LIMIT_ORDERS_PER_MINUTE`).
    pub orders_per_minute: u32,
    /// `POST /payment/create` per openid (`RATE_LIMIT_PAYMENTS_PER_MINUTE`).
    pub payments_per_minute: u32,
    /// `POST /orders/{n}/cancel` per openid (`RATE_LIMIT_CANCELS_PER_MINUTE`).
    pub cancels_per_minute: u32,
    /// Product lists and postpaid bills per openid (`RATE_LIMIT_LOOKUPS_PER_MINUTE`).
    pub lookups_per_minute: u32,
    /// Each limited route per client address (`RATE_LIMIT_PER_ADDRESS_PER_MINUTE`).
    pub per_address_per_minute: u32,
    /// Reading an unpaid order asks WeChat at most this often per order
    /// (`ORDER_QUERY_EVERY_MS`).
    pub order_query_every: Duration,
    /// Rejected callbacks recorded per source address (`CALLBACK_REJECTS_PER_MINUTE`); the
    /// rest are counted, not stored.
    pub callback_rejects_per_minute: u32,
    /// Wrong admin tokens per client address before 429 (`ADMIN_FAILURES_PER_MINUTE`).
    pub admin_failures_per_minute: u32,
}

/// When and from which day our books are matched against WeChat Pay's daily bill.
#[derive(Debug, Clone)]
pub struct ReconciliationConfig {
    /// How often due days are looked for (`RECONCILIATION_INTERVAL_MS`).
    pub every: Duration,
    /// How long before a day that could not be fetched, or did not add up, is tried again
    /// (`RECONCILIATION_RETRY_MS`).
    pub retry_after: Duration,
    /// The first day to reconcile (`RECONCILIATION_SINCE`); by default the day of the
    /// oldest order, within the three months WeChat serves.
    pub since: Option<chrono::NaiveDate>,
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
    /// Refund every order whose top-up failed definitively, without waiting for a person.
    pub auto_refund_failed: bool,
    /// How often requested and accepted refunds are pushed and checked.
    pub refund_sweep_every: Duration,
}

impl ApiConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_settings(&Settings::from_env())
    }

    pub fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        let app_env = AppEnv::from_settings(s)?;
        let payments = PaymentPolicy {
            confirm_callbacks: s.parsed("WECHAT_CONFIRM_CALLBACKS", true)?,
            window: s.millis("PAYMENT_WINDOW_MS", 30 * 60 * 1000)?,
            close_grace: s.millis("PAYMENT_CLOSE_GRACE_MS", 60_000)?,
            sweep_every: s.millis("PAYMENT_SWEEP_INTERVAL_MS", 30_000)?,
            query_after: s.millis("PAYMENT_QUERY_AFTER_MS", 60_000)?,
            auto_refund_failed: s.parsed("AUTO_REFUND_FAILED", true)?,
            refund_sweep_every: s.millis("REFUND_SWEEP_INTERVAL_MS", 10_000)?,
        };
        let admin_token = s.optional("ADMIN_TOKEN").map(Secret::new);
        let pay_mode = PayMode::from_settings(s)?;
        let (wechat, direct, login) = match pay_mode {
            PayMode::Cloud => (Some(WechatConfig::from_settings(s)?), None, None),
            PayMode::Direct => {
                let direct = V3Config::from_settings(s)?;
                let login = LoginConfig::from_settings(s, direct.timeout)?;
                // Orders created through Cloud Hosting stay reachable through it when its
                // settings are kept (the open interface answers only inside Cloud Hosting).
                let cloud = match s.optional("WECHAT_ENV_ID") {
                    Some(_) => Some(WechatConfig::from_settings(s)?),
                    None => None,
                };
                (cloud, Some(direct), Some(login))
            }
        };
        let mut warnings = match app_env {
            AppEnv::Production => production_checks(
                s,
                wechat.as_ref(),
                &payments,
                login.as_ref(),
                admin_token.as_ref(),
            )?,
            AppEnv::Development => Vec::new(),
        };
        warnings.extend(direct.iter().flat_map(|d| d.warnings.iter().cloned()));
        let operations_addr = match (s.optional("METRICS_ADDR"), app_env) {
            (Some(_), _) => Some(s.parsed("METRICS_ADDR", SocketAddr::from(([0, 0, 0, 0], 9100)))?),
            (None, AppEnv::Production) => Some(SocketAddr::from(([0, 0, 0, 0], 9100))),
            (None, AppEnv::Development) => None,
        };
        Ok(ApiConfig {
            app_env,
            pay_mode,
            operations_addr,
            warnings,
            host: s.parsed("HOST", std::net::IpAddr::from([0, 0, 0, 0]))?,
            port: s.parsed("PORT", 3000u16)?,
            db_pool_size: s.parsed("DATABASE_POOL_SIZE", 16u32)?,
            infra: InfraConfig::from_settings(s)?,
            wechat,
            unitel: UnitelConfig::from_settings(s)?,
            admin_token,
            client_address: AddressSource::from_settings(
                s,
                match pay_mode {
                    PayMode::Cloud => client_address::GATEWAY_HEADER,
                    PayMode::Direct => "peer",
                },
            )?,
            alerts: AlertConfig::from_settings(s)?,
            payments,
            login,
            direct,
            limits: Limits {
                orders_per_minute: s.parsed("RATE_LIMIT_ORDERS_PER_MINUTE", 10)?,
                payments_per_minute: s.parsed("RATE_LIMIT_PAYMENTS_PER_MINUTE", 20)?,
                cancels_per_minute: s.parsed("RATE_LIMIT_CANCELS_PER_MINUTE", 10)?,
                lookups_per_minute: s.parsed("RATE_LIMIT_LOOKUPS_PER_MINUTE", 30)?,
                per_address_per_minute: s.parsed("RATE_LIMIT_PER_ADDRESS_PER_MINUTE", 100)?,
                order_query_every: s.millis("ORDER_QUERY_EVERY_MS", 10_000)?,
                callback_rejects_per_minute: s.parsed("CALLBACK_REJECTS_PER_MINUTE", 60)?,
                admin_failures_per_minute: s.parsed("ADMIN_FAILURES_PER_MINUTE", 10)?,
            },
            lookup_cache_for: s.millis("UNITEL_LOOKUP_CACHE_MS", 180_000)?,
            reconciliation: reconciliation_config(s)?,
            anomaly_retention_days: anomaly_retention_days(s)?,
        })
    }
}

fn reconciliation_config(s: &Settings) -> Result<ReconciliationConfig, ConfigError> {
    let since = match s.optional("RECONCILIATION_SINCE") {
        None => None,
        Some(text) => Some(
            chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
                ConfigError::Invalid {
                    name: "RECONCILIATION_SINCE",
                    reason: "must be a date as YYYY-MM-DD".into(),
                }
            })?,
        ),
    };
    let every = s.millis("RECONCILIATION_INTERVAL_MS", 600_000)?;
    let retry_after = s.millis("RECONCILIATION_RETRY_MS", 1_800_000)?;
    for (name, value) in [
        ("RECONCILIATION_INTERVAL_MS", every),
        ("RECONCILIATION_RETRY_MS", retry_after),
    ] {
        if value < Duration::from_secs(1) || value > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::Invalid {
                name,
                reason: "must be between 1000 and 86400000 milliseconds".into(),
            });
        }
    }
    Ok(ReconciliationConfig {
        every,
        retry_after,
        since,
    })
}

fn anomaly_retention_days(s: &Settings) -> Result<u32, ConfigError> {
    let days = s.parsed("ANOMALY_RETENTION_DAYS", 400u32)?;
    if !ANOMALY_RETENTION_DAYS.contains(&days) {
        return Err(ConfigError::Invalid {
            name: "ANOMALY_RETENTION_DAYS",
            reason: format!(
                "must be between {} and {} days",
                ANOMALY_RETENTION_DAYS.start(),
                ANOMALY_RETENTION_DAYS.end()
            ),
        });
    }
    Ok(days)
}

/// What production refuses to start with. Settings under which a forged payment could be
/// fulfilled are accepted only with [`UNSAFE_WECHAT_OVERRIDE`] set to
/// [`UNSAFE_WECHAT_CONSENT`]; they are returned as warnings.
fn production_checks(
    s: &Settings,
    cloud: Option<&WechatConfig>,
    payments: &PaymentPolicy,
    login: Option<&LoginConfig>,
    admin_token: Option<&Secret>,
) -> Result<Vec<String>, ConfigError> {
    if let Some(token) = admin_token {
        let token = token.expose();
        if token.chars().count() < MIN_ADMIN_TOKEN_CHARS {
            return Err(ConfigError::Invalid {
                name: "ADMIN_TOKEN",
                reason: format!(
                    "must be at least {MIN_ADMIN_TOKEN_CHARS} characters in production (e.g. openssl rand -hex 32)"
                ),
            });
        }
        if PLACEHOLDER_ADMIN_TOKENS.contains(&token) {
            return Err(ConfigError::Invalid {
                name: "ADMIN_TOKEN",
                reason:
                    "is the placeholder from an example file; generate one (openssl rand -hex 32)"
                        .into(),
            });
        }
    }
    let mut unsafe_settings = Vec::new();
    let cloud_elsewhere = cloud.filter(|cloud| cloud.api_base != WECHAT_OPEN_INTERFACE);
    if let Some(cloud) = cloud_elsewhere {
        unsafe_settings.push(format!(
            "WECHAT_API_BASE is {} rather than WeChat's open interface ({WECHAT_OPEN_INTERFACE}): \
             payments are confirmed by whatever answers there",
            cloud.api_base
        ));
    }
    if let Some(login) = login.filter(|login| login.api_base != WECHAT_LOGIN_API) {
        unsafe_settings.push(format!(
            "WECHAT_LOGIN_API_BASE is {} rather than WeChat's ({WECHAT_LOGIN_API}): whatever \
             answers there names our customers",
            login.api_base
        ));
    }
    if !payments.confirm_callbacks {
        unsafe_settings.push(
            "WECHAT_CONFIRM_CALLBACKS=false: a well-formed forged callback is fulfilled without \
             asking WeChat"
                .to_owned(),
        );
    }
    match s.optional(UNSAFE_WECHAT_OVERRIDE) {
        _ if unsafe_settings.is_empty() => Ok(Vec::new()),
        Some(consent) if consent == UNSAFE_WECHAT_CONSENT => Ok(unsafe_settings),
        Some(_) => Err(ConfigError::Invalid {
            name: UNSAFE_WECHAT_OVERRIDE,
            reason: format!("must be exactly {UNSAFE_WECHAT_CONSENT:?} to accept: {}", unsafe_settings.join("; ")),
        }),
        None => Err(ConfigError::Invalid {
            name: if cloud_elsewhere.is_some() {
                "WECHAT_API_BASE"
            } else if !payments.confirm_callbacks {
                "WECHAT_CONFIRM_CALLBACKS"
            } else {
                "WECHAT_LOGIN_API_BASE"
            },
            reason: format!(
                "unsafe in production ({}); set {UNSAFE_WECHAT_OVERRIDE}={UNSAFE_WECHAT_CONSENT} to start anyway",
                unsafe_settings.join("; ")
            ),
        }),
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

#[cfg(test)]
mod tests {

    use super::*;

    const STRONG_TOKEN: &str = "1d3f2b7c9e0a4b5c8d6e7f9a0b1c2d3e4f5a6b7c";

    fn settings(extra: &[(&str, &str)]) -> Settings {
        let required = [
            ("APP_ENV", "production"),
            ("DATABASE_URL", "postgres://db/elife"),
            ("AMQP_URL", "amqp://mq"),
            ("WECHAT_MCH_ID", "1712734762"),
            ("WECHAT_ENV_ID", "prod-env"),
            ("WECHAT_PAYMENT_CALLBACK_SERVICE", "elife-backend"),
            ("UNITEL_USERNAME", "elife"),
            ("UNITEL_PASSWORD", "secret"),
            ("ADMIN_TOKEN", STRONG_TOKEN),
        ];
        Settings::from_pairs(required.into_iter().chain(extra.iter().copied()))
    }

    fn refused(extra: &[(&str, &str)]) -> String {
        ApiConfig::from_settings(&settings(extra))
            .expect_err("production must refuse this")
            .to_string()
    }

    #[test]
    fn production_starts_on_the_shipped_defaults_without_warnings() {
        let config = ApiConfig::from_settings(&settings(&[])).unwrap();
        assert!(config.warnings.is_empty());
        assert_eq!(
            config.wechat.as_ref().unwrap().api_base,
            WECHAT_OPEN_INTERFACE
        );
        assert!(config.payments.confirm_callbacks);
        assert_eq!(
            config.operations_addr,
            Some(SocketAddr::from(([0, 0, 0, 0], 9100)))
        );
    }

    #[test]
    fn anomalies_are_kept_400_days_unless_told_otherwise_within_bounds() {
        let config = ApiConfig::from_settings(&settings(&[])).unwrap();
        assert_eq!(config.anomaly_retention_days, 400);
        let config =
            ApiConfig::from_settings(&settings(&[("ANOMALY_RETENTION_DAYS", "90")])).unwrap();
        assert_eq!(config.anomaly_retention_days, 90);
        for wrong in ["0", "29", "36501", "-1", "a year"] {
            assert!(
                refused(&[("ANOMALY_RETENTION_DAYS", wrong)]).contains("ANOMALY_RETENTION_DAYS"),
                "{wrong}"
            );
        }
    }

    #[test]
    fn production_refuses_a_short_or_placeholder_admin_token_naming_it() {
        assert!(refused(&[("ADMIN_TOKEN", "short-token")]).contains("ADMIN_TOKEN"));
        for placeholder in PLACEHOLDER_ADMIN_TOKENS {
            assert!(refused(&[("ADMIN_TOKEN", placeholder)]).contains("ADMIN_TOKEN"));
        }
        // Development is for the sandbox: its examples start.
        let development = settings(&[("APP_ENV", "development"), ("ADMIN_TOKEN", "short")]);
        assert!(ApiConfig::from_settings(&development).is_ok());
    }

    #[test]
    fn every_admin_token_an_example_file_ships_is_a_known_placeholder() {
        for file in [
            include_str!("../../.env.example"),
            include_str!("../../.env.production.example"),
        ] {
            let token = file
                .lines()
                .find_map(|line| line.strip_prefix("ADMIN_TOKEN="))
                .expect("the example documents ADMIN_TOKEN");
            assert!(
                PLACEHOLDER_ADMIN_TOKENS.contains(&token.trim()),
                "{token:?} would be accepted in production"
            );
        }
    }

    #[test]
    fn direct_mode_needs_its_login_settings_and_refuses_odd_ones_naming_them() {
        use crate::wechat::v3::test_keys;
        // Leaked once: the settings borrow them for the whole test.
        let leak = |text: String| -> &'static str { Box::leak(text.into_boxed_str()) };
        let public_key =
            std::env::temp_dir().join(format!("wechatpay-pub-{}.pem", std::process::id()));
        std::fs::write(&public_key, &test_keys::wechat().public_pem).unwrap();
        let direct = [
            ("WECHAT_PAY_MODE", "direct"),
            ("WECHAT_APP_ID", "wx5e1f0c2b7a9d3e41"),
            ("WECHAT_APP_SECRET", "app-secret"),
            (
                "WECHAT_MERCHANT_SERIAL",
                "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C",
            ),
            (
                "WECHAT_MERCHANT_PRIVATE_KEY",
                leak(test_keys::merchant().private_pem.clone()),
            ),
            ("WECHAT_API_V3_KEY", "0123456789abcdefghijABCDEFGHIJkl"),
            (
                "WECHAT_PAY_PUBLIC_KEY_FILE",
                leak(public_key.to_string_lossy().into_owned()),
            ),
            (
                "WECHAT_PAY_PUBLIC_KEY_ID",
                "PUB_KEY_ID_0117123456782026120400111111111111",
            ),
            (
                "WECHAT_NOTIFY_URL",
                "https://pay.example.com/payment/notify",
            ),
        ];
        let config = ApiConfig::from_settings(&settings(&direct)).unwrap();
        let login = config.login.clone().expect("direct mode has logins");
        assert_eq!(login.api_base, WECHAT_LOGIN_API);
        assert_eq!(login.session_ttl, Duration::from_secs(7200));
        assert!(!format!("{login:?}").contains("app-secret"));
        assert!(ApiConfig::from_settings(&settings(&[]))
            .unwrap()
            .login
            .is_none());

        let with = |extra: &[(&'static str, &'static str)]| {
            let mut all = direct.to_vec();
            all.retain(|(name, _)| !extra.iter().any(|(n, _)| n == name));
            all.extend_from_slice(extra);
            all
        };
        for wrong in ["0", "299", "604801", "two hours"] {
            assert!(refused(&with(&[("SESSION_TTL_SECS", wrong)])).contains("SESSION_TTL_SECS"));
        }
        assert!(refused(&with(&[("WECHAT_APP_ID", "wx 1")])).contains("WECHAT_APP_ID"));
        let both = with(&[("WECHAT_APP_SECRET_FILE", "/nonexistent")]);
        assert!(refused(&both).contains("WECHAT_APP_SECRET_FILE"));
        let mut none = direct.to_vec();
        none.retain(|(name, _)| *name != "WECHAT_APP_SECRET");
        assert!(refused(&none).contains("WECHAT_APP_SECRET"));
        none.push(("WECHAT_APP_SECRET_FILE", "/nonexistent"));
        assert!(refused(&none).contains("WECHAT_APP_SECRET_FILE"));
        let file = std::env::temp_dir().join(format!("app-secret-{}", std::process::id()));
        std::fs::write(&file, "from-the-file\n").unwrap();
        none.pop();
        let path = file.to_str().unwrap().to_owned();
        let mut from_file: Vec<(&str, &str)> = none.clone();
        from_file.push(("WECHAT_APP_SECRET_FILE", &path));
        let login = ApiConfig::from_settings(&settings(&from_file))
            .unwrap()
            .login
            .unwrap();
        assert_eq!(login.app_secret.expose(), "from-the-file");
        let _ = std::fs::remove_file(file);
        // Whatever answers jscode2session names our customers.
        let elsewhere = with(&[("WECHAT_LOGIN_API_BASE", "http://sandbox:8081")]);
        assert!(refused(&elsewhere).contains("WECHAT_LOGIN_API_BASE"));

        // Direct mode needs no Cloud Hosting settings, keeps them when given, and reads
        // the client address from the connection unless told otherwise.
        let mut alone = direct.to_vec();
        alone.retain(|(name, _)| {
            !matches!(*name, "WECHAT_ENV_ID" | "WECHAT_PAYMENT_CALLBACK_SERVICE")
        });
        let pure = ApiConfig::from_settings(&Settings::from_pairs(
            [
                ("APP_ENV", "production"),
                ("DATABASE_URL", "postgres://db/elife"),
                ("AMQP_URL", "amqp://mq"),
                ("WECHAT_MCH_ID", "1712734762"),
                ("UNITEL_USERNAME", "elife"),
                ("UNITEL_PASSWORD", "secret"),
                ("ADMIN_TOKEN", STRONG_TOKEN),
            ]
            .into_iter()
            .chain(alone.iter().copied()),
        ))
        .unwrap();
        assert!(pure.wechat.is_none() && pure.direct.is_some());
        assert_eq!(pure.client_address, AddressSource::Peer);
        assert!(
            config.wechat.is_some(),
            "Cloud Hosting settings given are kept"
        );
        let _ = std::fs::remove_file(public_key);
    }

    #[test]
    fn unsafe_wechat_settings_need_the_explicit_override_and_then_warn() {
        let sandbox = [("WECHAT_API_BASE", "http://sandbox:8081")];
        assert!(refused(&sandbox).contains("WECHAT_API_BASE"));
        let unconfirmed = [("WECHAT_CONFIRM_CALLBACKS", "false")];
        assert!(refused(&unconfirmed).contains("WECHAT_CONFIRM_CALLBACKS"));
        let wrong_consent = [
            ("WECHAT_CONFIRM_CALLBACKS", "false"),
            (UNSAFE_WECHAT_OVERRIDE, "true"),
        ];
        assert!(refused(&wrong_consent).contains(UNSAFE_WECHAT_OVERRIDE));

        let consented = settings(&[
            ("WECHAT_API_BASE", "http://sandbox:8081"),
            ("WECHAT_CONFIRM_CALLBACKS", "false"),
            (UNSAFE_WECHAT_OVERRIDE, UNSAFE_WECHAT_CONSENT),
        ]);
        let config = ApiConfig::from_settings(&consented).unwrap();
        assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
        assert!(config.warnings[0].contains("WECHAT_API_BASE"));
        assert!(config.warnings[1].contains("WECHAT_CONFIRM_CALLBACKS"));
    }
}

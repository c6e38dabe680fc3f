//! Reading configuration from the environment. Every setting is parsed once, at start-up;
//! a missing or malformed one stops the binary with a message that names it.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("configuration: {0} is required but not set")]
    Missing(&'static str),
    #[error("configuration: {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A value that must never reach a log: `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where settings come from: the process environment, or a map in tests (so tests never
/// mutate the environment of a process running other tests).
type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct Settings {
    lookup: Lookup,
}

impl Settings {
    pub fn from_env() -> Self {
        Settings {
            lookup: Box::new(|name| std::env::var(name).ok()),
        }
    }

    pub fn from_map(map: HashMap<String, String>) -> Self {
        Settings {
            lookup: Box::new(move |name| map.get(name).cloned()),
        }
    }

    /// From name/value pairs; a later pair wins over an earlier one of the same name.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Settings::from_map(
            pairs
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
        )
    }

    fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.raw(name).ok_or(ConfigError::Missing(name))
    }

    pub fn optional(&self, name: &'static str) -> Option<String> {
        self.raw(name)
    }

    pub fn or(&self, name: &'static str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_owned())
    }

    pub fn secret(&self, name: &'static str) -> Result<Secret, ConfigError> {
        self.required(name).map(Secret)
    }

    pub fn parsed<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.raw(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    name,
                    reason: format!("{raw:?}: {e}"),
                }),
        }
    }

    pub fn millis(&self, name: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
        let ms: u64 = self.parsed(name, default_ms)?;
        if ms == 0 {
            return Err(ConfigError::Invalid {
                name,
                reason: "must be greater than 0".into(),
            });
        }
        Ok(Duration::from_millis(ms))
    }

    pub fn url(&self, name: &'static str, default: Option<&str>) -> Result<String, ConfigError> {
        let value = match (self.raw(name), default) {
            (Some(v), _) => v,
            (None, Some(d)) => d.to_owned(),
            (None, None) => return Err(ConfigError::Missing(name)),
        };
        let value = value.trim().trim_end_matches('/').to_owned();
        if !(value.starts_with("http://") || value.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                name,
                reason: format!("{value:?} is not an http(s) URL"),
            });
        }
        Ok(value)
    }
}

/// `APP_ENV`: development allows the `X-Mock-Openid` override and readable logs;
/// production forbids the override and logs JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

impl AppEnv {
    /// Defaults to production: a forgotten setting must not open the development override.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        match settings.optional("APP_ENV").as_deref() {
            None | Some("production") => Ok(AppEnv::Production),
            Some("development") => Ok(AppEnv::Development),
            Some(other) => Err(ConfigError::Invalid {
                name: "APP_ENV",
                reason: format!("{other:?}: expected development or production"),
            }),
        }
    }
}

/// The Unitel partner API, used by payment-api (products) and by the worker (top-ups).
#[derive(Debug, Clone)]
pub struct UnitelConfig {
    pub api_url: String,
    pub username: String,
    pub password: Secret,
    pub timeout: Duration,
    /// Unitel's answer codes known to mean "nothing was done" (`UNITEL_REFUSAL_CODES`,
    /// comma-separated): only these make a top-up `failed`. Unitel publishes no error
    /// vocabulary, so the list starts empty; any other refusal after sending is `unknown`.
    pub refusal_codes: Vec<String>,
}

impl UnitelConfig {
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        Ok(UnitelConfig {
            api_url: settings.url("UNITEL_API_URL", Some("https://api.unitel.mn/api/v1"))?,
            username: settings.required("UNITEL_USERNAME")?,
            password: settings.secret("UNITEL_PASSWORD")?,
            timeout: settings.millis("UNITEL_TIMEOUT_MS", 30_000)?,
            refusal_codes: settings
                .optional("UNITEL_REFUSAL_CODES")
                .map(|codes| {
                    codes
                        .split(',')
                        .map(|c| c.trim().to_owned())
                        .filter(|c| !c.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// PostgreSQL and RabbitMQ, which every binary needs.
#[derive(Debug, Clone)]
pub struct InfraConfig {
    pub database_url: Secret,
    pub amqp_url: Secret,
    /// Prefix of every exchange and queue name, so that several deployments (or tests)
    /// can share one broker.
    pub amqp_prefix: String,
    /// `AMQP_QUEUE_EXPIRES_MS`: lets unused queues expire. For test and demo brokers only;
    /// every process sharing the queues must use the same value.
    pub amqp_queue_expires_ms: Option<i64>,
}

impl InfraConfig {
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let amqp_prefix = settings.or("AMQP_PREFIX", "elife");
        if !amqp_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ConfigError::Invalid {
                name: "AMQP_PREFIX",
                reason: "only letters, digits, '-', '_' and '.'".into(),
            });
        }
        Ok(InfraConfig {
            database_url: settings.secret("DATABASE_URL")?,
            amqp_url: settings.secret("AMQP_URL")?,
            amqp_prefix,
            amqp_queue_expires_ms: match settings.optional("AMQP_QUEUE_EXPIRES_MS") {
                None => None,
                Some(_) => {
                    Some(settings.parsed("AMQP_QUEUE_EXPIRES_MS", 0i64)?).filter(|ms| *ms > 0)
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn errors_name_the_setting() {
        let s = settings(&[("UNITEL_TIMEOUT_MS", "soon")]);
        assert_eq!(
            InfraConfig::from_settings(&s).unwrap_err(),
            ConfigError::Missing("DATABASE_URL")
        );
        let err = s.millis("UNITEL_TIMEOUT_MS", 1).unwrap_err().to_string();
        assert!(err.contains("UNITEL_TIMEOUT_MS"), "{err}");
        let s = settings(&[("APP_ENV", "staging")]);
        assert!(AppEnv::from_settings(&s)
            .unwrap_err()
            .to_string()
            .contains("APP_ENV"));
        let s = settings(&[("UNITEL_API_URL", "ftp://x")]);
        assert!(s.url("UNITEL_API_URL", None).is_err());
    }

    #[test]
    fn app_env_defaults_to_production() {
        assert_eq!(
            AppEnv::from_settings(&settings(&[])).unwrap(),
            AppEnv::Production
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        assert_eq!(secret.expose(), "hunter2");
    }
}

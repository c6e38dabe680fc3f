//! Direct mode's settings (`WECHAT_PAY_MODE=direct`), validated at start-up: a key that
//! does not parse or does not fit, a missing serial, an APIv3 key of the wrong length or a
//! notify URL WeChat would refuse stops the binary with a message naming the setting.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use shared::config::{AppEnv, ConfigError, Secret, Settings};

use super::keys::{certificate_serial, ApiV3Key, MerchantKey, PlatformKeys, PUBLIC_KEY_ID_PREFIX};
use crate::wechat::settings::{UNSAFE_WECHAT_CONSENT, UNSAFE_WECHAT_OVERRIDE};

/// WeChat Pay's APIv3 domain.
pub const WECHAT_PAY_API: &str = "https://api.mch.weixin.qq.com";

/// Who we are to WeChat Pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MerchantForm {
    /// A normal merchant: `appid` (the mini-program) + `mchid`.
    Direct { appid: String, mchid: String },
    /// A service provider acting for a sub-merchant: paths under `/partner/`, the
    /// customer as `sub_openid` of `sub_appid` (the mini-program). Requests are signed by
    /// the service provider (`sp_mchid`) with its keys.
    Partner {
        sp_appid: String,
        sp_mchid: String,
        sub_appid: String,
        sub_mchid: String,
    },
}

impl MerchantForm {
    /// The merchant whose key signs requests (`mchid=` of `Authorization`).
    pub fn signing_mchid(&self) -> &str {
        match self {
            MerchantForm::Direct { mchid, .. } => mchid,
            MerchantForm::Partner { sp_mchid, .. } => sp_mchid,
        }
    }

    /// The appid a prepay names for the customer, which `paySign` must sign again.
    pub fn payer_appid(&self) -> &str {
        match self {
            MerchantForm::Direct { appid, .. } => appid,
            MerchantForm::Partner { sub_appid, .. } => sub_appid,
        }
    }

    /// The merchant the money goes to (`mchid`, or `sub_mchid`).
    pub fn payee_mchid(&self) -> &str {
        match self {
            MerchantForm::Direct { mchid, .. } => mchid,
            MerchantForm::Partner { sub_mchid, .. } => sub_mchid,
        }
    }

    /// `orders.pay_channel` of orders created through this form.
    pub fn channel(&self) -> &'static str {
        match self {
            MerchantForm::Direct { .. } => "direct",
            MerchantForm::Partner { .. } => "partner",
        }
    }
}

#[derive(Debug, Clone)]
pub struct V3Config {
    pub form: MerchantForm,
    pub merchant_key: Arc<MerchantKey>,
    pub platform_keys: Arc<PlatformKeys>,
    pub api_v3_key: Arc<ApiV3Key>,
    /// `WECHAT_PAY_API_BASE`, without a trailing `/`.
    pub api_base: String,
    /// `WECHAT_NOTIFY_URL`: where payment results are posted.
    pub notify_url: String,
    /// `WECHAT_NOTIFY_URL` + `/refund`: where refund results are posted.
    pub refund_notify_url: String,
    pub timeout: Duration,
    /// Unsafe settings production was told to accept (see `ALLOW_UNSAFE_WECHAT_SETTINGS`).
    pub warnings: Vec<String>,
}

impl V3Config {
    pub fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        let app_env = AppEnv::from_settings(s)?;
        let form = merchant_form(s)?;

        let serial = s.required("WECHAT_MERCHANT_SERIAL")?;
        let serial = certificate_serial(&serial).map_err(|reason| ConfigError::Invalid {
            name: "WECHAT_MERCHANT_SERIAL",
            reason,
        })?;
        let (private_key, key_setting) = file_or_text(
            s,
            "WECHAT_MERCHANT_PRIVATE_KEY_FILE",
            "WECHAT_MERCHANT_PRIVATE_KEY",
        )?;
        // PEM in an environment variable often arrives with its newlines written as `\n`.
        let pem = if private_key.expose().contains('\n') {
            private_key.expose().to_owned()
        } else {
            private_key.expose().replace("\\n", "\n")
        };
        let merchant_key =
            MerchantKey::from_pem(&pem, &serial).map_err(|reason| ConfigError::Invalid {
                name: key_setting,
                reason,
            })?;

        let (api_v3_key, v3_setting) =
            file_or_text(s, "WECHAT_API_V3_KEY_FILE", "WECHAT_API_V3_KEY")?;
        let api_v3_key =
            ApiV3Key::new(api_v3_key.expose().trim()).map_err(|reason| ConfigError::Invalid {
                name: v3_setting,
                reason,
            })?;

        let platform_keys = platform_keys(s)?;

        let api_base = s.url("WECHAT_PAY_API_BASE", Some(WECHAT_PAY_API))?;
        let mut warnings = Vec::new();
        if app_env == AppEnv::Production && api_base != WECHAT_PAY_API {
            let warning = format!(
                "WECHAT_PAY_API_BASE is {api_base} rather than WeChat Pay ({WECHAT_PAY_API}): \
                 payments are confirmed by whatever answers there with a key we accept"
            );
            match s.optional(UNSAFE_WECHAT_OVERRIDE) {
                Some(consent) if consent == UNSAFE_WECHAT_CONSENT => warnings.push(warning),
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "WECHAT_PAY_API_BASE",
                        reason: format!(
                            "unsafe in production ({warning}); set {UNSAFE_WECHAT_OVERRIDE}={UNSAFE_WECHAT_CONSENT} to start anyway"
                        ),
                    })
                }
            }
        }

        let notify_url = notify_url(s, app_env)?;
        Ok(V3Config {
            form,
            merchant_key: Arc::new(merchant_key),
            platform_keys: Arc::new(platform_keys),
            api_v3_key: Arc::new(api_v3_key),
            api_base,
            refund_notify_url: format!("{notify_url}/refund"),
            notify_url,
            timeout: s.millis("WECHAT_TIMEOUT_MS", 10_000)?,
            warnings,
        })
    }
}

fn merchant_form(s: &Settings) -> Result<MerchantForm, ConfigError> {
    let appid = s.required("WECHAT_APP_ID")?.trim().to_owned();
    let mchid = merchant_id(s, "WECHAT_MCH_ID")?;
    match (
        s.optional("WECHAT_SP_MCH_ID"),
        s.optional("WECHAT_SP_APP_ID"),
    ) {
        (None, None) => Ok(MerchantForm::Direct { appid, mchid }),
        (Some(_), Some(sp_appid)) => Ok(MerchantForm::Partner {
            sp_appid: sp_appid.trim().to_owned(),
            sp_mchid: merchant_id(s, "WECHAT_SP_MCH_ID")?,
            sub_appid: appid,
            sub_mchid: mchid,
        }),
        // Half a service provider is a typo, not a direct merchant.
        (Some(_), None) => Err(ConfigError::Missing("WECHAT_SP_APP_ID")),
        (None, Some(_)) => Err(ConfigError::Missing("WECHAT_SP_MCH_ID")),
    }
}

fn merchant_id(s: &Settings, name: &'static str) -> Result<String, ConfigError> {
    let id = s.required(name)?.trim().to_owned();
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::Invalid {
            name,
            reason: "a merchant id is digits only".into(),
        });
    }
    Ok(id)
}

/// A secret given as a file (`…_FILE`, preferred: it stays out of the environment) or as
/// text; both at once is refused rather than guessed between. Returns which was used.
fn file_or_text(
    s: &Settings,
    file_setting: &'static str,
    text_setting: &'static str,
) -> Result<(Secret, &'static str), ConfigError> {
    match (s.optional(file_setting), s.optional(text_setting)) {
        (Some(path), None) => Ok((read_file(file_setting, &path)?, file_setting)),
        (None, Some(text)) => Ok((Secret::new(text), text_setting)),
        (Some(_), Some(_)) => Err(ConfigError::Invalid {
            name: text_setting,
            reason: format!("set {file_setting} or {text_setting}, not both"),
        }),
        (None, None) => Err(ConfigError::Missing(file_setting)),
    }
}

fn read_file(setting: &'static str, path: &str) -> Result<Secret, ConfigError> {
    std::fs::read_to_string(path.trim())
        .map(Secret::new)
        .map_err(|e| ConfigError::Invalid {
            name: setting,
            reason: format!("cannot read {}: {e}", path.trim()),
        })
}

/// The public key (`WECHAT_PAY_PUBLIC_KEY_FILE` + `_ID`) and/or platform certificates
/// (`WECHAT_PLATFORM_CERTIFICATE_FILES`); both during a migration, at least one.
fn platform_keys(s: &Settings) -> Result<PlatformKeys, ConfigError> {
    let mut keys = PlatformKeys::default();
    match (
        s.optional("WECHAT_PAY_PUBLIC_KEY_FILE"),
        s.optional("WECHAT_PAY_PUBLIC_KEY_ID"),
    ) {
        (Some(path), Some(id)) => {
            if !id.trim().starts_with(PUBLIC_KEY_ID_PREFIX) {
                return Err(ConfigError::Invalid {
                    name: "WECHAT_PAY_PUBLIC_KEY_ID",
                    reason: format!("a WeChat Pay public key id begins {PUBLIC_KEY_ID_PREFIX}"),
                });
            }
            let pem = read_file("WECHAT_PAY_PUBLIC_KEY_FILE", &path)?;
            keys.add_public_key(&id, pem.expose())
                .map_err(|reason| ConfigError::Invalid {
                    name: "WECHAT_PAY_PUBLIC_KEY_FILE",
                    reason,
                })?;
        }
        (Some(_), None) => return Err(ConfigError::Missing("WECHAT_PAY_PUBLIC_KEY_ID")),
        (None, Some(_)) => return Err(ConfigError::Missing("WECHAT_PAY_PUBLIC_KEY_FILE")),
        (None, None) => {}
    }
    if let Some(files) = s.optional("WECHAT_PLATFORM_CERTIFICATE_FILES") {
        for path in files.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let pem = read_file("WECHAT_PLATFORM_CERTIFICATE_FILES", path)?;
            keys.add_certificates(pem.expose(), Utc::now())
                .map_err(|reason| ConfigError::Invalid {
                    name: "WECHAT_PLATFORM_CERTIFICATE_FILES",
                    reason: format!("{path}: {reason}"),
                })?;
        }
    }
    if keys.is_empty() {
        return Err(ConfigError::Invalid {
            name: "WECHAT_PAY_PUBLIC_KEY_FILE",
            reason: "no WeChat Pay key to verify answers and notifications with: set \
                     WECHAT_PAY_PUBLIC_KEY_FILE and WECHAT_PAY_PUBLIC_KEY_ID, or \
                     WECHAT_PLATFORM_CERTIFICATE_FILES"
                .into(),
        });
    }
    Ok(keys)
}

/// WeChat requires an externally reachable HTTPS URL without a query string.
fn notify_url(s: &Settings, app_env: AppEnv) -> Result<String, ConfigError> {
    const NAME: &str = "WECHAT_NOTIFY_URL";
    let text = s.required(NAME)?.trim().trim_end_matches('/').to_owned();
    let invalid = |reason: &str| ConfigError::Invalid {
        name: NAME,
        reason: reason.to_owned(),
    };
    let url = reqwest::Url::parse(&text).map_err(|_| invalid("not a URL"))?;
    match (url.scheme(), app_env) {
        ("https", _) | ("http", AppEnv::Development) => {}
        ("http", AppEnv::Production) => {
            return Err(invalid(
                "must be https (http only with APP_ENV=development)",
            ))
        }
        _ => return Err(invalid("must be an https URL")),
    }
    if url.host_str().is_none() {
        return Err(invalid("has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "must not carry a query string (WeChat refuses one)",
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::v3::test_keys::*;
    use std::path::PathBuf;

    const API_V3_KEY: &str = "0123456789abcdefghijABCDEFGHIJkl";

    /// A file of this test's own, removed when dropped.
    struct TempFile(PathBuf);
    impl TempFile {
        fn new(tag: &str, text: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "elife-v3-config-{}-{tag}-{}.pem",
                std::process::id(),
                crate::wechat::v3::signing::nonce().unwrap()
            ));
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }
        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    struct Fixture {
        public_key: TempFile,
    }

    fn fixture() -> Fixture {
        Fixture {
            public_key: TempFile::new("pub", &wechat().public_pem),
        }
    }

    fn settings(f: &Fixture, extra: &[(&str, &str)]) -> Settings {
        settings_without(f, &[], extra)
    }

    fn settings_without(f: &Fixture, remove: &[&str], extra: &[(&str, &str)]) -> Settings {
        let base = [
            ("APP_ENV", "production"),
            ("WECHAT_APP_ID", "wxd678efh567hg6787"),
            ("WECHAT_MCH_ID", "1900007291"),
            (
                "WECHAT_MERCHANT_SERIAL",
                "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C",
            ),
            (
                "WECHAT_MERCHANT_PRIVATE_KEY",
                merchant().private_pem.as_str(),
            ),
            ("WECHAT_API_V3_KEY", API_V3_KEY),
            ("WECHAT_PAY_PUBLIC_KEY_FILE", f.public_key.path()),
            ("WECHAT_PAY_PUBLIC_KEY_ID", "PUB_KEY_ID_0119000072912024"),
            (
                "WECHAT_NOTIFY_URL",
                "https://pay.example.com/payment/notify/",
            ),
        ];
        Settings::from_pairs(
            base.into_iter()
                .filter(|(name, _)| !remove.contains(name))
                .chain(extra.iter().copied()),
        )
    }

    fn refused(f: &Fixture, extra: &[(&str, &str)]) -> ConfigError {
        V3Config::from_settings(&settings(f, extra)).expect_err("must refuse to start")
    }

    fn names(err: &ConfigError) -> &'static str {
        match err {
            ConfigError::Missing(name) | ConfigError::Invalid { name, .. } => name,
        }
    }

    #[test]
    fn a_direct_merchant_with_a_public_key() {
        let f = fixture();
        let config = V3Config::from_settings(&settings(&f, &[])).unwrap();
        assert_eq!(
            config.form,
            MerchantForm::Direct {
                appid: "wxd678efh567hg6787".into(),
                mchid: "1900007291".into()
            }
        );
        assert_eq!(config.notify_url, "https://pay.example.com/payment/notify");
        assert_eq!(
            config.refund_notify_url,
            "https://pay.example.com/payment/notify/refund"
        );
        assert_eq!(config.api_base, WECHAT_PAY_API);
        assert_eq!(
            config.platform_keys.public_key_id(),
            Some("PUB_KEY_ID_0119000072912024")
        );
        assert!(config.warnings.is_empty());
    }

    #[test]
    fn a_service_provider_with_certificates_only() {
        let f = fixture();
        let cert = TempFile::new(
            "cert",
            &certificate_pem(
                wechat(),
                &[0x51, 0x57],
                Utc::now() + chrono::Duration::days(90),
            ),
        );
        let other = generated();
        let cert2 = TempFile::new(
            "cert2",
            &certificate_pem(&other, &[0x52], Utc::now() + chrono::Duration::days(90)),
        );
        let files = format!("{}, {}", cert.path(), cert2.path());
        let s = settings_without(
            &f,
            &["WECHAT_PAY_PUBLIC_KEY_FILE", "WECHAT_PAY_PUBLIC_KEY_ID"],
            &[
                ("WECHAT_SP_MCH_ID", "1900000100"),
                ("WECHAT_SP_APP_ID", "wxsp00000000000000"),
                ("WECHAT_PLATFORM_CERTIFICATE_FILES", files.as_str()),
            ],
        );
        let config = V3Config::from_settings(&s).unwrap();
        assert_eq!(config.form.signing_mchid(), "1900000100");
        assert_eq!(config.form.payer_appid(), "wxd678efh567hg6787");
        assert_eq!(config.form.payee_mchid(), "1900007291");
        assert_eq!(
            config.platform_keys.serials().collect::<Vec<_>>(),
            ["5157", "52"]
        );
        assert_eq!(config.platform_keys.public_key_id(), None);
    }

    #[test]
    fn each_unfit_setting_is_named() {
        let f = fixture();
        let small = openssl_rsa_key(1024);
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![("WECHAT_MERCHANT_PRIVATE_KEY", small.as_str())],
                "WECHAT_MERCHANT_PRIVATE_KEY",
            ),
            (
                vec![(
                    "WECHAT_MERCHANT_PRIVATE_KEY",
                    "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----",
                )],
                "WECHAT_MERCHANT_PRIVATE_KEY",
            ),
            (
                vec![("WECHAT_MERCHANT_PRIVATE_KEY", "not a key")],
                "WECHAT_MERCHANT_PRIVATE_KEY",
            ),
            (
                vec![("WECHAT_API_V3_KEY", &API_V3_KEY[..31])],
                "WECHAT_API_V3_KEY",
            ),
            (
                vec![("WECHAT_MERCHANT_SERIAL", "")],
                "WECHAT_MERCHANT_SERIAL",
            ),
            (
                vec![("WECHAT_MERCHANT_SERIAL", "not-hex")],
                "WECHAT_MERCHANT_SERIAL",
            ),
            (
                vec![("WECHAT_NOTIFY_URL", "http://pay.example.com/payment/notify")],
                "WECHAT_NOTIFY_URL",
            ),
            (
                vec![(
                    "WECHAT_NOTIFY_URL",
                    "https://pay.example.com/payment/notify?x=1",
                )],
                "WECHAT_NOTIFY_URL",
            ),
            (vec![("WECHAT_NOTIFY_URL", "")], "WECHAT_NOTIFY_URL"),
            (
                vec![("WECHAT_PAY_PUBLIC_KEY_ID", "")],
                "WECHAT_PAY_PUBLIC_KEY_ID",
            ),
            (
                vec![("WECHAT_PAY_PUBLIC_KEY_ID", "0119000072912024")],
                "WECHAT_PAY_PUBLIC_KEY_ID",
            ),
            (
                vec![("WECHAT_PAY_PUBLIC_KEY_FILE", "/nonexistent/pub_key.pem")],
                "WECHAT_PAY_PUBLIC_KEY_FILE",
            ),
            (
                vec![
                    ("WECHAT_PAY_PUBLIC_KEY_FILE", ""),
                    ("WECHAT_PAY_PUBLIC_KEY_ID", ""),
                ],
                "WECHAT_PAY_PUBLIC_KEY_FILE",
            ),
            (vec![("WECHAT_SP_MCH_ID", "1900000100")], "WECHAT_SP_APP_ID"),
            (vec![("WECHAT_MCH_ID", "19000x")], "WECHAT_MCH_ID"),
            (
                vec![("WECHAT_PAY_API_BASE", "http://127.0.0.1:9")],
                "WECHAT_PAY_API_BASE",
            ),
            (
                vec![("WECHAT_API_V3_KEY_FILE", "/nonexistent")],
                "WECHAT_API_V3_KEY",
            ),
        ];
        for (extra, name) in cases {
            let err = refused(&f, &extra);
            assert_eq!(names(&err), name, "{extra:?}: {err}");
        }
        let without = |remove: &[&str], extra: &[(&str, &str)]| {
            names(&V3Config::from_settings(&settings_without(&f, remove, extra)).unwrap_err())
        };
        assert_eq!(
            without(
                &["WECHAT_API_V3_KEY"],
                &[("WECHAT_API_V3_KEY_FILE", "/nonexistent")]
            ),
            "WECHAT_API_V3_KEY_FILE"
        );
        assert_eq!(
            without(&["WECHAT_MERCHANT_SERIAL"], &[]),
            "WECHAT_MERCHANT_SERIAL"
        );
        assert_eq!(
            without(&["WECHAT_MERCHANT_PRIVATE_KEY"], &[]),
            "WECHAT_MERCHANT_PRIVATE_KEY_FILE"
        );
    }

    #[test]
    fn development_allows_http_and_another_api_base() {
        let f = fixture();
        let config = V3Config::from_settings(&settings(
            &f,
            &[
                ("APP_ENV", "development"),
                ("WECHAT_NOTIFY_URL", "http://127.0.0.1:3000/payment/notify"),
                ("WECHAT_PAY_API_BASE", "http://127.0.0.1:9/"),
            ],
        ))
        .unwrap();
        assert_eq!(config.api_base, "http://127.0.0.1:9");
        // Production needs the explicit consent, and then warns.
        let consented = V3Config::from_settings(&settings(
            &f,
            &[
                ("WECHAT_PAY_API_BASE", "http://127.0.0.1:9"),
                (UNSAFE_WECHAT_OVERRIDE, UNSAFE_WECHAT_CONSENT),
            ],
        ))
        .unwrap();
        assert_eq!(consented.warnings.len(), 1);
    }

    #[test]
    fn secrets_never_appear_in_debug() {
        let f = fixture();
        let config = V3Config::from_settings(&settings(&f, &[])).unwrap();
        let shown = format!("{config:?}");
        let pkcs8_body = merchant().private_pem.lines().nth(1).unwrap();
        assert!(!shown.contains(API_V3_KEY), "{shown}");
        assert!(!shown.contains(&pkcs8_body[..40]), "{shown}");
        assert!(
            shown.contains("1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C"),
            "{shown}"
        );
        let err = refused(
            &f,
            &[("WECHAT_API_V3_KEY", "0123456789abcdefghijABCDEFGHIJklm")],
        )
        .to_string();
        assert!(!err.contains("0123456789"), "{err}");
    }
}

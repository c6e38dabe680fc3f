//! APIv3 on the [`Sandbox`] handle: what tests and the binary use to wire a direct-mode
//! client to the simulator.

use std::path::Path;

use anyhow::Context as _;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::KeyPair as _;

use super::{keys, V3Merchant, V3Signer};
use crate::error::SandboxError;
use crate::Sandbox;

impl Sandbox {
    /// The merchant APIv3 calls must come from (replaces any before).
    pub fn register_v3_merchant(&self, merchant: V3Merchant) -> Result<(), SandboxError> {
        self.state()
            .v3
            .register(merchant)
            .map_err(SandboxError::InvalidRequest)
    }

    /// `WECHAT_PAY_PUBLIC_KEY_FILE`'s content: SPKI PEM.
    pub fn wechat_pay_public_key_pem(&self) -> String {
        self.state().v3.keys.public_key.public_key_pem.clone()
    }

    /// `WECHAT_PAY_PUBLIC_KEY_ID`: `PUB_KEY_ID_` and 32 digits.
    pub fn wechat_pay_public_key_id(&self) -> String {
        self.state().v3.keys.public_key.serial.clone()
    }

    /// The platform certificate (certificate mode), made on first call.
    pub fn platform_certificate_pem(&self) -> String {
        self.state().v3.keys.certificate().pem.clone()
    }

    /// Its serial: 40 upper-case hex digits.
    pub fn platform_certificate_serial(&self) -> String {
        self.state().v3.keys.certificate().key.serial.clone()
    }

    /// Which key signs notifications and answers to requests that name no serial.
    pub fn set_v3_signer(&self, signer: V3Signer) {
        self.state().v3.set_signer(signer);
    }

    /// The binary's APIv3 set-up from the environment (see `sandbox help`): registers the
    /// merchant when `WECHAT_MERCHANT_SERIAL` is set, and writes the simulator's public
    /// key, its id and the platform certificate into `SANDBOX_V3_KEYS_DIR` when set.
    pub fn configure_v3_from_env(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<()> {
        let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        if let Some(signer) = env("SANDBOX_V3_SIGNER") {
            self.set_v3_signer(match signer.trim() {
                "publicKey" | "public-key" => V3Signer::PublicKey,
                "certificate" => V3Signer::Certificate,
                other => anyhow::bail!(
                    "SANDBOX_V3_SIGNER must be publicKey or certificate, not {other:?}"
                ),
            });
        }
        if let Some(serial) = env("WECHAT_MERCHANT_SERIAL") {
            let file_or_text = |file: &str, text: &str| -> anyhow::Result<Option<String>> {
                match (env(file), env(text)) {
                    (Some(path), _) => Ok(Some(
                        std::fs::read_to_string(&path)
                            .with_context(|| format!("reading {file}"))?,
                    )),
                    (None, text) => Ok(text),
                }
            };
            let public_key = match file_or_text(
                "SANDBOX_MERCHANT_PUBLIC_KEY_FILE",
                "SANDBOX_MERCHANT_PUBLIC_KEY",
            )? {
                Some(pem) => pem,
                None => {
                    let private = file_or_text("WECHAT_MERCHANT_PRIVATE_KEY_FILE", "WECHAT_MERCHANT_PRIVATE_KEY")?
                        .context("WECHAT_MERCHANT_SERIAL is set: SANDBOX_MERCHANT_PUBLIC_KEY_FILE or WECHAT_MERCHANT_PRIVATE_KEY_FILE is needed")?;
                    public_key_of(&private)?
                }
            };
            let api_v3_key = file_or_text("WECHAT_API_V3_KEY_FILE", "WECHAT_API_V3_KEY")?
                .context("WECHAT_MERCHANT_SERIAL is set: WECHAT_API_V3_KEY(_FILE) is needed")?;
            self.register_v3_merchant(V3Merchant {
                mchid: env("WECHAT_MCH_ID")
                    .unwrap_or_else(|| self.state().config.merchant_id.clone()),
                appid: env("WECHAT_APP_ID")
                    .context("WECHAT_MERCHANT_SERIAL is set: WECHAT_APP_ID is needed")?,
                sp_mchid: env("WECHAT_SP_MCH_ID"),
                sp_appid: env("WECHAT_SP_APP_ID"),
                merchant_serial: serial.trim().to_owned(),
                merchant_public_key_pem: public_key,
                api_v3_key: api_v3_key.trim().to_owned(),
            })?;
        }
        if let Some(dir) = env("SANDBOX_V3_KEYS_DIR") {
            let dir = Path::new(&dir);
            std::fs::create_dir_all(dir)?;
            std::fs::write(
                dir.join("wechatpay_public_key.pem"),
                self.wechat_pay_public_key_pem(),
            )?;
            std::fs::write(
                dir.join("wechatpay_public_key_id"),
                self.wechat_pay_public_key_id(),
            )?;
            std::fs::write(
                dir.join("platform_certificate.pem"),
                self.platform_certificate_pem(),
            )?;
            tracing::info!(dir = %dir.display(), public_key_id = %self.wechat_pay_public_key_id(), "APIv3 keys written");
        }
        Ok(())
    }
}

/// The public half of the merchant's private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA
/// PRIVATE KEY`), so a demo can give both sides the same file; only the public half is kept.
fn public_key_of(private_pem: &str) -> anyhow::Result<String> {
    let (label, der) = keys::pem_der(private_pem).context("the merchant private key is not PEM")?;
    let pair = match label.as_str() {
        "PRIVATE KEY" => aws_lc_rs::rsa::KeyPair::from_pkcs8(&der),
        "RSA PRIVATE KEY" => aws_lc_rs::rsa::KeyPair::from_der(&der),
        other => anyhow::bail!("the merchant private key is a {other}, not an RSA private key"),
    }
    .map_err(|_| anyhow::anyhow!("the merchant private key does not parse"))?;
    let spki = pair
        .public_key()
        .as_der()
        .map_err(|_| anyhow::anyhow!("cannot encode the merchant public key"))?;
    Ok(keys::pem("PUBLIC KEY", spki.as_ref()))
}

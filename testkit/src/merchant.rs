//! Direct mode's merchant credentials for a test system, as a merchant gets them from the
//! merchant platform: an API key pair (made once per test binary; no private key is
//! committed), its certificate serial and the APIv3 key. They are registered with the
//! sandbox, which plays WeChat Pay, and handed to payment-api as its settings; the
//! sandbox's WeChat Pay public key is written where payment-api reads it.

use std::path::PathBuf;
use std::sync::OnceLock;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sandbox::{Sandbox, V3Merchant};

/// The mini-program's merchant, as in cloud mode.
pub const MCH_ID: &str = "1712734762";
/// Our notification address as WeChat Pay knows it; the sandbox reaches it through the
/// system's own address, as an ingress would.
/// The mini-program the merchant is bound to (what `jscode2session` and payments name).
pub const APP_ID: &str = sandbox::LOGIN_APP_ID;

pub const NOTIFY_URL: &str = "https://pay.elife.test/payment/notify";
const SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
const API_V3_KEY: &str = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z";

struct MerchantKey {
    private_pem: String,
    public_pem: String,
}

fn merchant_key() -> &'static MerchantKey {
    static KEY: OnceLock<MerchantKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
        let private = AsDer::<Pkcs8V1Der>::as_der(&pair).expect("PKCS#8");
        let public = AsDer::<PublicKeyX509Der>::as_der(pair.public_key()).expect("SPKI");
        MerchantKey {
            private_pem: pem("PRIVATE KEY", private.as_ref()),
            public_pem: pem("PUBLIC KEY", public.as_ref()),
        }
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = BASE64.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// Registers the merchant with `sandbox` and returns payment-api's direct-mode settings.
/// `files` is where the sandbox's public key is written for payment-api to read.
pub fn direct_mode(sandbox: &Sandbox, files: &std::path::Path) -> Vec<(&'static str, String)> {
    let key = merchant_key();
    sandbox
        .register_v3_merchant(V3Merchant {
            mchid: MCH_ID.into(),
            appid: sandbox::LOGIN_APP_ID.into(),
            sp_mchid: None,
            sp_appid: None,
            merchant_serial: SERIAL.into(),
            merchant_public_key_pem: key.public_pem.clone(),
            api_v3_key: API_V3_KEY.into(),
        })
        .expect("the sandbox takes the merchant");
    std::fs::create_dir_all(files).expect("key directory");
    let public_key: PathBuf = files.join("wechatpay-public-key.pem");
    std::fs::write(&public_key, sandbox.wechat_pay_public_key_pem()).expect("public key file");
    let mut settings = merchant_settings(&sandbox.wechat_url());
    settings.extend([
        (
            "WECHAT_PAY_PUBLIC_KEY_FILE",
            public_key.to_string_lossy().into_owned(),
        ),
        (
            "WECHAT_PAY_PUBLIC_KEY_ID",
            sandbox.wechat_pay_public_key_id(),
        ),
    ]);
    settings
}

/// What a direct-mode deployment and the sandbox playing WeChat Pay both know: the
/// merchant, its key and serial, the APIv3 key, where WeChat Pay is and where it notifies.
/// The sandbox binary registers the merchant from the same settings.
pub fn merchant_settings(wechat_url: &str) -> Vec<(&'static str, String)> {
    let key = merchant_key();
    vec![
        ("WECHAT_PAY_MODE", "direct".into()),
        ("WECHAT_APP_ID", sandbox::LOGIN_APP_ID.into()),
        ("WECHAT_APP_SECRET", sandbox::LOGIN_APP_SECRET.into()),
        ("WECHAT_LOGIN_API_BASE", wechat_url.to_owned()),
        ("WECHAT_MCH_ID", MCH_ID.into()),
        ("WECHAT_MERCHANT_SERIAL", SERIAL.into()),
        ("WECHAT_MERCHANT_PRIVATE_KEY", key.private_pem.clone()),
        ("WECHAT_API_V3_KEY", API_V3_KEY.into()),
        ("WECHAT_PAY_API_BASE", wechat_url.to_owned()),
        ("WECHAT_NOTIFY_URL", NOTIFY_URL.into()),
        // Behind an ingress, as any deployment outside Cloud Hosting is: the client's
        // address is the one the ingress (here: the test's own header) reports.
        ("CLIENT_ADDRESS_FROM", "x-original-forwarded-for".into()),
    ]
}

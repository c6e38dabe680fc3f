//! The merchant registered with the simulated WeChat Pay: who may call APIv3, with which
//! key, and the APIv3 key its notifications are encrypted with.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a merchant gives WeChat Pay (and receives from it) when it opens APIv3 access.
/// `mchid`/`appid` are the merchant and its mini-program; with `sp_mchid` + `sp_appid` the
/// merchant is a sub-merchant (`sub_mchid`/`sub_appid`) of that service provider, which
/// signs the calls (partner form, `/partner/` paths).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V3Merchant {
    pub mchid: String,
    pub appid: String,
    #[serde(default)]
    pub sp_mchid: Option<String>,
    #[serde(default)]
    pub sp_appid: Option<String>,
    /// The serial of the merchant API certificate (`serial_no` in `Authorization`).
    pub merchant_serial: String,
    /// PEM: `PUBLIC KEY`, `RSA PUBLIC KEY` or the merchant API `CERTIFICATE`.
    pub merchant_public_key_pem: String,
    /// 32 characters; never printed.
    pub api_v3_key: String,
}

impl fmt::Debug for V3Merchant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V3Merchant")
            .field("mchid", &self.mchid)
            .field("appid", &self.appid)
            .field("sp_mchid", &self.sp_mchid)
            .field("sp_appid", &self.sp_appid)
            .field("merchant_serial", &self.merchant_serial)
            .field("api_v3_key", &"[redacted]")
            .finish()
    }
}

/// A registration that was checked: the key parses, the APIv3 key is 32 bytes.
pub(crate) struct Registered {
    pub merchant: V3Merchant,
    pub public_key_der: Vec<u8>,
}

impl Registered {
    pub(crate) fn new(merchant: V3Merchant) -> Result<Registered, String> {
        if merchant.mchid.is_empty() || merchant.appid.is_empty() {
            return Err("mchid and appid are required".into());
        }
        if merchant.merchant_serial.trim().is_empty() {
            return Err("merchantSerial is required".into());
        }
        if merchant.api_v3_key.len() != 32 {
            return Err("apiV3Key must be 32 bytes".into());
        }
        if merchant.sp_mchid.is_some() != merchant.sp_appid.is_some() {
            return Err("spMchid and spAppid go together (partner form)".into());
        }
        let public_key_der = super::keys::public_key_der(&merchant.merchant_public_key_pem)
            .map_err(|why| format!("merchantPublicKeyPem: {why}"))?;
        Ok(Registered {
            merchant,
            public_key_der,
        })
    }

    /// The merchant whose key signs the calls: the service provider in partner form.
    pub(crate) fn signing_mchid(&self) -> &str {
        self.merchant
            .sp_mchid
            .as_deref()
            .unwrap_or(&self.merchant.mchid)
    }

    pub(crate) fn is_partner(&self) -> bool {
        self.merchant.sp_mchid.is_some()
    }

    pub(crate) fn api_v3_key(&self) -> &[u8] {
        self.merchant.api_v3_key.as_bytes()
    }

    /// What may be shown: everything but the APIv3 key.
    pub(crate) fn public_view(&self) -> serde_json::Value {
        serde_json::json!({
            "mchid": self.merchant.mchid,
            "appid": self.merchant.appid,
            "spMchid": self.merchant.sp_mchid,
            "spAppid": self.merchant.sp_appid,
            "merchantSerial": self.merchant.merchant_serial,
            "merchantPublicKeyPem": self.merchant.merchant_public_key_pem,
        })
    }
}

/// Direct or partner paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    Direct,
    Partner,
}

impl Registered {
    /// A direct merchant cannot call `/partner/` paths, nor a sub-merchant's provider the
    /// direct ones.
    pub(crate) fn check_form(&self, form: Form) -> Result<(), super::error::V3Error> {
        match (form, self.is_partner()) {
            (Form::Direct, false) | (Form::Partner, true) => Ok(()),
            (Form::Direct, true) => Err(super::error::V3Error::no_auth(
                "服务商商户号不能调用普通商户接口",
            )),
            (Form::Partner, false) => Err(super::error::V3Error::no_auth(
                "商户号不是服务商，不能调用服务商接口",
            )),
        }
    }
}

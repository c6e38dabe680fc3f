//! The keys an APIv3 merchant holds: its own private key (signs requests and `paySign`),
//! WeChat Pay's public keys (verify answers and notifications, chosen by serial) and the
//! APIv3 key (decrypts notification resources). Read once at start-up; `Debug` of every
//! type here prints serials and sizes, never key material.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::PublicEncryptingKey;
use aws_lc_rs::signature::{
    RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, Utc};
use x509_parser::pem::Pem;

/// RSA sizes we accept: WeChat issues 2048-bit keys; smaller ones are breakable, and no
/// key of WeChat's is larger than 4096.
pub const RSA_BITS: RangeInclusive<usize> = 2048..=4096;

/// The id WeChat gives its public key (`PUB_KEY_ID_` + digits); certificate serials are hex.
pub const PUBLIC_KEY_ID_PREFIX: &str = "PUB_KEY_ID_";

/// Our merchant API key pair and its certificate serial (`serial_no` of every request).
pub struct MerchantKey {
    pair: RsaKeyPair,
    serial: String,
    rng: SystemRandom,
}

impl MerchantKey {
    /// From a PEM `PRIVATE KEY` (PKCS#8, as WeChat's `apiclient_key.pem`) or
    /// `RSA PRIVATE KEY` (PKCS#1). The error says why, never what the key holds.
    pub fn from_pem(pem: &str, serial: &str) -> Result<Self, String> {
        let serial = certificate_serial(serial)?;
        let blocks = pem_blocks(pem.as_bytes())?;
        let parsed = blocks.iter().find_map(|block| match block.label.as_str() {
            "PRIVATE KEY" => Some(RsaKeyPair::from_pkcs8(&block.contents)),
            "RSA PRIVATE KEY" => Some(RsaKeyPair::from_der(&block.contents)),
            _ => None,
        });
        let pair = match parsed {
            None => return Err("no PEM PRIVATE KEY block".into()),
            Some(Err(rejected)) if rejected.description_() == "TooSmall" => {
                return Err(format!(
                    "the RSA key is smaller than {} bits",
                    RSA_BITS.start()
                ))
            }
            Some(Err(rejected)) => {
                return Err(format!(
                    "not an RSA private key ({})",
                    rejected.description_()
                ))
            }
            Some(Ok(pair)) => pair,
        };
        check_bits(pair.public_modulus_len() * 8)?;
        Ok(MerchantKey {
            pair,
            serial,
            rng: SystemRandom::new(),
        })
    }

    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// SHA256-with-RSA (PKCS#1 v1.5) of `message`, base64: the signature of a request and
    /// of `paySign`.
    pub fn sign(&self, message: &[u8]) -> Result<String, SigningFailed> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut signature)
            .map_err(|_| SigningFailed)?;
        Ok(BASE64.encode(signature))
    }
}

impl fmt::Debug for MerchantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerchantKey")
            .field("serial", &self.serial)
            .field("bits", &(self.pair.public_modulus_len() * 8))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the merchant key could not sign")]
pub struct SigningFailed;

/// The APIv3 key: 32 bytes of text, the AES-256-GCM key of notification resources.
#[derive(Clone)]
pub struct ApiV3Key([u8; 32]);

impl ApiV3Key {
    /// The text exactly as the merchant platform shows it, its bytes used as they are
    /// (not base64- or hex-decoded).
    pub fn new(text: &str) -> Result<Self, String> {
        let bytes: [u8; 32] = text.as_bytes().try_into().map_err(|_| {
            format!(
                "must be exactly 32 bytes (the APIv3 key, not the v2 API key); it is {}",
                text.len()
            )
        })?;
        Ok(ApiV3Key(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiV3Key([redacted])")
    }
}

/// Where a verifying key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The WeChat Pay public key (`PUB_KEY_ID_…`), for merchants since late 2024.
    PublicKey,
    /// A platform certificate, for older merchants; several can be valid during a rotation.
    Certificate { not_after: DateTime<Utc> },
}

#[derive(Clone)]
struct VerifyingKey {
    /// SubjectPublicKeyInfo DER, which aws-lc-rs reads as it is.
    spki: Vec<u8>,
    source: KeySource,
}

/// Why a signature from WeChat was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRejected {
    #[error("no key with serial {0:?}")]
    UnknownSerial(String),
    /// WeChat's deliberate probe: a signature that must fail.
    #[error("a WECHATPAY/SIGNTEST/ probe signature")]
    Probe,
    #[error("the signature does not verify")]
    Invalid,
}

/// WeChat Pay's verifying keys by serial: the public key and/or platform certificates.
#[derive(Clone, Default)]
pub struct PlatformKeys {
    keys: BTreeMap<String, VerifyingKey>,
}

impl PlatformKeys {
    /// Adds the WeChat Pay public key (PEM `PUBLIC KEY`) under its `PUB_KEY_ID_…`.
    pub fn add_public_key(&mut self, id: &str, pem: &str) -> Result<(), String> {
        let id = id.trim();
        if !id.starts_with(PUBLIC_KEY_ID_PREFIX) || id.len() == PUBLIC_KEY_ID_PREFIX.len() {
            return Err(format!(
                "{id:?} is not a WeChat Pay public key id ({PUBLIC_KEY_ID_PREFIX}…)"
            ));
        }
        let spki = pem_blocks(pem.as_bytes())?
            .into_iter()
            .find(|block| block.label == "PUBLIC KEY")
            .ok_or("no PEM PUBLIC KEY block")?
            .contents;
        check_public_key(&spki)?;
        self.keys.insert(
            id.to_owned(),
            VerifyingKey {
                spki,
                source: KeySource::PublicKey,
            },
        );
        Ok(())
    }

    /// Adds every certificate of a PEM file, each under its serial (upper-case hex).
    /// Returns the serials added. An expired certificate is refused: nothing it signs
    /// can be current.
    pub fn add_certificates(
        &mut self,
        pem: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, String> {
        let mut added = Vec::new();
        for block in pem_blocks(pem.as_bytes())? {
            if block.label != "CERTIFICATE" {
                continue;
            }
            let (_, cert) = x509_parser::parse_x509_certificate(&block.contents)
                .map_err(|e| format!("unreadable certificate: {e}"))?;
            let serial = hex_serial(cert.raw_serial());
            let not_after = DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
                .ok_or("certificate end date out of range")?;
            if not_after < now {
                return Err(format!("certificate {serial} expired on {not_after}"));
            }
            let spki = cert.public_key().raw.to_vec();
            check_public_key(&spki).map_err(|e| format!("certificate {serial}: {e}"))?;
            self.keys.insert(
                serial.clone(),
                VerifyingKey {
                    spki,
                    source: KeySource::Certificate { not_after },
                },
            );
            added.push(serial);
        }
        if added.is_empty() {
            return Err("no PEM CERTIFICATE block".into());
        }
        Ok(added)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn serials(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The `PUB_KEY_ID_…` if a public key is configured: sent as `Wechatpay-Serial` on
    /// requests so that WeChat signs its answers with it during a migration.
    pub fn public_key_id(&self) -> Option<&str> {
        self.keys
            .iter()
            .find(|(_, key)| key.source == KeySource::PublicKey)
            .map(|(id, _)| id.as_str())
    }

    pub fn source(&self, serial: &str) -> Option<&KeySource> {
        self.keys.get(serial).map(|key| &key.source)
    }

    /// Verifies a base64 SHA256-with-RSA `signature` of `message` with the key named
    /// `serial`. An unknown serial is refused, never replaced by another key.
    pub fn verify(
        &self,
        serial: &str,
        message: &[u8],
        signature: &str,
    ) -> Result<(), SignatureRejected> {
        let key = self
            .keys
            .get(serial)
            .ok_or_else(|| SignatureRejected::UnknownSerial(serial.to_owned()))?;
        if signature.starts_with("WECHATPAY/SIGNTEST/") {
            return Err(SignatureRejected::Probe);
        }
        let signature = BASE64
            .decode(signature.trim())
            .map_err(|_| SignatureRejected::Invalid)?;
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &key.spki)
            .verify(message, &signature)
            .map_err(|_| SignatureRejected::Invalid)
    }
}

impl fmt::Debug for PlatformKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.keys.iter().map(|(serial, key)| (serial, &key.source)))
            .finish()
    }
}

/// A merchant certificate serial as configured: hex, compared upper-case.
pub(crate) fn certificate_serial(serial: &str) -> Result<String, String> {
    let serial = serial.trim();
    if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a certificate serial is hexadecimal digits".into());
    }
    Ok(serial.to_ascii_uppercase())
}

/// A certificate's serial as WeChat writes it (`Wechatpay-Serial`): upper-case hex of
/// the number, without the DER sign byte.
fn hex_serial(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    raw[start..].iter().map(|b| format!("{b:02X}")).collect()
}

fn check_bits(bits: usize) -> Result<(), String> {
    if RSA_BITS.contains(&bits) {
        Ok(())
    } else {
        Err(format!(
            "the RSA key has {bits} bits; {} to {} are accepted",
            RSA_BITS.start(),
            RSA_BITS.end()
        ))
    }
}

fn check_public_key(spki: &[u8]) -> Result<(), String> {
    match PublicEncryptingKey::from_der(spki) {
        Ok(key) => check_bits(key.key_size_bits()),
        Err(rejected) if rejected.description_() == "TooSmall" => Err(format!(
            "the RSA key is smaller than {} bits",
            RSA_BITS.start()
        )),
        Err(rejected) => Err(format!(
            "not an RSA public key ({})",
            rejected.description_()
        )),
    }
}

fn pem_blocks(text: &[u8]) -> Result<Vec<Pem>, String> {
    let blocks: Vec<Pem> = Pem::iter_from_buffer(text)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if blocks.is_empty() {
        return Err("not PEM: no -----BEGIN block".into());
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::v3::test_keys::*;

    #[test]
    fn a_signature_verifies_with_the_public_key_and_not_another() {
        let merchant = generated();
        let key = MerchantKey::from_pem(&merchant.private_pem, "5157f09efdc096de").unwrap();
        assert_eq!(key.serial(), "5157F09EFDC096DE");
        let signature = key.sign(b"message\n").unwrap();
        let mut keys = PlatformKeys::default();
        keys.add_public_key("PUB_KEY_ID_0114", &merchant.public_pem)
            .unwrap();
        keys.verify("PUB_KEY_ID_0114", b"message\n", &signature)
            .unwrap();
        assert_eq!(
            keys.verify("PUB_KEY_ID_0114", b"message!", &signature),
            Err(SignatureRejected::Invalid)
        );
        let mut others = PlatformKeys::default();
        others
            .add_public_key("PUB_KEY_ID_0114", &generated().public_pem)
            .unwrap();
        assert_eq!(
            others.verify("PUB_KEY_ID_0114", b"message\n", &signature),
            Err(SignatureRejected::Invalid)
        );
        assert_eq!(
            keys.verify("PUB_KEY_ID_0115", b"message\n", &signature),
            Err(SignatureRejected::UnknownSerial("PUB_KEY_ID_0115".into()))
        );
        assert_eq!(
            keys.verify(
                "PUB_KEY_ID_0114",
                b"message\n",
                &format!("WECHATPAY/SIGNTEST/{signature}")
            ),
            Err(SignatureRejected::Probe)
        );
    }

    #[test]
    fn certificates_are_keyed_by_upper_case_hex_serial() {
        let wechat = generated();
        // High bit set: DER adds a sign byte that is not part of the serial.
        let serial = [0x95, 0x57, 0xf0, 0x9e, 0xfd];
        let cert = certificate_pem(&wechat, &serial, Utc::now() + chrono::Duration::days(30));
        let mut keys = PlatformKeys::default();
        assert_eq!(
            keys.add_certificates(&cert, Utc::now()).unwrap(),
            ["9557F09EFD"]
        );
        let signature = MerchantKey::from_pem(&wechat.private_pem, "01")
            .unwrap()
            .sign(b"x")
            .unwrap();
        keys.verify("9557F09EFD", b"x", &signature).unwrap();
        assert!(matches!(
            keys.source("9557F09EFD"),
            Some(KeySource::Certificate { .. })
        ));
        assert_eq!(keys.public_key_id(), None);

        let expired = certificate_pem(&wechat, &[1], Utc::now() - chrono::Duration::days(1));
        let err = keys.add_certificates(&expired, Utc::now()).unwrap_err();
        assert!(err.contains("expired"), "{err}");
    }

    #[test]
    fn keys_that_do_not_fit_are_refused() {
        assert!(MerchantKey::from_pem("nonsense", "01")
            .unwrap_err()
            .contains("PEM"));
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(MerchantKey::from_pem(garbage, "01")
            .unwrap_err()
            .contains("not an RSA"));
        let good = generated();
        assert!(MerchantKey::from_pem(&good.private_pem, "").is_err());
        assert!(MerchantKey::from_pem(&good.private_pem, "XYZ").is_err());
        // A public key where the private one belongs.
        assert!(MerchantKey::from_pem(&good.public_pem, "01").is_err());
        let mut keys = PlatformKeys::default();
        assert!(keys.add_public_key("1234", &good.public_pem).is_err());
        assert!(keys
            .add_public_key("PUB_KEY_ID_1", &good.private_pem)
            .is_err());
    }

    #[test]
    fn a_1024_bit_key_is_refused_for_its_size() {
        let small = openssl_rsa_key(1024);
        let err = MerchantKey::from_pem(&small, "01").unwrap_err();
        assert!(err.contains("2048"), "{err}");
    }

    #[test]
    fn debug_prints_no_key_material() {
        let merchant = generated();
        let key = MerchantKey::from_pem(&merchant.private_pem, "0A").unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("0A") && shown.contains("2048"), "{shown}");
        let v3 = ApiV3Key::new("0123456789abcdefghijABCDEFGHIJ!!").unwrap();
        assert!(!format!("{v3:?}").contains("0123456789"));
        assert!(ApiV3Key::new("0123456789abcdefghijABCDEFGHIJ!").is_err());
    }
}

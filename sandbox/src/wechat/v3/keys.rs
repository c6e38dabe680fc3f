//! The simulated WeChat Pay's own RSA keys: the WeChat Pay public key pair (public-key
//! mode, serial `PUB_KEY_ID_` + 32 digits), a platform certificate (certificate mode,
//! serial 40 upper-case hex) made on first use, and a "rotated" key of a serial nobody was
//! given, for the fault that signs with it.

use std::sync::OnceLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use x509_cert::der::asn1::BitString;
use x509_cert::der::{Any, Decode as _, Encode as _, EncodePem as _};
use x509_cert::spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};

use crate::ids;

/// sha256WithRSAEncryption.
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
/// Platform certificates live five years.
const CERTIFICATE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(5 * 365 * 86_400);

/// One RSA-2048 key pair and the serial WeChat Pay names it by in `Wechatpay-Serial`.
pub(crate) struct SigningKey {
    pair: RsaKeyPair,
    pub serial: String,
    /// SPKI (`BEGIN PUBLIC KEY`), as the merchant platform lets a merchant download it.
    pub public_key_pem: String,
}

impl SigningKey {
    fn generate(serial: String) -> anyhow::Result<SigningKey> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| anyhow::anyhow!("cannot generate an RSA key"))?;
        let spki = pair
            .public_key()
            .as_der()
            .map_err(|_| anyhow::anyhow!("cannot encode the RSA public key"))?;
        let public_key_pem = pem("PUBLIC KEY", spki.as_ref());
        Ok(SigningKey {
            pair,
            serial,
            public_key_pem,
        })
    }

    /// SHA256 with RSA (PKCS#1 v1.5), base64: how WeChat Pay signs answers and notifications.
    pub(crate) fn sign(&self, message: &[u8]) -> String {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        // Signing with a key we generated only fails if the machine has no randomness.
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .expect("RSA signing with a generated key");
        base64::engine::general_purpose::STANDARD.encode(signature)
    }

    fn spki_der(&self) -> Vec<u8> {
        self.pair
            .public_key()
            .as_der()
            .map(|der| der.as_ref().to_vec())
            .unwrap_or_default()
    }
}

/// Which of its keys the simulated WeChat Pay signs notifications (and answers to requests
/// that name no serial) with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum V3Signer {
    /// The WeChat Pay public key (`PUB_KEY_ID_…`): merchants since late 2024.
    #[default]
    PublicKey,
    /// The platform certificate: older merchants.
    Certificate,
}

/// The platform certificate and its key.
pub(crate) struct PlatformCertificate {
    pub key: SigningKey,
    pub pem: String,
}

pub(crate) struct PlatformKeys {
    pub public_key: SigningKey,
    certificate: OnceLock<PlatformCertificate>,
    rotated: OnceLock<SigningKey>,
}

impl PlatformKeys {
    pub(crate) fn generate() -> anyhow::Result<PlatformKeys> {
        Ok(PlatformKeys {
            public_key: SigningKey::generate(public_key_id())?,
            certificate: OnceLock::new(),
            rotated: OnceLock::new(),
        })
    }

    /// Made on first use: most runs never need certificate mode, and a key takes time.
    pub(crate) fn certificate(&self) -> &PlatformCertificate {
        self.certificate.get_or_init(|| {
            // The serial it is named by is the one its certificate carries.
            let serial = certificate_serial(&ids::hex(40, true)).expect("hex");
            let key = SigningKey::generate(serial).expect("an RSA key for the certificate");
            let pem = self_signed_certificate(&key).expect("a platform certificate");
            PlatformCertificate { key, pem }
        })
    }

    /// A key of a serial the merchant was never given, as after a rotation it missed.
    pub(crate) fn rotated(&self) -> &SigningKey {
        self.rotated
            .get_or_init(|| SigningKey::generate(public_key_id()).expect("an RSA key"))
    }

    /// The key named by `serial`, if it is one of ours (the certificate only once made).
    pub(crate) fn by_serial(&self, serial: &str) -> Option<&SigningKey> {
        if serial == self.public_key.serial {
            Some(&self.public_key)
        } else {
            self.certificate
                .get()
                .map(|certificate| &certificate.key)
                .filter(|key| key.serial.eq_ignore_ascii_case(serial))
        }
    }

    pub(crate) fn for_signer(&self, signer: V3Signer) -> &SigningKey {
        match signer {
            V3Signer::PublicKey => &self.public_key,
            V3Signer::Certificate => &self.certificate().key,
        }
    }

    /// The serial of the key not chosen by `signer` (for the wrong-serial fault).
    pub(crate) fn other_serial(&self, signer: V3Signer) -> String {
        match signer {
            V3Signer::PublicKey => self.certificate().key.serial.clone(),
            V3Signer::Certificate => self.public_key.serial.clone(),
        }
    }
}

/// `PUB_KEY_ID_` and 32 digits, as the merchant platform shows it.
fn public_key_id() -> String {
    format!("PUB_KEY_ID_{}", ids::digits(32))
}

/// A certificate for `key`, signed by itself: the sandbox has no CA, and a client that
/// trusts a platform certificate does so because it was configured with it.
fn self_signed_certificate(key: &SigningKey) -> anyhow::Result<String> {
    use std::str::FromStr as _;
    use x509_cert::certificate::{Certificate, TbsCertificate, Version};
    use x509_cert::name::Name;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::time::Validity;

    let algorithm = AlgorithmIdentifierOwned {
        oid: SHA256_WITH_RSA,
        parameters: Some(Any::null()),
    };
    let serial_bytes = hex_bytes(&key.serial)?;
    let name = Name::from_str("CN=Tenpay.com sign,OU=Tenpay.com CA Center,O=Tenpay.com,C=CN")?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial_bytes)?,
        signature: algorithm.clone(),
        issuer: name.clone(),
        validity: Validity::from_now(CERTIFICATE_LIFETIME)?,
        subject: name,
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(&key.spki_der())?,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: None,
    };
    let signed = key.sign(&tbs.to_der()?);
    let signature = base64::engine::general_purpose::STANDARD.decode(signed)?;
    let certificate = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&signature)?,
    };
    Ok(certificate.to_pem(x509_cert::der::pem::LineEnding::LF)?)
}

/// A certificate serial as bytes; the first nibble is kept below 8 so the DER integer is
/// positive and the hex stays 40 characters.
fn hex_bytes(serial: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = (0..serial.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&serial[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()?;
    if let Some(first) = bytes.first_mut() {
        *first = (*first & 0x7f).max(0x10);
    }
    Ok(bytes)
}

/// `serial` as the certificate's DER integer holds it (see [`hex_bytes`]): a serial with
/// its first nibble at 8 or above would otherwise be announced in `Wechatpay-Serial` as
/// one no certificate has.
fn certificate_serial(serial: &str) -> anyhow::Result<String> {
    Ok(hex_bytes(serial)?
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect())
}

/// PEM armour, 64 characters a line.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// The DER inside the first PEM block, with its label.
pub(crate) fn pem_der(text: &str) -> Option<(String, Vec<u8>)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_owned();
    let body_start = label_end + 5;
    let end = rest.find(&format!("-----END {label}-----"))?;
    let body: String = rest[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    Some((label, der))
}

/// A merchant's RSA public key from PEM: `PUBLIC KEY` (SPKI), `RSA PUBLIC KEY` (PKCS#1) or
/// the merchant API `CERTIFICATE`. Returns DER that aws-lc-rs verifies with.
pub(crate) fn public_key_der(text: &str) -> Result<Vec<u8>, String> {
    let (label, der) = pem_der(text).ok_or("not a PEM block")?;
    let der = match label.as_str() {
        "PUBLIC KEY" | "RSA PUBLIC KEY" => der,
        "CERTIFICATE" => {
            let certificate = x509_cert::Certificate::from_der(&der)
                .map_err(|error| format!("not an X.509 certificate: {error}"))?;
            certificate
                .tbs_certificate
                .subject_public_key_info
                .to_der()
                .map_err(|error| error.to_string())?
        }
        other => return Err(format!("a {other} is not a public key")),
    };
    aws_lc_rs::rsa::PublicKey::from_der(&der).map_err(|_| "not an RSA public key".to_owned())?;
    Ok(der)
}

/// Whether `signature` (base64) is `key`'s SHA256-with-RSA signature over `message`.
pub(crate) fn verifies(public_key_der: &[u8], message: &[u8], signature_base64: &str) -> bool {
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature_base64) else {
        return false;
    };
    signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public_key_der)
        .verify(message, &signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sign_what_their_published_pem_verifies() {
        let keys = PlatformKeys::generate().unwrap();
        assert!(keys.public_key.serial.starts_with("PUB_KEY_ID_"));
        assert_eq!(keys.public_key.serial.len(), 11 + 32);
        let der = public_key_der(&keys.public_key.public_key_pem).unwrap();
        let signed = keys.public_key.sign(b"1700000000\nnonce\n{}\n");
        assert!(verifies(&der, b"1700000000\nnonce\n{}\n", &signed));
        assert!(!verifies(&der, b"1700000000\nnonce\n{ }\n", &signed));

        let certificate = keys.certificate();
        assert_eq!(certificate.key.serial.len(), 40);
        let from_certificate = public_key_der(&certificate.pem).unwrap();
        let signed = certificate.key.sign(b"x");
        assert!(verifies(&from_certificate, b"x", &signed));
        assert!(!verifies(&der, b"x", &signed));
        assert!(keys.by_serial(&certificate.key.serial).is_some());
    }

    #[test]
    fn a_certificate_is_announced_by_the_serial_it_carries() {
        for high in ["94C681669CA736417FD6EADC480999767FBC8F3D", "0A"] {
            let announced = certificate_serial(high).unwrap();
            let carried: String = hex_bytes(high)
                .unwrap()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect();
            assert_eq!(announced, carried);
            assert_eq!(certificate_serial(&announced).unwrap(), announced);
        }
        assert_eq!(
            certificate_serial("94C681669CA736417FD6EADC480999767FBC8F3D").unwrap(),
            "14C681669CA736417FD6EADC480999767FBC8F3D"
        );
    }
}

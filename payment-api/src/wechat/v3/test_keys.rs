//! Keys and certificates made at test time: no private key is ever committed.

use std::sync::OnceLock;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, Utc};

pub(crate) struct TestKey {
    pub pair: RsaKeyPair,
    pub private_pem: String,
    pub public_pem: String,
}

impl TestKey {
    pub fn sign(&self, message: &[u8]) -> String {
        BASE64.encode(sign_raw(&self.pair, message))
    }
}

pub(crate) fn generated() -> TestKey {
    let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&pair).unwrap();
    let spki = AsDer::<PublicKeyX509Der>::as_der(pair.public_key()).unwrap();
    TestKey {
        private_pem: pem("PRIVATE KEY", pkcs8.as_ref()),
        public_pem: pem("PUBLIC KEY", spki.as_ref()),
        pair,
    }
}

/// The merchant's key pair, made once per test binary (RSA generation is slow).
pub(crate) fn merchant() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(generated)
}

/// WeChat Pay's key pair.
pub(crate) fn wechat() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(generated)
}

pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let body = BASE64.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn sign_raw(pair: &RsaKeyPair, message: &[u8]) -> Vec<u8> {
    let mut signature = vec![0; pair.public_modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        message,
        &mut signature,
    )
    .unwrap();
    signature
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    der(0x30, &parts.concat())
}

/// A self-signed X.509 v3 certificate for `key`, PEM, with this serial and end date: a
/// stand-in for a WeChat Pay platform certificate.
pub(crate) fn certificate_pem(key: &TestKey, serial: &[u8], not_after: DateTime<Utc>) -> String {
    let sha256_with_rsa = seq(&[
        &der(
            0x06,
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
        ),
        &[0x05, 0x00],
    ]);
    let name = seq(&[&der(
        0x31,
        &seq(&[
            &der(0x06, &[0x55, 0x04, 0x03]),
            &der(0x0c, b"Tenpay.com Root CA"),
        ]),
    )]);
    let mut serial_int = Vec::new();
    if serial[0] & 0x80 != 0 {
        serial_int.push(0);
    }
    serial_int.extend_from_slice(serial);
    let time = |t: DateTime<Utc>| der(0x18, t.format("%Y%m%d%H%M%SZ").to_string().as_bytes());
    let not_before = Utc::now() - chrono::Duration::days(365);
    let spki = AsDer::<PublicKeyX509Der>::as_der(key.pair.public_key()).unwrap();
    let tbs = seq(&[
        &der(0xa0, &der(0x02, &[2])),
        &der(0x02, &serial_int),
        &sha256_with_rsa,
        &name,
        &seq(&[&time(not_before), &time(not_after)]),
        &name,
        spki.as_ref(),
    ]);
    let mut signature = vec![0];
    signature.extend(sign_raw(&key.pair, &tbs));
    let cert = seq(&[&tbs, &sha256_with_rsa, &der(0x03, &signature)]);
    pem("CERTIFICATE", &cert)
}

/// An RSA key of a size aws-lc-rs will not generate (1024 bits), from the openssl tool.
pub(crate) fn openssl_rsa_key(bits: u32) -> String {
    let out = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
        .arg(format!("rsa_keygen_bits:{bits}"))
        .output()
        .expect("this test needs the openssl command to make a small RSA key");
    assert!(out.status.success(), "openssl genpkey failed");
    String::from_utf8(out.stdout).unwrap()
}

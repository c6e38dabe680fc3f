//! What we sign with the merchant key: every request (`Authorization`) and the argument of
//! the mini-program's `wx.requestPayment` (`paySign`).

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};

use super::keys::{MerchantKey, SigningFailed};

/// The only signature scheme APIv3 has.
pub const SCHEMA: &str = "WECHATPAY2-SHA256-RSA2048";

/// 32 random upper-case hex characters (WeChat's examples use 32; `nonceStr` allows 32).
pub fn nonce() -> Result<String, SigningFailed> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SigningFailed)?;
    Ok(bytes.iter().map(|b| format!("{b:02X}")).collect())
}

/// `METHOD\n path?query\n timestamp\n nonce\n body\n`: five lines, the last ending in `\n`
/// even when the body is empty. `path_and_query` is the URL as sent, minus scheme and host.
pub fn request_message(
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut message = format!("{method}\n{path_and_query}\n{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// The `Authorization` header of a request. `mchid` is the merchant whose key signs: the
/// service provider's in partner form.
pub fn authorization(
    key: &MerchantKey,
    mchid: &str,
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Result<String, SigningFailed> {
    let signature = key.sign(&request_message(
        method,
        path_and_query,
        timestamp,
        nonce,
        body,
    ))?;
    Ok(format!(
        "{SCHEMA} mchid=\"{mchid}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{}\"",
        key.serial()
    ))
}

/// `appId\n timeStamp\n nonceStr\n package\n`; `signType` takes no part.
pub fn pay_sign_message(app_id: &str, timestamp: &str, nonce: &str, package: &str) -> String {
    format!("{app_id}\n{timestamp}\n{nonce}\n{package}\n")
}

/// The argument of `wx.requestPayment` for a prepay: `timeStamp` is a string of Unix
/// seconds (milliseconds are refused by WeChat), `app_id` the one the prepay used.
pub fn request_payment(
    key: &MerchantKey,
    app_id: &str,
    prepay_id: &str,
    timestamp: i64,
) -> Result<Value, SigningFailed> {
    let timestamp = timestamp.to_string();
    let nonce = nonce()?;
    let package = format!("prepay_id={prepay_id}");
    let pay_sign = key.sign(pay_sign_message(app_id, &timestamp, &nonce, &package).as_bytes())?;
    Ok(json!({
        "timeStamp": timestamp,
        "nonceStr": nonce,
        "package": package,
        "signType": "RSA",
        "paySign": pay_sign,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::v3::keys::PlatformKeys;
    use crate::wechat::v3::test_keys::merchant;

    fn merchant_key() -> MerchantKey {
        MerchantKey::from_pem(
            &merchant().private_pem,
            "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C",
        )
        .unwrap()
    }

    /// Our own public key, as the platform registered it.
    fn registered() -> PlatformKeys {
        let mut keys = PlatformKeys::default();
        keys.add_public_key("PUB_KEY_ID_MERCHANT", &merchant().public_pem)
            .unwrap();
        keys
    }

    #[test]
    fn the_request_message_is_five_lines_each_ending_in_a_newline() {
        assert_eq!(
            request_message("GET", "/v3/pay/transactions/out-trade-no/ORD1?mchid=1900", 1554208460, "593BEC0C930BF1AFEB40B4A08C8FB242", b""),
            b"GET\n/v3/pay/transactions/out-trade-no/ORD1?mchid=1900\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n"
        );
        assert_eq!(
            request_message("POST", "/v3/refund/domestic/refunds", 1, "N", b"{\"a\":1}"),
            b"POST\n/v3/refund/domestic/refunds\n1\nN\n{\"a\":1}\n"
        );
    }

    #[test]
    fn the_authorization_header_carries_a_signature_of_the_request() {
        let key = merchant_key();
        let body = br#"{"mchid":"1900009191"}"#;
        let header = authorization(
            &key,
            "1900009191",
            "POST",
            "/v3/pay/transactions/out-trade-no/ORD1/close",
            1554208460,
            "NONCE1",
            body,
        )
        .unwrap();
        let params = header
            .strip_prefix("WECHATPAY2-SHA256-RSA2048 ")
            .expect("schema first, then one space");
        let field = |name: &str| {
            params
                .split(',')
                .find_map(|p| p.strip_prefix(&format!("{name}=\"")))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or_else(|| panic!("{name} in {header}"))
                .to_owned()
        };
        assert_eq!(field("mchid"), "1900009191");
        assert_eq!(field("nonce_str"), "NONCE1");
        assert_eq!(field("timestamp"), "1554208460");
        assert_eq!(
            field("serial_no"),
            "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C"
        );
        let expected = b"POST\n/v3/pay/transactions/out-trade-no/ORD1/close\n1554208460\nNONCE1\n{\"mchid\":\"1900009191\"}\n";
        registered()
            .verify("PUB_KEY_ID_MERCHANT", expected, &field("signature"))
            .unwrap();
        // Without the final newline the signature is another one.
        assert!(registered()
            .verify(
                "PUB_KEY_ID_MERCHANT",
                &expected[..expected.len() - 1],
                &field("signature")
            )
            .is_err());
    }

    #[test]
    fn pay_sign_covers_app_id_timestamp_nonce_and_package() {
        let payment = request_payment(
            &merchant_key(),
            "wx8888888888888888",
            "wx201410272009395522657a690389285100",
            1414561699,
        )
        .unwrap();
        assert_eq!(payment["timeStamp"], "1414561699");
        assert_eq!(
            payment["package"],
            "prepay_id=wx201410272009395522657a690389285100"
        );
        assert_eq!(payment["signType"], "RSA");
        let nonce = payment["nonceStr"].as_str().unwrap();
        assert_eq!(nonce.len(), 32);
        let message = format!("wx8888888888888888\n1414561699\n{nonce}\nprepay_id=wx201410272009395522657a690389285100\n");
        let keys = registered();
        keys.verify(
            "PUB_KEY_ID_MERCHANT",
            message.as_bytes(),
            payment["paySign"].as_str().unwrap(),
        )
        .unwrap();
        let other_app = message.replacen("wx8888888888888888", "wx9999999999999999", 1);
        assert!(keys
            .verify(
                "PUB_KEY_ID_MERCHANT",
                other_app.as_bytes(),
                payment["paySign"].as_str().unwrap()
            )
            .is_err());
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce().unwrap(), nonce().unwrap());
    }
}

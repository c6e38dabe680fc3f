//! Every APIv3 call: the merchant's `Authorization` is verified before the handler runs,
//! and the answer is signed after it (except the bill file, which WeChat never signs).

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::error::V3Error;
use super::merchant::Registered;
use crate::ids;
use crate::state::AppState;

/// Bodies above this are refused; a prepay is well under 2 KB.
const MAX_BODY: usize = 1024 * 1024;
/// WeChat's and the SDKs' window for timestamps, either way.
pub(crate) const MAX_CLOCK_SKEW_SECS: i64 = 300;
const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

pub(crate) async fn authenticate_and_sign(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let requested_serial = header(&parts.headers, "wechatpay-serial").map(str::to_owned);
    let unsigned_path = parts.uri.path() == super::bill::FILE_PATH;
    let response = match to_bytes(body, MAX_BODY).await {
        Err(_) => V3Error::param("请求体过大").into_response(),
        Ok(bytes) => {
            let target = parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
            match verify(
                &state,
                parts.method.as_str(),
                &target,
                &parts.headers,
                &bytes,
            ) {
                Err(error) => error.into_response(),
                Ok(merchant) => {
                    parts.extensions.insert(merchant);
                    next.run(Request::from_parts(parts, Body::from(bytes)))
                        .await
                }
            }
        }
    };
    if unsigned_path && response.status().is_success() {
        return response;
    }
    sign_answer(&state, requested_serial.as_deref(), response).await
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The registered merchant, if the request is signed by it.
fn verify(
    state: &AppState,
    method: &str,
    target: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<std::sync::Arc<Registered>, V3Error> {
    let merchant = state.v3.merchant().ok_or_else(|| {
        V3Error::sign("商户未在沙箱登记APIv3证书 (PUT /sandbox/wechat/v3/merchant)")
    })?;
    let authorization =
        header(headers, "authorization").ok_or_else(|| V3Error::sign("缺少Authorization请求头"))?;
    let items = authorization
        .strip_prefix(SCHEME)
        .filter(|rest| rest.starts_with(' '))
        .ok_or_else(|| V3Error::sign(format!("Authorization须以{SCHEME}开头")))?;
    let item = |name: &str| -> Result<String, V3Error> {
        items
            .split(',')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.trim_matches('"').to_owned())
            .filter(|value| !value.is_empty())
            .ok_or_else(|| V3Error::sign(format!("Authorization缺少{name}")))
    };
    let (mchid, nonce, signature, timestamp, serial) = (
        item("mchid")?,
        item("nonce_str")?,
        item("signature")?,
        item("timestamp")?,
        item("serial_no")?,
    );
    if mchid != merchant.signing_mchid() {
        return Err(V3Error::sign("Authorization中的mchid与登记的商户号不一致"));
    }
    if !serial.eq_ignore_ascii_case(merchant.merchant.merchant_serial.trim()) {
        return Err(V3Error::sign("商户证书序列号serial_no有误"));
    }
    let seconds: i64 = timestamp
        .parse()
        .map_err(|_| V3Error::sign("timestamp须为Unix秒"))?;
    if (Utc::now().timestamp() - seconds).abs() > MAX_CLOCK_SKEW_SECS {
        return Err(V3Error::sign("timestamp与当前时间相差超过5分钟"));
    }
    let mut message = format!("{method}\n{target}\n{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    if !super::keys::verifies(&merchant.public_key_der, &message, &signature) {
        return Err(V3Error::sign("签名错误，请检查后再试"));
    }
    Ok(merchant)
}

/// `Wechatpay-*` headers over `timestamp\nnonce\nbody\n`, with the key the request named
/// in `Wechatpay-Serial` if it is ours, else the configured signer's; or none / a wrong
/// one when a fault says so.
async fn sign_answer(
    state: &AppState,
    requested_serial: Option<&str>,
    response: Response,
) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        return V3Error::system_error().into_response();
    };
    let (unsigned, wrong) = state.with_faults(|faults| {
        let unsigned = faults.wechat.v3.take_unsigned_answer();
        (
            unsigned,
            !unsigned && faults.wechat.v3.take_wrong_answer_signature(),
        )
    });
    insert(&mut parts.headers, "request-id", ids::hex(32, false));
    if !unsigned {
        let key = requested_serial
            .and_then(|serial| state.v3.keys.by_serial(serial))
            .unwrap_or_else(|| state.v3.signing_key());
        let timestamp = Utc::now().timestamp().to_string();
        let nonce = ids::hex(32, true);
        let mut message = format!("{timestamp}\n{nonce}\n").into_bytes();
        message.extend_from_slice(&bytes);
        message.push(b'\n');
        if wrong {
            // A real signature by the right key, over other bytes: only verification shows it.
            message.extend_from_slice(b"tampered");
        }
        let signature = key.sign(&message);
        insert(&mut parts.headers, "wechatpay-timestamp", timestamp);
        insert(&mut parts.headers, "wechatpay-nonce", nonce);
        insert(&mut parts.headers, "wechatpay-signature", signature);
        insert(&mut parts.headers, "wechatpay-serial", key.serial.clone());
        insert(
            &mut parts.headers,
            "wechatpay-signature-type",
            SCHEME.to_owned(),
        );
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(name, value);
    }
}

//! APIv3 notifications: `TRANSACTION.SUCCESS` when a v3 order is paid, `REFUND.SUCCESS` /
//! `REFUND.CLOSED` when a refund that gave a `notify_url` ends. The resource is encrypted
//! with the merchant's APIv3 key (AES-256-GCM; key, nonce and associated data used as
//! text bytes; base64 of ciphertext and tag). Each attempt is signed when it is sent;
//! 200 or 204 is received, anything else is retried on WeChat Pay's own schedule. The
//! bookkeeping (`callbacks_owed`, `callback_log`) is the open interface's.

use std::time::Duration;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use base64::Engine as _;
use chrono::Utc;
use serde_json::{json, Value};

use super::order::{self, rfc3339};
use crate::config::SandboxConfig;
use crate::faults::NotificationFaults;
use crate::ids;
use crate::state::AppState;
use crate::sync::stopped;
use crate::wechat::callbacks::{cut, CallbackDelivery, CallbackKind, Owing};
use crate::wechat::orders::{RefundStatus, WechatOrder, WechatRefund};

const MAX_LOGGED_BODY: usize = 2_000;
/// How old the `notificationOldTimestamp` fault makes a timestamp: past the 5-minute window.
const OLD_TIMESTAMP_SECS: i64 = 6 * 60 + 40;

pub(crate) fn deliver_payment(state: &AppState, order: &WechatOrder) {
    let Some(v3) = &order.v3 else { return };
    let Some(body) = notice(
        state,
        "TRANSACTION.SUCCESS",
        "transaction",
        "支付成功",
        &order::transaction(order),
    ) else {
        return;
    };
    let faults = state.faults().wechat;
    let first_delay = Duration::from_millis(faults.callback_delay_ms);
    for copy in 0..=faults.v3.notification_duplicates {
        let job = Job {
            kind: CallbackKind::Payment,
            out_trade_no: order.out_trade_no.clone(),
            out_refund_no: None,
            url: v3.notify_url.clone(),
            body: body.clone(),
            copy,
        };
        spawn(state, job, first_delay);
    }
}

pub(crate) fn deliver_refund(state: &AppState, order: &WechatOrder, refund: &WechatRefund) {
    let Some(url) = &refund.notify_url else {
        return;
    };
    let (event_type, summary) = match refund.status {
        RefundStatus::Success => ("REFUND.SUCCESS", "退款成功"),
        RefundStatus::Closed => ("REFUND.CLOSED", "退款关闭"),
        RefundStatus::Processing => return,
    };
    let plaintext = order::refund_notice(order, refund);
    let Some(body) = notice(state, event_type, "refund", summary, &plaintext) else {
        return;
    };
    let job = Job {
        kind: CallbackKind::Refund,
        out_trade_no: order.out_trade_no.clone(),
        out_refund_no: Some(refund.out_refund_no.clone()),
        url: url.clone(),
        body,
        copy: 0,
    };
    spawn(state, job, Duration::ZERO);
}

/// The notification body, serialised once: every attempt sends these bytes.
fn notice(
    state: &AppState,
    event_type: &str,
    original_type: &str,
    summary: &str,
    plaintext: &Value,
) -> Option<Vec<u8>> {
    let Some(merchant) = state.v3.merchant() else {
        tracing::warn!(
            event_type,
            "no APIv3 merchant registered: notification not sent"
        );
        return None;
    };
    let nonce = ids::alphanumeric(12);
    let ciphertext = encrypt(
        merchant.api_v3_key(),
        &nonce,
        original_type,
        plaintext.to_string().as_bytes(),
    )?;
    let body = json!({
        "id": notification_id(),
        "create_time": rfc3339(Utc::now()),
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": summary,
        "resource": {
            "original_type": original_type,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": ciphertext,
            "associated_data": original_type,
            "nonce": nonce,
        },
    });
    serde_json::to_vec(&body).ok()
}

/// AES-256-GCM with the key, nonce and associated data as their text bytes; base64 of the
/// ciphertext with the 16-byte tag appended.
pub(crate) fn encrypt(key: &[u8], nonce: &str, aad: &str, plaintext: &[u8]) -> Option<String> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let nonce = Nonce::try_assume_unique_for_key(nonce.as_bytes()).ok()?;
    let mut sealed = plaintext.to_vec();
    key.seal_in_place_append_tag(nonce, Aad::from(aad.as_bytes()), &mut sealed)
        .ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(sealed))
}

/// Shaped like WeChat's notification ids (a UUID).
fn notification_id() -> String {
    let hex = ids::hex(32, false);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

struct Job {
    kind: CallbackKind,
    out_trade_no: String,
    out_refund_no: Option<String>,
    url: String,
    body: Vec<u8>,
    copy: u32,
}

fn spawn(state: &AppState, job: Job, first_delay: Duration) {
    let owing = Owing::start(state);
    let state = state.clone();
    let mut shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let _owing = owing;
        tokio::select! {
            _ = deliver_until_received(&state, &job, first_delay) => {}
            _ = stopped(&mut shutdown) => {}
        }
    });
}

/// Always the platform's schedule (15 s, 15 s, 30 s, 3 m, …): notifications are what a
/// direct-mode client must survive as they really come.
async fn deliver_until_received(state: &AppState, job: &Job, first_delay: Duration) {
    let waits = std::iter::once(first_delay).chain(SandboxConfig::platform_retry_delays());
    for (attempt, wait) in (1..).zip(waits) {
        tokio::time::sleep(wait).await;
        if attempt_once(state, job, attempt).await {
            return;
        }
    }
    tracing::warn!(out_trade_no = %job.out_trade_no, kind = %job.kind, "APIv3 notification never received; giving up");
}

/// One signed POST (and its replay, if the fault says so); true when received.
async fn attempt_once(state: &AppState, job: &Job, attempt: u32) -> bool {
    let faults = state.with_faults(|faults| faults.wechat.v3.take_notification_faults());
    let keys = &state.v3.keys;
    let signer = state.v3.signer();
    let key = if faults.rotated_key {
        keys.rotated()
    } else {
        keys.for_signer(signer)
    };
    let mut timestamp = Utc::now().timestamp();
    if faults.old_timestamp {
        timestamp -= OLD_TIMESTAMP_SECS;
    }
    let nonce = ids::alphanumeric(32);
    let mut message = format!("{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(&job.body);
    message.push(b'\n');
    let signature = if faults.bad_signature {
        // WeChat's own probes look like this; they must fail verification.
        format!("WECHATPAY/SIGNTEST/{}", key.sign(b"probe"))
    } else {
        key.sign(&message)
    };
    let serial = if faults.wrong_serial {
        keys.other_serial(signer)
    } else {
        key.serial.clone()
    };
    let body = if faults.truncated_body {
        job.body[..job.body.len() / 2].to_vec()
    } else {
        job.body.clone()
    };
    let headers = [
        ("wechatpay-timestamp", timestamp.to_string()),
        ("wechatpay-nonce", nonce),
        ("wechatpay-signature", signature),
        ("wechatpay-serial", serial),
        (
            "wechatpay-signature-type",
            "WECHATPAY2-SHA256-RSA2048".to_owned(),
        ),
    ];
    let delivery = send(state, job, attempt, &headers, &body, faults.names()).await;
    let received = delivery.accepted;
    state.callbacks.record(delivery);
    if faults.replay {
        let replay = send(state, job, attempt, &headers, &body, Some("replay".into())).await;
        state.callbacks.record(replay);
    }
    received
}

async fn send(
    state: &AppState,
    job: &Job,
    attempt: u32,
    headers: &[(&'static str, String)],
    body: &[u8],
    fault: Option<String>,
) -> CallbackDelivery {
    let mut request = state
        .http
        .post(delivery_address(&state.callback_base(), &job.url))
        .header("content-type", "application/json")
        .header("user-agent", "Mozilla/4.0")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let (http_status, response_body, error) = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.text().await {
                Ok(text) => (Some(status), Some(text), None),
                Err(error) => (Some(status), None, Some(error.to_string())),
            }
        }
        Err(error) => (None, None, Some(error.to_string())),
    };
    // WeChat reads only the status: 200 or 204, whatever the body says.
    let accepted = matches!(http_status, Some(200) | Some(204));
    tracing::info!(out_trade_no = %job.out_trade_no, kind = %job.kind, copy = job.copy, attempt, url = %job.url, ?http_status, accepted, ?fault, "APIv3 notification attempt");
    CallbackDelivery {
        out_trade_no: job.out_trade_no.clone(),
        kind: job.kind,
        out_refund_no: job.out_refund_no.clone(),
        copy: job.copy,
        attempt,
        url: job.url.clone(),
        http_status,
        response_body: response_body.map(|body| cut(body, MAX_LOGGED_BODY)),
        error,
        accepted,
        at: Utc::now(),
        fault,
    }
}

impl NotificationFaults {
    /// The faults this attempt carries, comma-separated, for the log.
    fn names(&self) -> Option<String> {
        let names: Vec<&str> = [
            (self.bad_signature, "badSignature"),
            (self.old_timestamp, "oldTimestamp"),
            (self.rotated_key, "rotatedKey"),
            (self.wrong_serial, "wrongSerial"),
            (self.truncated_body, "truncatedBody"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        (!names.is_empty()).then(|| names.join(","))
    }
}

/// Where a notification for `url` is posted. The merchant's public HTTPS name is not
/// reachable from here: like the TLS-terminating ingress in front of the service, the
/// sandbox sends the URL's path to the service's own address, its callback base. A plain
/// HTTP URL (allowed only under that base) is posted as it is.
fn delivery_address(callback_base: &str, url: &str) -> String {
    match url.strip_prefix("https://") {
        Some(rest) => {
            let path = rest.find('/').map_or("/", |at| &rest[at..]);
            format!("{}{path}", callback_base.trim_end_matches('/'))
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod delivery_tests {
    #[test]
    fn https_names_reach_the_service_through_its_ingress() {
        let base = "http://127.0.0.1:3000/";
        assert_eq!(
            super::delivery_address(base, "https://pay.example.com/payment/notify"),
            "http://127.0.0.1:3000/payment/notify"
        );
        assert_eq!(
            super::delivery_address(base, "http://127.0.0.1:3000/payment/notify"),
            "http://127.0.0.1:3000/payment/notify"
        );
    }
}

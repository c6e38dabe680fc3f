//! The platform's result callbacks: POSTed to `callback_base + container.path` and retried
//! on the configured schedule until the service answers with a top-level `errcode` 0.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ids;
use crate::state::AppState;
use crate::sync::{lock, stopped};
use crate::wechat::envelope::{MINI_PROGRAM_APPID, PROVIDER_APPID, PROVIDER_MCH_ID};
use crate::wechat::orders::{WechatOrder, WechatRefund};
use crate::wechat::payer;

/// Responses longer than this are cut in the log.
const MAX_LOGGED_BODY: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackKind {
    Payment,
    Refund,
}

impl CallbackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackKind::Payment => "payment",
            CallbackKind::Refund => "refund",
        }
    }
}

impl fmt::Display for CallbackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for CallbackKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One attempt to deliver one callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackDelivery {
    pub out_trade_no: String,
    pub kind: CallbackKind,
    /// Set for refund callbacks.
    pub out_refund_no: Option<String>,
    /// 0 for the original; 1.. for the duplicates the `callbackDuplicates` fault adds.
    pub copy: u32,
    /// 1 for the first attempt of this copy.
    pub attempt: u32,
    pub url: String,
    /// `None` when no HTTP answer came (refused, timed out).
    pub http_status: Option<u16>,
    pub response_body: Option<String>,
    /// Why the attempt failed without an HTTP answer.
    pub error: Option<String>,
    pub accepted: bool,
    pub at: DateTime<Utc>,
    /// APIv3 notifications: the fault this attempt carried (`replay`, `badSignature`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

#[derive(Default)]
pub(crate) struct CallbackLog(Mutex<Vec<CallbackDelivery>>);

impl CallbackLog {
    pub(crate) fn all(&self) -> Vec<CallbackDelivery> {
        lock(&self.0).clone()
    }

    pub(crate) fn clear(&self) {
        lock(&self.0).clear();
    }

    pub(crate) fn record(&self, delivery: CallbackDelivery) {
        lock(&self.0).push(delivery);
    }
}

/// How many callbacks the platform still owes: delivering (until accepted or given up), or
/// due once an accepted refund completes. Counted before the request that caused them is
/// answered, so that a test can wait for none to be owed and then assert what arrived.
#[derive(Default)]
pub(crate) struct Owed(AtomicUsize);

impl Owed {
    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// One owed callback, counted until dropped (cancelled by a shutdown too).
pub(crate) struct Owing(AppState);

impl Owing {
    pub(crate) fn start(state: &AppState) -> Owing {
        state.owed.0.fetch_add(1, Ordering::SeqCst);
        Owing(state.clone())
    }
}

impl Drop for Owing {
    fn drop(&mut self) {
        self.0.owed.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts the payment callback, and its duplicates if the faults ask for them, in the
/// background.
pub(crate) fn deliver_payment(state: &AppState, order: &WechatOrder) {
    let faults = state.faults().wechat;
    let body = payment_body(order);
    let first_delay = Duration::from_millis(faults.callback_delay_ms);
    for copy in 0..=faults.callback_duplicates {
        let job = Job {
            kind: CallbackKind::Payment,
            out_trade_no: order.out_trade_no.clone(),
            out_refund_no: None,
            path: order.container_path.clone(),
            body: body.clone(),
            copy,
        };
        spawn(state, job, first_delay);
    }
}

pub(crate) fn deliver_refund(state: &AppState, order: &WechatOrder, refund: &WechatRefund) {
    let job = Job {
        kind: CallbackKind::Refund,
        out_trade_no: order.out_trade_no.clone(),
        out_refund_no: Some(refund.out_refund_no.clone()),
        path: refund.container_path.clone(),
        body: refund_body(order, refund),
        copy: 0,
    };
    spawn(state, job, Duration::ZERO);
}

struct Job {
    kind: CallbackKind,
    out_trade_no: String,
    out_refund_no: Option<String>,
    path: String,
    body: Value,
    copy: u32,
}

fn spawn(state: &AppState, job: Job, first_delay: Duration) {
    let owing = Owing::start(state);
    let state = state.clone();
    let mut shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let _owing = owing;
        tokio::select! {
            _ = deliver_until_accepted(&state, &job, first_delay) => {}
            _ = stopped(&mut shutdown) => {}
        }
    });
}

async fn deliver_until_accepted(state: &AppState, job: &Job, first_delay: Duration) {
    let waits = std::iter::once(first_delay).chain(state.config.callback_retry_delays.clone());
    for (attempt, wait) in (1..).zip(waits) {
        tokio::time::sleep(wait).await;
        let delivery = attempt_once(state, job, attempt).await;
        let accepted = delivery.accepted;
        state.callbacks.record(delivery);
        if accepted {
            return;
        }
    }
    tracing::warn!(out_trade_no = %job.out_trade_no, kind = %job.kind, copy = job.copy, "callback never accepted; giving up");
}

async fn attempt_once(state: &AppState, job: &Job, attempt: u32) -> CallbackDelivery {
    // Read at every attempt: the service's address may be set after the sandbox started.
    let url = format!(
        "{}{}",
        state.callback_base().trim_end_matches('/'),
        job.path
    );
    let sent = state
        .http
        .post(&url)
        .header("X-WX-SOURCE", "wxpay")
        .json(&job.body)
        .send()
        .await;
    let (http_status, response_body, error) = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.text().await {
                Ok(text) => (Some(status), Some(text), None),
                Err(error) => (Some(status), None, Some(error.to_string())),
            }
        }
        Err(error) => (None, None, Some(error.to_string())),
    };
    let accepted = http_status == Some(200) && response_body.as_deref().is_some_and(is_acceptance);
    tracing::info!(
        out_trade_no = %job.out_trade_no,
        kind = %job.kind,
        copy = job.copy,
        attempt,
        %url,
        ?http_status,
        accepted,
        "callback attempt"
    );
    CallbackDelivery {
        out_trade_no: job.out_trade_no.clone(),
        kind: job.kind,
        out_refund_no: job.out_refund_no.clone(),
        copy: job.copy,
        attempt,
        url,
        http_status,
        response_body: response_body.map(|body| cut(body, MAX_LOGGED_BODY)),
        error,
        accepted,
        at: Utc::now(),
        fault: None,
    }
}

/// Only a JSON object whose own `errcode` is the number 0 counts: a wrapper such as
/// `{"code":200,"data":{"errcode":0}}` or a string `"0"` is a failure, as on the platform.
pub(crate) fn is_acceptance(body: &str) -> bool {
    serde_json::from_str::<Value>(body).is_ok_and(|value| {
        value
            .get("errcode")
            .and_then(Value::as_i64)
            .is_some_and(|errcode| errcode == 0)
    })
}

pub(crate) fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The v2 notify fields in camelCase, as the cloud-pay docs show them.
fn payment_body(order: &WechatOrder) -> Value {
    let mut body = json!({
        "returnCode": "SUCCESS",
        "appid": PROVIDER_APPID,
        "mchId": PROVIDER_MCH_ID,
        "subAppid": MINI_PROGRAM_APPID,
        "subMchId": order.sub_mch_id,
        "nonceStr": ids::hex(16, false),
        "resultCode": "SUCCESS",
        "openid": payer::provider_openid(&order.openid),
        "isSubscribe": "N",
        "subOpenid": order.openid,
        "subIsSubscribe": "N",
        "tradeType": "JSAPI",
        "bankType": "OTHERS",
        "totalFee": order.total_fee,
        "feeType": "CNY",
        "cashFee": order.total_fee,
        "transactionId": order.transaction_id,
        "outTradeNo": order.out_trade_no,
        "timeEnd": order.time_end,
    });
    if let Some(attach) = &order.attach {
        body["attach"] = attach.as_str().into();
    }
    body
}

/// Undocumented upstream; this is the flat camelCase shape third-party services expect.
fn refund_body(order: &WechatOrder, refund: &WechatRefund) -> Value {
    json!({
        "returnCode": "SUCCESS",
        "appid": PROVIDER_APPID,
        "mchId": PROVIDER_MCH_ID,
        "subAppid": MINI_PROGRAM_APPID,
        "subMchId": order.sub_mch_id,
        "nonceStr": ids::hex(16, false),
        "transactionId": order.transaction_id,
        "outTradeNo": order.out_trade_no,
        "refundId": refund.refund_id,
        "outRefundNo": refund.out_refund_no,
        "totalFee": order.total_fee,
        "settlementTotalFee": order.total_fee,
        "refundFee": refund.refund_fee,
        "settlementRefundFee": refund.refund_fee,
        "refundStatus": refund.status.as_str(),
        "successTime": refund.success_time,
        "refundRecvAccout": "支付用户零钱",
        "refundAccount": "REFUND_SOURCE_RECHARGE_FUNDS",
        "refundRequestSource": "API",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_top_level_numeric_zero_errcode_is_acceptance() {
        assert!(is_acceptance(r#"{"errcode":0,"errmsg":""}"#));
        assert!(is_acceptance(r#"{"errcode":0}"#));
        assert!(!is_acceptance(
            r#"{"code":200,"data":{"errcode":0,"errmsg":""}}"#
        ));
        assert!(!is_acceptance(r#"{"errcode":"0"}"#));
        assert!(!is_acceptance(r#"{"errcode":1}"#));
        assert!(!is_acceptance("OK"));
        assert!(!is_acceptance(""));
    }

    #[test]
    fn long_bodies_are_cut_on_a_character_boundary() {
        assert_eq!(cut("退款退款".to_owned(), 4), "退");
        assert_eq!(cut("short".to_owned(), 10), "short");
    }
}

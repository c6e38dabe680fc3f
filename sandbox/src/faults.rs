//! Misbehaviour on demand. A `Faults` value replaces the whole current set; counters are
//! consumed as the calls they affect arrive, so `GET /sandbox/faults` shows what is left.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    pub wechat: WechatFaults,
    pub unitel: UnitelFaults,
    pub wecom: WecomFaults,
}

/// The WeCom robot webhook.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WecomFaults {
    /// Answers 503 to everything while true.
    pub down: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WechatFaults {
    /// Added to every `/_/pay/*` call.
    pub latency_ms: u64,
    /// Extra copies of each payment callback, delivered concurrently with the first.
    pub callback_duplicates: u32,
    /// Wait before the first attempt of each payment callback.
    pub callback_delay_ms: u64,
    /// Consumed one per unifiedOrder call, before any validation.
    pub unified_order_errors: Vec<UnifiedOrderError>,
    /// The next N `downloadbill` calls fail at the platform (errcode -1, no respdata).
    pub bill_errors: u32,
    /// The next N valid `downloadbill` calls answer `Bill Creating`, ready or not.
    pub bill_not_ready: u32,
    /// The next N bills served have their first trade line's 应结订单金额 garbled
    /// (`0.01` becomes `0.01x`); the summary still counts the true amount.
    pub bill_malformed_line: u32,
    /// The next N bills served have 应结订单总金额 in the summary 0.01 yuan too high.
    pub bill_totals_off: u32,
    /// These orders are absent from every bill (payment and refund lines) while set.
    pub bill_drop_orders: Vec<String>,
    /// These orders' lines differ in every bill while set; the summary adds up what is shown.
    pub bill_alter_orders: Vec<BillAlteration>,
    /// WeChat Pay APIv3 only (`/v3/*` answers and notifications).
    pub v3: WechatV3Faults,
    /// The next `jscode2session` calls with the right appid and secret answer these
    /// errcodes, one per call (40029, 45011, 40226, -1...).
    pub login_errors: Vec<i64>,
}

/// APIv3 misbehaviour. Counters apply to the next N notification attempts (or answers)
/// and read back as used up. The latency, `unifiedOrderErrors` (prepay) and bill faults
/// above apply to APIv3 as well.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WechatV3Faults {
    /// The signature is a `WECHATPAY/SIGNTEST/…` probe that verifies with no key.
    pub notification_bad_signature: u32,
    /// Signed correctly, with a `Wechatpay-Timestamp` 6 min 40 s old.
    pub notification_old_timestamp: u32,
    /// After the attempt, the very same request (headers, nonce, body) is sent again.
    pub notification_replay: u32,
    /// Signed by a new key, under its own `PUB_KEY_ID_…` serial the merchant was never given.
    pub notification_rotated_key: u32,
    /// Signed by the configured key, with the other key's serial in `Wechatpay-Serial`.
    pub notification_wrong_serial: u32,
    /// The signature covers the whole body; only its first half is sent.
    pub notification_truncated_body: u32,
    /// Extra copies of each payment notification, delivered concurrently (a setting).
    pub notification_duplicates: u32,
    /// The next N answers carry no `Wechatpay-*` headers.
    pub unsigned_answer: u32,
    /// The next N answers carry a signature by the right key over other bytes.
    pub wrong_answer_signature: u32,
    /// The next N refunds end CLOSED (`REFUND.CLOSED`) instead of SUCCESS.
    pub refund_close: u32,
}

/// What one notification attempt carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NotificationFaults {
    pub bad_signature: bool,
    pub old_timestamp: bool,
    pub replay: bool,
    pub rotated_key: bool,
    pub wrong_serial: bool,
    pub truncated_body: bool,
}

impl WechatV3Faults {
    pub(crate) fn take_notification_faults(&mut self) -> NotificationFaults {
        NotificationFaults {
            bad_signature: take_one(&mut self.notification_bad_signature),
            old_timestamp: take_one(&mut self.notification_old_timestamp),
            replay: take_one(&mut self.notification_replay),
            rotated_key: take_one(&mut self.notification_rotated_key),
            wrong_serial: take_one(&mut self.notification_wrong_serial),
            truncated_body: take_one(&mut self.notification_truncated_body),
        }
    }

    pub(crate) fn take_unsigned_answer(&mut self) -> bool {
        take_one(&mut self.unsigned_answer)
    }

    pub(crate) fn take_wrong_answer_signature(&mut self) -> bool {
        take_one(&mut self.wrong_answer_signature)
    }

    pub(crate) fn take_refund_close(&mut self) -> bool {
        take_one(&mut self.refund_close)
    }
}

/// How an order's lines differ from what the simulator holds. `totalFee` (fen) changes the
/// payment line's 应结订单金额 and 订单金额; the ids change every line of the order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BillAlteration {
    pub out_trade_no: String,
    pub total_fee: Option<i64>,
    pub sub_mch_id: Option<String>,
    pub transaction_id: Option<String>,
}

/// `errcode` other than 0 fails the call at the platform (an envelope without respdata);
/// otherwise the call fails inside WeChat Pay with `err_code`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UnifiedOrderError {
    pub errcode: Option<i64>,
    /// Also read as `err_code`, the WeChat Pay spelling.
    #[serde(alias = "err_code")]
    pub err_code: Option<String>,
    #[serde(alias = "err_code_des")]
    pub err_code_des: Option<String>,
}

/// Credit calls are `/service/recharge`, `/service/datapackage` and `/service/payment`.
/// Their faults apply only to a request that is otherwise valid, so a test's deliberate
/// bad request never uses one up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UnitelFaults {
    /// Added to every call, `/auth` included.
    pub latency_ms: u64,
    /// A trigger, not a state: from the moment it is set the port refuses TCP connections
    /// for this long, and the stored value goes back to 0.
    pub refuse_connections_for_ms: u64,
    /// The next N credit calls credit, then never answer.
    pub timeout_after_credit: u32,
    /// The next N credit calls credit, then close the connection without a response.
    pub drop_after_credit: u32,
    /// The next N credit calls answer HTTP 200 `result: failed` and credit nothing.
    pub fail_next: u32,
    /// The next N credit calls answer HTTP 500 and credit nothing.
    pub http_error_next: u32,
    /// Chance (0.0–1.0) that a credit call fails like `fail_next`.
    pub fail_rate: f64,
    /// Chance that a credit call behaves like `timeout_after_credit`.
    pub timeout_after_credit_rate: f64,
    /// Chance that a credit call behaves like `drop_after_credit`.
    pub drop_after_credit_rate: f64,
    /// The next N `/auth` calls answer 401.
    pub auth_fail_next: u32,
    /// Added to every `/auth` call only: a token that is slow to come.
    pub auth_latency_ms: u64,
    /// The next N credit calls answer as they otherwise would, with a NUL character (JSON
    /// `\u0000`) in every text Unitel writes: `code`, `msg`, `sv_id` and the receipt's
    /// `billId` and product names — as an answer built from a C string might.
    pub nul_in_answer_next: u32,
}

/// What a valid credit call does, decided before anything is credited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CreditOutcome {
    Answer,
    HttpError,
    Fail,
    CreditThenHang,
    CreditThenDrop,
}

impl UnitelFaults {
    /// Uses up the counter that decides this call, if any; otherwise rolls the rates.
    pub(crate) fn next_credit_outcome(&mut self, roll: &mut impl FnMut() -> f64) -> CreditOutcome {
        if take_one(&mut self.http_error_next) {
            CreditOutcome::HttpError
        } else if take_one(&mut self.fail_next) {
            CreditOutcome::Fail
        } else if take_one(&mut self.drop_after_credit) {
            CreditOutcome::CreditThenDrop
        } else if take_one(&mut self.timeout_after_credit) {
            CreditOutcome::CreditThenHang
        } else if roll() < self.fail_rate {
            CreditOutcome::Fail
        } else if roll() < self.drop_after_credit_rate {
            CreditOutcome::CreditThenDrop
        } else if roll() < self.timeout_after_credit_rate {
            CreditOutcome::CreditThenHang
        } else {
            CreditOutcome::Answer
        }
    }

    pub(crate) fn take_auth_failure(&mut self) -> bool {
        take_one(&mut self.auth_fail_next)
    }

    pub(crate) fn take_nul_in_answer(&mut self) -> bool {
        take_one(&mut self.nul_in_answer_next)
    }
}

impl WechatFaults {
    pub(crate) fn take_bill_error(&mut self) -> bool {
        take_one(&mut self.bill_errors)
    }

    pub(crate) fn take_bill_not_ready(&mut self) -> bool {
        take_one(&mut self.bill_not_ready)
    }

    pub(crate) fn take_bill_malformed_line(&mut self) -> bool {
        take_one(&mut self.bill_malformed_line)
    }

    pub(crate) fn take_bill_totals_off(&mut self) -> bool {
        take_one(&mut self.bill_totals_off)
    }

    pub(crate) fn take_unified_order_error(&mut self) -> Option<UnifiedOrderError> {
        if self.unified_order_errors.is_empty() {
            None
        } else {
            Some(self.unified_order_errors.remove(0))
        }
    }
}

fn take_one(counter: &mut u32) -> bool {
    if *counter > 0 {
        *counter -= 1;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_optional_and_camel_case() {
        let faults: Faults =
            serde_json::from_str(r#"{"unitel":{"failNext":2,"dropAfterCreditRate":0.5}}"#).unwrap();
        assert_eq!(faults.unitel.fail_next, 2);
        assert_eq!(faults.unitel.drop_after_credit_rate, 0.5);
        assert_eq!(faults.wechat, WechatFaults::default());

        let printed = serde_json::to_value(&faults).unwrap();
        assert!(printed["wechat"]["unifiedOrderErrors"].is_array());

        let both: WechatFaults = serde_json::from_str(
            r#"{"unifiedOrderErrors":[{"errCode":"NOTENOUGH"},{"err_code":"SYSTEMERROR"}]}"#,
        )
        .unwrap();
        assert_eq!(
            both.unified_order_errors[0].err_code.as_deref(),
            Some("NOTENOUGH")
        );
        assert_eq!(
            both.unified_order_errors[1].err_code.as_deref(),
            Some("SYSTEMERROR")
        );
        assert_eq!(printed["unitel"]["refuseConnectionsForMs"], 0);

        let bill: WechatFaults = serde_json::from_str(
            r#"{"billErrors":1,"billNotReady":2,"billMalformedLine":3,"billTotalsOff":4,
                "billDropOrders":["A"],"billAlterOrders":[{"outTradeNo":"B","totalFee":1}]}"#,
        )
        .unwrap();
        assert_eq!(
            (
                bill.bill_errors,
                bill.bill_not_ready,
                bill.bill_malformed_line,
                bill.bill_totals_off
            ),
            (1, 2, 3, 4)
        );
        assert_eq!(bill.bill_drop_orders, vec!["A".to_owned()]);
        assert_eq!(bill.bill_alter_orders[0].total_fee, Some(1));
        assert_eq!(bill.bill_alter_orders[0].sub_mch_id, None);
    }

    #[test]
    fn counters_are_consumed_before_rates() {
        let mut faults = UnitelFaults {
            http_error_next: 1,
            fail_next: 1,
            fail_rate: 1.0,
            ..Default::default()
        };
        let mut never = || 0.99;
        assert_eq!(
            faults.next_credit_outcome(&mut never),
            CreditOutcome::HttpError
        );
        assert_eq!(faults.next_credit_outcome(&mut never), CreditOutcome::Fail);
        assert_eq!(faults.next_credit_outcome(&mut never), CreditOutcome::Fail);
        faults.fail_rate = 0.0;
        assert_eq!(
            faults.next_credit_outcome(&mut never),
            CreditOutcome::Answer
        );
    }

    #[test]
    fn unified_order_errors_are_used_in_order() {
        let mut faults = WechatFaults {
            unified_order_errors: vec![
                UnifiedOrderError {
                    errcode: Some(-1),
                    ..Default::default()
                },
                UnifiedOrderError {
                    err_code: Some("SYSTEMERROR".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(faults.take_unified_order_error().unwrap().errcode, Some(-1));
        assert_eq!(
            faults
                .take_unified_order_error()
                .unwrap()
                .err_code
                .as_deref(),
            Some("SYSTEMERROR")
        );
        assert!(faults.take_unified_order_error().is_none());
    }
}

//! WeChat Pay through the cloud-hosting open interface service: plain JSON over HTTP, no
//! token or signature (the platform adds identity), v2 field names, and a two-level
//! answer: `errcode` says whether the platform relayed the call, `respdata` holds WeChat
//! Pay's own verdict.

use chrono::NaiveDate;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::money::Fen;
use shared::order::OrderNumber;

use super::settings::WechatConfig;
use super::{
    AcceptedRefund, BillDownload, CloseOutcome, PrepaidOrder, QueriedOrder, QueryAnswer,
    RefundState, TradeBill, WechatError,
};

pub struct CloudPay {
    http: reqwest::Client,
    config: WechatConfig,
}

impl CloudPay {
    pub fn new(config: WechatConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(config.timeout).build()?;
        Ok(CloudPay { http, config })
    }

    pub fn merchant_id(&self) -> &str {
        &self.config.mch_id
    }

    pub(super) async fn unified_order(
        &self,
        payment: &super::PaymentToPrepare<'_>,
    ) -> Result<PrepaidOrder, WechatError> {
        let super::PaymentToPrepare {
            order_number,
            openid,
            amount,
            description,
            attach,
            ..
        } = *payment;
        let body = json!({
            "body": description,
            "openid": openid.as_str(),
            "out_trade_no": order_number.as_str(),
            "spbill_create_ip": self.config.server_ip,
            "env_id": self.config.env_id,
            "sub_mch_id": self.config.mch_id,
            "total_fee": amount.get(),
            "callback_type": 2,
            "trade_type": "JSAPI",
            // Echoed back in the callback: one more thing a forger has to get right.
            "attach": attach,
            "container": {
                "service": self.config.callback_service,
                // The full path with the order number: nothing documents the platform
                // appending it, so we never rely on it.
                "path": format!("{}/{}", self.config.callback_path, order_number),
            },
        });
        #[derive(Deserialize)]
        struct Answer {
            prepay_id: Option<String>,
            payment: Option<Value>,
        }
        let answer: Answer = self.call("unifiedOrder", &body).await?;
        match (answer.prepay_id, answer.payment) {
            (Some(prepay_id), Some(payment)) if payment.is_object() => {
                Ok(PrepaidOrder { prepay_id, payment })
            }
            _ => Err(WechatError::Platform(
                "unifiedOrder succeeded without a payment to start".into(),
            )),
        }
    }

    pub async fn query_order(
        &self,
        order_number: &OrderNumber,
    ) -> Result<QueriedOrder, WechatError> {
        let answer: QueryAnswer = self
            .call(
                "queryorder",
                &json!({"out_trade_no": order_number.as_str(), "sub_mch_id": self.config.mch_id}),
            )
            .await?;
        Ok(answer.into())
    }

    /// Closes an unpaid order at WeChat so that it can no longer be paid.
    pub async fn close_order(
        &self,
        order_number: &OrderNumber,
    ) -> Result<CloseOutcome, WechatError> {
        let closed: Result<Value, WechatError> = self
            .call(
                "closeorder",
                &json!({"out_trade_no": order_number.as_str(), "sub_mch_id": self.config.mch_id}),
            )
            .await;
        match closed {
            Ok(_) => Ok(CloseOutcome::Closed),
            Err(WechatError::Business { code, .. }) if code == "ORDERCLOSED" => {
                Ok(CloseOutcome::Closed)
            }
            Err(WechatError::Business { code, .. }) if code == "ORDERPAID" => {
                Ok(CloseOutcome::AlreadyPaid)
            }
            Err(other) => Err(other),
        }
    }

    /// Asks WeChat to return `refund_fee` of the order's `total_fee`. Idempotent per
    /// `out_refund_no`: sending it again never refunds twice. Success means *accepted*.
    pub async fn refund(
        &self,
        order_number: &OrderNumber,
        out_refund_no: &str,
        total_fee: Fen,
        refund_fee: Fen,
        reason: &str,
    ) -> Result<AcceptedRefund, WechatError> {
        let reason: String = reason.chars().take(80).collect();
        self.call(
            "refund",
            &json!({
                "body": "境外话费充值退款",
                "out_trade_no": order_number.as_str(),
                "out_refund_no": out_refund_no,
                "env_id": self.config.env_id,
                "sub_mch_id": self.config.mch_id,
                "total_fee": total_fee.get(),
                "refund_fee": refund_fee.get(),
                "refund_desc": reason,
                "callback_type": 2,
                "container": {
                    "service": self.config.callback_service,
                    "path": format!("{}/{}", self.config.refund_callback_path, order_number),
                },
            }),
        )
        .await
    }

    /// The refunds of an order and their states.
    pub async fn query_refunds(
        &self,
        order_number: &OrderNumber,
    ) -> Result<Vec<RefundState>, WechatError> {
        let respdata: Value = self
            .call(
                "queryrefund",
                &json!({"out_trade_no": order_number.as_str(), "sub_mch_id": self.config.mch_id}),
            )
            .await?;
        Ok(RefundState::from_respdata(&respdata))
    }

    /// The trade bill of `date` (a China date), every payment and refund of the day.
    /// WeChat generates it from 09:00 China time the next day (10:00 to be safe) and keeps
    /// it three months; before it exists the answer is [`BillDownload::NotReady`].
    pub async fn download_bill(&self, date: NaiveDate) -> Result<BillDownload, WechatError> {
        let respdata = self
            .relay(
                "downloadbill",
                &json!({
                    "bill_date": date.format("%Y%m%d").to_string(),
                    "bill_type": "ALL",
                    "sub_mch_id": self.config.mch_id,
                }),
            )
            .await?;
        read_bill(respdata)
    }

    async fn call<T: DeserializeOwned>(&self, name: &str, body: &Value) -> Result<T, WechatError> {
        let respdata = self.relay(name, body).await?;
        let field = |key: &str| respdata.get(key).and_then(Value::as_str).unwrap_or("");
        if field("return_code") != "SUCCESS" {
            return Err(WechatError::Platform(format!(
                "{name}: return_code {:?} {}",
                field("return_code"),
                field("return_msg")
            )));
        }
        if field("result_code") != "SUCCESS" {
            return Err(WechatError::Business {
                code: field("err_code").to_owned(),
                description: field("err_code_des").to_owned(),
            });
        }
        serde_json::from_value(respdata)
            .map_err(|e| WechatError::Platform(format!("{name}: unexpected respdata: {e}")))
    }

    /// `respdata` of a call the platform relayed (`errcode` 0).
    async fn relay(&self, name: &str, body: &Value) -> Result<Value, WechatError> {
        let url = format!("{}/_/pay/{name}", self.config.api_base);
        let response = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| WechatError::Platform(format!("{name}: {e}")))?;
        let seq_id = response
            .headers()
            .get("x-openapi-seqid")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let status = response.status();
        let envelope: Value = response.json().await.map_err(|e| {
            WechatError::Platform(format!("{name}: HTTP {status}, unreadable answer: {e}"))
        })?;
        tracing::debug!(call = name, openapi_seqid = %seq_id, "WeChat Pay answered");
        let errcode = envelope.get("errcode").and_then(Value::as_i64);
        if errcode != Some(0) {
            return Err(WechatError::Platform(format!(
                "{name}: errcode {} {}",
                errcode.map_or("missing".into(), |c| c.to_string()),
                envelope.get("errmsg").and_then(Value::as_str).unwrap_or("")
            )));
        }
        Ok(envelope.get("respdata").cloned().unwrap_or(Value::Null))
    }
}

/// `downloadbill`'s respdata: the bill as text, or a refusal.
fn read_bill(respdata: Value) -> Result<BillDownload, WechatError> {
    match respdata {
        // A refusal relayed as text rather than as an object is still a refusal, never a
        // bill to read.
        Value::String(text) => match serde_json::from_str::<Value>(&text) {
            Ok(refusal @ Value::Object(_)) => bill_refusal(&refusal),
            _ => Ok(BillDownload::Ready(TradeBill::from_text(text))),
        },
        refusal => bill_refusal(&refusal),
    }
}

/// A `downloadbill` answer without a bill: `{"return_code": "FAIL", "return_msg",
/// "error_code"}`. WeChat Pay's documented identifier is `return_msg` (`No Bill Exist`,
/// `Bill Creating`); `error_code` is not specific enough to tell them apart.
fn bill_refusal(respdata: &Value) -> Result<BillDownload, WechatError> {
    let text = |key: &str| match respdata.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    if text("return_code") != "FAIL" {
        return Err(WechatError::Platform(format!(
            "downloadbill: neither a bill nor a refusal: {respdata}"
        )));
    }
    let message = text("return_msg");
    match message.trim().to_ascii_lowercase().as_str() {
        "no bill exist" => Ok(BillDownload::NoBill),
        "bill creating" => Ok(BillDownload::NotReady),
        _ => Err(WechatError::Business {
            code: Some(text("error_code"))
                .filter(|code| !code.is_empty())
                .unwrap_or_else(|| message.clone()),
            description: message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(return_msg: &str, error_code: &str) -> Value {
        json!({"return_code": "FAIL", "return_msg": return_msg, "error_code": error_code})
    }

    #[test]
    fn bill_refusals_are_told_apart_by_return_msg() {
        assert_eq!(
            read_bill(refusal("No Bill Exist", "20002")).unwrap(),
            BillDownload::NoBill
        );
        // As documented, with a capital O.
        assert_eq!(
            read_bill(refusal("NO Bill Exist", "20002")).unwrap(),
            BillDownload::NoBill
        );
        assert_eq!(
            read_bill(refusal("Bill Creating", "20002")).unwrap(),
            BillDownload::NotReady
        );
        match read_bill(refusal("data format error", "20001")) {
            Err(WechatError::Business { code, description }) => {
                assert_eq!(
                    (code.as_str(), description.as_str()),
                    ("20001", "data format error")
                );
            }
            other => panic!("{other:?}"),
        }
        // Relayed as text, a refusal is still one.
        let as_text = refusal("Bill Creating", "20002").to_string();
        assert_eq!(
            read_bill(Value::String(as_text)).unwrap(),
            BillDownload::NotReady
        );
        for nothing in [
            Value::Null,
            json!({}),
            json!({"return_code": "SUCCESS"}),
            json!(7),
        ] {
            assert!(
                matches!(read_bill(nothing.clone()), Err(WechatError::Platform(_))),
                "{nothing}"
            );
        }
    }

    #[test]
    fn bill_text_is_read() {
        match read_bill(Value::String("not a bill".into())).unwrap() {
            BillDownload::Ready(bill) => assert!(!bill.balances()),
            other => panic!("{other:?}"),
        }
    }
}

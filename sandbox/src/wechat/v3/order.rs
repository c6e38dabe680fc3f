//! What an APIv3 order adds to an order, and the transaction and refund objects APIv3
//! answers with (query, refund, and the plaintext of notifications).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ids;
use crate::wechat::orders::{WechatOrder, WechatRefund};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V3Order {
    /// Direct: `appid`; partner: `sub_appid` (empty when not sent).
    pub appid: String,
    /// Direct: `mchid`; partner: `sub_mchid`.
    pub mchid: String,
    /// Partner form only.
    pub sp_appid: Option<String>,
    pub sp_mchid: Option<String>,
    pub notify_url: String,
    /// The payer field the prepay used: `openid`, `sp_openid` or `sub_openid`.
    pub payer_field: String,
    /// RFC 3339, as given.
    pub time_expire: Option<String>,
}

impl V3Order {
    /// 公众账号ID, 商户号, 特约商户号 of this order's bill lines: `0` for a direct trade.
    pub(crate) fn bill_ids(&self) -> (String, String, String) {
        match (&self.sp_appid, &self.sp_mchid) {
            (Some(sp_appid), Some(sp_mchid)) => {
                (sp_appid.clone(), sp_mchid.clone(), self.mchid.clone())
            }
            _ => (self.appid.clone(), self.mchid.clone(), "0".to_owned()),
        }
    }

    fn is_partner(&self) -> bool {
        self.sp_mchid.is_some()
    }

    /// The merchant ids as the direct or partner objects carry them.
    fn ids_into(&self, object: &mut Value) {
        if let (Some(sp_appid), Some(sp_mchid)) = (&self.sp_appid, &self.sp_mchid) {
            object["sp_appid"] = sp_appid.as_str().into();
            object["sp_mchid"] = sp_mchid.as_str().into();
            object["sub_mchid"] = self.mchid.as_str().into();
            if !self.appid.is_empty() {
                object["sub_appid"] = self.appid.as_str().into();
            }
        } else {
            object["appid"] = self.appid.as_str().into();
            object["mchid"] = self.mchid.as_str().into();
        }
    }
}

/// RFC 3339 in China time, as APIv3 writes times (`2026-12-04T13:29:35+08:00`).
pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    ids::utc_plus_8(at)
        .format("%Y-%m-%dT%H:%M:%S+08:00")
        .to_string()
}

/// `yyyy-MM-dd HH:mm:ss` China time (how refunds keep their success time) as RFC 3339.
fn readable_to_rfc3339(text: &str) -> Option<String> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|at| at.format("%Y-%m-%dT%H:%M:%S+08:00").to_string())
}

/// The transaction as `GET …/out-trade-no/{no}` answers it and `TRANSACTION.SUCCESS`
/// carries it.
pub(crate) fn transaction(order: &WechatOrder) -> Value {
    let mut object = json!({
        "out_trade_no": order.out_trade_no,
        "trade_type": "JSAPI",
        "trade_state": order.trade_state.as_str(),
        "trade_state_desc": order.trade_state.description(),
        "attach": order.attach.clone().unwrap_or_default(),
        "amount": {"total": order.total_fee, "currency": "CNY", "payer_currency": "CNY"},
        "payer": {},
    });
    if let Some(v3) = &order.v3 {
        v3.ids_into(&mut object);
        object["payer"] = json!({ v3.payer_field.as_str(): order.openid });
    }
    if let (Some(transaction_id), Some(paid_at)) = (&order.transaction_id, order.paid_at) {
        object["transaction_id"] = transaction_id.as_str().into();
        object["bank_type"] = "OTHERS".into();
        object["success_time"] = rfc3339(paid_at).into();
        object["amount"]["payer_total"] = order.total_fee.into();
    }
    object
}

/// The refund as create and query answer it.
pub(crate) fn refund(order: &WechatOrder, refund: &WechatRefund) -> Value {
    let mut object = json!({
        "refund_id": refund.refund_id,
        "out_refund_no": refund.out_refund_no,
        "transaction_id": order.transaction_id,
        "out_trade_no": order.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": rfc3339(refund.requested_at),
        "status": refund.status.as_str(),
        "funds_account": "AVAILABLE",
        "amount": amounts(order, refund),
        "promotion_detail": [],
    });
    if let Some(success_time) = refund.success_time.as_deref().and_then(readable_to_rfc3339) {
        object["success_time"] = success_time.into();
    }
    if let Some(v3) = order.v3.as_ref().filter(|v3| v3.is_partner()) {
        object["sub_mchid"] = v3.mchid.as_str().into();
    }
    object
}

/// The plaintext of a `REFUND.*` notification: `refund_status`, and the merchant ids.
pub(crate) fn refund_notice(order: &WechatOrder, refund: &WechatRefund) -> Value {
    let mut object = json!({
        "out_trade_no": order.out_trade_no,
        "transaction_id": order.transaction_id,
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_id,
        "refund_status": refund.status.as_str(),
        "user_received_account": "支付用户零钱",
        "amount": {
            "total": order.total_fee,
            "refund": refund.refund_fee,
            "payer_total": order.total_fee,
            "payer_refund": refund.refund_fee,
        },
    });
    if let Some(success_time) = refund.success_time.as_deref().and_then(readable_to_rfc3339) {
        object["success_time"] = success_time.into();
    }
    if let Some(v3) = &order.v3 {
        match (&v3.sp_mchid, v3.is_partner()) {
            (Some(sp_mchid), true) => {
                object["sp_mchid"] = sp_mchid.as_str().into();
                object["sub_mchid"] = v3.mchid.as_str().into();
            }
            _ => object["mchid"] = v3.mchid.as_str().into(),
        }
    }
    object
}

fn amounts(order: &WechatOrder, refund: &WechatRefund) -> Value {
    json!({
        "total": order.total_fee,
        "refund": refund.refund_fee,
        "from": [],
        "payer_total": order.total_fee,
        "payer_refund": refund.refund_fee,
        "settlement_total": order.total_fee,
        "settlement_refund": refund.refund_fee,
        "discount_refund": 0,
        "currency": "CNY",
        "refund_fee": 0,
    })
}

//! The simulated merchant's orders and refunds, and every state change they allow.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::error::SandboxError;
use crate::ids;
use crate::sync::lock;
use crate::wechat::envelope::{WxPayFailure, PROVIDER_APPID, PROVIDER_MCH_ID};
pub use crate::wechat::v3::order::V3Order;

/// WeChat Pay's trade states, of which the sandbox reaches these four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TradeState {
    #[serde(rename = "NOTPAY")]
    NotPay,
    #[serde(rename = "SUCCESS")]
    Success,
    #[serde(rename = "CLOSED")]
    Closed,
    /// Paid, and at least one refund was accepted.
    #[serde(rename = "REFUND")]
    Refund,
}

impl TradeState {
    pub fn as_str(self) -> &'static str {
        match self {
            TradeState::NotPay => "NOTPAY",
            TradeState::Success => "SUCCESS",
            TradeState::Closed => "CLOSED",
            TradeState::Refund => "REFUND",
        }
    }

    pub(crate) fn description(self) -> &'static str {
        match self {
            TradeState::NotPay => "订单未支付",
            TradeState::Success => "支付成功",
            TradeState::Closed => "订单已关闭",
            TradeState::Refund => "订单发生过退款，退款详情请查询退款单",
        }
    }

    /// SUCCESS or REFUND: money was taken.
    pub fn is_paid(self) -> bool {
        matches!(self, TradeState::Success | TradeState::Refund)
    }
}

impl fmt::Display for TradeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for TradeState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundStatus {
    #[serde(rename = "PROCESSING")]
    Processing,
    #[serde(rename = "SUCCESS")]
    Success,
    /// Failed for good (APIv3 `REFUND.CLOSED`); only the `refundCloseNext` fault leads here.
    #[serde(rename = "CLOSED")]
    Closed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Processing => "PROCESSING",
            RefundStatus::Success => "SUCCESS",
            RefundStatus::Closed => "CLOSED",
        }
    }
}

impl PartialEq<&str> for RefundStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WechatOrder {
    pub out_trade_no: String,
    /// Fen.
    pub total_fee: i64,
    /// The payer's openid in the mini-program, as given to unifiedOrder.
    pub openid: String,
    pub sub_mch_id: String,
    pub attach: Option<String>,
    pub body: String,
    pub env_id: String,
    pub spbill_create_ip: String,
    pub container_service: String,
    pub container_path: String,
    pub trade_state: TradeState,
    pub prepay_id: String,
    pub transaction_id: Option<String>,
    /// `yyyyMMddHHmmss`, UTC+8.
    pub time_end: Option<String>,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub refunds: Vec<WechatRefund>,
    /// Which interface placed the order; every later call must come the same way.
    #[serde(default)]
    pub protocol: Protocol,
    /// What an APIv3 prepay adds (merchant ids, notify_url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v3: Option<V3Order>,
}

/// How an order reached the simulated WeChat Pay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Protocol {
    /// Cloud Hosting's open interface (`/_/pay/*`), callbacks to the container path.
    #[default]
    Cloud,
    /// WeChat Pay APIv3 (`/v3/*`), signed, notifications to `notify_url`.
    ApiV3,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WechatRefund {
    pub out_refund_no: String,
    pub refund_id: String,
    /// Fen.
    pub refund_fee: i64,
    pub refund_desc: Option<String>,
    pub container_service: String,
    pub container_path: String,
    pub status: RefundStatus,
    pub requested_at: DateTime<Utc>,
    /// `yyyy-MM-dd HH:mm:ss`, UTC+8, once the refund succeeded.
    pub success_time: Option<String>,
    /// APIv3 only: where the refund's result is notified (none given: nobody is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
}

/// An order already paid at WeChat, seeded in bulk (`POST /sandbox/wechat/orders/bulk`):
/// the history a benchmark or a reconciliation test starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaidOrder {
    pub out_trade_no: String,
    /// Fen.
    pub total_fee: i64,
    pub transaction_id: String,
    /// `yyyyMMddHHmmss`, UTC+8.
    pub time_end: String,
    /// The payer's openid in the mini-program.
    pub openid: String,
}

/// One line of a trade bill, as the simulator holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BillEntry {
    /// `yyyy-MM-dd HH:mm:ss`, UTC+8: the payment's time_end, or when the refund was made.
    pub time: String,
    pub out_trade_no: String,
    pub transaction_id: String,
    pub openid: String,
    pub sub_mch_id: String,
    /// Fen.
    pub total_fee: i64,
    pub body: String,
    pub attach: String,
    pub refund: Option<BillRefund>,
    pub protocol: Protocol,
    /// 公众账号ID and 商户号: the provider's for cloud orders, the merchant's (or the
    /// service provider's) for APIv3 ones.
    pub appid: String,
    pub mch_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BillRefund {
    pub refund_id: String,
    pub out_refund_no: String,
    /// Fen.
    pub refund_fee: i64,
    pub status: RefundStatus,
}

/// What unifiedOrder asks for, already validated.
#[derive(Debug, Clone)]
pub(crate) struct NewOrder {
    pub out_trade_no: String,
    pub total_fee: i64,
    pub openid: String,
    pub sub_mch_id: String,
    pub attach: Option<String>,
    pub body: String,
    pub env_id: String,
    pub spbill_create_ip: String,
    pub container_service: String,
    pub container_path: String,
    pub v3: Option<V3Order>,
}

/// What refund asks for, already validated.
#[derive(Debug, Clone)]
pub(crate) struct NewRefund {
    pub out_trade_no: String,
    pub out_refund_no: String,
    pub total_fee: i64,
    pub refund_fee: i64,
    pub refund_desc: Option<String>,
    pub container_service: String,
    pub container_path: String,
    pub notify_url: Option<String>,
}

/// WeChat Pay v2 allows at most this many partial refunds per order.
const MAX_REFUNDS_PER_ORDER: usize = 50;

#[derive(Default)]
pub(crate) struct OrderBook {
    orders: Mutex<HashMap<String, WechatOrder>>,
}

impl OrderBook {
    pub(crate) fn get(&self, out_trade_no: &str) -> Option<WechatOrder> {
        lock(&self.orders).get(out_trade_no).cloned()
    }

    pub(crate) fn find(
        &self,
        out_trade_no: Option<&str>,
        transaction_id: Option<&str>,
    ) -> Option<WechatOrder> {
        let orders = lock(&self.orders);
        match (out_trade_no, transaction_id) {
            (Some(no), _) => orders.get(no).cloned(),
            (None, Some(id)) => orders
                .values()
                .find(|order| order.transaction_id.as_deref() == Some(id))
                .cloned(),
            (None, None) => None,
        }
    }

    pub(crate) fn all(&self) -> Vec<WechatOrder> {
        let mut orders: Vec<_> = lock(&self.orders).values().cloned().collect();
        orders.sort_by_key(|order| order.created_at);
        orders
    }

    pub(crate) fn clear(&self) {
        lock(&self.orders).clear();
    }

    /// Creates the order, or returns the existing one when the same order is placed again.
    pub(crate) fn place(&self, new: NewOrder) -> Result<WechatOrder, WxPayFailure> {
        let mut orders = lock(&self.orders);
        if let Some(existing) = orders.get(&new.out_trade_no) {
            return match existing.trade_state {
                TradeState::Success | TradeState::Refund => {
                    Err(WxPayFailure::new("ORDERPAID", "该订单已支付"))
                }
                TradeState::Closed => Err(WxPayFailure::new("ORDERCLOSED", "该订单已关闭")),
                TradeState::NotPay
                    if existing.total_fee != new.total_fee
                        || existing.openid != new.openid
                        || existing.v3.is_some() != new.v3.is_some() =>
                {
                    Err(WxPayFailure::new(
                        "OUT_TRADE_NO_USED",
                        "商户订单号重复，同一笔交易不能多次提交",
                    ))
                }
                TradeState::NotPay => Ok(existing.clone()),
            };
        }
        let now = Utc::now();
        let protocol = match new.v3 {
            Some(_) => Protocol::ApiV3,
            None => Protocol::Cloud,
        };
        let order = WechatOrder {
            out_trade_no: new.out_trade_no,
            total_fee: new.total_fee,
            openid: new.openid,
            sub_mch_id: new.sub_mch_id,
            attach: new.attach,
            body: new.body,
            env_id: new.env_id,
            spbill_create_ip: new.spbill_create_ip,
            container_service: new.container_service,
            container_path: new.container_path,
            trade_state: TradeState::NotPay,
            prepay_id: ids::prepay_id(now),
            transaction_id: None,
            time_end: None,
            created_at: now,
            paid_at: None,
            closed_at: None,
            refunds: Vec::new(),
            protocol,
            v3: new.v3,
        };
        orders.insert(order.out_trade_no.clone(), order.clone());
        Ok(order)
    }

    /// The simulated user pays: NOTPAY becomes SUCCESS with a fresh transaction id.
    pub(crate) fn pay(&self, out_trade_no: &str) -> Result<WechatOrder, SandboxError> {
        let mut orders = lock(&self.orders);
        let order = orders
            .get_mut(out_trade_no)
            .ok_or_else(|| SandboxError::OrderNotFound(out_trade_no.to_owned()))?;
        match order.trade_state {
            TradeState::NotPay => {
                let now = Utc::now();
                order.trade_state = TradeState::Success;
                order.transaction_id = Some(ids::transaction_id(now));
                order.time_end = Some(ids::compact_time(now));
                order.paid_at = Some(now);
                Ok(order.clone())
            }
            TradeState::Closed => Err(SandboxError::OrderClosed(out_trade_no.to_owned())),
            TradeState::Success | TradeState::Refund => Err(SandboxError::AlreadyPaid {
                out_trade_no: out_trade_no.to_owned(),
                transaction_id: order.transaction_id.clone().unwrap_or_default(),
            }),
        }
    }

    pub(crate) fn close(&self, out_trade_no: &str, min_age: Duration) -> Result<(), WxPayFailure> {
        let mut orders = lock(&self.orders);
        let order = orders.get_mut(out_trade_no).ok_or_else(order_not_found)?;
        match order.trade_state {
            TradeState::Success | TradeState::Refund => {
                Err(WxPayFailure::new("ORDERPAID", "订单已支付，不能发起关单"))
            }
            TradeState::Closed => Err(WxPayFailure::new("ORDERCLOSED", "订单已关闭，无法重复关闭")),
            TradeState::NotPay => {
                let age = (Utc::now() - order.created_at).to_std().unwrap_or_default();
                if age < min_age {
                    // The documented rule is "no close within 5 minutes of creation"; its
                    // error code is not documented. SYSTEMERROR ("retry later with the same
                    // parameters") is our plausible guess.
                    return Err(WxPayFailure::new(
                        "SYSTEMERROR",
                        format!(
                            "订单生成后不能马上调用关单接口，最短调用时间间隔为{}秒",
                            min_age.as_secs()
                        ),
                    ));
                }
                order.trade_state = TradeState::Closed;
                order.closed_at = Some(Utc::now());
                Ok(())
            }
        }
    }

    /// Accepts a refund, or returns the one already accepted under the same
    /// `out_refund_no`. The flag says whether it is new (and so needs processing).
    pub(crate) fn request_refund(
        &self,
        new: NewRefund,
    ) -> Result<(WechatOrder, WechatRefund, bool), WxPayFailure> {
        let mut orders = lock(&self.orders);
        let order = orders
            .get_mut(&new.out_trade_no)
            .ok_or_else(order_not_found)?;
        if let Some(existing) = order
            .refunds
            .iter()
            .find(|refund| refund.out_refund_no == new.out_refund_no)
        {
            if existing.refund_fee != new.refund_fee || order.total_fee != new.total_fee {
                return Err(WxPayFailure::new(
                    "REFUND_FEE_MISMATCH",
                    "订单金额或退款金额与之前请求不一致，请核实后再试",
                ));
            }
            let existing = existing.clone();
            return Ok((order.clone(), existing, false));
        }
        match order.trade_state {
            TradeState::NotPay => return Err(WxPayFailure::new("ERROR", "订单未支付")),
            TradeState::Closed => return Err(WxPayFailure::new("ERROR", "订单已关闭")),
            TradeState::Success | TradeState::Refund => {}
        }
        if new.total_fee != order.total_fee {
            return Err(WxPayFailure::new(
                "PARAM_ERROR",
                "订单金额total_fee与实际不符",
            ));
        }
        let refunded: i64 = order
            .refunds
            .iter()
            .filter(|refund| refund.status != RefundStatus::Closed)
            .map(|refund| refund.refund_fee)
            .sum();
        if refunded + new.refund_fee > order.total_fee {
            return Err(WxPayFailure::new("ERROR", "累计退款金额大于支付金额"));
        }
        if order.refunds.len() >= MAX_REFUNDS_PER_ORDER {
            return Err(WxPayFailure::new("ERROR", "退款次数超过限制"));
        }
        let refund = WechatRefund {
            out_refund_no: new.out_refund_no,
            refund_id: ids::refund_id(),
            refund_fee: new.refund_fee,
            refund_desc: new.refund_desc,
            container_service: new.container_service,
            container_path: new.container_path,
            status: RefundStatus::Processing,
            requested_at: Utc::now(),
            success_time: None,
            notify_url: new.notify_url,
        };
        order.refunds.push(refund.clone());
        order.trade_state = TradeState::Refund;
        Ok((order.clone(), refund, true))
    }

    /// Adds orders that are paid already. All or none: an invalid order or a number the
    /// simulator holds refuses the whole batch.
    pub(crate) fn seed_paid(
        &self,
        seeded: Vec<PaidOrder>,
        sub_mch_id: &str,
    ) -> Result<usize, SandboxError> {
        let mut ready = Vec::with_capacity(seeded.len());
        let mut numbers = std::collections::HashSet::with_capacity(seeded.len());
        for paid in seeded {
            let invalid = |why: &str| {
                SandboxError::InvalidRequest(format!("order {:?}: {why}", paid.out_trade_no))
            };
            if !crate::wechat::envelope::is_merchant_number(&paid.out_trade_no, 1..=32, &[]) {
                return Err(invalid("outTradeNo must be 1-32 of [0-9A-Za-z_-|*]"));
            }
            if paid.total_fee <= 0 {
                return Err(invalid("totalFee must be a positive number of fen"));
            }
            if paid.transaction_id.is_empty() || paid.openid.is_empty() {
                return Err(invalid("transactionId and openid are required"));
            }
            let paid_at = china_compact_time(&paid.time_end)
                .ok_or_else(|| invalid("timeEnd must be yyyyMMddHHmmss"))?;
            if !numbers.insert(paid.out_trade_no.clone()) {
                return Err(SandboxError::OrderExists(paid.out_trade_no));
            }
            ready.push((paid, paid_at));
        }
        let mut orders = lock(&self.orders);
        if let Some(taken) = ready
            .iter()
            .find(|(paid, _)| orders.contains_key(&paid.out_trade_no))
        {
            return Err(SandboxError::OrderExists(taken.0.out_trade_no.clone()));
        }
        let count = ready.len();
        orders.reserve(count);
        for (paid, paid_at) in ready {
            let order = WechatOrder {
                out_trade_no: paid.out_trade_no.clone(),
                total_fee: paid.total_fee,
                openid: paid.openid,
                sub_mch_id: sub_mch_id.to_owned(),
                attach: None,
                body: SEEDED_BODY.to_owned(),
                env_id: String::new(),
                spbill_create_ip: String::new(),
                container_service: String::new(),
                container_path: String::new(),
                trade_state: TradeState::Success,
                prepay_id: ids::prepay_id(paid_at),
                transaction_id: Some(paid.transaction_id),
                time_end: Some(paid.time_end),
                created_at: paid_at,
                paid_at: Some(paid_at),
                closed_at: None,
                refunds: Vec::new(),
                protocol: Protocol::Cloud,
                v3: None,
            };
            orders.insert(paid.out_trade_no, order);
        }
        Ok(count)
    }

    /// A refund made at WeChat by hand (the merchant platform), not through the API: WeChat
    /// numbers it itself (inferred: `out_refund_no` is the refund id) and calls nobody back.
    pub(crate) fn refund_outside(
        &self,
        out_trade_no: &str,
        refund_fee: i64,
    ) -> Result<(WechatOrder, WechatRefund), SandboxError> {
        let mut orders = lock(&self.orders);
        let order = orders
            .get_mut(out_trade_no)
            .ok_or_else(|| SandboxError::OrderNotFound(out_trade_no.to_owned()))?;
        if !order.trade_state.is_paid() {
            return Err(SandboxError::RefundRefused(format!(
                "{out_trade_no} is {}, not paid",
                order.trade_state
            )));
        }
        let refunded: i64 = order.refunds.iter().map(|refund| refund.refund_fee).sum();
        if refund_fee <= 0 || refunded + refund_fee > order.total_fee {
            return Err(SandboxError::RefundRefused(format!(
                "{refund_fee} fen: {refunded} of {} are refunded already",
                order.total_fee
            )));
        }
        if order.refunds.len() >= MAX_REFUNDS_PER_ORDER {
            return Err(SandboxError::RefundRefused("too many refunds".into()));
        }
        let refund_id = ids::refund_id();
        let refund = WechatRefund {
            out_refund_no: refund_id.clone(),
            refund_id,
            refund_fee,
            refund_desc: None,
            container_service: String::new(),
            container_path: String::new(),
            status: RefundStatus::Processing,
            requested_at: Utc::now(),
            success_time: None,
            notify_url: None,
        };
        order.refunds.push(refund.clone());
        order.trade_state = TradeState::Refund;
        Ok((order.clone(), refund))
    }

    /// Every payment whose time_end falls on `date` and every refund made that day (both
    /// China dates), unsorted.
    pub(crate) fn bill_entries(&self, date: NaiveDate) -> Vec<BillEntry> {
        let compact_date = date.format("%Y%m%d").to_string();
        let orders = lock(&self.orders);
        let mut entries = Vec::new();
        for order in orders.values() {
            let (Some(transaction_id), Some(time_end)) = (&order.transaction_id, &order.time_end)
            else {
                continue;
            };
            if !order.trade_state.is_paid() {
                continue;
            }
            let (appid, mch_id, sub_mch_id) = match &order.v3 {
                None => (
                    PROVIDER_APPID.to_owned(),
                    PROVIDER_MCH_ID.to_owned(),
                    order.sub_mch_id.clone(),
                ),
                Some(v3) => v3.bill_ids(),
            };
            let entry = |time: String, refund: Option<BillRefund>| BillEntry {
                time,
                out_trade_no: order.out_trade_no.clone(),
                transaction_id: transaction_id.clone(),
                openid: order.openid.clone(),
                sub_mch_id: sub_mch_id.clone(),
                total_fee: order.total_fee,
                body: order.body.clone(),
                attach: order.attach.clone().unwrap_or_default(),
                refund,
                protocol: order.protocol,
                appid: appid.clone(),
                mch_id: mch_id.clone(),
            };
            if time_end.get(..8) == Some(compact_date.as_str()) {
                if let Some(time) = readable_compact_time(time_end) {
                    entries.push(entry(time, None));
                }
            }
            for refund in &order.refunds {
                if ids::utc_plus_8(refund.requested_at).date_naive() == date {
                    entries.push(entry(
                        ids::readable_time(refund.requested_at),
                        Some(BillRefund {
                            refund_id: refund.refund_id.clone(),
                            out_refund_no: refund.out_refund_no.clone(),
                            refund_fee: refund.refund_fee,
                            status: refund.status,
                        }),
                    ));
                }
            }
        }
        entries
    }

    /// PROCESSING becomes SUCCESS; `None` when there was nothing to complete.
    pub(crate) fn complete_refund(
        &self,
        out_trade_no: &str,
        out_refund_no: &str,
    ) -> Option<(WechatOrder, WechatRefund)> {
        let mut orders = lock(&self.orders);
        let order = orders.get_mut(out_trade_no)?;
        let refund = order
            .refunds
            .iter_mut()
            .find(|refund| refund.out_refund_no == out_refund_no)?;
        if refund.status != RefundStatus::Processing {
            return None;
        }
        refund.status = RefundStatus::Success;
        refund.success_time = Some(ids::readable_time(Utc::now()));
        let refund = refund.clone();
        Some((order.clone(), refund))
    }

    /// PROCESSING becomes CLOSED (the money stays with the merchant); `None` when there was
    /// nothing to close.
    pub(crate) fn close_refund(
        &self,
        out_trade_no: &str,
        out_refund_no: &str,
    ) -> Option<(WechatOrder, WechatRefund)> {
        let mut orders = lock(&self.orders);
        let order = orders.get_mut(out_trade_no)?;
        let refund = order
            .refunds
            .iter_mut()
            .find(|refund| refund.out_refund_no == out_refund_no)?;
        if refund.status != RefundStatus::Processing {
            return None;
        }
        refund.status = RefundStatus::Closed;
        let refund = refund.clone();
        Some((order.clone(), refund))
    }
}

/// The product description of seeded orders.
const SEEDED_BODY: &str = "境外话费充值";

/// `yyyyMMddHHmmss` in UTC+8 as an instant.
fn china_compact_time(text: &str) -> Option<DateTime<Utc>> {
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let local = NaiveDateTime::parse_from_str(text, "%Y%m%d%H%M%S").ok()?;
    let china = chrono::FixedOffset::east_opt(8 * 3600)?;
    Some(
        china
            .from_local_datetime(&local)
            .single()?
            .with_timezone(&Utc),
    )
}

/// `yyyyMMddHHmmss` as `yyyy-MM-dd HH:mm:ss`, without parsing: bills of 100,000 lines are
/// built from it.
fn readable_compact_time(text: &str) -> Option<String> {
    let part = |range: std::ops::Range<usize>| text.get(range);
    Some(format!(
        "{}-{}-{} {}:{}:{}",
        part(0..4)?,
        part(4..6)?,
        part(6..8)?,
        part(8..10)?,
        part(10..12)?,
        part(12..14)?
    ))
}

pub(crate) fn order_not_found() -> WxPayFailure {
    WxPayFailure::new("ORDERNOTEXIST", "订单不存在")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_order(no: &str, fee: i64) -> NewOrder {
        NewOrder {
            out_trade_no: no.into(),
            total_fee: fee,
            openid: "oUser".into(),
            sub_mch_id: "1712734762".into(),
            attach: None,
            body: "top-up".into(),
            env_id: "env".into(),
            spbill_create_ip: "127.0.0.1".into(),
            container_service: "svc".into(),
            container_path: "/cb".into(),
            v3: None,
        }
    }

    fn refund(no: &str, refund_no: &str, fee: i64) -> NewRefund {
        NewRefund {
            out_trade_no: no.into(),
            out_refund_no: refund_no.into(),
            total_fee: 100,
            refund_fee: fee,
            refund_desc: None,
            container_service: "svc".into(),
            container_path: "/refund".into(),
            notify_url: None,
        }
    }

    #[test]
    fn refunds_never_exceed_what_was_paid() {
        let book = OrderBook::default();
        book.place(new_order("ORDER1", 100)).unwrap();
        assert_eq!(
            book.request_refund(refund("ORDER1", "R1", 60))
                .unwrap_err()
                .err_code,
            "ERROR"
        );
        book.pay("ORDER1").unwrap();
        let (_, first, is_new) = book.request_refund(refund("ORDER1", "R1", 60)).unwrap();
        assert!(is_new);
        let (_, again, is_new) = book.request_refund(refund("ORDER1", "R1", 60)).unwrap();
        assert!(!is_new);
        assert_eq!(first.refund_id, again.refund_id);
        assert_eq!(
            book.request_refund(refund("ORDER1", "R1", 50))
                .unwrap_err()
                .err_code,
            "REFUND_FEE_MISMATCH"
        );
        assert_eq!(
            book.request_refund(refund("ORDER1", "R2", 41))
                .unwrap_err()
                .err_code,
            "ERROR"
        );
        book.request_refund(refund("ORDER1", "R2", 40)).unwrap();
        assert_eq!(book.get("ORDER1").unwrap().trade_state, TradeState::Refund);
    }

    #[test]
    fn a_closed_order_cannot_be_paid() {
        let book = OrderBook::default();
        book.place(new_order("ORDER2", 100)).unwrap();
        book.close("ORDER2", Duration::ZERO).unwrap();
        assert_eq!(
            book.pay("ORDER2").unwrap_err(),
            SandboxError::OrderClosed("ORDER2".into())
        );
    }
}
